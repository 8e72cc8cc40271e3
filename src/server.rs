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
use rustls::pki_types::CertificateDer;
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
use crate::lock;
use crate::policy::PeerFacts;
use crate::refusals::{self, Refusals};
use crate::tls::{self, CrlState, HandshakeNote, HANDSHAKE_NOTE};
use crate::vault::Vault;

/// Descriptors kept free for Vault connections, the audit log, the lease
/// ledger and the config files, whatever the clients do.
const FD_RESERVE: u64 = 128;

/// Everything derived from one version of the config.
pub struct Runtime {
    pub config: Arc<Config>,
    pub tls: Arc<ServerConfig>,
    pub client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// Each configured CRL and when it expires.
    pub crls: Vec<tls::CrlInfo>,
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
    /// Refusals before authentication, summed per source and reason.
    pub refusals: Refusals,
    /// The certificate chain each lease was issued to, so that a reload
    /// that revokes the certificate or removes the bot revokes its leases.
    lease_chains: Mutex<std::collections::HashMap<String, Arc<[CertificateDer<'static>]>>>,
    /// Leases being issued right now, per bot, counted against
    /// `max_leases` together with the ones held.
    issuing: Mutex<std::collections::HashMap<String, usize>>,
    /// Leases that must go now (their bot's identity was revoked, their
    /// request failed) but that Vault could not revoke: retried every
    /// [`RETRY_NOW`] with their reason, not left until they expire.
    revoke_now: Mutex<std::collections::HashMap<String, (&'static str, Instant)>>,
    /// Vault's health as last reported to the log, so that polling bots do
    /// not fill it.
    pub last_health: Mutex<String>,
}

/// How often a lease in [`Shared::revoke_now`] is tried again.
const RETRY_NOW: std::time::Duration = std::time::Duration::from_secs(5);

/// A place under a bot's `max_leases`, held while a lease is being issued.
pub struct LeaseSlot<'a> {
    shared: &'a Shared,
    bot: String,
}

/// One accepted, authenticated-by-TLS connection.
pub struct Conn {
    pub peer: Peer,
    pub facts: PeerFacts,
    pub cert: crate::identity::CertInfo,
    /// The client's certificate chain, verified again when the TLS
    /// configuration changes while the connection is open, and when a CRL
    /// it was checked against expires.
    pub chain: Arc<[CertificateDer<'static>]>,
    pub not_after: Option<jiff::Timestamp>,
    /// The calling process as it was at accept, on the unix socket.
    pub process: Option<crate::process::Binding>,
    verified: Mutex<Verified>,
}

/// The outcome of the chain's last verification.
#[derive(Clone, Debug)]
struct Verified {
    /// The runtime generation it was verified under.
    generation: u64,
    /// The bot name the certificate gives under that generation's config.
    bot: Option<String>,
    /// When the earliest CRL it was checked against expires.
    until: Option<jiff::Timestamp>,
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
            crls: server_tls.crls,
            generation,
            vault,
            kv_reads: Default::default(),
            kv_cache: Default::default(),
            lease_key,
            renewer,
        })
    }

    /// The earliest time after `now` at which a configured CRL expires.
    pub fn crl_next_update(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.crls
            .iter()
            .filter_map(|c| c.next_update)
            .filter(|u| *u > now)
            .min()
    }

    /// The worst state of the configured CRLs at `now`.
    pub fn crl_state(&self, now: jiff::Timestamp) -> CrlState {
        let warn_before = self.config.tls.crl_warn_before;
        self.crls
            .iter()
            .map(|c| c.state(now, warn_before))
            .max()
            .unwrap_or(CrlState::None)
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
            refusals: Refusals::default(),
            lease_chains: Default::default(),
            issuing: Default::default(),
            revoke_now: Default::default(),
            last_health: Default::default(),
        })
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        crate::read(&self.runtime).clone()
    }

    pub fn lease_key(&self) -> Arc<ring::hmac::Key> {
        self.lease_key.clone()
    }

    /// Reloads the config file. A config that does not validate, or whose
    /// certificates do not load, is refused and the running one stays. Both
    /// outcomes are audited as `config.reload`.
    pub async fn reload(&self, trigger: &str) -> Result<(), String> {
        self.reload_locked(trigger).await?;
        // Outside the reload lock: one Vault call per lease to revoke must
        // not hold up the next reload.
        self.revoke_unverified_leases().await;
        Ok(())
    }

    async fn reload_locked(&self, trigger: &str) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let started = Instant::now();
        let old = self.runtime();
        let mut rec = Record::new(
            "config.reload",
            crate::audit::request_id(),
            self.audit.host(),
        );
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
                let previous = std::mem::replace(&mut *crate::write(&self.runtime), Arc::new(rt));
                if self.audit.write(rec).await.is_err() {
                    *crate::write(&self.runtime) = previous;
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
    pub async fn revoke_held(&self, held: &crate::leases::Held, reason: &'static str) -> bool {
        let started = Instant::now();
        let rt = self.runtime();
        let result = rt.vault.revoke_lease(&held.id).await;
        let mut rec = Record::new(
            "lease.release",
            crate::audit::request_id(),
            self.audit.host(),
        );
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
                self.forget_lease(&held.id);
                true
            }
            Err(e) => {
                rec.decision = Decision::Error;
                rec.error = Some(e.to_string());
                warn!(error = %e, reason, "Cannot revoke a lease; will retry");
                if !matches!(reason, "max_use" | "expired" | "shutdown" | "orphaned") {
                    lock(&self.revoke_now)
                        .insert(held.id.clone(), (reason, Instant::now() + RETRY_NOW));
                }
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

    /// Revokes, as `identity_revoked`, every lease whose bot the current
    /// config no longer registers, or whose certificate is now revoked, no
    /// longer chains to the client CA, or no longer names that bot. The
    /// chain is checked as of the lease's issue, so a certificate that has
    /// merely expired since, or a CRL past its `nextUpdate`, revokes nothing.
    pub async fn revoke_unverified_leases(&self) {
        let rt = self.runtime();
        for held in self.leases.all() {
            let chain = lock(&self.lease_chains).get(&held.id).cloned();
            let issued = rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(held.issued.as_second().max(0) as u64),
            );
            let still = rt.config.bot(&held.bot).is_some()
                && chain.as_deref().is_none_or(|chain| {
                    verify_chain(&rt, chain, issued).is_ok()
                        && identity_of(&rt, chain).as_deref() == Some(held.bot.as_str())
                });
            if !still {
                self.revoke_held(&held, "identity_revoked").await;
            }
        }
    }

    /// Remembers the chain a lease was issued to; see
    /// [`Shared::revoke_unverified_leases`].
    pub fn note_lease_chain(&self, lease_id: &str, chain: Arc<[CertificateDer<'static>]>) {
        lock(&self.lease_chains).insert(lease_id.to_owned(), chain);
    }

    /// Takes a place under `bot`'s `max_leases` for a lease about to be
    /// issued, counting the leases it holds and the ones being issued.
    pub fn lease_slot(&self, bot: &str, max: usize) -> Option<LeaseSlot<'_>> {
        // Counted under the lock: a lease is in the table before its slot
        // is given back, so no request can miss both.
        let mut issuing = lock(&self.issuing);
        let held = self.leases.count_for(bot);
        let n = issuing.get(bot).copied().unwrap_or(0);
        if held + n >= max {
            return None;
        }
        issuing.insert(bot.to_owned(), n + 1);
        Some(LeaseSlot {
            shared: self,
            bot: bot.to_owned(),
        })
    }

    /// Writes the summaries of refusal windows that have ended (or all of
    /// them, at shutdown).
    pub async fn flush_refusals(&self, all: bool) {
        let due = if all {
            self.refusals.drain()
        } else {
            self.refusals.due(Instant::now())
        };
        for s in due {
            let mut rec = Record::new(
                "auth.failure",
                crate::audit::request_id(),
                self.audit.host(),
            );
            rec.decision = Decision::Deny;
            rec.reason = Some(s.key.reason.to_owned());
            rec.peer = Some(match s.key.transport {
                Transport::Tcp => Peer {
                    transport: Transport::Tcp,
                    addr: Some(s.key.source.clone()),
                    ..Peer::default()
                },
                Transport::Unix => Peer {
                    transport: Transport::Unix,
                    uid: s
                        .key
                        .source
                        .strip_prefix("uid:")
                        .and_then(|u| u.parse().ok()),
                    ..Peer::default()
                },
            });
            // One claimed name for all of them is that name's, as a claim.
            if let [one] = s.claims.as_slice() {
                rec.claimed_bot = Some(one.clone());
            }
            rec.detail = Some(serde_json::json!({"aggregated": {
                "count": s.count,
                "first": s.first,
                "last": s.last,
                "window_s": refusals::WINDOW.as_secs(),
                "source": s.key.source,
                "claims": s.claims,
            }}));
            if self.audit.write(rec).await.is_err() {
                warn!("Cannot write the audit summary of refused connections");
            }
        }
    }

    /// Tries again the leases in [`Shared::revoke_now`] whose retry is due.
    pub async fn retry_revocations(&self) {
        let now = Instant::now();
        let due: Vec<(String, &'static str)> = lock(&self.revoke_now)
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(id, (reason, _))| (id.clone(), *reason))
            .collect();
        for (id, reason) in due {
            match self.leases.get(&id) {
                Some(held) => {
                    self.revoke_held(&held, reason).await;
                }
                None => {
                    lock(&self.revoke_now).remove(&id);
                }
            }
        }
    }

    /// Revokes every lease botward still holds, e.g. at shutdown.
    pub async fn revoke_all(&self, reason: &'static str) -> usize {
        let mut left = 0;
        for h in self.leases.all() {
            if !self.revoke_held(&h, reason).await {
                left += 1;
            }
        }
        left
    }

    /// Drops a revoked lease from the table, the ledger and the chains.
    pub fn forget_lease(&self, id: &str) {
        lock(&self.lease_chains).remove(id);
        lock(&self.revoke_now).remove(id);
        if let Err(e) = tokio::task::block_in_place(|| self.leases.remove(id)) {
            warn!(error = %e, "Lease revoked but the ledger could not be updated");
        }
    }

    /// Writes a record for an event outside any request.
    pub async fn audit_event(
        &self,
        kind: &'static str,
        decision: Decision,
        reason: Option<&str>,
        detail: Option<serde_json::Value>,
    ) {
        let mut rec = Record::new(kind, crate::audit::request_id(), self.audit.host());
        rec.decision = decision;
        rec.reason = reason.map(str::to_owned);
        rec.detail = detail;
        if self.audit.write(rec).await.is_err() {
            warn!(kind, "Cannot write audit record");
        }
    }
}

