//! Accept loops for TCP and the unix socket, TLS handshakes, connection
//! limits, config reload and graceful drain.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::audit::{AuditLog, Decision, Peer, Record, Transport};
use crate::config::Config;
use crate::identity::{self, PeerIdentity};
use crate::policy::PeerFacts;
use crate::tls::{self, HandshakeNote, HANDSHAKE_NOTE};
use crate::vault::Vault;

/// Everything derived from one version of the config.
pub struct Runtime {
    pub config: Arc<Config>,
    pub tls: Arc<ServerConfig>,
    pub client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// Distinct for every runtime built, so connections can tell that the
    /// configuration changed under them.
    pub generation: u64,
    pub vault: Arc<Vault>,
    /// Shares identical concurrent KV reads.
    pub kv_reads: crate::coalesce::Coalescer<crate::vault::Fetched>,
    /// KV reads of secrets with `cache_ttl`; emptied by a reload.
    pub kv_cache: crate::cache::KvCache,
    lease_key: Arc<ring::hmac::Key>,
    /// Renews the Vault token; shared with later runtimes that reuse the
    /// same Vault client, and stopped when the last of them is gone.
    renewer: Arc<AbortOnDrop>,
}

/// State shared by all connections for the life of the process.
pub struct Shared {
    runtime: RwLock<Arc<Runtime>>,
    pub audit: Arc<AuditLog>,
    pub leases: Arc<crate::leases::Leases>,
    /// Online anomaly scoring, when enabled.
    pub scorer: Option<Arc<crate::anomaly::online::Scorer>>,
    config_path: PathBuf,
    lease_key: Arc<ring::hmac::Key>,
    reload_lock: tokio::sync::Mutex<()>,
}

/// One accepted, authenticated-by-TLS connection.
pub struct Conn {
    pub peer: Peer,
    pub facts: PeerFacts,
    pub identity: PeerIdentity,
    /// The client's certificate chain, checked again when the TLS
    /// configuration changes while the connection is open.
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub not_after: Option<jiff::Timestamp>,
    /// The runtime generation the chain was last verified under.
    pub verified: std::sync::atomic::AtomicU64,
}

/// Sockets bound before serving starts, so tests can bind port 0.
#[derive(Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    #[cfg(unix)]
    pub unix: Option<UnixListener>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === impl Runtime ===

impl Runtime {
    /// Builds the runtime for `config`, reusing the Vault client of `old`
    /// when the Vault settings did not change.
    pub fn build(
        config: Config,
        old: Option<&Runtime>,
        lease_key: Arc<ring::hmac::Key>,
    ) -> Result<Runtime, String> {
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let server_tls = tls::server_config(&config.tls).map_err(|e| format!("TLS: {e}"))?;
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (vault, renewer) = match old {
            Some(old) if old.vault.config() == &config.vault => {
                (old.vault.clone(), old.renewer.clone())
            }
            _ => {
                let vault = Vault::new(config.vault.clone()).map_err(|e| e.to_string())?;
                let renewer = Arc::new(AbortOnDrop(vault.spawn_renewer()));
                (vault, renewer)
            }
        };
        Ok(Runtime {
            config: Arc::new(config),
            tls: server_tls.config,
            client_verifier: server_tls.client_verifier,
            generation,
            vault,
            kv_reads: Default::default(),
            kv_cache: Default::default(),
            lease_key,
            renewer,
        })
    }

    /// An HMAC of a lease ID, for the audit log.
    pub fn lease_hmac(&self, lease_id: &str) -> String {
        identity::hex(ring::hmac::sign(&self.lease_key, lease_id.as_bytes()).as_ref())
    }
}

// === impl Shared ===

