//! State shared by all connections for the life of the process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use tracing::warn;

use super::Runtime;
use crate::audit::{AuditLog, Decision, Record};
use crate::refusals::Refusals;

/// State shared by all connections for the life of the process.
pub struct Shared {
    pub(super) runtime: RwLock<Arc<Runtime>>,
    pub audit: Arc<AuditLog>,
    pub leases: Arc<crate::leases::Leases>,
    /// Online anomaly scoring, when enabled.
    pub scorer: Option<Arc<crate::anomaly::online::Scorer>>,
    pub(super) config_path: PathBuf,
    pub(super) lease_key: Arc<ring::hmac::Key>,
    pub(super) reload_lock: tokio::sync::Mutex<()>,
    /// Held by [`Shared::revoke_unverified_leases`]: two reloads close
    /// together (a SIGHUP and the file watcher) sweep one after the other,
    /// so no lease is revoked and audited twice.
    pub(super) sweep_lock: tokio::sync::Mutex<()>,
    /// Refusals before authentication, summed per source and reason.
    pub refusals: Refusals,
    /// The certificate chain each lease was issued to, so that a reload
    /// that revokes the certificate or removes the bot revokes its leases.
    pub(super) lease_chains:
        Mutex<std::collections::HashMap<String, Arc<[CertificateDer<'static>]>>>,
    /// Leases being issued right now, per bot, counted against
    /// `max_leases` together with the ones held.
    pub(super) issuing: Mutex<std::collections::HashMap<String, usize>>,
    /// Leases that must go now (their bot's identity was revoked, their
    /// request failed) but that Vault could not revoke: retried every
    /// [`RETRY_NOW`] with their reason, not left until they expire.
    pub(super) revoke_now: Mutex<std::collections::HashMap<String, (&'static str, Instant)>>,
    /// Vault's health as last reported to the log, so that polling bots do
    /// not fill it.
    pub last_health: Mutex<String>,
    /// Elevation requests and their windows.
    pub elevations: crate::elevation::Elevations,
    /// Each bot's lifecycle state as last recorded.
    pub(super) lifecycle: Mutex<std::collections::HashMap<String, crate::policy::State>>,
    /// When each bot last made a request, for dormancy.
    pub activity: super::Activity,
    /// Enrollment tokens not yet expired.
    pub(super) tokens: super::tokens::Tokens,
    /// Bot certificates already renewed.
    pub(super) renewals: super::tokens::Renewals,
}

// === impl Shared ===

impl Shared {
    pub fn new(
        runtime: Runtime,
        audit: Arc<AuditLog>,
        leases: Arc<crate::leases::Leases>,
        scorer: Option<Arc<crate::anomaly::online::Scorer>>,
        activity: super::Activity,
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
            sweep_lock: Default::default(),
            refusals: Refusals::default(),
            lease_chains: Default::default(),
            issuing: Default::default(),
            revoke_now: Default::default(),
            last_health: Default::default(),
            elevations: Default::default(),
            lifecycle: Default::default(),
            activity,
            tokens: Default::default(),
            renewals: Default::default(),
        })
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        crate::read(&self.runtime).clone()
    }

    /// The config file that reloads read.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    pub fn lease_key(&self) -> Arc<ring::hmac::Key> {
        self.lease_key.clone()
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