// === impl LeaseSlot ===

impl Drop for LeaseSlot<'_> {
    fn drop(&mut self) {
        let mut issuing = lock(&self.shared.issuing);
        if let Some(n) = issuing.get_mut(&self.bot) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                issuing.remove(&self.bot);
            }
        }
    }
}

// === impl Conn ===

impl Conn {
    /// The bot name the certificate gives under `rt`'s config. The chain is
    /// verified again first when the configuration changed since it was
    /// last verified (a new CA or CRL, a reload during the handshake) or
    /// when a CRL it was checked against has expired since; the name is
    /// derived again under the current trust domain and CN rule.
    pub fn identify(
        &self,
        rt: &Runtime,
        now: jiff::Timestamp,
    ) -> Result<Option<String>, &'static str> {
        let mut v = lock(&self.verified);
        let stale = v.generation != rt.generation || v.until.is_some_and(|u| u <= now);
        if stale {
            let unix = rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(now.as_second().max(0) as u64),
            );
            verify_chain(rt, &self.chain, unix)?;
            *v = Verified {
                generation: rt.generation,
                bot: identity_of(rt, &self.chain),
                until: rt.crl_next_update(now),
            };
        }
        Ok(v.bot.clone())
    }

    /// The name the certificate gave when it was last verified, for the
    /// audit record of a refused request (`claimed_bot`).
    pub fn claimed(&self) -> Option<String> {
        lock(&self.verified).bot.clone()
    }
}