impl Shared {
    pub fn new(
        runtime: Runtime,
        audit: Arc<AuditLog>,
        leases: Arc<crate::leases::Leases>,
        scorer: Option<Arc<crate::anomaly::online::Scorer>>,
        config_path: PathBuf,
    ) -> Arc<Shared> {
        let lease_key = runtime.lease_key.clone();
        Arc::new(Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            audit,
            leases,
            scorer,
            config_path,
            lease_key,
            reload_lock: Default::default(),
        })
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn lease_key(&self) -> Arc<ring::hmac::Key> {
        self.lease_key.clone()
    }

    /// Reloads the config file. A config that does not validate, or whose
    /// certificates do not load, is refused and the running one stays. Both
    /// outcomes are audited as `config.reload`.
    pub async fn reload(&self, trigger: &str) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let started = Instant::now();
        let old = self.runtime();
        let mut rec = Record::new("config.reload", crate::api::request_id(), self.audit.host());
        let outcome = match Config::load(&self.config_path) {
            Err(problems) => Err(problems.0.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
            Ok(new) => {
                let warnings = restart_only_changes(&old.config, &new);
                let detail = grant_changes(&old.config, &new);
                match Runtime::build(new, Some(&old), self.lease_key.clone()) {
                    Err(e) => Err(vec![e]),
                    Ok(rt) => Ok((rt, warnings, detail)),
                }
            }
        };
        rec.latency_us = started.elapsed().as_micros() as u64;
        match outcome {
            Err(problems) => {
                rec.decision = Decision::Deny;
                rec.reason = Some("invalid_config".into());
                rec.error = Some(format!(
                    "{} problem(s); the running config stays",
                    problems.len()
                ));
                rec.detail = Some(
                    serde_json::json!({"trigger": trigger, "file": self.config_path, "problems": problems}),
                );
                let _ = self.audit.write(rec).await;
                for p in &problems {
                    warn!(problem = %p, "Config reload refused");
                }
                Err(problems.join("\n"))
            }
            Ok((rt, warnings, mut detail)) => {
                rec.decision = Decision::Allow;
                detail["trigger"] = trigger.into();
                detail["file"] = serde_json::json!(self.config_path);
                detail["change_ticket"] = serde_json::json!(rt.config.change_ticket);
                detail["warnings"] = serde_json::json!(warnings);
                rec.detail = Some(detail);
                // Publish, then record; a change that cannot be recorded is
                // rolled back. Once the record is in the log, the change is
                // live.
                let previous = std::mem::replace(
                    &mut *self.runtime.write().unwrap_or_else(|e| e.into_inner()),
                    Arc::new(rt),
                );
                if self.audit.write(rec).await.is_err() {
                    *self.runtime.write().unwrap_or_else(|e| e.into_inner()) = previous;
                    warn!("Config reload rolled back: its audit record could not be written");
                    return Err("the audit record of the reload could not be written".into());
                }
                for w in &warnings {
                    warn!(warning = %w, "Config reloaded");
                }
                info!(trigger, "Config reloaded");
                Ok(())
            }
        }
    }

    /// Revokes a lease botward holds and audits it as `lease.release` with
    /// `reason` (`max_use`, `expired`, `shutdown`, `orphaned`, ...). A lease
    /// Vault cannot revoke now stays in the table and the ledger, to be
    /// tried again.
    pub async fn revoke_held(&self, held: &crate::leases::Held, reason: &str) -> bool {
        let started = Instant::now();
        let rt = self.runtime();
        let result = rt.vault.revoke_lease(&held.id).await;
        let mut rec = Record::new("lease.release", crate::api::request_id(), self.audit.host());
        rec.bot = Some(held.bot.clone());
        rec.secret = Some(held.secret.clone());
        rec.reason = Some(reason.to_owned());
        rec.backend = Some(crate::audit::Backend {
            path: held
                .id
                .rsplit_once('/')
                .map(|(p, _)| p.to_owned())
                .unwrap_or_default(),
            version: None,
            lease_hmac: Some(rt.lease_hmac(&held.id)),
        });
        let ok = match result {
            Ok(()) => {
                rec.decision = Decision::Allow;
                if let Err(e) = tokio::task::block_in_place(|| self.leases.remove(&held.id)) {
                    warn!(error = %e, "Lease revoked but the ledger could not be updated");
                }
                true
            }
            Err(e) => {
                rec.decision = Decision::Error;
                rec.error = Some(e.to_string());
                warn!(error = %e, reason, "Cannot revoke a lease; will retry");
                if let Err(e) = tokio::task::block_in_place(|| {
                    self.leases.defer(&held.id, jiff::Timestamp::now())
                }) {
                    warn!(error = %e, "Cannot update the lease ledger");
                }
                false
            }
        };
        rec.latency_us = started.elapsed().as_micros() as u64;
        if self.audit.write(rec).await.is_err() {
            warn!("Cannot write the audit record of a lease revocation");
        }
        ok
    }

