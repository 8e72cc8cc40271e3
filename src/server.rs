//! Transports: accept loops for TCP and the unix socket ([`listen`]), TLS
//! handshakes under their own caps ([`handshake`]), connection limits
//! ([`limits`]), HTTP/1 serving and graceful drain. What a connection
//! proved is handed to the broker as a [`Conn`]; requests go to
//! [`crate::api`].

mod handshake;
mod limits;
mod listen;

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::audit::{truncate, Decision, Peer, Record, Transport};
use crate::broker::{auth_failure, Conn, Runtime, Shared, Summed};
use crate::identity::{self, PeerIdentity};
use crate::lock;
use crate::policy::PeerFacts;
use crate::tls::{self, HandshakeNote, HANDSHAKE_NOTE};

use handshake::{FirstBytes, HandshakeSlot, Handshakes};
use limits::{Caps, UidCounts, UidGuard};
#[cfg(unix)]
pub use listen::Unix;
pub use listen::{Accepted, Listener, Listeners, Tcp};

/// Longest executable path written to the audit log.
const MAX_LOGGED_EXE: usize = 512;

/// Longest Windows SID or account name written to the audit log.
const MAX_LOGGED_ACCOUNT: usize = 256;

/// What every accepted connection shares.
struct Serving {
    shared: Arc<Shared>,
    caps: Caps,
    uids: Arc<UidCounts>,
    graceful: GracefulShutdown,
}

/// Serves until `shutdown` completes, then stops accepting and drains open
/// connections for up to `drain` before returning.
///
/// Connections still in their TLS handshake are unauthenticated: anyone who
/// can reach the socket can open them. They get their own, smaller cap
/// (`limits.max_handshakes`) and a short timeout, and when the cap is full a
/// new connection evicts the oldest one that has sent nothing yet (or else
/// the oldest), so an idle flood cannot keep a bot from starting its
/// handshake. Only connections that completed it count against
/// `limits.max_connections`; on the unix socket each uid may hold at most
/// `limits.max_connections_per_uid`. Descriptors are kept in reserve for
/// Vault, the audit log and the ledger.
pub async fn run(
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let limits = shared.runtime().config.limits.clone();
    let (max_connections, max_handshakes) = limits::fd_budget(&limits);
    let serving = Serving {
        shared: shared.clone(),
        caps: Caps {
            permits: Arc::new(Semaphore::new(max_connections)),
            waiting: Arc::new(Semaphore::new(max_handshakes)),
        },
        uids: Arc::new(UidCounts::new(limits.max_connections_per_uid)),
        graceful: GracefulShutdown::new(),
    };
    // TCP and the unix socket have a pool each: a flood over loopback TCP,
    // where every local process is the same source, cannot take the unix
    // socket's places, which are capped per uid.
    let tcp_handshakes = Arc::new(Handshakes::new(max_handshakes));
    let unix_handshakes = Arc::new(Handshakes::new(max_handshakes));
    let pipe_handshakes = Arc::new(Handshakes::new(max_handshakes));
    let (stop_flusher, flusher) = spawn_refusal_flusher(shared.clone());
    tokio::pin!(shutdown);
    let Listeners {
        tcp,
        #[cfg(unix)]
        unix,
        #[cfg(windows)]
        pipe,
    } = listeners;
    #[cfg(not(unix))]
    let unix: Option<Tcp> = None;
    #[cfg(not(windows))]
    let pipe: Option<Tcp> = None;
    loop {
        tokio::select! {
            r = accept_on(tcp.as_ref()) => serving.admit(r, &tcp_handshakes).await,
            r = accept_on(unix.as_ref()) => serving.admit(r, &unix_handshakes).await,
            r = accept_on(pipe.as_ref()) => serving.admit(r, &pipe_handshakes).await,
            _ = &mut shutdown => break,
        }
    }
    // Closing the listeners removes the unix socket's file.
    drop(tcp);
    drop(unix);
    drop(pipe);
    info!("Draining connections");
    if tokio::time::timeout(drain, serving.graceful.shutdown())
        .await
        .is_err()
    {
        warn!("Drain timed out; closing remaining connections");
    }
    // Connections still in their handshake end within its timeout; their
    // refusals belong in the final summaries.
    let deadline = Instant::now() + limits.handshake_timeout + Duration::from_secs(1);
    while !(tcp_handshakes.is_empty() && unix_handshakes.is_empty() && pipe_handshakes.is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_flusher.send(true);
    let _ = flusher.await;
    shared.flush_refusals(true).await;
}

/// Writes the summaries of ended refusal windows every second, until told
/// to stop.
fn spawn_refusal_flusher(
    shared: Arc<Shared>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped.changed() => return,
            }
            shared.flush_refusals(false).await;
        }
    });
    (stop, task)
}