/// Verifies a client chain against `rt`'s CA and CRLs.
fn verify_chain(
    rt: &Runtime,
    chain: &[CertificateDer<'static>],
    now: rustls::pki_types::UnixTime,
) -> Result<(), &'static str> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err("no_client_certificate");
    };
    rt.client_verifier
        .verify_client_cert(end_entity, intermediates, now)
        .map(|_| ())
        .map_err(|e| tls::failure_reason(Some(&e)))
}

/// The bot name a chain's certificate gives under `rt`'s identity rules.
fn identity_of(rt: &Runtime, chain: &[CertificateDer<'static>]) -> Option<String> {
    let der = chain.first()?;
    identity::from_der(
        der,
        &rt.config.tls.trust_domain,
        rt.config.tls.allow_cn_fallback,
    )
    .bot
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
    if old.limits.max_connections != new.limits.max_connections
        || old.limits.max_handshakes != new.limits.max_handshakes
        || old.limits.max_connections_per_uid != new.limits.max_connections_per_uid
    {
        w.push("limits.max_connections, max_handshakes and max_connections_per_uid take effect at the next restart".to_owned());
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
    drain: std::time::Duration,
) {
    let limits = shared.runtime().config.limits.clone();
    let (max_connections, max_handshakes) = fd_budget(&limits);
    let caps = Caps {
        permits: Arc::new(Semaphore::new(max_connections)),
        waiting: Arc::new(Semaphore::new(max_handshakes)),
    };
    // TCP and the unix socket have a pool each: a flood over loopback TCP,
    // where every local process is the same source, cannot take the unix
    // socket's places, which are capped per uid.
    let tcp_handshakes = Arc::new(Handshakes::new(max_handshakes));
    let unix_handshakes = Arc::new(Handshakes::new(max_handshakes));
    let uids = Arc::new(UidCounts::new(limits.max_connections_per_uid));
    let graceful = GracefulShutdown::new();
    let (stop_flusher, mut flusher_stopped) = tokio::sync::watch::channel(false);
    let flusher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = flusher_stopped.changed() => return,
                }
                shared.flush_refusals(false).await;
            }
        })
    };
    tokio::pin!(shutdown);
    let Listeners {
        tcp,
        #[cfg(unix)]
        unix,
    } = listeners;
    loop {
        tokio::select! {
            r = accept_tcp(tcp.as_ref()) => match r {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let peer = Peer { transport: Transport::Tcp, addr: Some(addr.to_string()), ..Peer::default() };
                    let accepted = Accepted { peer, facts: PeerFacts::default(), process: None, uid: None };
                    let slot = tcp_handshakes.admit();
                    tokio::spawn(connection(stream, accepted, shared.clone(), graceful.watcher(), slot, caps.clone()));
                }
                Err(e) => accept_error(e).await,
            },
            r = accept_unix(
                #[cfg(unix)] unix.as_ref(),
            ) => match r {
                Ok((stream, mut accepted)) => {
                    let uid = accepted.peer.uid.unwrap_or(u32::MAX);
                    match uids.take(uid) {
                        Some(guard) => {
                            accepted.uid = Some(guard);
                            let slot = unix_handshakes.admit();
                            tokio::spawn(connection(stream, accepted, shared.clone(), graceful.watcher(), slot, caps.clone()));
                        }
                        None => {
                            drop(stream);
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let msg = "this uid holds as many connections as it may".into();
                                auth_failure(&shared, accepted.peer, None, "uid_connection_limit", msg, Instant::now(), Summed::Yes).await;
                            });
                        }
                    }
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
    // Connections still in their handshake end within its timeout; their
    // refusals belong in the final summaries.
    let deadline = Instant::now() + limits.handshake_timeout + std::time::Duration::from_secs(1);
    while !(tcp_handshakes.is_empty() && unix_handshakes.is_empty()) && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = stop_flusher.send(true);
    let _ = flusher.await;
    shared.flush_refusals(true).await;
}

