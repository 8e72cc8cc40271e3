//! The validated config: typed values with their defaults filled in and
//! relative paths resolved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::harden::Hardening;
use crate::policy::{ApproverDef, BotDef, SecretDef};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub tls: crate::tls::Settings,
    pub vault: crate::vault::Settings,
    pub audit: crate::audit::Settings,
    pub limits: Limits,
    pub hardening: Hardening,
    pub anomaly: AnomalySettings,
    /// The lease ledger file.
    pub lease_ledger: PathBuf,
    /// When each bot last made a request (`<state_dir>/activity.json`).
    pub activity_state: PathBuf,
    pub secrets: BTreeMap<String, SecretDef>,
    pub bots: BTreeMap<String, BotDef>,
    /// Elevation windows for privileged secrets; required when any secret
    /// is privileged.
    pub elevation: Option<ElevationSettings>,
    /// Who may approve elevations, by name.
    pub approvers: BTreeMap<String, ApproverDef>,
    /// The change ticket that accompanies this version of the config, if any.
    pub change_ticket: Option<String>,
    /// Bot certificates issued by Vault PKI: enrollment and renewal.
    pub identity: Option<IdentitySettings>,
}

/// `[identity]`: Vault PKI issues bot certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentitySettings {
    /// The PKI secrets engine's mount and the role that signs.
    pub mount: String,
    pub role: String,
    /// Lifetime of an issued certificate.
    pub ttl: Duration,
    /// Lifetime of an enrollment token.
    pub enroll_token_ttl: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    pub tcp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    /// File mode of the unix socket. Any local user may connect by default:
    /// the client certificate and the kernel's peer credentials decide.
    pub unix_mode: u32,
    /// A Windows named pipe, `\\.\pipe\NAME`.
    pub pipe: Option<String>,
    /// Accounts or groups the pipe's DACL lets connect (besides SYSTEM,
    /// Administrators and botward's own account); empty means
    /// Authenticated Users.
    pub pipe_accounts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Connections that completed their TLS handshake.
    pub max_connections: usize,
    /// Connections still in their TLS handshake (unauthenticated).
    pub max_handshakes: usize,
    /// Unix-socket connections of one uid, in or past their handshake.
    pub max_connections_per_uid: usize,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Online scoring for every bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnomalySettings {
    pub enabled: bool,
    /// How long each bot's baseline is learned before it is scored.
    pub train: Duration,
    /// Where `alert` actions POST a JSON alert.
    pub webhook: Option<String>,
    /// Where baselines persist across restarts.
    pub state: PathBuf,
}

/// The `[elevation]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElevationSettings {
    /// The longest window an approval may grant.
    pub max_window: Duration,
    /// KV v2 mount of the mailbox.
    pub mount: String,
    /// Path under the mount: requests at `<prefix>/requests/<id>`,
    /// decisions at `<prefix>/decisions/<id>/<approver>`.
    pub prefix: String,
    /// Notified of each request.
    pub webhook: Option<String>,
    /// How often the mailbox is read while a request is pending or a
    /// window open.
    pub poll_interval: Duration,
    /// How long a request waits for its decisions before it expires.
    pub request_ttl: Duration,
}

impl Config {
    pub fn bot(&self, name: &str) -> Option<&BotDef> {
        self.bots.get(name)
    }

    pub fn secret(&self, name: &str) -> Option<&SecretDef> {
        self.secrets.get(name)
    }

    /// Every file the running config depends on; a change to any of them
    /// triggers a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![
            self.tls.cert.clone(),
            self.tls.key.clone(),
            self.tls.client_ca.clone(),
        ];
        files.extend(self.tls.crl.iter().cloned());
        files.extend(self.vault.ca.iter().cloned());
        files.extend(self.approvers.values().map(|a| a.cert.clone()));
        files
    }
}
