//! Regression tests for the attacks of an adversarial review: connections
//! that outlive a revocation or a change of identity rules, expired CRLs,
//! unauthenticated floods, audit amplification, a process that changes
//! under its connection, and leases that outlive their bot's identity.
//! Each runs a real botward against a real OpenBao.

#![allow(unsafe_code)] // libc calls on the processes under test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use botward::certs::Validity;
use common::*;
use serde_json::Value;

/// One TLS connection, kept alive, speaking HTTP/1.1 by hand.
struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Conn {
    /// Completes a TLS handshake as `bot` over an already open socket.
    fn over(sock: TcpStream, h: &Harness, bot: &BotCert) -> std::io::Result<Conn> {
        let cfg = botward::tls::client_config(&h.ca_pem(), &bot.cert, &bot.key).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Conn { tls })
    }

    fn open(b: &Botward, h: &Harness, bot: &BotCert) -> Conn {
        Conn::over(TcpStream::connect(&b.tcp).unwrap(), h, bot).expect("handshake")
    }

    /// Sends one request and reads its response: (status, JSON body).
    /// Status 0 means the connection was closed instead.
    fn send(&mut self, method: &str, path: &str) -> (u16, Value) {
        let req =
            format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n");
        if self.tls.write_all(req.as_bytes()).is_err() {
            return (0, Value::Null);
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match self.tls.read(&mut chunk) {
                Ok(0) | Err(_) => return (0, Value::Null),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match self.tls.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
        (status, body)
    }

    fn get(&mut self, path: &str) -> (u16, Value) {
        self.send("GET", path)
    }
}

fn reloads(audit: &std::path::Path) -> usize {
    audit_records(audit)
        .iter()
        .filter(|r| r["kind"] == "config.reload")
        .count()
}

/// Sends SIGHUP and waits until the reload is in the audit log; returns it.
fn reload(b: &Botward, audit: &std::path::Path) -> Value {
    let before = reloads(audit);
    b.signal(libc::SIGHUP);
    let start = Instant::now();
    loop {
        let recs: Vec<Value> = audit_records(audit)
            .into_iter()
            .filter(|r| r["kind"] == "config.reload")
            .collect();
        if recs.len() > before {
            return recs[before].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no reload was audited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_crl(config: &str, crl: &std::path::Path) -> String {
    config.replace(
        "trust_domain",
        &format!("crl = [\"{}\"]\ntrust_domain", crl.display()),
    )
}

#[test]
fn a_connection_opened_before_a_revocation_gets_nothing_after_it() {
    let Some(h) = Harness::new("held-revoked") else {
        return;
    };
    let audit = h.audit_path();
    let crl = h.dir.join("bots.crl.pem");
    std::fs::write(&crl, h.ca.crl(&[]).unwrap()).unwrap();
    // The held socket must outlive a reload and a curl before its handshake.
    let config = with_crl(
        &h.template(Auth::AppRole, &audit)
            .limit("handshake_timeout_ms", "120000")
            .render(),
        &crl,
    );
    let b = h.start(&config);
    let bot = h.issue_bot("invoice-bot", Validity::default());

    // A plain TCP connection, opened before the revocation, sends nothing.
    let held = TcpStream::connect(&b.tcp).unwrap();
    // A TLS connection, also opened before.
    let mut open = Conn::open(&b, &h, &bot);
    assert_eq!(open.get("/v1/secrets/erp-db").0, 200);

    std::fs::write(&crl, h.ca.crl(&[&bot.serial]).unwrap()).unwrap();
    let rec = reload(&b, &audit);
    assert_eq!(rec["decision"], "allow", "{rec}");

    // New connections are refused at the handshake.
    let (status, _) = curl_as(&h, &bot, &b.url("/v1/secrets/erp-db"), &[]);
    assert_eq!(status, 0);
    // The held socket completes its handshake under the old acceptor, but
    // its first request is judged under the new CRL.
    let mut late = Conn::over(held, &h, &bot).expect("handshake on the held socket");
    for _ in 0..3 {
        let (status, v) = late.get("/v1/secrets/erp-db");
        assert_eq!(status, 401, "a revoked certificate was served: {v}");
    }
    let (status, _) = open.get("/v1/secrets/erp-db");
    assert_eq!(status, 401, "an open connection kept its access");
    let refused: Vec<Value> = audit_records(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "secret.read" && r["reason"] == "certificate_revoked")
        .collect();
    assert_eq!(refused.len(), 4);
    for r in &refused {
        assert!(
            r["bot"].is_null(),
            "a revoked certificate recorded as a bot: {r}"
        );
        assert_eq!(r["claimed_bot"], "invoice-bot");
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(text.matches(&h.erp_password).count(), 0);
}

#[test]
fn a_reload_derives_identity_again_on_open_connections() {
    let Some(h) = Harness::new("rederive") else {
        return;
    };
    let audit = h.audit_path();
    // A certificate that names its bot only in the CN.
    let legacy =
        h.ca.issue_client(&[], "invoice-bot", Validity::default())
            .unwrap();
    let (cert, key) = legacy.write(&h.tls, "legacy").unwrap();
    let legacy = BotCert {
        cert,
        key,
        serial: legacy.serial.clone(),
    };
    let base = h.config(Auth::AppRole, &audit, "");
    let with_cn = base.replace("trust_domain", "allow_cn_fallback = true\ntrust_domain");
    let b = h.start(&with_cn);
    let mut cn_conn = Conn::open(&b, &h, &legacy);
    let spiffe = h.bot("invoice-bot");
    let mut spiffe_conn = Conn::open(&b, &h, &spiffe);
    assert_eq!(cn_conn.get("/v1/secrets/erp-db").0, 200);
    assert_eq!(spiffe_conn.get("/v1/secrets/erp-db").0, 200);

    // CN fallback off: the open CN-only connection names no bot any more.
    std::fs::write(&b.config_path, &base).unwrap();
    reload(&b, &audit);
    for _ in 0..3 {
        let (status, v) = cn_conn.get("/v1/secrets/erp-db");
        assert_eq!(status, 401, "{v}");
    }
    assert_eq!(spiffe_conn.get("/v1/secrets/erp-db").0, 200);

    // A new trust domain: the SPIFFE ID of the old one names no bot.
    std::fs::write(
        &b.config_path,
        base.replace(
            "trust_domain = \"corp.example\"",
            "trust_domain = \"other.example\"",
        ),
    )
    .unwrap();
    reload(&b, &audit);
    let (status, v) = spiffe_conn.get("/v1/secrets/erp-db");
    assert_eq!(status, 401, "{v}");
    let denied = audit_records(&audit)
        .into_iter()
        .filter(|r| r["reason"] == "no_identity")
        .count();
    assert_eq!(denied, 4);
}

#[test]
fn an_expired_crl_refuses_and_an_expiring_one_is_reported() {
    let Some(h) = Harness::new("crl-expiry") else {
        return;
    };
    let audit = h.audit_path();
    let crl = h.dir.join("bots.crl.pem");
    // Valid for 30 more minutes: within the default warning time of 1 h.
    std::fs::write(&crl, h.ca.crl_until(&[], 1800).unwrap()).unwrap();
    // Open connections sit idle until the CRL expires.
    let config = with_crl(
        &h.template(Auth::AppRole, &audit)
            .limit("header_read_timeout_ms", "300000")
            .render(),
        &crl,
    );
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    let (status, v) = b.get_json(&h, &bot, "/v1/health");
    assert_eq!(status, 200);
    assert_eq!(v["crl"], "expiring", "{v}");
    let start = Instant::now();
    while !b.log_text().contains("CRL expires soon") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut open = Conn::open(&b, &h, &bot);
    assert_eq!(open.get("/v1/secrets/erp-db").0, 200);

    // The CRL feed breaks: the file on disk is past its nextUpdate.
    std::fs::write(&crl, h.ca.crl_until(&[], -60).unwrap()).unwrap();
    reload(&b, &audit);
    let (status, _) = curl_as(&h, &bot, &b.url("/v1/secrets/erp-db"), &[]);
    assert_eq!(status, 0, "a handshake was accepted under an expired CRL");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "auth.failure" && r["reason"] == "crl_expired"
    });
    let (status, v) = open.get("/v1/secrets/erp-db");
    assert_eq!(status, 401, "{v}");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "secret.read" && r["reason"] == "crl_expired"
    });
    let start = Instant::now();
    while !b.log_text().contains("CRL has expired") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A CRL that expires while a connection is open: its next request after
    // nextUpdate is refused without any reload. nextUpdate is pushed further
    // out until the first request lands before it, however slow the host.
    let mut ahead = 6;
    let (mut conn, next_update) = loop {
        std::fs::write(&crl, h.ca.crl_until(&[], ahead).unwrap()).unwrap();
        let next_update = Instant::now() + Duration::from_secs(ahead as u64);
        reload(&b, &audit);
        let mut c = Conn::open(&b, &h, &bot);
        let (status, _) = c.get("/v1/secrets/erp-db");
        if status == 200 && Instant::now() < next_update {
            break (c, next_update);
        }
        ahead *= 2;
        assert!(
            ahead < 200,
            "could not get a request in before the CRL expired"
        );
    };
    std::thread::sleep(
        next_update.saturating_duration_since(Instant::now()) + Duration::from_secs(2),
    );
    let (status, v) = conn.get("/v1/secrets/erp-db");
    assert_eq!(status, 401, "served after the CRL expired: {v}");
}

/// Raises this process's descriptor limit for a flood.
fn raise_nofile(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit.
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
        if cur.rlim_max >= lim.rlim_cur {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_cur,
                rlim_max: cur.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &want);
        } else {
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Keeps `n` idle TCP connections open to `addr`, reopening those botward
/// closes, and runs a connect/close loop beside them, until `stop`.
fn flood(
    addr: String,
    n: usize,
    stop: Arc<AtomicBool>,
    filled: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    let idle = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
            let mut opened = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if opened >= n as u64 {
                    filled.store(true, Ordering::Relaxed);
                }
                for s in socks.iter_mut() {
                    let closed = match s {
                        None => true,
                        Some(sock) => {
                            let mut b = [0u8; 1];
                            sock.set_nonblocking(true).ok();
                            matches!(sock.read(&mut b), Ok(0))
                                || matches!(sock.read(&mut b), Err(ref e) if e.kind() != std::io::ErrorKind::WouldBlock)
                        }
                    };
                    if closed {
                        *s = TcpStream::connect(&addr).ok();
                        // Half of them send the first byte of a TLS record,
                        // so that they do not look idle.
                        if opened % 2 == 0 {
                            if let Some(sock) = s.as_mut() {
                                let _ = sock.write_all(&[0x16]);
                            }
                        }
                        opened += 1;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            opened
        })
    };
    let churn = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if TcpStream::connect(&addr).is_ok() {
                n += 1;
            }
        }
        n
    });
    vec![idle, churn]
}