/// The connection caps `run` can keep with the descriptors it has: the soft
/// `RLIMIT_NOFILE`, raised to the hard limit, less [`FD_RESERVE`].
fn fd_budget(limits: &crate::config::Limits) -> (usize, usize) {
    let (mut conns, mut handshakes) = (limits.max_connections, limits.max_handshakes);
    if let Some(nofile) = crate::harden::raise_fd_limit() {
        let budget = nofile.saturating_sub(FD_RESERVE).max(2) as usize;
        if conns + handshakes > budget {
            handshakes = handshakes.min(budget / 4).max(1);
            conns = conns.min(budget - handshakes).max(1);
            warn!(
                nofile,
                max_connections = conns,
                max_handshakes = handshakes,
                "The descriptor limit is too low for the configured connection limits; they are lowered"
            );
        }
    }
    (conns, handshakes)
}

/// The caps shared by every connection past its handshake.
#[derive(Clone)]
struct Caps {
    /// Connections being served (`limits.max_connections`).
    permits: Arc<Semaphore>,
    /// Connections waiting for one of those places, at most as many as may
    /// be in their handshake.
    waiting: Arc<Semaphore>,
}

/// Whether a refusal is summed with others of its source and reason.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Summed {
    /// Before the peer proved anything: anyone can cause these.
    Yes,
    /// After a certificate verified: each is recorded in full, with its
    /// certificate and process.
    No,
}

