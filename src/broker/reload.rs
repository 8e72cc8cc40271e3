//! Config reload: validate, build, publish, record; or keep the running one.

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::{Runtime, Shared};
use crate::audit::{Decision, Record};
use crate::config::Config;

impl Shared {
    /// Reloads the config file. A config that does not validate, or whose
    /// certificates do not load, is refused and the running one stays. Both
    /// outcomes are audited as `config.reload`.
    pub async fn reload(&self, trigger: &str) -> Result<(), String> {
        let old = self.runtime();
        self.reload_locked(trigger).await?;
        // Outside the reload lock: one Vault call per lease to revoke must
        // not hold up the next reload. Windows first: reads under them are
        // already judged by the new config, and their leases go at once.
        self.close_elevations_after_reload(&old.config).await;
        self.sweep_lifecycle(jiff::Timestamp::now()).await;
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
                let privileged = new.secret(s).is_some_and(|d| d.privileged);
                added.push(serde_json::json!({"bot": name, "secret": s, "privileged": privileged}));
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
