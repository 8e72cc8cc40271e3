//! The config file's shape as written: every table rejects keys it does not
//! know, and values keep their place in the file for the validator's
//! problems.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: RawListen,
    pub(super) tls: RawTls,
    pub(super) vault: RawVault,
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) hardening: RawHardening,
    #[serde(default)]
    pub(super) leases: RawLeases,
    #[serde(default)]
    pub(super) anomaly: RawAnomaly,
    #[serde(default)]
    pub(super) meta: RawMeta,
    #[serde(default)]
    pub(super) lifecycle: RawLifecycle,
    pub(super) identity: Option<Spanned<RawIdentity>>,
    pub(super) elevation: Option<Spanned<RawElevation>>,
    #[serde(default, rename = "approver")]
    pub(super) approvers: Vec<RawApprover>,
    #[serde(default, rename = "secret")]
    pub(super) secrets: Vec<RawSecret>,
    #[serde(default, rename = "bot")]
    pub(super) bots: Vec<RawBot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) tcp: Option<Spanned<String>>,
    pub(super) unix: Option<Spanned<String>>,
    pub(super) unix_mode: Option<Spanned<String>>,
    pub(super) pipe: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) pipe_accounts: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
    pub(super) client_ca: Spanned<String>,
    #[serde(default)]
    pub(super) crl: Vec<Spanned<String>>,
    pub(super) trust_domain: Spanned<String>,
    #[serde(default)]
    pub(super) allow_cn_fallback: bool,
    pub(super) crl_warn_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVault {
    pub(super) addresses: Spanned<Vec<Spanned<String>>>,
    pub(super) ca: Option<Spanned<String>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) auth: RawVaultAuth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVaultAuth {
    pub(super) method: Spanned<String>,
    pub(super) role_id_file: Option<Spanned<String>>,
    pub(super) secret_id_file: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) mount: Option<Spanned<String>>,
    pub(super) cert_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) path: Spanned<String>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) fsync: Option<Spanned<String>>,
    pub(super) rotate_bytes: Option<u64>,
    pub(super) rotate_daily: Option<bool>,
    pub(super) checkpoint_every: Option<Spanned<u64>>,
    pub(super) checkpoint_interval_s: Option<Spanned<u64>>,
    pub(super) ratchet_interval_s: Option<Spanned<u64>>,
    pub(super) syslog: Option<RawSyslog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSyslog {
    pub(super) address: Spanned<String>,
    pub(super) records: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) max_handshakes: Option<Spanned<u64>>,
    pub(super) max_connections_per_uid: Option<Spanned<u64>>,
    pub(super) header_read_timeout_ms: Option<Spanned<u64>>,
    pub(super) handshake_timeout_ms: Option<Spanned<u64>>,
    pub(super) max_header_bytes: Option<Spanned<u64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLeases {
    pub(super) ledger: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHardening {
    pub(super) mlock: Option<bool>,
    pub(super) disable_core_dumps: Option<bool>,
    pub(super) wipe_freed_memory: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeta {
    pub(super) change_ticket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) mount: Option<Spanned<String>>,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) privileged: bool,
    pub(super) max_use: Option<Spanned<String>>,
    pub(super) renew: Option<Spanned<bool>>,
    pub(super) cache_ttl: Option<Spanned<String>>,
    pub(super) approvals: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBot {
    pub(super) name: Spanned<String>,
    pub(super) owner: Spanned<String>,
    pub(super) team: Spanned<String>,
    #[serde(default)]
    pub(super) purpose: String,
    #[serde(default)]
    pub(super) secrets: Vec<Spanned<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) processes: Vec<Spanned<RawProcess>>,
    pub(super) anomaly: Option<Spanned<RawBotAnomaly>>,
    pub(super) max_leases: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) disabled: bool,
    pub(super) review_by: Option<Spanned<String>>,
    pub(super) expires: Option<Spanned<String>>,
    pub(super) reactivate: Option<Spanned<String>>,
    pub(super) enroll: Option<Spanned<RawEnroll>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnroll {
    pub(super) uid: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub(super) pki: Spanned<RawPki>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) enroll_token_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPki {
    pub(super) mount: String,
    pub(super) role: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifecycle {
    pub(super) review_overdue: Option<Spanned<String>>,
    pub(super) dormant_after: Option<Spanned<String>>,
    pub(super) dormant: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBotAnomaly {
    pub(super) action: Option<String>,
    pub(super) threshold: Option<u8>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnomaly {
    pub(super) enabled: Option<bool>,
    pub(super) train: Option<Spanned<String>>,
    pub(super) webhook: Option<Spanned<String>>,
    pub(super) state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    pub(super) uid: Option<u32>,
    pub(super) exe: Option<String>,
    pub(super) sid: Option<String>,
    pub(super) user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawElevation {
    pub(super) max_window: Spanned<String>,
    pub(super) mailbox: Spanned<RawMailbox>,
    pub(super) webhook: Option<Spanned<String>>,
    pub(super) poll_interval: Option<Spanned<String>>,
    pub(super) request_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    pub(super) mount: Spanned<String>,
    pub(super) prefix: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprover {
    pub(super) name: Spanned<String>,
    pub(super) cert: Spanned<String>,
    pub(super) teams: Spanned<Vec<String>>,
}
