//! The reference server for `bench/compare.sh`: tokio, hyper and rustls with
//! the same TLS settings as botward (TLS 1.3 and 1.2, a required client
//! certificate from the bots' CA, HTTP/1.1, session IDs and tickets), and a
//! handler that returns a constant. It shows what the hardware and the TLS
//! stack allow before botward does any work.
//!
//!   ref_server --addr 127.0.0.1:9443 --cert server.pem --key server-key.pem --ca ca.pem

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::crypto::ring as provider;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[path = "common.rs"]
mod common;
use common::{arg, cert_and_key, roots};

const BODY: &[u8] = br#"{"name":"erp-db","data":{"password":"constant","username":"erp_invoice"},"version":1,"request_id":"00000000000000000000000000000000"}"#;

fn main() {
    let (certs, key) = cert_and_key();
    let roots = roots();
    let provider = Arc::new(provider::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server certificate and key");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.session_storage = ServerSessionMemoryCache::new(4096);
    cfg.ticketer = provider::Ticketer::new().expect("ticketer");
    let acceptor = TlsAcceptor::from(Arc::new(cfg));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(arg("--addr", None)).await.expect("bind");
        println!("ready {}", listener.local_addr().expect("local address"));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(BODY)))
                            .expect("response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}
