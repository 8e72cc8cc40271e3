//! Configuration: a raw TOML shape that rejects unknown keys, then a validated
//! `Config` with typed fields.
//!
//! Validation collects every problem it finds, each with the file, line and
//! column it refers to, so that `botward check-config` can list them all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::harden::Hardening;
use crate::policy::Schedule;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub tls: Tls,
    pub vault: Vault,
    pub audit: Audit,
    pub limits: Limits,
    pub hardening: Hardening,
    pub anomaly: AnomalySettings,
    /// The lease ledger file.
    pub lease_ledger: PathBuf,
    pub secrets: BTreeMap<String, SecretDef>,
    pub bots: BTreeMap<String, BotDef>,
    /// The change ticket that accompanies this version of the config, if any.
    pub change_ticket: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    pub tcp: Option<SocketAddr>,
    pub unix: Option<PathBuf>,
    /// File mode of the unix socket. Any local user may connect by default:
    /// the client certificate and the kernel's peer credentials decide.
    pub unix_mode: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub crl: Vec<PathBuf>,
    pub trust_domain: String,
    pub allow_cn_fallback: bool,
    /// How long before a CRL's `nextUpdate` the log warns.
    pub crl_warn_before: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Vault {
    pub addresses: Vec<String>,
    pub ca: Option<PathBuf>,
    pub timeout: Duration,
    pub auth: VaultAuth,
}

