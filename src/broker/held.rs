//! Requests about a lease a bot holds: release and renewal.

use crate::audit::Backend;
use crate::error::{ApiError, Forbidden, NotFound};
use crate::leases::Held;
use crate::policy::BotDef;

use super::terms::{self, Granted};
use super::Exchange;

/// A renewed lease, as the bot is told about it.
pub struct Renewed {
    pub id: String,
    pub ttl_seconds: u64,
    pub renewable: bool,
}

impl Exchange<'_> {
    /// The lease `lease` if `bot` holds it. A lease held by another bot is
    /// answered like an unknown one; the record keeps why.
    pub fn find_lease(&mut self, bot: &BotDef, lease: &str) -> Result<Held, ApiError> {
        self.rec.backend = Some(Backend {
            path: terms::lease_prefix(lease).to_owned(),
            version: None,
            lease_hmac: Some(self.rt.lease_hmac(lease)),
        });
        let h = self
            .shared
            .leases
            .get(lease)
            .ok_or(ApiError::NotFound(NotFound::NoLease))?;
        if !crate::secret::constant_time_eq(h.bot.as_bytes(), bot.name.as_bytes()) {
            return Err(ApiError::NotFound(NotFound::LeaseNotOwned));
        }
        self.rec.secret = Some(h.secret.clone());
        Ok(h)
    }

    /// Revokes a lease its bot is done with.
    pub async fn release(&mut self, held: Held) -> Result<(), ApiError> {
        self.rt.vault.revoke_lease(&held.id).await?;
        self.rec.reason = Some("released".into());
        self.shared.forget_lease(&held.id);
        Ok(())
    }

    /// Renews a lease for its original TTL again, never past `max_use`.
    pub async fn renew(&mut self, held: Held) -> Result<Renewed, ApiError> {
        let def = self
            .rt
            .config
            .secret(&held.secret)
            .ok_or(ApiError::Forbidden(Forbidden::NotGranted))?;
        if !def.renew || !held.renewable {
            return Err(ApiError::Forbidden(Forbidden::RenewNotAllowed));
        }
        let now = jiff::Timestamp::now();
        // Inside an elevation window, never past its end.
        let max_until = match &self.elevation {
            Some(w) => Some(held.max_until.map_or(w.not_after, |m| m.min(w.not_after))),
            None => held.max_until,
        };
        let held = Held { max_until, ..held };
        self.renewed = self.elevation.as_ref().map(|_| held.id.clone());
        let remaining = terms::remaining(now, held.max_until);
        let increment = terms::renew_increment(remaining, held.ttl_seconds)
            .ok_or(ApiError::Forbidden(Forbidden::MaxUseReached))?;
        let info = self.rt.vault.renew_lease(&held.id, increment).await?;
        let vault = Granted {
            ttl_seconds: info.ttl_seconds,
            renewable: info.renewable,
        };
        let told = terms::at_renewal(now, vault, remaining, def.renew);
        let renewed = Held {
            expires: told.expires,
            renewable: info.renewable,
            ..held
        };
        if let Err(e) = tokio::task::block_in_place(|| self.shared.leases.update(renewed.clone())) {
            tracing::warn!(error = %e, "Lease renewed but the ledger could not be updated");
        }
        Ok(Renewed {
            id: renewed.id,
            ttl_seconds: told.ttl_seconds,
            renewable: told.renewable,
        })
    }

    /// Whether Vault can be used, and the worst CRL state. Which address
    /// answers, and how, goes to the operator's log when it changes, so
    /// that bots polling health do not fill it.
    pub async fn health(&mut self) -> Health {
        let nodes = self.rt.vault.health().await;
        let usable = crate::vault::Vault::usable(&nodes);
        let detail = serde_json::to_string(&nodes).unwrap_or_default();
        let changed = {
            let mut last = crate::lock(&self.shared.last_health);
            let changed = *last != detail;
            if changed {
                last.clone_from(&detail);
            }
            changed
        };
        if changed && usable {
            tracing::info!(nodes = %detail, "Vault health");
        } else if changed {
            tracing::warn!(nodes = %detail, "Vault health: no usable address");
        }
        Health {
            vault_usable: usable,
            crl: self.rt.crl_state(jiff::Timestamp::now()).as_str(),
        }
    }
}

/// What a bot may learn of botward's health.
pub struct Health {
    pub vault_usable: bool,
    pub crl: &'static str,
}