/// The next connection on `l`, or never when the transport is not
/// configured.
async fn accept_on<L: Listener>(l: Option<&L>) -> io::Result<(L::Stream, Accepted)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

// === impl Serving ===

impl Serving {
    /// Starts serving an accepted connection in its own task, within the
    /// caps: on the unix socket, its uid's place first.
    async fn admit<S>(&self, accepted: io::Result<(S, Accepted)>, pool: &Arc<Handshakes>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (stream, accepted) = match accepted {
            Ok(a) => a,
            Err(e) => return accept_error(e).await,
        };
        let uid = match accepted.peer.transport == Transport::Unix {
            false => None,
            true => match self.uids.take(accepted.peer.uid.unwrap_or(u32::MAX)) {
                Some(guard) => Some(guard),
                None => {
                    drop(stream);
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let msg = "this uid holds as many connections as it may".into();
                        auth_failure(
                            &shared,
                            accepted.peer,
                            None,
                            "uid_connection_limit",
                            msg,
                            Instant::now(),
                            Summed::Yes,
                        )
                        .await;
                    });
                    return;
                }
            },
        };
        let slot = pool.admit();
        let shared = self.shared.clone();
        let watcher = self.graceful.watcher();
        let caps = self.caps.clone();
        tokio::spawn(connection(
            stream, accepted, uid, shared, watcher, slot, caps,
        ));
    }
}

