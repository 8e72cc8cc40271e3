//! Leases botward holds: their places under `max_leases`, revocation, and
//! revocation retried when Vault could not do it.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use tracing::warn;

use super::conn::{identity_of, verify_chain};
use super::Shared;
use crate::audit::{Decision, Record};
use crate::lock;

/// How often a lease in [`Shared::revoke_now`] is tried again.
const RETRY_NOW: std::time::Duration = std::time::Duration::from_secs(5);

/// A place under a bot's `max_leases`, held while a lease is being issued.
pub struct LeaseSlot<'a> {
    shared: &'a Shared,
    bot: String,
}

impl Shared {
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
            path: super::terms::lease_prefix(&held.id).to_owned(),
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
        let _sweep = self.sweep_lock.lock().await;
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