    /// Revokes every lease botward still holds, e.g. at shutdown.
    pub async fn revoke_all(&self, reason: &str) -> usize {
        let mut left = 0;
        for h in self.leases.all() {
            if !self.revoke_held(&h, reason).await {
                left += 1;
            }
        }
        left
    }

    /// Writes a record for an event outside any request.
    pub async fn audit_event(
        &self,
        kind: &'static str,
        decision: Decision,
        reason: Option<&str>,
        detail: Option<serde_json::Value>,
    ) {
        let mut rec = Record::new(kind, crate::api::request_id(), self.audit.host());
        rec.decision = decision;
        rec.reason = reason.map(str::to_owned);
        rec.detail = detail;
        if self.audit.write(rec).await.is_err() {
            warn!(kind, "Cannot write audit record");
        }
    }
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut w = Vec::new();
    if old.listen != new.listen {
        w.push("listen changed; it takes effect at the next restart".to_owned());
    }
    if old.audit != new.audit {
        w.push("audit changed; it takes effect at the next restart".to_owned());
    }
    if old.anomaly != new.anomaly {
        w.push("anomaly changed; it takes effect at the next restart".to_owned());
    }
    if old.hardening != new.hardening {
        w.push("hardening changed; it takes effect at the next restart".to_owned());
    }
    if old.limits.max_connections != new.limits.max_connections {
        w.push("limits.max_connections changed; it takes effect at the next restart".to_owned());
    }
    w
}

/// Grants added and removed by a reload, for the audit record.
fn grant_changes(old: &Config, new: &Config) -> serde_json::Value {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (name, bot) in &new.bots {
        let before = old.bots.get(name).map(|b| &b.secrets);
        for s in &bot.secrets {
            if !before.is_some_and(|b| b.contains(s)) {
                added.push(serde_json::json!({"bot": name, "secret": s}));
            }
        }
    }
    for (name, bot) in &old.bots {
        let after = new.bots.get(name).map(|b| &b.secrets);
        for s in &bot.secrets {
            if !after.is_some_and(|a| a.contains(s)) {
                removed.push(serde_json::json!({"bot": name, "secret": s}));
            }
        }
    }
    serde_json::json!({"added_grants": added, "removed_grants": removed})
}

// === impl Listeners ===

impl Listeners {
    pub fn bind(cfg: &crate::config::Listen) -> io::Result<Listeners> {
        let tcp = match cfg.tcp {
            Some(addr) => {
                let std = std::net::TcpListener::bind(addr)?;
                std.set_nonblocking(true)?;
                Some(TcpListener::from_std(std)?)
            }
            None => None,
        };
        #[cfg(unix)]
        let unix = match &cfg.unix {
            Some(path) => Some(bind_unix(path, cfg.unix_mode)?),
            None => None,
        };
        Ok(Listeners {
            tcp,
            #[cfg(unix)]
            unix,
        })
    }

