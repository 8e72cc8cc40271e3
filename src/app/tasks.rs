//! The loops that run beside the accept loops: the lease reaper, the config
//! file watcher, reloads on a signal, the elevation loop, and the anomaly
//! baseline saver.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::warn;

use crate::broker::{Runtime, Shared};
use crate::tls::CrlState;

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

/// Records bots' lifecycle changes and takes away what an off bot holds:
/// at once, then every `every`, so an end or review date that passes
/// takes effect without a reload.
pub async fn lifecycle(shared: Arc<Shared>, every: std::time::Duration) {
    loop {
        shared.sweep_lifecycle(jiff::Timestamp::now()).await;
        tokio::time::sleep(every).await;
    }
}

/// Closes elevation windows whose time is up and expires undecided
/// requests, every `every`.
pub async fn elevation_windows(shared: Arc<Shared>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        shared.elevation_due().await;
    }
}

/// Reads the elevation mailbox every `elevation.poll_interval` (checking
/// each second when elevation is not configured, so that a reload that
/// adds it is honoured).
pub async fn elevation_mailbox(shared: Arc<Shared>) {
    loop {
        let every = shared
            .runtime()
            .config
            .elevation
            .as_ref()
            .map_or(std::time::Duration::from_secs(1), |e| e.poll_interval);
        tokio::time::sleep(every).await;
        shared.poll_mailbox().await;
    }
}

/// Watches the config file and the files it names, and reloads when any of
/// them changes.
pub async fn watch_files(shared: Arc<Shared>, every: std::time::Duration) {
    let stamp = |shared: &Shared| -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
        let mut files = vec![shared.config_path().to_owned()];
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

/// Reloads the config each time the platform's reload signal arrives
/// (SIGHUP on unix, the service's reload control on Windows).
pub async fn reload_on_signal(shared: Arc<Shared>) {
    use crate::platform::signals;
    let Ok(mut reloads) = signals::reloads() else {
        return;
    };
    while reloads.recv().await.is_some() {
        let _ = shared.reload(signals::RELOAD_TRIGGER).await;
    }
}

/// Saves the anomaly baselines every `every`.
pub async fn save_baselines(
    scorer: Arc<crate::anomaly::online::Scorer>,
    every: std::time::Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = scorer.save() {
            warn!(error = %e, "Cannot save anomaly baselines");
        }
    }
}
