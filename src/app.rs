//! The composition root: [`App::start`] opens everything a running botward
//! needs, [`App::run`] serves until shutdown and then winds down. The loops
//! that run beside the accept loops ([`tasks`]) live in one `JoinSet`, so
//! they stop together.

mod tasks;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::audit::{AuditLog, Decision};
use crate::broker::{Runtime, Shared};
use crate::config::Config;
use crate::server::{self, Listeners};

/// Exit code for a bad config or bad usage (EX_USAGE).
pub const EX_USAGE: u8 = 64;
/// Exit code when a needed service is unavailable (EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;

/// How long open connections may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(20);

/// A botward that has opened its audit log, lease ledger and sockets, and
/// revoked the leases an earlier run left behind.
pub struct App {
    shared: Arc<Shared>,
    listeners: Listeners,
    scorer: Option<Arc<crate::anomaly::online::Scorer>>,
    listening: String,
}

/// Why botward could not start.
#[derive(Debug)]
pub enum StartError {
    Audit {
        path: PathBuf,
        error: std::io::Error,
    },
    NoRandomness,
    Runtime {
        config: PathBuf,
        error: String,
    },
    Listen(std::io::Error),
    Ledger {
        path: PathBuf,
        error: std::io::Error,
    },
    Activity {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl App {
    /// Opens everything `config` (read from `config_path`, which reloads
    /// read again) names, in the order that keeps secrets safe: hardening
    /// before anything is fetched, the audit log before anything happens,
    /// orphaned leases revoked before anything is served.
    pub async fn start(config: Config, config_path: PathBuf) -> Result<App, StartError> {
        let hardening = crate::harden::apply(&config.hardening);
        let audit = AuditLog::open(&config.audit).map_err(|error| StartError::Audit {
            path: config.audit.path.clone(),
            error,
        })?;
        let lease_key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .map_err(|_| StartError::NoRandomness)?;
        let listen = config.listen.clone();
        let lease_ledger = config.lease_ledger.clone();
        let activity_state = config.activity_state.clone();
        let anomaly = config.anomaly.clone();
        let start_detail = start_detail(&config);
        let runtime = Runtime::build(config, None, Arc::new(lease_key)).map_err(|error| {
            StartError::Runtime {
                config: config_path.clone(),
                error,
            }
        })?;
        let listeners = Listeners::bind(&listen).map_err(StartError::Listen)?;
        let (leases, orphans) =
            crate::leases::Leases::open(Some(&lease_ledger)).map_err(|error| {
                StartError::Ledger {
                    path: lease_ledger.clone(),
                    error,
                }
            })?;
        let activity = crate::broker::Activity::open(&activity_state).map_err(|error| {
            StartError::Activity {
                path: activity_state.clone(),
                error,
            }
        })?;
        let scorer = anomaly
            .enabled
            .then(|| Arc::new(crate::anomaly::online::Scorer::open(&anomaly)));
        let shared = Shared::new(
            runtime,
            Arc::new(audit),
            Arc::new(leases),
            scorer.clone(),
            activity,
            config_path,
        );
        if let Err(error) = shared.runtime().vault.ensure_login().await {
            warn!(%error, "Vault login failed at start; botward retries on each request");
        }
        // Leases a crash left behind are revoked before anything else.
        for h in &orphans {
            shared.revoke_held(h, "orphaned").await;
        }
        if !orphans.is_empty() {
            info!(
                count = orphans.len(),
                "Revoked leases orphaned by an earlier run"
            );
        }
        let listening = listeners.describe();
        let activity = if shared.activity.loaded() {
            "loaded"
        } else {
            "new"
        };
        shared
            .audit_event(
                "server.start",
                Decision::Allow,
                None,
                Some(serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "listen": listening, "hardening": hardening, "grants": start_detail["grants"], "privileged": start_detail["privileged"], "change_ticket": start_detail["change_ticket"], "activity": activity})),
            )
            .await;
        info!(listen = %listening, "botward ready");
        Ok(App {
            shared,
            listeners,
            scorer,
            listening,
        })
    }

    /// Where botward listens, e.g. `tcp=127.0.0.1:8443 unix=/run/botward.sock`.
    pub fn listening(&self) -> &str {
        &self.listening
    }

    /// Serves until `shutdown` completes, drains open connections, then
    /// revokes every lease and Vault token botward still holds.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let App {
            shared,
            listeners,
            scorer,
            ..
        } = self;
        let mut tasks = JoinSet::new();
        tasks.spawn(tasks::reload_on_signal(shared.clone()));
        tasks.spawn(tasks::watch_files(shared.clone(), Duration::from_secs(2)));
        tasks.spawn(tasks::reap_leases(shared.clone(), Duration::from_secs(1)));
        tasks.spawn(tasks::elevation_windows(
            shared.clone(),
            Duration::from_secs(1),
        ));
        tasks.spawn(tasks::elevation_mailbox(shared.clone()));
        tasks.spawn(tasks::lifecycle(shared.clone(), Duration::from_secs(5)));
        if let Some(s) = scorer.clone() {
            tasks.spawn(tasks::save_baselines(s, Duration::from_secs(60)));
        }
        server::run(shared.clone(), listeners, shutdown, DRAIN).await;
        tasks.shutdown().await;
        if let Some(s) = &scorer {
            if let Err(e) = s.save() {
                warn!(error = %e, "Cannot save anomaly baselines");
            }
        }
        if let Err(e) = shared.activity.save() {
            warn!(error = %e, "Cannot save bot activity");
        }
        shared.close_all_elevations("shutdown").await;
        let left = shared.revoke_all("shutdown").await;
        if left > 0 {
            warn!(
                left,
                "Some leases could not be revoked; the next start retries them"
            );
        }
        // Revoking a token needs the token, so it goes after the leases.
        shared.runtime().vault.revoke_tokens().await;
        shared
            .audit_event("server.stop", Decision::Allow, None, None)
            .await;
        info!("botward stopped");
    }
}

/// What `server.start` records of the config: each bot's grants, the
/// privileged secrets and the change ticket.
fn start_detail(config: &Config) -> serde_json::Value {
    let grants: serde_json::Map<String, serde_json::Value> = config
        .bots
        .values()
        .map(|b| (b.name.clone(), serde_json::json!(b.secrets)))
        .collect();
    let privileged: Vec<&String> = config
        .secrets
        .values()
        .filter(|s| s.privileged)
        .map(|s| &s.name)
        .collect();
    serde_json::json!({"grants": grants, "privileged": privileged, "change_ticket": config.change_ticket})
}

// === impl StartError ===

impl StartError {
    /// The process exit code: a config botward cannot use is the caller's
    /// problem (64), a file or socket it cannot open is the host's (69).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Runtime { .. } => EX_USAGE,
            StartError::NoRandomness => 1,
            StartError::Audit { .. }
            | StartError::Listen(_)
            | StartError::Ledger { .. }
            | StartError::Activity { .. } => EX_UNAVAILABLE,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Audit { path, error } => {
                write!(f, "cannot open audit log {}: {error}", path.display())
            }
            StartError::NoRandomness => f.write_str("no system randomness"),
            StartError::Runtime { config, error } => write!(f, "{}: {error}", config.display()),
            StartError::Listen(error) => write!(f, "cannot listen: {error}"),
            StartError::Ledger { path, error } => {
                write!(f, "lease ledger {}: {error}", path.display())
            }
            StartError::Activity { path, error } => {
                write!(f, "bot activity state {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for StartError {}