/// How botward logs in to Vault. Only file paths are kept here: credentials
/// are read from their files at each login and never held in the config.
#[derive(Clone, Debug, PartialEq)]
pub enum VaultAuth {
    Token {
        token_file: PathBuf,
    },
    AppRole {
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    /// TLS certificate login; the client certificate is presented on every
    /// connection to Vault.
    Cert {
        mount: String,
        name: String,
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Audit {
    pub path: PathBuf,
    /// Where the seed, the key state and the signing key live; by default
    /// beside the log.
    pub state_dir: PathBuf,
    pub fsync: Fsync,
    /// Rotate when the file reaches this size; 0 turns size rotation off.
    pub rotate_bytes: u64,
    /// Rotate when the UTC day changes.
    pub rotate_daily: bool,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub ratchet_interval: Duration,
    pub syslog: Option<Syslog>,
}

/// When the audit file is synced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Every record is written and synced on its own.
    Always,
    /// Records of concurrent requests are written and synced together.
    Batch,
    /// Left to the operating system.
    Never,
}

/// The off-host RFC 5424 syslog sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syslog {
    pub address: String,
    /// Send every record, or only checkpoints.
    pub all_records: bool,
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

/// A secret's definition: where in Vault it is read, never its value.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretDef {
    pub name: String,
    pub source: SecretSource,
    pub privileged: bool,
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

/// A process a bot may run as. Unset parts match anything, but at least one
/// part is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRule {
    pub uid: Option<u32>,
    pub exe: Option<PathBuf>,
}

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

/// All the problems found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

// === raw shape ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: RawListen,
    tls: RawTls,
    vault: RawVault,
    audit: RawAudit,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    hardening: RawHardening,
    #[serde(default)]
    leases: RawLeases,
    #[serde(default)]
    anomaly: RawAnomaly,
    #[serde(default)]
    meta: RawMeta,
    #[serde(default, rename = "secret")]
    secrets: Vec<RawSecret>,
    #[serde(default, rename = "bot")]
    bots: Vec<RawBot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    tcp: Option<Spanned<String>>,
    unix: Option<Spanned<String>>,
    unix_mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    client_ca: Spanned<String>,
    #[serde(default)]
    crl: Vec<Spanned<String>>,
    trust_domain: Spanned<String>,
    #[serde(default)]
    allow_cn_fallback: bool,
    crl_warn_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    addresses: Spanned<Vec<Spanned<String>>>,
    ca: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<u64>>,
    auth: RawVaultAuth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVaultAuth {
    method: Spanned<String>,
    role_id_file: Option<Spanned<String>>,
    secret_id_file: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    mount: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Spanned<String>,
    state_dir: Option<Spanned<String>>,
    fsync: Option<Spanned<String>>,
    rotate_bytes: Option<u64>,
    rotate_daily: Option<bool>,
    checkpoint_every: Option<Spanned<u64>>,
    checkpoint_interval_s: Option<Spanned<u64>>,
    ratchet_interval_s: Option<Spanned<u64>>,
    syslog: Option<RawSyslog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyslog {
    address: Spanned<String>,
    records: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<u64>>,
    max_handshakes: Option<Spanned<u64>>,
    max_connections_per_uid: Option<Spanned<u64>>,
    header_read_timeout_ms: Option<Spanned<u64>>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    max_header_bytes: Option<Spanned<u64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeases {
    ledger: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardening {
    mlock: Option<bool>,
    disable_core_dumps: Option<bool>,
    wipe_freed_memory: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    change_ticket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    name: Spanned<String>,
    kind: Spanned<String>,
    mount: Option<Spanned<String>>,
    path: Spanned<String>,
    #[serde(default)]
    privileged: bool,
    max_use: Option<Spanned<String>>,
    renew: Option<Spanned<bool>>,
    cache_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBot {
    name: Spanned<String>,
    owner: Spanned<String>,
    team: Spanned<String>,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    processes: Vec<Spanned<RawProcess>>,
    anomaly: Option<Spanned<RawBotAnomaly>>,
    max_leases: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBotAnomaly {
    action: Option<String>,
    threshold: Option<u8>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnomaly {
    enabled: Option<bool>,
    train: Option<Spanned<String>>,
    webhook: Option<Spanned<String>>,
    state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    uid: Option<u32>,
    exe: Option<String>,
}

/// Longest logical secret or bot name.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` is a valid logical name for a secret or a bot: ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit, with no
/// `..` anywhere.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !name.contains("..")
}

// === impl Config ===

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_owned(),
                at: None,
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Validates config text. `path` names the file in problems and anchors
    /// relative paths inside the config.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Problems> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start));
            Problems(vec![Problem {
                file: path.to_owned(),
                at,
                message: e.message().trim().to_owned(),
            }])
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let mut v = Validator {
            text,
            file: path,
            base,
            problems: Vec::new(),
        };
        let config = v.validate(raw);
        match config {
            Some(c) if v.problems.is_empty() => Ok(c),
            _ => Err(Problems(v.problems)),
        }
    }

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
        files
    }
}

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    base: PathBuf,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        let at = Some(line_col(self.text, at.span().start));
        self.problems.push(Problem {
            file: self.file.to_owned(),
            at,
            message: message.into(),
        });
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// A file that must exist and be readable now.
    fn existing_file(&mut self, key: &str, s: &Spanned<String>) -> PathBuf {
        let p = self.path(s.get_ref());
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.problem(s, format!("{key}: {} is not a regular file", p.display())),
            Err(e) => self.problem(s, format!("{key}: cannot read {}: {e}", p.display())),
        }
        p
    }

    fn validate(&mut self, raw: RawConfig) -> Option<Config> {
        let listen = self.listen(raw.listen);
        let tls = self.tls(raw.tls);
        let vault = self.vault(raw.vault);
        let audit = self.audit(raw.audit);
        let audit_state_dir = audit.state_dir.clone();
        let lease_ledger = match &raw.leases.ledger {
            Some(p) => self.path(p),
            None => audit.state_dir.join("leases.json"),
        };
        let limits = self.limits(raw.limits);
        let secrets = self.secrets(raw.secrets);
        let bots = self.bots(raw.bots, &secrets);
        Some(Config {
            listen: listen?,
            tls,
            vault: vault?,
            audit,
            limits,
            lease_ledger,
            anomaly: AnomalySettings {
                enabled: raw.anomaly.enabled.unwrap_or(true),
                train: match &raw.anomaly.train {
                    None => Duration::from_secs(28 * 86_400),
                    Some(t) => crate::leases::parse_duration(t.get_ref()).unwrap_or_else(|e| {
                        self.problem(t, format!("anomaly.train: {e}"));
                        Duration::from_secs(28 * 86_400)
                    }),
                },
                webhook: raw.anomaly.webhook.as_ref().map(|w| {
                    if !(w.get_ref().starts_with("http://") || w.get_ref().starts_with("https://"))
                    {
                        self.problem(w, "anomaly.webhook must be an http(s) URL");
                    }
                    w.get_ref().clone()
                }),
                state: match &raw.anomaly.state {
                    Some(p) => self.path(p),
                    None => audit_state_dir.join("baselines.json"),
                },
            },
            hardening: Hardening {
                mlock: raw.hardening.mlock.unwrap_or(true),
                disable_core_dumps: raw.hardening.disable_core_dumps.unwrap_or(true),
                wipe_freed_memory: raw.hardening.wipe_freed_memory.unwrap_or(true),
            },
            secrets,
            bots,
            change_ticket: raw.meta.change_ticket,
        })
    }

    fn listen(&mut self, raw: RawListen) -> Option<Listen> {
        let tcp = match &raw.tcp {
            None => None,
            Some(s) => match s.get_ref().parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => Some(a),
                Ok(a) => {
                    self.problem(s, format!("listen.tcp: {a} is not a loopback address; botward serves only local bots"));
                    None
                }
                Err(_) => {
                    self.problem(
                        s,
                        format!(
                            "listen.tcp: {:?} is not an address like 127.0.0.1:8443",
                            s.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let unix = raw.unix.as_ref().map(|s| {
            if s.get_ref().is_empty() {
                self.problem(s, "listen.unix must not be empty");
            }
            self.path(s.get_ref())
        });
        if cfg!(not(unix)) && unix.is_some() {
            self.problems.push(Problem {
                file: self.file.to_owned(),
                at: None,
                message: "listen.unix is only supported on unix systems".into(),
            });
        }
        let unix_mode = match &raw.unix_mode {
            None => 0o666,
            Some(s) => match u32::from_str_radix(s.get_ref().trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o777 => m,
                _ => {
                    self.problem(s, "listen.unix_mode must be an octal mode such as \"0660\"");
                    0o666
                }
            },
        };
        if tcp.is_none() && unix.is_none() && raw.tcp.is_none() {
            self.problems.push(Problem {
                file: self.file.to_owned(),
                at: None,
                message: "listen: set tcp, unix or both".into(),
            });
        }
        Some(Listen {
            tcp,
            unix,
            unix_mode,
        })
    }

    fn tls(&mut self, raw: RawTls) -> Tls {
        let td = raw.trust_domain.get_ref();
        let td_ok = !td.is_empty()
            && td.len() <= 255
            && td.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
            });
        if !td_ok {
            self.problem(
                &raw.trust_domain,
                "tls.trust_domain must be a lower-case DNS-like name such as \"corp.example\"",
            );
        }
        Tls {
            cert: self.existing_file("tls.cert", &raw.cert),
            key: self.existing_file("tls.key", &raw.key),
            client_ca: self.existing_file("tls.client_ca", &raw.client_ca),
            crl: raw
                .crl
                .iter()
                .map(|c| self.existing_file("tls.crl", c))
                .collect(),
            trust_domain: td.clone(),
            allow_cn_fallback: raw.allow_cn_fallback,
            crl_warn_before: match &raw.crl_warn_before {
                None => Duration::from_secs(3600),
                Some(d) => crate::leases::parse_duration(d.get_ref()).unwrap_or_else(|e| {
                    self.problem(d, format!("tls.crl_warn_before: {e}"));
                    Duration::from_secs(3600)
                }),
            },
        }
    }

    fn vault(&mut self, raw: RawVault) -> Option<Vault> {
        let mut addresses = Vec::new();
        if raw.addresses.get_ref().is_empty() {
            self.problem(
                &raw.addresses,
                "vault.addresses must name at least one address",
            );
        }
        for a in raw.addresses.get_ref() {
            let s = a.get_ref().trim_end_matches('/');
            let ok = (s.starts_with("http://") || s.starts_with("https://"))
                && s.split_once("://")
                    .is_some_and(|(_, rest)| !rest.is_empty() && !rest.contains('/'));
            if ok {
                addresses.push(s.to_owned());
            } else {
                self.problem(
                    a,
                    format!(
                        "vault.addresses: {:?} is not a URL like https://vault:8200",
                        a.get_ref()
                    ),
                );
            }
        }
        let ca = raw.ca.as_ref().map(|c| self.existing_file("vault.ca", c));
        let timeout = match &raw.timeout_ms {
            None => Duration::from_millis(5000),
            Some(t) if (1..=300_000).contains(t.get_ref()) => Duration::from_millis(*t.get_ref()),
            Some(t) => {
                self.problem(t, "vault.timeout_ms must be between 1 and 300000");
                Duration::from_millis(5000)
            }
        };
        let a = &raw.auth;
        let auth = match a.method.get_ref().as_str() {
            "token" => match &a.token_file {
                Some(f) => Some(VaultAuth::Token {
                    token_file: self.existing_file("vault.auth.token_file", f),
                }),
                None => {
                    self.problem(&a.method, "vault.auth: method \"token\" needs token_file");
                    None
                }
            },
            "approle" => match (&a.role_id_file, &a.secret_id_file) {
                (Some(r), Some(s)) => Some(VaultAuth::AppRole {
                    mount: a
                        .mount
                        .as_ref()
                        .map(|m| m.get_ref().clone())
                        .unwrap_or_else(|| "approle".into()),
                    role_id_file: self.existing_file("vault.auth.role_id_file", r),
                    secret_id_file: self.existing_file("vault.auth.secret_id_file", s),
                }),
                _ => {
                    self.problem(
                        &a.method,
                        "vault.auth: method \"approle\" needs role_id_file and secret_id_file",
                    );
                    None
                }
            },
            "cert" => match (&a.cert_file, &a.key_file) {
                (Some(c), Some(k)) => {
                    if raw.ca.is_none() {
                        self.problem(&a.method, "vault.auth: method \"cert\" needs vault.ca, the CA that Vault's certificate is pinned to");
                    }
                    Some(VaultAuth::Cert {
                        mount: a
                            .mount
                            .as_ref()
                            .map(|m| m.get_ref().clone())
                            .unwrap_or_else(|| "cert".into()),
                        name: a
                            .name
                            .as_ref()
                            .map(|n| n.get_ref().clone())
                            .unwrap_or_default(),
                        cert_file: self.existing_file("vault.auth.cert_file", c),
                        key_file: self.existing_file("vault.auth.key_file", k),
                    })
                }
                _ => {
                    self.problem(
                        &a.method,
                        "vault.auth: method \"cert\" needs cert_file and key_file",
                    );
                    None
                }
            },
            other => {
                self.problem(&a.method, format!("vault.auth.method: unknown method {other:?}; expected \"approle\", \"token\" or \"cert\""));
                None
            }
        };
        Some(Vault {
            addresses,
            ca,
            timeout,
            auth: auth?,
        })
    }

    fn audit(&mut self, raw: RawAudit) -> Audit {
        if raw.path.get_ref().is_empty() {
            self.problem(&raw.path, "audit.path must not be empty");
        }
        let path = self.path(raw.path.get_ref());
        let state_dir = match &raw.state_dir {
            Some(d) => self.path(d.get_ref()),
            None => path.parent().map(Path::to_owned).unwrap_or_default(),
        };
        let fsync = match raw.fsync.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "batch")) => Fsync::Batch,
            Some((_, "always")) => Fsync::Always,
            Some((_, "never")) => Fsync::Never,
            Some((f, other)) => {
                self.problem(
                    f,
                    format!(
                        "audit.fsync: {other:?} is not one of \"always\", \"batch\", \"never\""
                    ),
                );
                Fsync::Batch
            }
        };
        let mut secs = |v: &Option<Spanned<u64>>, key: &str, default: u64| match v {
            None => Duration::from_secs(default),
            Some(s) if (1..=86_400).contains(s.get_ref()) => Duration::from_secs(*s.get_ref()),
            Some(s) => {
                self.problem(
                    s,
                    format!("audit.{key} must be between 1 and 86400 seconds"),
                );
                Duration::from_secs(default)
            }
        };
        let checkpoint_interval = secs(&raw.checkpoint_interval_s, "checkpoint_interval_s", 60);
        let ratchet_interval = secs(&raw.ratchet_interval_s, "ratchet_interval_s", 60);
        let checkpoint_every = match &raw.checkpoint_every {
            None => 1000,
            Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
            Some(n) => {
                self.problem(n, "audit.checkpoint_every must be at least 1");
                1000
            }
        };
        let syslog = raw.syslog.map(|s| {
            let all_records = match s.records.as_ref().map(|r| (r, r.get_ref().as_str())) {
                None | Some((_, "all")) => true,
                Some((_, "checkpoints")) => false,
                Some((r, other)) => {
                    self.problem(
                        r,
                        format!(
                            "audit.syslog.records: {other:?} is not \"all\" or \"checkpoints\""
                        ),
                    );
                    true
                }
            };
            if s.address.get_ref().parse::<SocketAddr>().is_err()
                && !s.address.get_ref().contains(':')
            {
                self.problem(&s.address, "audit.syslog.address must look like host:port");
            }
            Syslog {
                address: s.address.into_inner(),
                all_records,
            }
        });
        Audit {
            path,
            state_dir,
            fsync,
            rotate_bytes: raw.rotate_bytes.unwrap_or(0),
            rotate_daily: raw.rotate_daily.unwrap_or(true),
            checkpoint_every,
            checkpoint_interval,
            ratchet_interval,
            syslog,
        }
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let mut get = |v: &Option<Spanned<u64>>,
                       key: &str,
                       default: u64,
                       range: std::ops::RangeInclusive<u64>| match v {
            None => default,
            Some(s) if range.contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                self.problem(
                    s,
                    format!(
                        "limits.{key} must be between {} and {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        };
        Limits {
            max_connections: get(&raw.max_connections, "max_connections", 1024, 1..=100_000)
                as usize,
            max_handshakes: get(&raw.max_handshakes, "max_handshakes", 256, 1..=10_000) as usize,
            max_connections_per_uid: get(
                &raw.max_connections_per_uid,
                "max_connections_per_uid",
                128,
                1..=100_000,
            ) as usize,
            header_read_timeout: Duration::from_millis(get(
                &raw.header_read_timeout_ms,
                "header_read_timeout_ms",
                10_000,
                100..=300_000,
            )),
            handshake_timeout: Duration::from_millis(get(
                &raw.handshake_timeout_ms,
                "handshake_timeout_ms",
                2_000,
                100..=300_000,
            )),
            max_header_bytes: get(
                &raw.max_header_bytes,
                "max_header_bytes",
                16 * 1024,
                8192..=1024 * 1024,
            ) as usize,
        }
    }

    fn secrets(&mut self, raw: Vec<RawSecret>) -> BTreeMap<String, SecretDef> {
        let mut out = BTreeMap::new();
        for s in raw {
            let name = s.name.get_ref().clone();
            if !is_valid_name(&name) {
                self.problem(&s.name, format!("secret name {name:?} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"));
                continue;
            }
            let path = s.path.get_ref().trim_matches('/').to_owned();
            if path.is_empty()
                || path
                    .split('/')
                    .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                self.problem(
                    &s.path,
                    format!(
                        "secret {name:?}: path {:?} is not a clean Vault path",
                        s.path.get_ref()
                    ),
                );
            }
            let source = match s.kind.get_ref().as_str() {
                "kv" => {
                    let mount = s
                        .mount
                        .as_ref()
                        .map(|m| m.get_ref().trim_matches('/').to_owned())
                        .unwrap_or_default();
                    if mount.is_empty() {
                        self.problem(
                            &s.kind,
                            format!("secret {name:?}: kind \"kv\" needs a mount"),
                        );
                    }
                    SecretSource::Kv { mount, path }
                }
                "dynamic" => {
                    if let Some(m) = &s.mount {
                        self.problem(m, format!("secret {name:?}: kind \"dynamic\" takes the full path in `path`, not a mount"));
                    }
                    SecretSource::Dynamic { path }
                }
                other => {
                    self.problem(&s.kind, format!("secret {name:?}: unknown kind {other:?}; expected \"kv\" or \"dynamic\""));
                    continue;
                }
            };
            let dynamic = matches!(source, SecretSource::Dynamic { .. });
            let max_use =
                s.max_use
                    .as_ref()
                    .and_then(|m| match crate::leases::parse_duration(m.get_ref()) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            self.problem(m, format!("secret {name:?}: max_use: {e}"));
                            None
                        }
                    });
            if let (false, Some(m)) = (dynamic, &s.max_use) {
                self.problem(
                    m,
                    format!("secret {name:?}: max_use applies only to kind \"dynamic\""),
                );
            }
            let renew = s.renew.as_ref().is_some_and(|r| *r.get_ref());
            if let (false, Some(r)) = (dynamic, &s.renew) {
                self.problem(
                    r,
                    format!("secret {name:?}: renew applies only to kind \"dynamic\""),
                );
            }
            let cache_ttl = s.cache_ttl.as_ref().and_then(|c| {
                if dynamic {
                    // Every dynamic read is a new credential owned by the bot
                    // that asked; handing one out twice would share it.
                    self.problem(
                        c,
                        format!("secret {name:?}: cache_ttl applies only to kind \"kv\""),
                    );
                    return None;
                }
                match crate::leases::parse_duration(c.get_ref()) {
                    Ok(d) if d > Duration::from_secs(86_400) => {
                        self.problem(c, format!("secret {name:?}: cache_ttl is at most 24h, so rotations reach bots within a day"));
                        None
                    }
                    Ok(d) => Some(d),
                    Err(e) => {
                        self.problem(c, format!("secret {name:?}: cache_ttl: {e}"));
                        None
                    }
                }
            });
            if out.contains_key(&name) {
                self.problem(&s.name, format!("secret {name:?} is defined twice"));
                continue;
            }
            out.insert(
                name.clone(),
                SecretDef {
                    name,
                    source,
                    privileged: s.privileged,
                    max_use,
                    renew,
                    cache_ttl,
                },
            );
        }
        out
    }