/// Accept errors such as EMFILE: back off briefly instead of spinning.
async fn accept_error(e: io::Error) {
    warn!(error = %e, "Accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The process behind a connection whose pid the kernel named, bound by
/// that pid; its executable and account go into the peer's facts.
fn bind_process(peer: &mut Peer, facts: &mut PeerFacts) -> Option<crate::process::Binding> {
    let pid = peer.pid.filter(|_| facts.verified)?;
    let process = crate::process::Binding::read(pid);
    peer.exe = process.exe.as_ref().map(|e| capped_exe(e));
    peer.sid = process
        .sid
        .as_deref()
        .map(|s| truncate(s, MAX_LOGGED_ACCOUNT));
    peer.user = process
        .user
        .as_deref()
        .map(|u| truncate(u, MAX_LOGGED_ACCOUNT));
    facts.exe = process.exe.clone();
    facts.sid = process.sid.clone();
    facts.user = process.user.clone();
    Some(process)
}

/// The owner of a loopback TCP connection, from the kernel's owning-PID
/// table. A client shows up there once it has sent its first bytes, so
/// this runs after the handshake; it is one table copy per connection.
#[cfg(windows)]
fn tcp_owner(peer: &mut Peer, facts: &mut PeerFacts, local: Option<std::net::SocketAddr>) {
    let client = peer.addr.as_deref().and_then(|a| a.parse().ok());
    let (Some(client), Some(local)) = (client, local) else {
        return;
    };
    if let Some(pid) = crate::platform::windows::loopback_owner(client, local) {
        peer.pid = Some(pid);
        facts.verified = true;
    }
}

/// An executable path for the audit log, capped in length: the name of a
/// program is chosen by whoever wrote it.
fn capped_exe(exe: &Path) -> String {
    crate::audit::truncate(&exe.display().to_string(), MAX_LOGGED_EXE)
}

/// One connection: its TLS handshake, its place under the caps, then HTTP
/// until it closes. Every refusal on the way is audited.
async fn connection<S>(
    stream: S,
    accepted: Accepted,
    _uid: Option<UidGuard>,
    shared: Arc<Shared>,
    watcher: Watcher,
    slot: HandshakeSlot,
    caps: Caps,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let Accepted {
        mut peer,
        mut facts,
        local,
    } = accepted;
    #[cfg(not(windows))]
    let _ = local;
    let process = bind_process(&mut peer, &mut facts);
    // One snapshot gives the acceptor, the identity rules and the
    // generation the connection is stamped with: a reload during the
    // handshake leaves the connection stamped old, so its first request
    // verifies the chain again under the new CA and CRLs.
    let rt = shared.runtime();
    let limits = rt.config.limits.clone();
    let Some(tls_stream) = handshake(stream, &peer, slot, &rt, &shared, started).await else {
        return;
    };
    #[cfg(windows)]
    let process = match peer.transport {
        Transport::Tcp => {
            tcp_owner(&mut peer, &mut facts, local);
            bind_process(&mut peer, &mut facts)
        }
        _ => process,
    };
    let chain: Arc<[CertificateDer<'static>]> = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    if chain.is_empty() && rt.tls_local.is_some() && peer.transport == Transport::Unix {
        // No certificate, on the unix socket: the kernel names the account,
        // and only enrollment is served.
        let Some(permit) = place(&caps, limits.handshake_timeout).await else {
            let msg = "botward holds as many connections as it may".into();
            let reason = "too_many_connections";
            auth_failure(&shared, peer, None, reason, msg, started, Summed::No).await;
            return;
        };
        drop(rt);
        let local = Arc::new(crate::broker::Local { peer, facts });
        serve_local(tls_stream, local, shared, watcher, &limits).await;
        drop(permit);
        return;
    }
    let Some(identity) = identify(&chain, &peer, &process, &rt, &shared, started).await else {
        return;
    };
    let Some(permit) = place(&caps, limits.handshake_timeout).await else {
        let msg = "botward holds as many connections as it may".into();
        auth_failure(
            &shared,
            peer,
            Some(identity),
            "too_many_connections",
            msg,
            started,
            Summed::No,
        )
        .await;
        return;
    };
    debug!(bot = ?identity.bot, transport = ?peer.transport, "Accepted TLS connection");
    let conn = Arc::new(Conn::new(&rt, peer, facts, identity, chain, process));
    drop(rt);
    serve_http(tls_stream, conn, shared, watcher, &limits, started).await;
    drop(permit);
}

/// The TLS handshake, within `limits.handshake_timeout` and unless the
/// handshake pool evicts it. A failed handshake is audited with whatever
/// the verifier saw.
async fn handshake<S>(
    stream: S,
    peer: &Peer,
    mut slot: HandshakeSlot,
    rt: &Runtime,
    shared: &Shared,
    started: Instant,
) -> Option<TlsStream<FirstBytes<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = match (&rt.tls_local, peer.transport) {
        (Some(local), Transport::Unix) => local.clone(),
        _ => rt.tls.clone(),
    };
    let acceptor = TlsAcceptor::from(config);
    let note = Arc::new(Mutex::new(HandshakeNote::default()));
    let stream = slot.watch(stream);
    let handshake = HANDSHAKE_NOTE.scope(note.clone(), acceptor.accept(stream));
    let outcome = tokio::select! {
        // A handshake that completed wins over an eviction at the same time.
        biased;
        r = tokio::time::timeout(rt.config.limits.handshake_timeout, handshake) => Some(r),
        _ = slot.evicted() => None,
    };
    drop(slot);
    let (seen, reason, msg) = match outcome {
        Some(Ok(Ok(s))) => return Some(s),
        Some(Ok(Err(e))) => {
            let (seen, noted) = {
                let mut note = lock(&note);
                (note.peer.take(), note.error.take())
            };
            let rustls_err = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned()
                .or(noted);
            let reason = if rustls_err.is_none() && e.kind() == io::ErrorKind::UnexpectedEof {
                "connection_closed"
            } else {
                tls::failure_reason(rustls_err.as_ref()).as_str()
            };
            let msg = rustls_err
                .map(|r| r.to_string())
                .unwrap_or_else(|| e.kind().to_string());
            (seen, reason, msg)
        }
        Some(Err(_)) => {
            let p = lock(&note).peer.take();
            (p, "tls_timeout", "TLS handshake timed out".into())
        }
        None => {
            let p = lock(&note).peer.take();
            let msg = "evicted: too many connections in their TLS handshake".into();
            (p, "handshake_evicted", msg)
        }
    };
    auth_failure(
        shared,
        peer.clone(),
        seen,
        reason,
        msg,
        started,
        Summed::Yes,
    )
    .await;
    None
}

/// What the verified certificate says, if the connection presented one and
/// the calling process is still the one that connected.
async fn identify(
    chain: &[CertificateDer<'static>],
    peer: &Peer,
    process: &Option<crate::process::Binding>,
    rt: &Runtime,
    shared: &Shared,
    started: Instant,
) -> Option<PeerIdentity> {
    let Some(der) = chain.first() else {
        let msg = "no client certificate".into();
        auth_failure(
            shared,
            peer.clone(),
            None,
            "no_client_certificate",
            msg,
            started,
            Summed::Yes,
        )
        .await;
        return None;
    };
    let identity = identity::from_der(
        der,
        &rt.config.tls.trust_domain,
        rt.config.tls.allow_cn_fallback,
    );
    if process.as_ref().is_some_and(|p| !p.still_holds()) {
        let msg = "the calling process changed during the handshake".into();
        auth_failure(
            shared,
            peer.clone(),
            Some(identity),
            "process_changed",
            msg,
            started,
            Summed::No,
        )
        .await;
        return None;
    }
    Some(identity)
}

/// A place under `limits.max_connections`. A bot beyond it waits up to
/// `wait` for one, then is refused; only so many may wait.
async fn place(caps: &Caps, wait: Duration) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = caps.permits.clone().try_acquire_owned() {
        return Some(p);
    }
    let _waiting = caps.waiting.clone().try_acquire_owned().ok()?;
    let permit = caps.permits.clone().acquire_owned();
    tokio::time::timeout(wait, permit).await.ok()?.ok()
}

/// HTTP/1 on an authenticated connection until it closes or the server
/// drains.
async fn serve_http<S>(
    tls_stream: TlsStream<S>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    watcher: Watcher,
    limits: &crate::config::Limits,
    started: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let svc_conn = conn.clone();
    let service =
        service_fn(move |req| crate::api::handle(req, svc_conn.clone(), svc_shared.clone()));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(64)
        .keep_alive(true);
    let served = builder.serve_connection(TokioIo::new(tls_stream), service);
    let served = watcher.watch(served);
    // The header read timeout also bounds how long a keep-alive connection
    // may sit idle between requests.
    if let Err(e) = served.await {
        http_failure(&shared, &conn, e, started).await;
    }
}

/// HTTP/1 on a unix-socket connection without a certificate: enrollment
/// only.
async fn serve_local<S>(
    tls_stream: TlsStream<S>,
    local: Arc<crate::broker::Local>,
    shared: Arc<Shared>,
    watcher: Watcher,
    limits: &crate::config::Limits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        service_fn(move |req| crate::api::handle_local(req, local.clone(), shared.clone()));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(64)
        .keep_alive(false);
    let served = builder.serve_connection(TokioIo::new(tls_stream), service);
    if let Err(e) = watcher.watch(served).await {
        debug!(error = %e, "Local connection ended with an error");
    }
}

/// Audits a request that hyper refused before it reached the API, such as
/// malformed HTTP or oversized headers.
async fn http_failure(shared: &Shared, conn: &Conn, e: hyper::Error, started: Instant) {
    let (reason, status) = if e.is_parse_too_large() {
        ("headers_too_large", 431)
    } else if e.is_parse() || e.is_parse_status() {
        ("malformed_http", 400)
    } else if e.is_timeout() {
        ("header_read_timeout", 408)
    } else {
        debug!(error = %e, "Connection ended with an error");
        return;
    };
    let mut rec = Record::new("request", crate::audit::request_id(), shared.audit.host());
    rec.decision = Decision::Deny;
    rec.status = status;
    rec.reason = Some(reason.to_owned());
    rec.error = Some(crate::audit::truncate(&e.to_string(), 256));
    rec.peer = Some(conn.peer.clone());
    // Which bot this is was not decided: hyper refused before any request.
    rec.claimed_bot = conn.claimed();
    rec.cert = Some(conn.cert.clone());
    rec.latency_us = started.elapsed().as_micros() as u64;
    if shared.audit.write(rec).await.is_err() {
        warn!("Cannot write audit record for a refused request");
    }
}