#[test]
fn an_unauthenticated_flood_does_not_starve_a_bot() {
    let Some(h) = Harness::new("flood") else {
        return;
    };
    raise_nofile(8192);
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");
    let stop = Arc::new(AtomicBool::new(false));
    let filled = Arc::new(AtomicBool::new(false));
    let threads = flood(b.tcp.clone(), 2000, stop.clone(), filled.clone());
    let start = Instant::now();
    while !filled.load(Ordering::Relaxed) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the flood never opened 2000 connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let filled_in = start.elapsed();
    // A bot on a keep-alive connection, beside the flood.
    let mut kept = Conn::open(&b, &h, &bot);

    let s = b.settings(&h, &bot);
    let rt = rt();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for i in 0..40 {
        let started = Instant::now();
        let r = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                botward::client::call(&s, "GET", "/v1/secrets/erp-db"),
            )
            .await
        });
        match r {
            Ok(Ok(a)) if a.status == 200 => latencies.push(started.elapsed()),
            Ok(Ok(a)) => {
                failures += 1;
                eprintln!("flood: status {} after {:?}", a.status, started.elapsed());
            }
            Ok(Err(e)) => {
                failures += 1;
                eprintln!("flood: {e} after {:?}", started.elapsed());
            }
            Err(_) => {
                failures += 1;
                eprintln!("flood: no answer in 5 s");
            }
        }
        if i % 10 == 0 {
            let (status, v) = kept.get("/v1/secrets/erp-db");
            assert_eq!(status, 200, "the keep-alive bot lost Vault: {v}");
        }
        // Spread over several handshake timeouts of the flood.
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    latencies.sort();
    let p = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "flood: 2000 idle connections open after {filled_in:?}; {} idle connections opened, {} connect/close in {:?}; bot: {} of 40 succeeded, p50 {:?}, p99 {:?}",
        counts[0],
        counts[1],
        start.elapsed(),
        latencies.len(),
        p(0.5),
        p(0.99)
    );
    assert!(
        failures <= 2,
        "{failures} of 40 requests of a legitimate bot failed during the flood"
    );
}