/// What the accept loop learned about a connection.
struct Accepted {
    peer: Peer,
    facts: PeerFacts,
    process: Option<crate::process::Binding>,
    /// The connection's place under its uid's cap, on the unix socket.
    uid: Option<UidGuard>,
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
async fn accept_unix(l: Option<&UnixListener>) -> io::Result<(tokio::net::UnixStream, Accepted)> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    let (stream, _) = l.accept().await?;
    let cred = stream.peer_cred()?;
    // The process itself is read in the connection's task, after the uid
    // cap: /proc reads stay off the accept loop.
    let peer = Peer {
        transport: Transport::Unix,
        addr: None,
        pid: cred.pid(),
        uid: Some(cred.uid()),
        exe: None,
    };
    let facts = PeerFacts {
        uid: Some(cred.uid()),
        exe: None,
        via_unix: true,
    };
    Ok((
        stream,
        Accepted {
            peer,
            facts,
            process: None,
            uid: None,
        },
    ))
}

/// Binds a unix-socket connection to the process behind its pid.
fn bind_process(accepted: &mut Accepted) {
    let Some(pid) = accepted.peer.pid.filter(|_| accepted.facts.via_unix) else {
        return;
    };
    let process = crate::process::Binding::read(pid);
    accepted.peer.exe = process.exe.as_ref().map(|e| capped_exe(e));
    accepted.facts.exe = process.exe.clone();
    accepted.process = Some(process);
}

#[cfg(not(unix))]
async fn accept_unix() -> io::Result<(tokio::net::TcpStream, Accepted)> {
    std::future::pending().await
}

/// Longest executable path written to the audit log.
const MAX_LOGGED_EXE: usize = 512;

