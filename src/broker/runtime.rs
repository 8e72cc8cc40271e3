//! Everything derived from one version of the config.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::Config;
use crate::tls::{self, CrlState};
use crate::vault::Vault;

/// Everything derived from one version of the config.
pub struct Runtime {
    pub config: Arc<Config>,
    pub tls: Arc<ServerConfig>,
    /// The unix socket's, when bots may enroll there without a certificate.
    pub tls_local: Option<Arc<ServerConfig>>,
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
    pub(super) lease_key: Arc<ring::hmac::Key>,
    /// Renews the Vault token; shared with later runtimes that reuse the
    /// same Vault client, and stopped when the last of them is gone.
    renewer: Arc<AbortOnDrop>,
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
        let local = config.identity.is_some() && config.listen.unix.is_some();
        let server_tls = tls::server_config(&config.tls, local).map_err(|e| format!("TLS: {e}"))?;
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
            tls_local: server_tls.local,
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
        crate::identity::hex(ring::hmac::sign(&self.lease_key, lease_id.as_bytes()).as_ref())
    }
}
