//! What the access decision is about: bots, the secrets they are granted and
//! the processes they may run as.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::Schedule;

/// A secret's definition: where in Vault it is read, never its value.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretDef {
    pub name: String,
    pub source: SecretSource,
    /// No standing access: readable only inside an approved elevation
    /// window.
    pub privileged: bool,
    /// Distinct approvers an elevation window needs.
    pub approvals: usize,
    /// The longest any lease of this secret lives, whatever Vault's TTL.
    pub max_use: Option<Duration>,
    /// Whether bots may renew its leases (never past `max_use`).
    pub renew: bool,
    /// How long a KV read may be served again without asking Vault.
    /// `None`, the default, reads Vault on every request.
    pub cache_ttl: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SecretSource {
    /// KV version 2; always read at the latest version.
    Kv { mount: String, path: String },
    /// Any lease-bearing read, such as `database/creds/<role>`.
    Dynamic { path: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct BotDef {
    pub name: String,
    pub owner: String,
    pub team: String,
    pub purpose: String,
    pub secrets: BTreeSet<String>,
    pub schedule: Option<Schedule>,
    pub processes: Vec<ProcessRule>,
    /// What online anomaly scoring does above the threshold.
    pub anomaly: AnomalyPolicy,
    /// Leases the bot may hold at once.
    pub max_leases: usize,
    /// Disabled, review and end dates.
    pub lifecycle: super::Lifecycle,
}

/// Default for a bot's `max_leases`.
pub const DEFAULT_MAX_LEASES: usize = 32;

/// A bot's response to anomalous requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnomalyPolicy {
    pub action: AnomalyAction,
    /// 0-100; requests scoring at least this trigger the action.
    pub threshold: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnomalyAction {
    Log,
    Alert,
    Deny,
}

impl Default for AnomalyPolicy {
    fn default() -> Self {
        AnomalyPolicy {
            action: AnomalyAction::Log,
            threshold: 70,
        }
    }
}

/// A process a bot may run as. Unset parts match anything, but at least one
/// part is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessRule {
    pub uid: Option<u32>,
    pub exe: Option<PathBuf>,
    /// A Windows account's security identifier, `S-1-5-21-...`.
    pub sid: Option<String>,
    /// A Windows account as `DOMAIN\name`, compared without regard to case.
    pub user: Option<String>,
}