    /// A line that says where botward listens, e.g. for scripts and tests.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = self.tcp.as_ref().and_then(|l| l.local_addr().ok()) {
            parts.push(format!("tcp={a}"));
        }
        #[cfg(unix)]
        if let Some(p) = self
            .unix
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .and_then(|a| a.as_pathname().map(Path::to_owned))
        {
            parts.push(format!("unix={}", p.display()));
        }
        parts.join(" ")
    }
}

#[cfg(unix)]
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // Remove a stale socket from an earlier run, but never another file.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

/// Serves until `shutdown` completes, then stops accepting and drains open
/// connections for up to `drain` before returning.
pub async fn run(
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    drain: std::time::Duration,
) {
    let limits = shared.runtime().config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let Listeners {
        tcp,
        #[cfg(unix)]
        unix,
    } = listeners;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            r = accept_tcp(tcp.as_ref()) => match r {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let peer = Peer { transport: Transport::Tcp, addr: Some(addr.to_string()), ..Peer::default() };
                    let facts = PeerFacts::default();
                    tokio::spawn(connection(stream, peer, facts, shared.clone(), graceful.watcher(), permit));
                }
                Err(e) => accept_error(e).await,
            },
            r = accept_unix(
                #[cfg(unix)] unix.as_ref(),
            ) => match r {
                Ok((stream, peer, facts)) => {
                    tokio::spawn(connection(stream, peer, facts, shared.clone(), graceful.watcher(), permit));
                }
                Err(e) => accept_error(e).await,
            },
            _ = &mut shutdown => break,
        }
    }
    drop(tcp);
    #[cfg(unix)]
    if let Some(l) = unix {
        if let Some(p) = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_owned))
        {
            let _ = std::fs::remove_file(p);
        }
    }
    info!("Draining connections");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("Drain timed out; closing remaining connections");
    }
}

async fn accept_tcp(
    l: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
async fn accept_unix(
    l: Option<&UnixListener>,
) -> io::Result<(tokio::net::UnixStream, Peer, PeerFacts)> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    let (stream, _) = l.accept().await?;
    let cred = stream.peer_cred()?;
    let pid = cred.pid();
    // Reading another user's /proc/PID/exe needs CAP_SYS_PTRACE; without
    // it the exe stays unknown and exe rules fail closed.
    let exe = pid.and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok());
    let peer = Peer {
        transport: Transport::Unix,
        addr: None,
        pid,
        uid: Some(cred.uid()),
        exe: exe.as_ref().map(|e| e.display().to_string()),
    };
    let facts = PeerFacts {
        uid: Some(cred.uid()),
        exe,
        via_unix: true,
    };
    Ok((stream, peer, facts))
}

#[cfg(not(unix))]
async fn accept_unix() -> io::Result<(tokio::net::TcpStream, Peer, PeerFacts)> {
    std::future::pending().await
}

