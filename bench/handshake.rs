//! A load generator that opens a new TLS connection for every request, for
//! `bench/compare.sh`: oha cannot choose between full and resumed
//! handshakes. Each of `--conns` workers connects, handshakes with its
//! client certificate, sends one `GET` with `Connection: close`, reads the
//! whole response and starts again. With `--mode resumed` the workers share
//! one client session cache, so the server can resume (TLS 1.3 tickets);
//! with `--mode full` resumption is off. Prints one JSON line:
//! requests/s, p50 and p99 in ms, 200s, total and resumed handshakes.
//!
//!   handshake --addr 127.0.0.1:8443 --path /v1/whoami --ca ca.pem \
//!             --cert bot.pem --key bot-key.pem --mode full --conns 16 --secs 8

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::crypto::ring as provider;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[path = "common.rs"]
mod common;
use common::{arg, cert_and_key, roots};

struct Outcome {
    latencies: Vec<Duration>,
    ok: u64,
    total: u64,
    resumed: u64,
}

async fn one(
    connector: &TlsConnector,
    addr: &str,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(bool, bool)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = connector.connect(name, tcp).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(request).await?;
    buf.clear();
    // The server closes after the response; some servers skip close_notify.
    match tls.read_to_end(buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok((buf.starts_with(b"HTTP/1.1 200"), resumed))
}

fn main() {
    let (certs, key) = cert_and_key();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots())
        .with_client_auth_cert(certs, key)
        .expect("client certificate and key");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mode = arg("--mode", Some("full"));
    cfg.resumption = match mode.as_str() {
        "full" => Resumption::disabled(),
        "resumed" => Resumption::in_memory_sessions(4096),
        other => panic!("--mode {other}: expected full or resumed"),
    };
    let connector = TlsConnector::from(Arc::new(cfg));
    let addr = arg("--addr", None);
    let path = arg("--path", Some("/v1/whoami"));
    let conns: usize = arg("--conns", Some("16")).parse().expect("--conns");
    let secs: f64 = arg("--secs", Some("8")).parse().expect("--secs");
    let warmup: f64 = arg("--warmup", Some("2")).parse().expect("--warmup");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run = |secs: f64| -> (Outcome, Duration) {
        rt.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let start = Instant::now();
            let workers: Vec<_> = (0..conns)
                .map(|_| {
                    let (connector, addr, request, stop) = (
                        connector.clone(),
                        addr.clone(),
                        request.clone(),
                        stop.clone(),
                    );
                    tokio::spawn(async move {
                        let mut out = Outcome {
                            latencies: Vec::new(),
                            ok: 0,
                            total: 0,
                            resumed: 0,
                        };
                        let mut buf = Vec::with_capacity(1024);
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            let r = one(&connector, &addr, &request, &mut buf).await;
                            out.total += 1;
                            if let Ok((ok, resumed)) = r {
                                out.ok += ok as u64;
                                out.resumed += resumed as u64;
                                out.latencies.push(t.elapsed());
                            }
                        }
                        out
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Outcome {
                latencies: Vec::new(),
                ok: 0,
                total: 0,
                resumed: 0,
            };
            for w in workers {
                let o = w.await.expect("worker");
                all.latencies.extend(o.latencies);
                all.ok += o.ok;
                all.total += o.total;
                all.resumed += o.resumed;
            }
            (all, start.elapsed())
        })
    };
    if warmup > 0.0 {
        run(warmup);
    }
    let (mut o, elapsed) = run(secs);
    o.latencies.sort();
    let pct = |p: f64| -> f64 {
        if o.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((o.latencies.len() as f64 * p).ceil() as usize).clamp(1, o.latencies.len()) - 1;
        o.latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": mode,
            "rps": o.ok as f64 / elapsed.as_secs_f64(),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "ok": o.ok,
            "total": o.total,
            "resumed": o.resumed,
        })
    );
}
