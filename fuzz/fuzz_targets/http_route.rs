//! Raw bytes from a client, through hyper's HTTP/1 server (built as
//! `server.rs` builds it) into the API's route parser.
//!
//! Input: one byte that sets how many bytes each read returns (0: all at
//! once), then what the client sends on the connection, any number of
//! pipelined requests.
//!
//! Invariants, for every request hyper hands over:
//! - a route that parses has the method, path and alphabet its kind allows;
//! - rendered back to a request line, it parses to the same route (lease IDs
//!   both with raw `/` and with `%2F`);
//! - a refused request is a 400, 404 or 405, never anything else;
//! - hyper finishes the connection (no hang), and nothing panics.

#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use botward::api::fuzz_parse;
use botward::policy::is_valid_name;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, Uri};
use libfuzzer_sys::fuzz_target;

/// The default `limits.max_header_bytes`.
const MAX_HEADER_BYTES: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, wire)) = data.split_first() else {
        return;
    };
    let io = Conn {
        input: wire.to_vec(),
        at: 0,
        chunk: usize::from(chunk),
    };
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        check(req.method(), req.uri());
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
    });
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(64)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut cx = Context::from_waker(Waker::noop());
    // The connection never waits for I/O: every read is ready, and the
    // service answers at once. It must end well within a poll per byte.
    let mut polls = 0usize;
    while conn.as_mut().poll(&mut cx).is_pending() {
        polls += 1;
        assert!(
            polls <= wire.len() + 64,
            "connection still running after {polls} polls"
        );
    }
});

/// What a route that parses must look like, and that it survives a round
/// trip through its canonical request line.
fn check(method: &Method, uri: &Uri) {
    let parsed = fuzz_parse(method, uri);
    let (kind, id, field) = match &parsed {
        Err(e) => {
            let status = e.status();
            assert!(
                matches!(status, 400 | 404 | 405),
                "{e:?} for {method} {uri}"
            );
            return;
        }
        Ok((kind, id, field)) => (*kind, id.as_str(), field.as_deref()),
    };
    let no_query = uri.query().is_none_or(str::is_empty);
    match kind {
        "secret" => {
            assert_eq!(method, Method::GET);
            assert!(is_valid_name(id), "secret name {id:?}");
            assert_eq!(uri.path(), format!("/v1/secrets/{id}"));
            if let Some(f) = field {
                assert!(!f.is_empty() && f.len() <= 256, "field {f:?}");
                assert!(f
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)));
            } else {
                assert!(no_query, "{uri}");
            }
            let again = match field {
                Some(f) => format!("/v1/secrets/{id}?field={f}"),
                None => format!("/v1/secrets/{id}"),
            };
            assert_same(&parsed, &Method::GET, &again);
        }
        "release" | "renew" => {
            assert!(no_query, "{uri}");
            assert!(lease_id_ok(id), "lease ID {id:?}");
            let (m, tail) = if kind == "renew" {
                (Method::POST, "/renew")
            } else {
                (Method::DELETE, "")
            };
            assert_eq!(method, m);
            assert_same(&parsed, &m, &format!("/v1/leases/{id}{tail}"));
            let encoded = id.replace('/', "%2F");
            assert_same(&parsed, &m, &format!("/v1/leases/{encoded}{tail}"));
        }
        "whoami" | "health" => {
            assert_eq!(method, Method::GET);
            assert_eq!(uri.path(), format!("/v1/{kind}"));
            assert!(no_query, "{uri}");
            assert!(id.is_empty() && field.is_none());
        }
        other => panic!("unknown route kind {other}"),
    }
}

fn assert_same(
    parsed: &Result<(&'static str, String, Option<String>), botward::error::ApiError>,
    method: &Method,
    target: &str,
) {
    let uri: Uri = target
        .parse()
        .unwrap_or_else(|e| panic!("canonical {target:?} is not a URI: {e}"));
    assert_eq!(&fuzz_parse(method, &uri), parsed, "{method} {target}");
}

/// Vault's lease ID alphabet, with clean segments, at most 512 bytes.
fn lease_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 512
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-".contains(&c))
        && id
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// A client connection that sends the input, then closes its side; what
/// botward answers is dropped.
struct Conn {
    input: Vec<u8>,
    at: usize,
    /// Bytes per read; 0 for as many as fit.
    chunk: usize,
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.input.len() - self.at;
        let mut n = left.min(buf.remaining());
        if self.chunk > 0 {
            n = n.min(self.chunk);
        }
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