/// Accept errors such as EMFILE: back off briefly instead of spinning.
async fn accept_error(e: io::Error) {
    warn!(error = %e, "Accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

async fn connection<S>(
    stream: S,
    peer: Peer,
    facts: PeerFacts,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
    _permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let rt = shared.runtime();
    let limits = rt.config.limits.clone();
    let acceptor = TlsAcceptor::from(rt.tls.clone());
    drop(rt);
    let note = Arc::new(Mutex::new(HandshakeNote::default()));
    let handshake = HANDSHAKE_NOTE.scope(note.clone(), acceptor.accept(stream));
    let tls_stream = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let (seen, noted) = {
                let mut note = note.lock().unwrap_or_else(|e| e.into_inner());
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
                tls::failure_reason(rustls_err.as_ref())
            };
            let msg = rustls_err
                .map(|r| r.to_string())
                .unwrap_or_else(|| e.kind().to_string());
            auth_failure(&shared, peer, seen, reason, msg, started).await;
            return;
        }
        Err(_) => {
            let p = note.lock().unwrap_or_else(|e| e.into_inner()).peer.take();
            auth_failure(
                &shared,
                peer,
                p,
                "tls_timeout",
                "TLS handshake timed out".into(),
                started,
            )
            .await;
            return;
        }
    };
    let generation = shared.runtime().generation;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    let identity = {
        let (_, session) = tls_stream.get_ref();
        let rt = shared.runtime();
        match session.peer_certificates().and_then(|c| c.first()) {
            Some(der) => identity::from_der(
                der,
                &rt.config.tls.trust_domain,
                rt.config.tls.allow_cn_fallback,
            ),
            None => {
                drop(rt);
                auth_failure(
                    &shared,
                    peer,
                    None,
                    "no_client_certificate",
                    "no client certificate".into(),
                    started,
                )
                .await;
                return;
            }
        }
    };
    debug!(bot = ?identity.bot, transport = ?peer.transport, "Accepted TLS connection");
    let not_after = identity
        .cert
        .not_after
        .as_deref()
        .and_then(|t| t.parse().ok());
    let conn = Arc::new(Conn {
        peer,
        facts,
        identity,
        chain,
        not_after,
        verified: std::sync::atomic::AtomicU64::new(generation),
    });
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

/// Audits a failed handshake with whatever the verifier saw.
async fn auth_failure(
    shared: &Shared,
    peer: Peer,
    seen: Option<PeerIdentity>,
    reason: &str,
    message: String,
    started: Instant,
) {
    let mut rec = Record::new(
        "auth.failure",
        crate::api::request_id(),
        shared.audit.host(),
    );
    rec.decision = Decision::Deny;
    rec.status = 0;
    rec.reason = Some(reason.to_owned());
    rec.error = Some(message);
    rec.peer = Some(peer);
    // The handshake failed, so whatever the certificate names is a claim,
    // never an identity.
    if let Some(p) = seen {
        rec.claimed_bot = p.bot;
        rec.cert = Some(p.cert);
    }
    rec.latency_us = started.elapsed().as_micros() as u64;
    info!(reason, "TLS handshake refused");
    if shared.audit.write(rec).await.is_err() {
        warn!("Cannot write audit record for a refused handshake");
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
    let mut rec = Record::new("request", crate::api::request_id(), shared.audit.host());
    rec.decision = Decision::Deny;
    rec.status = status;
    rec.reason = Some(reason.to_owned());
    rec.error = Some(e.to_string());
    rec.peer = Some(conn.peer.clone());
    rec.bot = conn.identity.bot.clone();
    rec.cert = Some(conn.identity.cert.clone());
    rec.latency_us = started.elapsed().as_micros() as u64;
    if shared.audit.write(rec).await.is_err() {
        warn!("Cannot write audit record for a refused request");
    }
}

/// Revokes leases past their `max_use` or Vault expiry, retries leases that
/// could not be revoked before, and drops expired cache entries.
pub async fn reap_leases(shared: Arc<Shared>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Expired cache entries go too, so a value does not outlive its TTL
        // in memory just because nobody asked for it again.
        shared
            .runtime()
            .kv_cache
            .evict_expired(std::time::Instant::now());
        let now = jiff::Timestamp::now();
        for h in shared.leases.due(now) {
            let reason = if h.max_until.is_some_and(|m| m <= now && m <= h.expires) {
                "max_use"
            } else {
                "expired"
            };
            shared.revoke_held(&h, reason).await;
        }
    }
}

/// Watches the config file and the files it names, and reloads when any of
/// them changes.
pub async fn watch_files(shared: Arc<Shared>, every: std::time::Duration) {
    let stamp = |shared: &Shared| -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
        let mut files = vec![shared.config_path.clone()];
        files.extend(shared.runtime().config.watched_files());
        files
            .into_iter()
            .map(|f| {
                let m = std::fs::metadata(&f)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                (f, m)
            })
            .collect()
    };
    let mut last = stamp(&shared);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&shared);
        if now != last {
            let _ = shared.reload("file_change").await;
            last = stamp(&shared);
        }
    }
}