    fn bots(
        &mut self,
        raw: Vec<RawBot>,
        secrets: &BTreeMap<String, SecretDef>,
    ) -> BTreeMap<String, BotDef> {
        let mut out = BTreeMap::new();
        for b in raw {
            let name = b.name.get_ref().clone();
            if !is_valid_name(&name) {
                self.problem(&b.name, format!("bot name {name:?} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"));
                continue;
            }
            for (key, v) in [("owner", &b.owner), ("team", &b.team)] {
                if v.get_ref().trim().is_empty() {
                    self.problem(v, format!("bot {name:?}: {key} must not be empty"));
                }
            }
            let mut granted = BTreeSet::new();
            for s in &b.secrets {
                if !secrets.contains_key(s.get_ref()) {
                    self.problem(
                        s,
                        format!(
                            "bot {name:?} is granted secret {:?}, which no [[secret]] defines",
                            s.get_ref()
                        ),
                    );
                } else if !granted.insert(s.get_ref().clone()) {
                    self.problem(
                        s,
                        format!("bot {name:?} is granted secret {:?} twice", s.get_ref()),
                    );
                }
            }
            let schedule = b
                .schedule
                .as_ref()
                .and_then(|s| match Schedule::parse(s.get_ref()) {
                    Ok(sch) => Some(sch),
                    Err(e) => {
                        self.problem(
                            s,
                            format!("bot {name:?}: bad schedule {:?}: {e}", s.get_ref()),
                        );
                        None
                    }
                });
            let mut processes = Vec::new();
            for p in &b.processes {
                let r = p.get_ref();
                if r.uid.is_none() && r.exe.is_none() {
                    self.problem(
                        p,
                        format!("bot {name:?}: a process rule needs uid, exe or both"),
                    );
                    continue;
                }
                if let Some(exe) = &r.exe {
                    if !Path::new(exe).is_absolute() {
                        self.problem(
                            p,
                            format!("bot {name:?}: process exe {exe:?} must be an absolute path"),
                        );
                        continue;
                    }
                }
                processes.push(ProcessRule {
                    uid: r.uid,
                    exe: r.exe.as_ref().map(PathBuf::from),
                });
            }
            let mut anomaly = AnomalyPolicy::default();
            if let Some(a) = &b.anomaly {
                let r = a.get_ref();
                match r.action.as_deref() {
                    None | Some("log") => {}
                    Some("alert") => anomaly.action = AnomalyAction::Alert,
                    Some("deny") => anomaly.action = AnomalyAction::Deny,
                    Some(other) => self.problem(a, format!("bot {name:?}: anomaly.action {other:?} is not \"log\", \"alert\" or \"deny\"")),
                }
                match r.threshold {
                    Some(t) if t <= 100 => anomaly.threshold = t,
                    Some(_) => {
                        self.problem(a, format!("bot {name:?}: anomaly.threshold must be 0-100"))
                    }
                    None => {}
                }
            }
            let max_leases = match &b.max_leases {
                None => DEFAULT_MAX_LEASES,
                Some(m) if (1..=10_000).contains(m.get_ref()) => *m.get_ref() as usize,
                Some(m) => {
                    self.problem(
                        m,
                        format!("bot {name:?}: max_leases must be between 1 and 10000"),
                    );
                    DEFAULT_MAX_LEASES
                }
            };
            if out.contains_key(&name) {
                self.problem(&b.name, format!("bot {name:?} is defined twice"));
                continue;
            }
            out.insert(
                name.clone(),
                BotDef {
                    name,
                    owner: b.owner.into_inner(),
                    team: b.team.into_inner(),
                    purpose: b.purpose,
                    secrets: granted,
                    schedule,
                    processes,
                    anomaly,
                    max_leases,
                },
            );
        }
        out
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// === impl Problem ===

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            p.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("botward-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "server.pem",
            "server-key.pem",
            "ca.pem",
            "role-id",
            "secret-id",
            "token",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        dir
    }

    fn sample(dir: &Path) -> String {
        format!(
            r#"
[listen]
tcp = "127.0.0.1:8443"

[tls]
cert = "{d}/server.pem"
key = "{d}/server-key.pem"
client_ca = "{d}/ca.pem"
trust_domain = "corp.example"

[vault]
addresses = ["http://127.0.0.1:8200"]

[vault.auth]
method = "approle"
role_id_file = "{d}/role-id"
secret_id_file = "{d}/secret-id"

[audit]
path = "{d}/audit.jsonl"

[[secret]]
name = "erp-db"
kind = "kv"
mount = "secret"
path = "rpa/erp-db"

[[bot]]
name = "invoice-bot"
owner = "alice@corp.example"
team = "finance-ops"
secrets = ["erp-db"]
schedule = "Mon-Fri 06:00-20:00 Europe/Berlin"
processes = [{{ uid = 1001, exe = "/opt/rpa/bin/python3" }}]
"#,
            d = dir.display()
        )
    }

    #[test]
    fn sample_config_is_valid() {
        let dir = fixture_dir();
        let c = Config::parse(&sample(&dir), &dir.join("botward.toml")).unwrap();
        assert_eq!(c.listen.tcp, Some("127.0.0.1:8443".parse().unwrap()));
        let bot = c.bot("invoice-bot").unwrap();
        assert!(bot.secrets.contains("erp-db"));
        assert_eq!(
            bot.processes,
            vec![ProcessRule {
                uid: Some(1001),
                exe: Some("/opt/rpa/bin/python3".into())
            }]
        );
        assert!(matches!(c.vault.auth, VaultAuth::AppRole { .. }));
    }

    fn problems(text: &str, dir: &Path) -> Vec<String> {
        match Config::parse(text, &dir.join("botward.toml")) {
            Ok(_) => panic!("config was accepted"),
            Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let dir = fixture_dir();
        let text = sample(&dir).replace("[audit]\n", "[audit]\nrotate = true\n");
        let p = problems(&text, &dir);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("unknown field `rotate`"), "{p:?}");
        let line = text.lines().position(|l| l.starts_with("rotate")).unwrap() + 1;
        assert!(p[0].contains(&format!("botward.toml:{line}:")), "{p:?}");
    }

    #[test]
    fn every_semantic_problem_is_listed_with_its_place() {
        let dir = fixture_dir();
        let text = sample(&dir)
            .replace("127.0.0.1:8443", "not-an-address")
            .replace("secret-id\"", "missing-secret-id\"")
            .replace(
                r#"secrets = ["erp-db"]"#,
                r#"secrets = ["erp-db", "payroll"]"#,
            )
            .replace("Mon-Fri 06:00-20:00", "Mon-Fry 06:00-20:00");
        let p = problems(&text, &dir);
        assert_eq!(p.len(), 4, "{p:#?}");
        let joined = p.join("\n");
        assert!(joined.contains("listen.tcp"));
        assert!(joined.contains("missing-secret-id"));
        assert!(joined.contains("\"payroll\", which no [[secret]] defines"));
        assert!(joined.contains("bad schedule"));
        for line in &p {
            assert!(line.contains("botward.toml:"), "no location in {line}");
        }
    }

    #[test]
    fn non_loopback_listener_is_refused() {
        let dir = fixture_dir();
        let p = problems(
            &sample(&dir).replace("127.0.0.1:8443", "0.0.0.0:8443"),
            &dir,
        );
        assert!(p[0].contains("not a loopback address"), "{p:?}");
    }

    #[test]
    fn cache_ttl_is_for_kv_secrets_only_and_bounded() {
        let dir = fixture_dir();
        let kv = sample(&dir).replace(
            "path = \"rpa/erp-db\"\n",
            "path = \"rpa/erp-db\"\ncache_ttl = \"30s\"\n",
        );
        let c = Config::parse(&kv, &dir.join("botward.toml")).unwrap();
        assert_eq!(
            c.secret("erp-db").unwrap().cache_ttl,
            Some(Duration::from_secs(30))
        );
        let plain = Config::parse(&sample(&dir), &dir.join("botward.toml")).unwrap();
        assert_eq!(
            plain.secret("erp-db").unwrap().cache_ttl,
            None,
            "off unless asked for"
        );

        let dynamic = format!(
            "{}\n[[secret]]\nname = \"db-login\"\nkind = \"dynamic\"\npath = \"database/creds/ro\"\ncache_ttl = \"30s\"\n",
            sample(&dir)
        );
        let p = problems(&dynamic, &dir);
        assert!(
            p[0].contains("cache_ttl applies only to kind \"kv\""),
            "{p:?}"
        );
        for bad in ["25h", "0s", "soon"] {
            let p = problems(&kv.replace("\"30s\"", &format!("{bad:?}")), &dir);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].contains("cache_ttl"), "{p:?}");
        }
    }

    #[test]
    fn names_are_strict() {
        for ok in ["erp-db", "a", "db.prod_1", "X9"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".hidden",
            "a..b",
            "a/b",
            "a%2fb",
            "-x",
            "ä",
            long.as_str(),
            "a b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_packaged_sample_config_is_valid() {
        let dir = fixture_dir();
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        for f in [
            "tls/server.pem",
            "tls/server-key.pem",
            "tls/bots-ca.pem",
            "vault-ca.pem",
            "role-id",
            "secret-id",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let text = include_str!("../packaging/botward.toml")
            .replace("/etc/botward/", &format!("{}/", dir.display()));
        let c = Config::parse(&text, &dir.join("botward.toml")).unwrap_or_else(|p| panic!("{p}"));
        assert!(c.bot("invoice-bot").unwrap().schedule.is_some());
        assert_eq!(c.listen.unix_mode, 0o666);
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