#[test]
fn descriptors_are_kept_for_vault_when_the_limit_is_low() {
    let Some(mut h) = Harness::new("nofile") else {
        return;
    };
    raise_nofile(8192);
    let audit = h.audit_path();
    let b = h.start_with_nofile(&h.config(Auth::RootToken, &audit, ""), 256);
    let bot = h.bot("invoice-bot");
    let mut kept = Conn::open(&b, &h, &bot);
    assert_eq!(kept.get("/v1/secrets/erp-db").0, 200);
    // Far more idle connections than the process has descriptors.
    let idle: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect(&b.tcp).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Vault restarts, so botward needs new sockets to reach it.
    h.bao.restart().expect("restart bao");
    h.bao
        .kv_put("rpa/erp-db", &[("password", "after-restart")])
        .unwrap();
    for _ in 0..5 {
        let (status, v) = kept.get("/v1/secrets/erp-db");
        assert_eq!(status, 200, "{v}");
    }
    drop(idle);
    assert!(
        b.log_text().contains("connection limits; they are lowered"),
        "{}",
        b.log_text()
    );
}

#[test]
fn one_uid_cannot_hold_every_unix_socket_connection() {
    let Some(h) = Harness::new("per-uid") else {
        return;
    };
    let audit = h.audit_path();
    let config = h
        .template(Auth::AppRole, &audit)
        .limit("max_connections_per_uid", "4")
        .render();
    let b = h.start(&config);
    let sock = b.unix.clone().unwrap();
    let held: Vec<_> = (0..4)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
        .collect();
    let mut fifth = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(fifth.read(&mut buf).unwrap_or(0), 0, "closed at once");
    let r = wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "uid_connection_limit"
    });
    assert_eq!(r["peer"]["transport"], "unix");
    drop(held);
    // The places are free again once the connections close.
    let bot = h.bot("invoice-bot");
    let mut s = b.settings(&h, &bot);
    s.addr = format!("unix://{}", sock.display());
    let start = Instant::now();
    loop {
        let a = rt().block_on(botward::client::call(&s, "GET", "/v1/whoami"));
        if matches!(&a, Ok(a) if a.status == 200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never served again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn unauthenticated_refusals_are_summed_and_long_fields_capped() {
    let Some(h) = Harness::new("amplify") else {
        return;
    };
    let audit = h.audit_path();
    let mut b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");
    let before = std::fs::metadata(&audit).unwrap().len();
    const N: usize = 500;
    for _ in 0..N {
        drop(TcpStream::connect(&b.tcp).unwrap());
    }
    // A request whose method is 15 KB long.
    let mut c = Conn::open(&b, &h, &bot);
    let (status, _) = c.send(&"X".repeat(15_000), "/v1/whoami");
    assert!(matches!(status, 0 | 400 | 405 | 431), "{status}");
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(30)), Some(0));
    let recs = audit_records(&audit);
    let failures: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["kind"] == "auth.failure"
                && r["peer"]["addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("127.0.0.1") || a == "loopback")
        })
        .collect();
    let counted: u64 = failures
        .iter()
        .map(|r| r["detail"]["aggregated"]["count"].as_u64().unwrap_or(1))
        .sum();
    let mut per_reason = std::collections::BTreeMap::<String, usize>::new();
    for r in &failures {
        *per_reason
            .entry(r["reason"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    eprintln!(
        "{N} bare connects: {} records ({per_reason:?}), {} bytes added",
        failures.len(),
        std::fs::metadata(&audit).unwrap().len() - before
    );
    assert_eq!(counted, N as u64, "every refusal is counted");
    assert!(
        per_reason.values().all(|n| *n <= 2),
        "one record per source and reason per window, plus its summary: {per_reason:?}"
    );
    for r in &recs {
        let line = serde_json::to_string(r).unwrap();
        assert!(
            line.len() < 4096,
            "a {} byte record: {}",
            line.len(),
            &line[..200]
        );
        if let Some(m) = r["method"].as_str() {
            assert!(m.len() <= 16, "{m}");
        }
    }
}

/// A Python bot that holds its TLS connection over the unix socket in a
/// forked child while the process that connected execs another program or
/// exits.
const SWAP_SCRIPT: &str = r#"
import os, socket, ssl, sys, time
sock_path, ca, cert, key, mode = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
raw = socket.socket(socket.AF_UNIX)
raw.connect(sock_path)
tls = ctx.wrap_socket(raw, server_hostname="localhost")
def get():
    tls.sendall(b"GET /v1/secrets/erp-db HTTP/1.1\r\nhost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            return "closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        body += tls.recv(4096)
    return head.split(b" ")[1].decode()
print("first", get(), flush=True)
parent = os.getpid()
child = os.fork()
if child == 0:
    # Wait until the process that connected is gone or runs another program.
    while True:
        try:
            exe = os.readlink(f"/proc/{parent}/exe")
        except OSError:
            break
        if exe.endswith("/sleep"):
            break
        time.sleep(0.02)
    print("second", get(), flush=True)
    os._exit(0)
if mode == "exec":
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv("/bin/sleep", ["sleep", "30"])
os._exit(0)
"#;

#[test]
fn a_process_that_changes_under_its_connection_is_refused() {
    let Some(h) = Harness::new("exe-swap") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");
    let script = h.dir.join("swap.py");
    std::fs::write(&script, SWAP_SCRIPT).unwrap();
    for mode in ["exec", "exit"] {
        let out = std::process::Command::new(python())
            .arg(&script)
            .arg(b.unix.as_ref().unwrap())
            .arg(h.ca_pem())
            .arg(&bot.cert)
            .arg(&bot.key)
            .arg(mode)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("first 200"), "{mode}: {text}");
        assert!(
            text.contains("second 403"),
            "{mode}: the changed process was served: {text}"
        );
    }
    let refused: Vec<Value> = audit_records(&audit)
        .into_iter()
        .filter(|r| r["reason"] == "process_changed")
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused
        .iter()
        .all(|r| r["status"] == 403 && r["decision"] == "deny"));
}

#[test]
fn leases_follow_their_bots_identity_and_are_capped() {
    let Some(h) = Harness::new("lease-identity") else {
        return;
    };
    let Some(pg) = Postgres::start("lease-identity") else {
        return;
    };
    h.enable_database(&pg, "1h");
    let audit = h.audit_path();
    let crl = h.dir.join("bots.crl.pem");
    std::fs::write(&crl, h.ca.crl(&[]).unwrap()).unwrap();
    let extra = r#"
[[secret]]
name = "erp-db-login"
kind = "dynamic"
path = "database/creds/erp-readonly"

[[bot]]
name = "db-bot"
owner = "x@corp.example"
team = "t"
secrets = ["erp-db-login"]
max_leases = 2

[[bot]]
name = "other-db-bot"
owner = "y@corp.example"
team = "t"
secrets = ["erp-db-login"]
"#;
    let config = with_crl(&h.config(Auth::AppRole, &audit, extra), &crl);
    let b = h.start(&config);
    let bot = h.issue_bot("db-bot", Validity::default());
    let other = h.issue_bot("other-db-bot", Validity::default());

    // max_leases: a third lease is refused until one is released.
    let (s1, l1) = b.get_json(&h, &bot, "/v1/secrets/erp-db-login");
    let (s2, _) = b.get_json(&h, &bot, "/v1/secrets/erp-db-login");
    assert_eq!((s1, s2), (200, 200));
    let (s3, v3) = b.get_json(&h, &bot, "/v1/secrets/erp-db-login");
    assert_eq!(s3, 429, "{v3}");
    assert_eq!(v3["error"]["code"], "rate_limited");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "max_leases"
    });
    assert_eq!(h.db_leases(), 2);

    // Another bot's lease reads exactly like one that does not exist.
    let id = l1["lease"]["id"].as_str().unwrap().replace('/', "%2F");
    let theirs = b.call(&h, &other, "DELETE", &format!("/v1/leases/{id}"));
    // The unknown id differs from the real one in its last character.
    let last = if id.ends_with('x') { 'y' } else { 'x' };
    let fake = format!("{}{last}", &id[..id.len() - 1]);
    let unknown = b.call(&h, &other, "DELETE", &format!("/v1/leases/{fake}"));
    assert_eq!(theirs.status, 404);
    assert_eq!(unknown.status, 404);
    let msg = |a: &botward::client::Answer| {
        serde_json::from_slice::<Value>(a.body.expose_secret()).unwrap()["error"]["message"].clone()
    };
    assert_eq!(msg(&theirs), msg(&unknown));
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "lease_not_owned"
    });
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "no_lease"
    });
    assert_eq!(h.db_leases(), 2, "the other bot revoked nothing");

    let (status, _) = b.get_json(&h, &bot, &format!("/v1/leases/{id}"));
    assert_eq!(status, 405);
    assert_eq!(
        b.call(&h, &bot, "DELETE", &format!("/v1/leases/{id}"))
            .status,
        204
    );
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db-login").0, 200);
    assert_eq!(b.get_json(&h, &other, "/v1/secrets/erp-db-login").0, 200);
    assert_eq!(h.db_leases(), 3);

    // Revoking db-bot's certificate revokes its leases at the reload.
    std::fs::write(&crl, h.ca.crl(&[&bot.serial]).unwrap()).unwrap();
    reload(&b, &audit);
    let start = Instant::now();
    while h.db_leases() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "leases of a revoked certificate live on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let released: Vec<Value> = audit_records(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "lease.release" && r["reason"] == "identity_revoked")
        .collect();
    assert_eq!(released.len(), 2);
    assert!(released.iter().all(|r| r["bot"] == "db-bot"));

    // Removing other-db-bot from the config revokes its lease.
    let without = config.replace(
        "[[bot]]\nname = \"other-db-bot\"\nowner = \"y@corp.example\"\nteam = \"t\"\nsecrets = [\"erp-db-login\"]\n",
        "",
    );
    assert_ne!(without, config);
    std::fs::write(&b.config_path, without).unwrap();
    reload(&b, &audit);
    let start = Instant::now();
    while h.db_leases() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the removed bot's lease lives on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bots_learn_no_vault_address_or_credential_file() {
    let Some(mut h) = Harness::new("redact") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");
    let (status, v) = b.get_json(&h, &bot, "/v1/health");
    assert_eq!(status, 200);
    assert!(!v.to_string().contains(&h.bao.addr), "{v}");
    assert!(v.get("nodes").is_none(), "{v}");

    // The AppRole secret ID file goes away and botward's token is revoked,
    // so the next login fails, naming the file in its error.
    let secret_id = h.secret_id.display().to_string();
    std::fs::remove_file(&h.secret_id).unwrap();
    h.bao
        .cli(
            &["token", "revoke", "-mode=path", "auth/approle/login"],
            None,
        )
        .unwrap();
    let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
    assert_eq!(status, 502, "{v}");
    let text = v.to_string();
    assert!(!text.contains(&secret_id), "{text}");
    let r = wait_for_record(&audit, Duration::from_secs(30), |r| r["status"] == 502);
    assert!(
        r["error"].as_str().is_some_and(|e| e.contains(&secret_id)),
        "the operator still learns which file: {r}"
    );

    // Vault down: no address in the answer either.
    let addr = h.bao.addr.clone();
    h.bao.kill();
    for path in ["/v1/secrets/erp-db", "/v1/health"] {
        let (_, v) = b.get_json(&h, &bot, path);
        let text = v.to_string();
        assert!(
            !text.contains(&addr) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
}

#[test]
fn reloads_close_together_revoke_and_audit_each_lease_once() {
    let Some(h) = Harness::new("sweep-once") else {
        return;
    };
    let Some(pg) = Postgres::start("sweep-once") else {
        return;
    };
    h.enable_database(&pg, "1h");
    let audit = h.audit_path();
    let crl = h.dir.join("bots.crl.pem");
    std::fs::write(&crl, h.ca.crl(&[]).unwrap()).unwrap();
    let extra = r#"
[[secret]]
name = "erp-db-login"
kind = "dynamic"
path = "database/creds/erp-readonly"

[[bot]]
name = "db-bot"
owner = "x@corp.example"
team = "t"
secrets = ["erp-db-login"]
"#;
    let b = h.start(&with_crl(&h.config(Auth::AppRole, &audit, extra), &crl));
    let bot = h.issue_bot("db-bot", Validity::default());
    for _ in 0..8 {
        assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db-login").0, 200);
    }
    assert_eq!(h.db_leases(), 8);

    // The certificate is revoked. The file watcher reloads and sweeps;
    // a SIGHUP reloads again while that sweep is still revoking.
    std::fs::write(&crl, h.ca.crl(&[&bot.serial]).unwrap()).unwrap();
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "config.reload" && r["detail"]["trigger"] == "file_change"
    });
    reload(&b, &audit);
    let start = Instant::now();
    while h.db_leases() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "leases of a revoked certificate live on"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A sweep that read the table before the leases went would audit them
    // again within a Vault call or two.
    std::thread::sleep(Duration::from_secs(2));
    let released: Vec<Value> = audit_records(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "lease.release" && r["reason"] == "identity_revoked")
        .collect();
    let mut hmacs: Vec<&str> = released
        .iter()
        .map(|r| r["backend"]["lease_hmac"].as_str().unwrap())
        .collect();
    hmacs.sort();
    hmacs.dedup();
    assert_eq!(
        (released.len(), hmacs.len()),
        (8, 8),
        "each lease is revoked and audited once"
    );
}