/// An executable path for the audit log, capped in length: the name of a
/// program is chosen by whoever wrote it.
fn capped_exe(exe: &Path) -> String {
    crate::audit::truncate(&exe.display().to_string(), MAX_LOGGED_EXE)
}

/// Accept errors such as EMFILE: back off briefly instead of spinning.
async fn accept_error(e: io::Error) {
    warn!(error = %e, "Accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

async fn connection<S>(
    stream: S,
    mut accepted: Accepted,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
    mut slot: HandshakeSlot,
    caps: Caps,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    bind_process(&mut accepted);
    let Accepted {
        peer,
        facts,
        process,
        uid: _uid,
    } = accepted;
    // One snapshot gives the acceptor, the identity rules and the
    // generation the connection is stamped with: a reload during the
    // handshake leaves the connection stamped old, so its first request
    // verifies the chain again under the new CA and CRLs.
    let rt = shared.runtime();
    let limits = rt.config.limits.clone();
    let acceptor = TlsAcceptor::from(rt.tls.clone());
    let note = Arc::new(Mutex::new(HandshakeNote::default()));
    let stream = FirstBytes {
        inner: stream,
        seen: Some(slot.sent.clone()),
    };
    let handshake = HANDSHAKE_NOTE.scope(note.clone(), acceptor.accept(stream));
    let outcome = tokio::select! {
        // A handshake that completed wins over an eviction at the same time.
        biased;
        r = tokio::time::timeout(limits.handshake_timeout, handshake) => Some(r),
        _ = slot.evicted() => None,
    };
    drop(slot);
    let tls_stream = match outcome {
        Some(Ok(Ok(s))) => s,
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
                tls::failure_reason(rustls_err.as_ref())
            };
            let msg = rustls_err
                .map(|r| r.to_string())
                .unwrap_or_else(|| e.kind().to_string());
            auth_failure(&shared, peer, seen, reason, msg, started, Summed::Yes).await;
            return;
        }
        Some(Err(_)) => {
            let p = lock(&note).peer.take();
            let msg = "TLS handshake timed out".into();
            auth_failure(&shared, peer, p, "tls_timeout", msg, started, Summed::Yes).await;
            return;
        }
        None => {
            let p = lock(&note).peer.take();
            let msg = "evicted: too many connections in their TLS handshake".into();
            auth_failure(
                &shared,
                peer,
                p,
                "handshake_evicted",
                msg,
                started,
                Summed::Yes,
            )
            .await;
            return;
        }
    };
    let chain: Arc<[CertificateDer<'static>]> = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    let Some(der) = chain.first() else {
        let msg = "no client certificate".into();
        auth_failure(
            &shared,
            peer,
            None,
            "no_client_certificate",
            msg,
            started,
            Summed::Yes,
        )
        .await;
        return;
    };
    let identity = identity::from_der(
        der,
        &rt.config.tls.trust_domain,
        rt.config.tls.allow_cn_fallback,
    );
    // The process must still be the one that connected.
    if process.as_ref().is_some_and(|p| !p.still_holds()) {
        let msg = "the calling process changed during the handshake".into();
        auth_failure(
            &shared,
            peer,
            Some(identity),
            "process_changed",
            msg,
            started,
            Summed::No,
        )
        .await;
        return;
    }
    // A bot beyond max_connections waits a little for a place, then is
    // refused; only so many may wait.
    let permit = match caps.permits.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => match caps.waiting.clone().try_acquire_owned() {
            Ok(_waiting) => {
                let wait = caps.permits.clone().acquire_owned();
                tokio::time::timeout(limits.handshake_timeout, wait)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        },
    };
    let Some(permit) = permit else {
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
    let not_after = identity
        .cert
        .not_after
        .as_deref()
        .and_then(|t| t.parse().ok());
    let verified = Verified {
        generation: rt.generation,
        bot: identity.bot,
        until: rt.crl_next_update(jiff::Timestamp::now()),
    };
    drop(rt);
    let conn = Arc::new(Conn {
        peer,
        facts,
        cert: identity.cert,
        chain,
        not_after,
        process,
        verified: Mutex::new(verified),
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
    drop(permit);
}

/// Audits a connection refused before authentication, with whatever the
/// verifier saw. Such refusals are summed per source and reason
/// ([`refusals`]): the first of a window is written in full here, the rest
/// are counted into its summary.
async fn auth_failure(
    shared: &Shared,
    peer: Peer,
    seen: Option<PeerIdentity>,
    reason: &'static str,
    message: String,
    started: Instant,
    summed: Summed,
) {
    let ts = crate::audit::now_rfc3339();
    let key = refusals::Key {
        transport: peer.transport,
        source: source_of(&peer),
        reason,
    };
    let claim = seen.as_ref().and_then(|p| p.bot.as_deref());
    if summed == Summed::Yes && !shared.refusals.note(key, Instant::now(), &ts, claim) {
        debug!(reason, "Connection refused (counted)");
        return;
    }
    let mut rec = Record::new(
        "auth.failure",
        crate::audit::request_id(),
        shared.audit.host(),
    );
    rec.ts = ts;
    rec.decision = Decision::Deny;
    rec.status = 0;
    rec.reason = Some(reason.to_owned());
    rec.error = Some(crate::audit::truncate(&message, 256));
    rec.peer = Some(peer);
    // The connection was refused, so whatever the certificate names is a
    // claim, never an identity.
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

/// What refusals are summed by: the IP address on TCP (every port of a
/// host is one source), the uid on the unix socket.
fn source_of(peer: &Peer) -> String {
    match peer.transport {
        Transport::Tcp => peer
            .addr
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| refusals::source_of_ip(a.ip()))
            .unwrap_or_else(|| "tcp".into()),
        Transport::Unix => match peer.uid {
            Some(uid) => format!("uid:{uid}"),
            None => "unix".into(),
        },
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

// === impl Handshakes ===

/// Connections in their TLS handshake, oldest first.
struct Handshakes {
    cap: usize,
    inner: Mutex<PendingSet>,
}

#[derive(Default)]
struct PendingSet {
    next: u64,
    pending: std::collections::BTreeMap<u64, Pending>,
}

struct Pending {
    /// 0 until the connection's task first read from it; then 1 + the
    /// bytes the client has sent so far.
    sent: Arc<std::sync::atomic::AtomicU64>,
    evict: tokio::sync::oneshot::Sender<()>,
}

/// A connection's place among those in their handshake; freed on drop.
struct HandshakeSlot {
    id: u64,
    set: Arc<Handshakes>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    evicted: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Handshakes {
    fn new(cap: usize) -> Handshakes {
        Handshakes {
            cap: cap.max(1),
            inner: Mutex::new(PendingSet::default()),
        }
    }

    /// A place for a new connection. When every place is taken, one is
    /// evicted: first a connection that was read from and has sent less
    /// than a ClientHello (idle or trickling), the fewest bytes and then
    /// the oldest first; then one not read from yet (under load its task
    /// may not have run), oldest first; a connection that has sent a
    /// ClientHello or more, as a bot's has within one round trip, last.
    fn admit(self: &Arc<Self>) -> HandshakeSlot {
        use std::sync::atomic::Ordering;
        /// Fewer bytes than the smallest ClientHello.
        const TRICKLE: u64 = 64;
        let rank = |id: u64, p: &Pending| match p.sent.load(Ordering::Relaxed) {
            0 => (1, 0, id),
            n if n - 1 < TRICKLE => (0, n - 1, id),
            n => (2, n - 1, id),
        };
        let mut set = lock(&self.inner);
        if set.pending.len() >= self.cap {
            let victim = set
                .pending
                .iter()
                .min_by_key(|(id, p)| rank(**id, p))
                .map(|(id, _)| *id);
            if let Some(p) = victim.and_then(|id| set.pending.remove(&id)) {
                let _ = p.evict.send(());
            }
        }
        let id = set.next;
        set.next += 1;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel();
        set.pending.insert(
            id,
            Pending {
                sent: sent.clone(),
                evict: tx,
            },
        );
        HandshakeSlot {
            id,
            set: self.clone(),
            sent,
            evicted: Some(rx),
        }
    }
}

impl Handshakes {
    fn is_empty(&self) -> bool {
        lock(&self.inner).pending.is_empty()
    }
}

impl HandshakeSlot {
    /// Completes when this connection is evicted to make room.
    async fn evicted(&mut self) {
        // A dropped sender (the slot freed without eviction) is not an
        // eviction.
        if let Some(rx) = self.evicted.take() {
            if rx.await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.set.inner).pending.remove(&self.id);
    }
}

/// Counts the bytes a client sends during its handshake, so that idle and
/// trickling connections are the first to be evicted.
struct FirstBytes<S> {
    inner: S,
    seen: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::sync::atomic::Ordering;
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if let Some(seen) = &self.seen {
            // The first poll marks the connection as read from (1), then
            // every byte counts.
            let _ = seen.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
            if read > 0 {
                seen.fetch_add(read, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// === impl UidCounts ===

/// Open unix-socket connections per uid.
struct UidCounts {
    cap: usize,
    open: Mutex<std::collections::HashMap<u32, usize>>,
}

/// A connection's place under its uid's cap; freed on drop.
struct UidGuard {
    uid: u32,
    counts: Arc<UidCounts>,
}

impl UidCounts {
    fn new(cap: usize) -> UidCounts {
        UidCounts {
            cap: cap.max(1),
            open: Mutex::default(),
        }
    }

    fn take(self: &Arc<Self>, uid: u32) -> Option<UidGuard> {
        let mut open = lock(&self.open);
        let n = open.entry(uid).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(UidGuard {
            uid,
            counts: self.clone(),
        })
    }
}

impl Drop for UidGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.counts.open);
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
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
        shared.retry_revocations().await;
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
    let mut crls = CrlWatch::default();
    loop {
        crls.check(&shared.runtime());
        tokio::time::sleep(every).await;
        let now = stamp(&shared);
        if now != last {
            let _ = shared.reload("file_change").await;
            last = stamp(&shared);
        }
    }
}

/// Warns in the log when a CRL comes within `tls.crl_warn_before` of its
/// `nextUpdate`, and when it expires, once for each change of state and
/// again every hour while it lasts.
#[derive(Default)]
struct CrlWatch {
    last: Vec<(PathBuf, CrlState)>,
    told: Option<Instant>,
}

impl CrlWatch {
    fn check(&mut self, rt: &Runtime) {
        let now = jiff::Timestamp::now();
        let states: Vec<(PathBuf, CrlState)> = rt
            .crls
            .iter()
            .map(|c| (c.path.clone(), c.state(now, rt.config.tls.crl_warn_before)))
            .collect();
        let hourly = self
            .told
            .is_some_and(|t| t.elapsed() >= std::time::Duration::from_secs(3600));
        if states == self.last && !hourly {
            return;
        }
        let mut told = false;
        for (info, (path, state)) in rt.crls.iter().zip(&states) {
            let next_update = info.next_update.map(|t| t.to_string()).unwrap_or_default();
            match state {
                CrlState::Expiring => {
                    warn!(crl = %path.display(), %next_update, "CRL expires soon; refresh it, or handshakes of the certificates it covers will be refused");
                    told = true;
                }
                CrlState::Expired => {
                    tracing::error!(crl = %path.display(), %next_update, "CRL has expired; handshakes of the certificates it covers are refused until it is refreshed");
                    told = true;
                }
                CrlState::None | CrlState::Ok => {}
            }
        }
        self.told = told.then(Instant::now);
        self.last = states;
    }
}
