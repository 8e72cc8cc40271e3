//! The client side used by `botward get` and `botward exec`: one request to
//! botward over TCP, the unix socket or a Windows named pipe, with the bot's
//! certificate.

use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::secret::WipedBuf;

/// Where botward listens and which certificate to present.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `https://127.0.0.1:8443`, `unix:///run/botward/botward.sock` or
    /// `npipe:////./pipe/botward`.
    pub addr: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A failed call, as one line for stderr.
#[derive(Debug)]
pub struct CallError(pub String);

/// A response from botward.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: WipedBuf,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallError {}

enum Target {
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
    /// A local named pipe, `\\.\pipe\NAME`.
    Pipe(String),
}

/// The prefix every local pipe name has.
const LOCAL_PIPE: &str = r"\\.\pipe\";

fn parse_addr(addr: &str) -> Result<Target, CallError> {
    if let Some(path) = addr.strip_prefix("unix://") {
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    if let Some(path) = addr.strip_prefix("npipe://") {
        // Docker's form: npipe:////./pipe/NAME is \\.\pipe\NAME.
        let name = path.replace('/', "\\");
        if !name.starts_with(LOCAL_PIPE) || name.len() == LOCAL_PIPE.len() {
            return Err(CallError(format!(
                "BOTWARD_ADDR {addr:?} must name a local pipe, like npipe:////./pipe/botward"
            )));
        }
        return Ok(Target::Pipe(name));
    }
    let rest = addr.strip_prefix("https://").ok_or_else(|| {
        CallError(format!(
            "BOTWARD_ADDR {addr:?} must start with https://, unix:// or npipe://"
        ))
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse()
                .map_err(|_| CallError(format!("bad port in {addr:?}")))?,
        ),
        _ => (rest.to_owned(), 8443),
    };
    Ok(Target::Tcp { host, port })
}

/// Sends one request and returns the answer, whatever its status.
pub async fn call(
    settings: &ClientSettings,
    method: &str,
    path_and_query: &str,
) -> Result<Answer, CallError> {
    call_with(settings, method, path_and_query, None).await
}

/// [`call`] with a JSON body.
pub async fn call_with(
    settings: &ClientSettings,
    method: &str,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, CallError> {
    crate::tls::install_provider();
    let tls = crate::tls::client_config(&settings.ca, &settings.cert, &settings.key)
        .map_err(|e| CallError(format!("TLS setup: {e}")))?;
    send(tls, &settings.addr, method, path_and_query, body).await
}

/// Sends one request without a client certificate, trusting `ca` for
/// botward's: enrollment, on the unix socket.
pub async fn call_anonymous(
    addr: &str,
    ca: &std::path::Path,
    method: &str,
    path_and_query: &str,
    body: Vec<u8>,
) -> Result<Answer, CallError> {
    crate::tls::install_provider();
    let tls = crate::tls::pinned_client_config(ca, None)
        .map_err(|e| CallError(format!("TLS setup: {e}")))?;
    send(tls, addr, method, path_and_query, Some(body)).await
}

async fn send(
    tls: rustls::ClientConfig,
    addr: &str,
    method: &str,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, CallError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let req = (method, path_and_query, body);
    match parse_addr(addr)? {
        Target::Tcp { host, port } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| CallError(format!("cannot connect to {addr}: {e}")))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| CallError(format!("bad host {host:?}")))?;
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(|e| CallError(format!("TLS handshake with {addr} failed: {e}")))?;
            exchange(tls, &host, req).await
        }
        #[cfg(unix)]
        Target::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| CallError(format!("cannot connect to {}: {e}", path.display())))?;
            let name = ServerName::try_from("localhost").expect("static name");
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(|e| CallError(format!("TLS handshake with {addr} failed: {e}")))?;
            exchange(tls, "localhost", req).await
        }
        #[cfg(not(unix))]
        Target::Unix(path) => Err(CallError(format!(
            "{}: unix sockets are not supported on this system",
            path.display()
        ))),
        #[cfg(windows)]
        Target::Pipe(name) => {
            let stream = open_pipe(&name).await?;
            let server = ServerName::try_from("localhost").expect("static name");
            let tls = connector
                .connect(server, stream)
                .await
                .map_err(|e| CallError(format!("TLS handshake with {addr} failed: {e}")))?;
            exchange(tls, "localhost", req).await
        }
        #[cfg(not(windows))]
        Target::Pipe(name) => Err(CallError(format!(
            "{name}: named pipes are only supported on Windows"
        ))),
    }
}

/// Opens the client end of a pipe, waiting while every instance is busy.
#[cfg(windows)]
async fn open_pipe(
    name: &str,
) -> Result<tokio::net::windows::named_pipe::NamedPipeClient, CallError> {
    const ERROR_PIPE_BUSY: i32 = 231;
    let mut tries = 0;
    loop {
        match tokio::net::windows::named_pipe::ClientOptions::new().open(name) {
            Ok(c) => return Ok(c),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(CallError(format!("cannot connect to {name}: {e}"))),
        }
    }
}

async fn exchange<S>(
    stream: S,
    host: &str,
    (method, path_and_query, body): (&str, &str, Option<Vec<u8>>),
) -> Result<Answer, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CallError(format!("HTTP handshake failed: {e}")))?;
    let driver = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", host)
        .header("user-agent", concat!("botward/", env!("CARGO_PKG_VERSION")));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| CallError(format!("bad request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| CallError(format!("request failed: {e}")))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = resp.into_body();
    let mut buf = WipedBuf::with_capacity(1024);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CallError(format!("reading response failed: {e}")))?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
    }
    drop(sender);
    driver.abort();
    Ok(Answer {
        status,
        content_type,
        body: buf,
    })
}

/// Turns a non-200 answer into one line: `code: message (request_id)`.
pub fn error_line(answer: &Answer) -> String {
    let parsed: Option<serde_json::Value> =
        serde_json::from_slice(answer.body.expose_secret()).ok();
    match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(e) => format!(
            "{}: {} (request {})",
            e.get("code").and_then(|c| c.as_str()).unwrap_or("error"),
            e.get("message").and_then(|c| c.as_str()).unwrap_or(""),
            e.get("request_id").and_then(|c| c.as_str()).unwrap_or("-"),
        ),
        None => format!("HTTP {}", answer.status),
    }
}

/// Percent-encodes a path segment or query value; botward names never need
/// it, but a mistyped name then gets a clean 400 instead of a broken URL.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert!(
            matches!(parse_addr("https://127.0.0.1:9000"), Ok(Target::Tcp { ref host, port: 9000 }) if host == "127.0.0.1")
        );
        assert!(
            matches!(parse_addr("https://[::1]:9000"), Ok(Target::Tcp { ref host, port: 9000 }) if host == "::1")
        );
        assert!(matches!(
            parse_addr("https://localhost"),
            Ok(Target::Tcp { port: 8443, .. })
        ));
        assert!(
            matches!(parse_addr("unix:///run/b.sock"), Ok(Target::Unix(p)) if p == std::path::Path::new("/run/b.sock"))
        );
        assert!(parse_addr("http://127.0.0.1:1").is_err());
        assert!(
            matches!(parse_addr("npipe:////./pipe/botward"), Ok(Target::Pipe(ref p)) if p == r"\\.\pipe\botward")
        );
        assert!(parse_addr("npipe:////server/pipe/botward").is_err());
        assert!(parse_addr("npipe:////./pipe/").is_err());
    }

    #[test]
    fn encode_escapes_everything_outside_the_name_alphabet() {
        assert_eq!(encode("erp-db"), "erp-db");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
