//! A secret for a bot: the cache, then the coalescer, then Vault, and for a
//! dynamic secret its lease tracked before anyone sees it.

use std::sync::Arc;

use crate::audit::Backend;
use crate::error::{ApiError, Forbidden, RateLimited};
use crate::leases::Held;
use crate::policy::{BotDef, SecretDef, SecretSource};
use crate::vault::{backend_path, Fetched};

use super::terms::{self, Granted};
use super::Exchange;

/// A secret as read for one request: shared with identical concurrent KV
/// reads (or the cache), or this request's own, for dynamic secrets.
pub enum Secret {
    Shared(Arc<Fetched>),
    Own(Fetched),
}

impl std::ops::Deref for Secret {
    type Target = Fetched;

    fn deref(&self) -> &Fetched {
        match self {
            Secret::Shared(f) => f,
            Secret::Own(f) => f,
        }
    }
}

impl Exchange<'_> {
    /// Reads the secret `name` for `bot`, which has been decided allowed.
    /// The lease of a dynamic secret is counted against the bot's
    /// `max_leases`, then recorded in the lease table and ledger; if it
    /// cannot be recorded it is revoked at once.
    pub async fn fetch(&mut self, bot: &BotDef, name: &str) -> Result<Secret, ApiError> {
        let rt = self.rt;
        let def = rt
            .config
            .secret(name)
            .ok_or(ApiError::Forbidden(Forbidden::NotGranted))?;
        self.rec.backend = Some(Backend {
            path: backend_path(def),
            version: None,
            lease_hmac: None,
        });
        let secret = match def.source {
            SecretSource::Kv { .. } => Secret::Shared(self.read_kv(def, name).await?),
            SecretSource::Dynamic { .. } => {
                // A dynamic read mints a credential: the bot must have room
                // under its max_leases first.
                let _slot = self
                    .shared
                    .lease_slot(&bot.name, bot.max_leases)
                    .ok_or(ApiError::RateLimited(RateLimited::MaxLeases))?;
                let mut own = rt.vault.read(def).await?;
                self.note_backend(&own);
                if let Some(lease) = own.lease.as_mut() {
                    self.track(bot, def, name, lease).await?;
                }
                return Ok(Secret::Own(own));
            }
        };
        self.note_backend(&secret);
        Ok(secret)
    }

    /// Identical concurrent KV reads share one Vault call that started
    /// after they arrived; a secret with `cache_ttl` is served from the
    /// cache while it is fresh.
    async fn read_kv(&mut self, def: &SecretDef, name: &str) -> Result<Arc<Fetched>, ApiError> {
        let rt = self.rt;
        let now = std::time::Instant::now();
        if let Some(hit) = def.cache_ttl.and_then(|_| rt.kv_cache.get(name, now)) {
            self.rec.reason = Some("cached".into());
            return Ok(hit);
        }
        let v = rt.kv_reads.run(name, || rt.vault.read(def)).await?;
        if let Some(ttl) = def.cache_ttl {
            rt.kv_cache.insert(name, v.clone(), now, ttl);
        }
        Ok(v)
    }

    /// Records the version read and the lease's HMAC.
    fn note_backend(&mut self, fetched: &Fetched) {
        if let Some(b) = self.rec.backend.as_mut() {
            b.version = fetched.version;
            b.lease_hmac = fetched.lease.as_ref().map(|l| self.rt.lease_hmac(&l.id));
        }
    }

    /// Tracks a lease before anyone sees it, and sets what the bot is told
    /// about it: if it cannot be recorded, it cannot be revoked later, so
    /// it is revoked now.
    async fn track(
        &mut self,
        bot: &BotDef,
        def: &SecretDef,
        name: &str,
        lease: &mut crate::vault::LeaseInfo,
    ) -> Result<(), ApiError> {
        let now = jiff::Timestamp::now();
        let vault = Granted {
            ttl_seconds: lease.ttl_seconds,
            renewable: lease.renewable,
        };
        let mut terms = terms::at_issue(now, vault, def.max_use, def.renew);
        if let Some(w) = &self.elevation {
            // A lease of a privileged secret ends with its window at the
            // latest: the lease reaper revokes it then, whatever else runs.
            terms = terms::within(terms, now, w.not_after);
        }
        let held = Held {
            id: lease.id.clone(),
            bot: bot.name.clone(),
            secret: name.to_owned(),
            issued: now,
            expires: terms.expires,
            ttl_seconds: vault.ttl_seconds,
            revoke_attempts: 0,
            retry_at: None,
            max_until: terms.max_until,
            renewable: vault.renewable,
        };
        lease.ttl_seconds = terms.ttl_seconds;
        lease.renewable = terms.renewable;
        // The chain first, so that a reload that revokes it finds the lease
        // with its chain.
        self.shared
            .note_lease_chain(&held.id, self.conn.chain.clone());
        if let Err(e) = tokio::task::block_in_place(|| self.shared.leases.insert(held.clone())) {
            tracing::error!(error = %e, "Cannot record a lease in the ledger; revoking it");
            let _ = self.rt.vault.revoke_lease(&held.id).await;
            self.shared.forget_lease(&held.id);
            return Err(ApiError::AuditUnavailable);
        }
        self.issued = Some(held);
        Ok(())
    }
}
