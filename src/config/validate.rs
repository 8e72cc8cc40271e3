//! From the raw shape to a validated [`Config`]: every value is checked and
//! typed, and every problem is collected with the place in the file it
//! refers to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::duration::parse_duration;
use super::model::{AnomalySettings, Config, IdentitySettings, Limits, Listen};
use super::problem::{line_col, Problem, Problems};
use super::raw::{
    RawAnomaly, RawAudit, RawBot, RawBotAnomaly, RawConfig, RawHardening, RawIdentity,
    RawLifecycle, RawLimits, RawListen, RawProcess, RawSecret, RawSyslog, RawTls, RawVault,
    RawVaultAuth,
};
use crate::audit::{Fsync, Settings as Audit, Syslog};
use crate::harden::Hardening;
use crate::policy::{
    is_valid_name, AnomalyAction, AnomalyPolicy, BotDef, Enforcement, Lifecycle, ProcessRule,
    Schedule, SecretDef, SecretSource, DEFAULT_MAX_LEASES,
};
use crate::tls;
use crate::vault::{self, VaultAuth};

mod elevation;

/// Validates a parsed config. `text` is the file's content, for the lines
/// and columns of problems; `file` names it and anchors relative paths.
pub(super) fn validate(raw: RawConfig, text: &str, file: &Path) -> Result<Config, Problems> {
    let mut v = Validator {
        text,
        file,
        base: file.parent().map(Path::to_owned).unwrap_or_default(),
        problems: Vec::new(),
    };
    match v.config(raw) {
        Some(c) if v.problems.is_empty() => Ok(c),
        _ => Err(Problems(v.problems)),
    }
}

/// The value that `s` names among `choices`.
fn choose<T: Copy>(s: &str, choices: &[(&str, T)]) -> Option<T> {
    choices.iter().find(|(name, _)| *name == s).map(|(_, v)| *v)
}

const FSYNC_CHOICES: &[(&str, Fsync)] = &[
    ("always", Fsync::Always),
    ("batch", Fsync::Batch),
    ("never", Fsync::Never),
];

/// Whether syslog gets every record.
const SYSLOG_RECORDS_CHOICES: &[(&str, bool)] = &[("all", true), ("checkpoints", false)];

const ANOMALY_ACTION_CHOICES: &[(&str, AnomalyAction)] = &[
    ("log", AnomalyAction::Log),
    ("alert", AnomalyAction::Alert),
    ("deny", AnomalyAction::Deny),
];

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    /// The config file's directory, which relative paths start from.
    base: PathBuf,
    problems: Vec<Problem>,
}

// === helpers ===

impl Validator<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        let at = Some(line_col(self.text, at.span().start));
        self.problems.push(Problem {
            file: self.file.to_owned(),
            at,
            message: message.into(),
        });
    }

    /// A problem with no place in the file.
    fn unplaced(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            at: None,
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

    /// `value` if it lies in `range`; `default` if it is unset, or, with a
    /// problem saying `message`, if it lies outside.
    fn in_range<T: PartialOrd + Copy>(
        &mut self,
        value: Option<&Spanned<T>>,
        range: RangeInclusive<T>,
        default: T,
        message: impl Into<String>,
    ) -> T {
        match value {
            None => default,
            Some(v) if range.contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.problem(v, message);
                default
            }
        }
    }

    /// What `value` names among `choices`; `default` if it is unset, or,
    /// with a problem saying `message(value)`, if it names none of them.
    fn one_of<T: Copy>(
        &mut self,
        value: Option<&Spanned<String>>,
        choices: &[(&str, T)],
        default: T,
        message: impl FnOnce(&str) -> String,
    ) -> T {
        let Some(v) = value else {
            return default;
        };
        match choose(v.get_ref(), choices) {
            Some(c) => c,
            None => {
                let m = message(v.get_ref());
                self.problem(v, m);
                default
            }
        }
    }

    /// A duration, or `None` with the problem `"{key}: {why}"`.
    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(value, format!("{key}: {e}"));
                None
            }
        }
    }
}

// === the top level ===

impl Validator<'_> {
    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let listen = self.listen(raw.listen);
        let tls = self.tls(raw.tls);
        let vault = self.vault(raw.vault);
        let audit = self.audit(raw.audit);
        let lease_ledger = match &raw.leases.ledger {
            Some(p) => self.path(p),
            None => audit.state_dir.join("leases.json"),
        };
        let limits = self.limits(raw.limits);
        let secrets = self.secrets(raw.secrets);
        let identity = self.identity(raw.identity.as_ref(), &raw.bots, &listen);
        let lifecycle = self.lifecycle(&raw.lifecycle);
        let bots = self.bots(raw.bots, &secrets, &lifecycle);
        let approvers = self.approvers(&raw.approvers);
        let elevation = self.elevation(raw.elevation.as_ref(), &secrets, &bots, &approvers);
        // The anomaly table is checked only with usable vault settings.
        let vault = vault?;
        let anomaly = self.anomaly(raw.anomaly, &audit.state_dir);
        let activity_state = audit.state_dir.join("activity.json");
        Some(Config {
            listen,
            tls,
            vault,
            audit,
            limits,
            lease_ledger,
            activity_state,
            anomaly,
            hardening: hardening(raw.hardening),
            secrets,
            bots,
            elevation,
            approvers,
            change_ticket: raw.meta.change_ticket,
            identity,
        })
    }

    /// `[identity]`, and the bots that may enroll: only with it, and only
    /// where a unix socket can tell who connects.
    fn identity(
        &mut self,
        raw: Option<&Spanned<RawIdentity>>,
        bots: &[RawBot],
        listen: &Listen,
    ) -> Option<IdentitySettings> {
        for b in bots {
            if let Some(e) = &b.enroll {
                if raw.is_none() {
                    self.problem(
                        e,
                        format!("bot {:?}: enroll needs [identity] pki", b.name.get_ref()),
                    );
                } else if listen.unix.is_none() {
                    self.problem(e, format!("bot {:?}: enroll needs listen.unix, where the kernel tells which account connects", b.name.get_ref()));
                }
            }
        }
        let raw = raw?;
        let r = raw.get_ref();
        let pki = r.pki.get_ref();
        for (key, v) in [("mount", &pki.mount), ("role", &pki.role)] {
            let ok = !v.is_empty() && v.len() <= 128 && v.split('/').all(is_valid_name);
            if !ok {
                self.problem(
                    &r.pki,
                    format!("identity.pki.{key} {v:?} must be a Vault path of names"),
                );
            }
        }
        let mut ttl =
            |v: Option<&Spanned<String>>, key: &str, default: u64, range: RangeInclusive<u64>| {
                let Some(v) = v else {
                    return Duration::from_secs(default);
                };
                let d = self
                    .duration(v, key)
                    .unwrap_or(Duration::from_secs(default));
                if !range.contains(&d.as_secs()) {
                    self.problem(
                        v,
                        format!(
                            "{key} must be between {}s and {}s",
                            range.start(),
                            range.end()
                        ),
                    );
                }
                d
            };
        let cert_ttl = ttl(r.ttl.as_ref(), "identity.ttl", 86_400, 300..=90 * 86_400);
        let token_ttl = ttl(
            r.enroll_token_ttl.as_ref(),
            "identity.enroll_token_ttl",
            900,
            60..=86_400,
        );
        Some(IdentitySettings {
            mount: pki.mount.clone(),
            role: pki.role.clone(),
            ttl: cert_ttl,
            enroll_token_ttl: token_ttl,
        })
    }

    fn listen(&mut self, raw: RawListen) -> Listen {
        let tcp = raw.tcp.as_ref().and_then(|s| self.tcp(s));
        let unix = raw.unix.as_ref().map(|s| {
            if s.get_ref().is_empty() {
                self.problem(s, "listen.unix must not be empty");
            }
            self.path(s.get_ref())
        });
        if cfg!(not(unix)) && unix.is_some() {
            self.unplaced("listen.unix is only supported on unix systems");
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
        let pipe = raw.pipe.as_ref().and_then(|s| self.pipe(s));
        let pipe_accounts = self.pipe_accounts(&raw.pipe_accounts);
        if raw.pipe.is_none() && !raw.pipe_accounts.is_empty() {
            self.unplaced("listen.pipe_accounts needs listen.pipe");
        }
        if tcp.is_none() && unix.is_none() && pipe.is_none() && raw.tcp.is_none() {
            self.unplaced("listen: set tcp, unix or pipe");
        }
        Listen {
            tcp,
            unix,
            unix_mode,
            pipe,
            pipe_accounts,
        }
    }

    fn pipe(&mut self, s: &Spanned<String>) -> Option<String> {
        const LOCAL: &str = r"\\.\pipe\";
        let name = s.get_ref();
        if cfg!(not(windows)) {
            self.problem(s, "listen.pipe: named pipes exist only on Windows");
            return None;
        }
        let rest = name.strip_prefix(LOCAL).unwrap_or("");
        if rest.is_empty() || rest.len() > 200 || rest.contains('\\') {
            self.problem(
                s,
                format!(
                    "listen.pipe: {name:?} is not a local pipe name like '\\\\.\\pipe\\botward' (write it in single quotes)"
                ),
            );
            return None;
        }
        Some(name.clone())
    }

    fn pipe_accounts(&mut self, raw: &[Spanned<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for a in raw {
            let name = a.get_ref();
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                self.problem(
                    a,
                    format!("listen.pipe_accounts: {name:?} is not an account name"),
                );
                continue;
            }
            out.push(name.clone());
        }
        out
    }

    fn tcp(&mut self, s: &Spanned<String>) -> Option<SocketAddr> {
        match s.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Some(a),
            Ok(a) => {
                self.problem(
                    s,
                    format!(
                        "listen.tcp: {a} is not a loopback address; botward serves only local bots"
                    ),
                );
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
        }
    }

    fn tls(&mut self, raw: RawTls) -> tls::Settings {
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
        tls::Settings {
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
            crl_warn_before: raw
                .crl_warn_before
                .as_ref()
                .and_then(|d| self.duration(d, "tls.crl_warn_before"))
                .unwrap_or(Duration::from_secs(3600)),
        }
    }

    fn anomaly(&mut self, raw: RawAnomaly, audit_state_dir: &Path) -> AnomalySettings {
        let default_train = Duration::from_secs(28 * 86_400);
        AnomalySettings {
            enabled: raw.enabled.unwrap_or(true),
            train: raw
                .train
                .as_ref()
                .and_then(|t| self.duration(t, "anomaly.train"))
                .unwrap_or(default_train),
            webhook: raw.webhook.as_ref().map(|w| {
                if !(w.get_ref().starts_with("http://") || w.get_ref().starts_with("https://")) {
                    self.problem(w, "anomaly.webhook must be an http(s) URL");
                }
                w.get_ref().clone()
            }),
            state: match &raw.state {
                Some(p) => self.path(p),
                None => audit_state_dir.join("baselines.json"),
            },
        }
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let mut get =
            |v: &Option<Spanned<u64>>, key: &str, default: u64, range: RangeInclusive<u64>| {
                let message = format!(
                    "limits.{key} must be between {} and {}",
                    range.start(),
                    range.end()
                );
                self.in_range(v.as_ref(), range, default, message)
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
}

fn hardening(raw: RawHardening) -> Hardening {
    Hardening {
        mlock: raw.mlock.unwrap_or(true),
        disable_core_dumps: raw.disable_core_dumps.unwrap_or(true),
        wipe_freed_memory: raw.wipe_freed_memory.unwrap_or(true),
    }
}

// === vault ===

impl Validator<'_> {
    fn vault(&mut self, raw: RawVault) -> Option<vault::Settings> {
        let addresses = self.vault_addresses(&raw.addresses);
        let ca = raw.ca.as_ref().map(|c| self.existing_file("vault.ca", c));
        let timeout = Duration::from_millis(self.in_range(
            raw.timeout_ms.as_ref(),
            1..=300_000,
            5000,
            "vault.timeout_ms must be between 1 and 300000",
        ));
        let auth = self.vault_auth(&raw.auth, raw.ca.is_some());
        Some(vault::Settings {
            addresses,
            ca,
            timeout,
            auth: auth?,
        })
    }

    fn vault_addresses(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        if raw.get_ref().is_empty() {
            self.problem(raw, "vault.addresses must name at least one address");
        }
        let mut addresses = Vec::new();
        for a in raw.get_ref() {
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
        addresses
    }

    /// The login method. Certificate login needs `vault.ca`, which
    /// `has_ca` says is set.
    fn vault_auth(&mut self, a: &RawVaultAuth, has_ca: bool) -> Option<VaultAuth> {
        let mount = |default: &str| {
            a.mount
                .as_ref()
                .map_or_else(|| default.to_owned(), |m| m.get_ref().clone())
        };
        match a.method.get_ref().as_str() {
            "token" => {
                let Some(f) = &a.token_file else {
                    self.problem(&a.method, "vault.auth: method \"token\" needs token_file");
                    return None;
                };
                Some(VaultAuth::Token {
                    token_file: self.existing_file("vault.auth.token_file", f),
                })
            }
            "approle" => {
                let (Some(r), Some(s)) = (&a.role_id_file, &a.secret_id_file) else {
                    self.problem(
                        &a.method,
                        "vault.auth: method \"approle\" needs role_id_file and secret_id_file",
                    );
                    return None;
                };
                Some(VaultAuth::AppRole {
                    mount: mount("approle"),
                    role_id_file: self.existing_file("vault.auth.role_id_file", r),
                    secret_id_file: self.existing_file("vault.auth.secret_id_file", s),
                })
            }
            "cert" => {
                let (Some(c), Some(k)) = (&a.cert_file, &a.key_file) else {
                    self.problem(
                        &a.method,
                        "vault.auth: method \"cert\" needs cert_file and key_file",
                    );
                    return None;
                };
                if !has_ca {
                    self.problem(&a.method, "vault.auth: method \"cert\" needs vault.ca, the CA that Vault's certificate is pinned to");
                }
                Some(VaultAuth::Cert {
                    mount: mount("cert"),
                    name: a
                        .name
                        .as_ref()
                        .map(|n| n.get_ref().clone())
                        .unwrap_or_default(),
                    cert_file: self.existing_file("vault.auth.cert_file", c),
                    key_file: self.existing_file("vault.auth.key_file", k),
                })
            }
            other => {
                self.problem(&a.method, format!("vault.auth.method: unknown method {other:?}; expected \"approle\", \"token\" or \"cert\""));
                None
            }
        }
    }
}

// === audit ===

impl Validator<'_> {
    fn audit(&mut self, raw: RawAudit) -> Audit {
        if raw.path.get_ref().is_empty() {
            self.problem(&raw.path, "audit.path must not be empty");
        }
        let path = self.path(raw.path.get_ref());
        let state_dir = match &raw.state_dir {
            Some(d) => self.path(d.get_ref()),
            None => path.parent().map(Path::to_owned).unwrap_or_default(),
        };
        let fsync = self.one_of(raw.fsync.as_ref(), FSYNC_CHOICES, Fsync::Batch, |other| {
            format!("audit.fsync: {other:?} is not one of \"always\", \"batch\", \"never\"")
        });
        let mut secs = |v: &Option<Spanned<u64>>, key: &str, default: u64| {
            let message = format!("audit.{key} must be between 1 and 86400 seconds");
            Duration::from_secs(self.in_range(v.as_ref(), 1..=86_400, default, message))
        };
        let checkpoint_interval = secs(&raw.checkpoint_interval_s, "checkpoint_interval_s", 60);
        let ratchet_interval = secs(&raw.ratchet_interval_s, "ratchet_interval_s", 60);
        let checkpoint_every = self.in_range(
            raw.checkpoint_every.as_ref(),
            1..=u64::MAX,
            1000,
            "audit.checkpoint_every must be at least 1",
        );
        let syslog = raw.syslog.map(|s| self.syslog(s));
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

    fn syslog(&mut self, s: RawSyslog) -> Syslog {
        let all_records = self.one_of(s.records.as_ref(), SYSLOG_RECORDS_CHOICES, true, |other| {
            format!("audit.syslog.records: {other:?} is not \"all\" or \"checkpoints\"")
        });
        if s.address.get_ref().parse::<SocketAddr>().is_err() && !s.address.get_ref().contains(':')
        {
            self.problem(&s.address, "audit.syslog.address must look like host:port");
        }
        Syslog {
            address: s.address.into_inner(),
            all_records,
        }
    }
}

// === secrets ===

impl Validator<'_> {
    fn secrets(&mut self, raw: Vec<RawSecret>) -> BTreeMap<String, SecretDef> {
        let mut out = BTreeMap::new();
        for s in raw {
            let Some(def) = self.secret(&s) else {
                continue;
            };
            if out.contains_key(&def.name) {
                self.problem(&s.name, format!("secret {:?} is defined twice", def.name));
                continue;
            }
            out.insert(def.name.clone(), def);
        }
        out
    }

    fn secret(&mut self, s: &RawSecret) -> Option<SecretDef> {
        let name = s.name.get_ref().clone();
        if !is_valid_name(&name) {
            self.problem(&s.name, format!("secret name {name:?} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"));
            return None;
        }
        let path = self.secret_path(&name, &s.path);
        let source = self.secret_source(&name, s, path)?;
        let dynamic = matches!(source, SecretSource::Dynamic { .. });
        let max_use = s
            .max_use
            .as_ref()
            .and_then(|m| self.duration(m, &format!("secret {name:?}: max_use")));
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
        let cache_ttl = s
            .cache_ttl
            .as_ref()
            .and_then(|c| self.cache_ttl(&name, c, dynamic));
        let approvals = self.approvals(&name, s);
        Some(SecretDef {
            name,
            source,
            privileged: s.privileged,
            approvals,
            max_use,
            renew,
            cache_ttl,
        })
    }

    /// The secret's path without surrounding slashes.
    fn secret_path(&mut self, name: &str, raw: &Spanned<String>) -> String {
        let path = raw.get_ref().trim_matches('/').to_owned();
        if path.is_empty()
            || path
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            self.problem(
                raw,
                format!(
                    "secret {name:?}: path {:?} is not a clean Vault path",
                    raw.get_ref()
                ),
            );
        }
        path
    }

    fn secret_source(&mut self, name: &str, s: &RawSecret, path: String) -> Option<SecretSource> {
        match s.kind.get_ref().as_str() {
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
                Some(SecretSource::Kv { mount, path })
            }
            "dynamic" => {
                if let Some(m) = &s.mount {
                    self.problem(m, format!("secret {name:?}: kind \"dynamic\" takes the full path in `path`, not a mount"));
                }
                Some(SecretSource::Dynamic { path })
            }
            other => {
                self.problem(
                    &s.kind,
                    format!(
                        "secret {name:?}: unknown kind {other:?}; expected \"kv\" or \"dynamic\""
                    ),
                );
                None
            }
        }
    }

    fn cache_ttl(&mut self, name: &str, c: &Spanned<String>, dynamic: bool) -> Option<Duration> {
        if dynamic {
            // Every dynamic read is a new credential owned by the bot that
            // asked; handing one out twice would share it.
            self.problem(
                c,
                format!("secret {name:?}: cache_ttl applies only to kind \"kv\""),
            );
            return None;
        }
        match self.duration(c, &format!("secret {name:?}: cache_ttl"))? {
            d if d > Duration::from_secs(86_400) => {
                self.problem(c, format!("secret {name:?}: cache_ttl is at most 24h, so rotations reach bots within a day"));
                None
            }
            d => Some(d),
        }
    }
}

// === bots ===

impl Validator<'_> {
    fn bots(
        &mut self,
        raw: Vec<RawBot>,
        secrets: &BTreeMap<String, SecretDef>,
        lifecycle: &Lifecycle,
    ) -> BTreeMap<String, BotDef> {
        let mut out = BTreeMap::new();
        for b in raw {
            let Some(def) = self.bot(&b, secrets, lifecycle) else {
                continue;
            };
            if out.contains_key(&def.name) {
                self.problem(&b.name, format!("bot {:?} is defined twice", def.name));
                continue;
            }
            out.insert(def.name.clone(), def);
        }
        out
    }

    fn bot(
        &mut self,
        b: &RawBot,
        secrets: &BTreeMap<String, SecretDef>,
        defaults: &Lifecycle,
    ) -> Option<BotDef> {
        let name = b.name.get_ref().clone();
        if !is_valid_name(&name) {
            self.problem(&b.name, format!("bot name {name:?} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"));
            return None;
        }
        for (key, v) in [("owner", &b.owner), ("team", &b.team)] {
            if v.get_ref().trim().is_empty() {
                self.problem(v, format!("bot {name:?}: {key} must not be empty"));
            }
        }
        let granted = self.granted(&name, &b.secrets, secrets);
        let schedule = b.schedule.as_ref().and_then(|s| self.schedule(&name, s));
        let processes = self.processes(&name, &b.processes);
        let anomaly = match &b.anomaly {
            Some(a) => self.bot_anomaly(&name, a),
            None => AnomalyPolicy::default(),
        };
        let max_leases = self.in_range(
            b.max_leases.as_ref(),
            1..=10_000,
            DEFAULT_MAX_LEASES as u64,
            format!("bot {name:?}: max_leases must be between 1 and 10000"),
        ) as usize;
        let lifecycle = Lifecycle {
            disabled: b.disabled,
            review_by: b
                .review_by
                .as_ref()
                .and_then(|d| self.date(&name, "review_by", d)),
            expires: b
                .expires
                .as_ref()
                .and_then(|d| self.date(&name, "expires", d)),
            reactivate: b.reactivate.as_ref().and_then(|t| self.ticket(&name, t)),
            enroll_uid: b.enroll.as_ref().map(|e| e.get_ref().uid),
            ..defaults.clone()
        };
        Some(BotDef {
            name,
            owner: b.owner.get_ref().clone(),
            team: b.team.get_ref().clone(),
            purpose: b.purpose.clone(),
            secrets: granted,
            schedule,
            processes,
            anomaly,
            max_leases,
            lifecycle,
        })
    }

    /// `[lifecycle]`: what every bot's definition inherits.
    fn lifecycle(&mut self, raw: &RawLifecycle) -> Lifecycle {
        let enforcement = [("warn", Enforcement::Warn), ("deny", Enforcement::Deny)];
        let overdue = self.one_of(
            raw.review_overdue.as_ref(),
            &enforcement,
            Enforcement::Warn,
            |v| format!("lifecycle.review_overdue must be \"warn\" or \"deny\", not {v:?}"),
        );
        let dormant = self.one_of(raw.dormant.as_ref(), &enforcement, Enforcement::Warn, |v| {
            format!("lifecycle.dormant must be \"warn\" or \"deny\", not {v:?}")
        });
        let dormant_after = raw.dormant_after.as_ref().and_then(|v| {
            let d = self.duration(v, "lifecycle.dormant_after")?;
            if d < Duration::from_secs(3600) {
                self.problem(v, "lifecycle.dormant_after must be at least 1h");
                return None;
            }
            jiff::SignedDuration::try_from(d).ok()
        });
        if dormant_after.is_none() {
            if let Some(v) = &raw.dormant {
                self.problem(v, "lifecycle.dormant needs lifecycle.dormant_after");
            }
        }
        Lifecycle {
            overdue,
            dormant_after,
            dormant,
            ..Lifecycle::default()
        }
    }

    /// A change ticket named by `[[bot]] reactivate`.
    fn ticket(&mut self, bot: &str, v: &Spanned<String>) -> Option<String> {
        let t = v.get_ref();
        if t.is_empty() || t.len() > 128 || !crate::text::is_plain(t) {
            self.problem(
                v,
                format!(
                    "bot {bot:?}: reactivate must be a change ticket of 1-128 printable characters"
                ),
            );
            return None;
        }
        Some(t.clone())
    }

    /// A calendar day, `YYYY-MM-DD`.
    fn date(&mut self, bot: &str, key: &str, v: &Spanned<String>) -> Option<jiff::civil::Date> {
        let text = v.get_ref();
        let well_formed = text.len() == 10
            && text.bytes().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            });
        match text.parse::<jiff::civil::Date>() {
            Ok(d) if well_formed => Some(d),
            _ => {
                self.problem(
                    v,
                    format!(
                        "bot {bot:?}: {key} must be a date such as \"2027-03-01\", not {text:?}"
                    ),
                );
                None
            }
        }
    }

    /// The secrets granted to bot `name`, each defined and named once.
    fn granted(
        &mut self,
        name: &str,
        raw: &[Spanned<String>],
        secrets: &BTreeMap<String, SecretDef>,
    ) -> BTreeSet<String> {
        let mut granted = BTreeSet::new();
        for s in raw {
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
        granted
    }

    fn schedule(&mut self, name: &str, s: &Spanned<String>) -> Option<Schedule> {
        match Schedule::parse(s.get_ref()) {
            Ok(sch) => Some(sch),
            Err(e) => {
                self.problem(
                    s,
                    format!("bot {name:?}: bad schedule {:?}: {e}", s.get_ref()),
                );
                None
            }
        }
    }

    fn processes(&mut self, name: &str, raw: &[Spanned<RawProcess>]) -> Vec<ProcessRule> {
        let mut processes = Vec::new();
        for p in raw {
            let r = p.get_ref();
            if r.uid.is_none() && r.exe.is_none() && r.sid.is_none() && r.user.is_none() {
                self.problem(
                    p,
                    format!("bot {name:?}: a process rule needs uid, exe, sid or user"),
                );
                continue;
            }
            if let Some(why) = process_rule_problem(r) {
                self.problem(p, format!("bot {name:?}: {why}"));
                continue;
            }
            processes.push(ProcessRule {
                uid: r.uid,
                exe: r.exe.as_ref().map(PathBuf::from),
                sid: r.sid.clone(),
                user: r.user.clone(),
            });
        }
        processes
    }

    fn bot_anomaly(&mut self, name: &str, a: &Spanned<RawBotAnomaly>) -> AnomalyPolicy {
        let mut anomaly = AnomalyPolicy::default();
        let r = a.get_ref();
        if let Some(action) = r.action.as_deref() {
            match choose(action, ANOMALY_ACTION_CHOICES) {
                Some(x) => anomaly.action = x,
                None => self.problem(a, format!("bot {name:?}: anomaly.action {action:?} is not \"log\", \"alert\" or \"deny\"")),
            }
        }
        match r.threshold {
            Some(t) if t <= 100 => anomaly.threshold = t,
            Some(_) => self.problem(a, format!("bot {name:?}: anomaly.threshold must be 0-100")),
            None => {}
        }
        anomaly
    }
}

/// What is wrong with the parts of a process rule, if anything.
fn process_rule_problem(r: &RawProcess) -> Option<String> {
    if let Some(exe) = &r.exe {
        if !is_absolute_exe(exe) {
            return Some(format!("process exe {exe:?} must be an absolute path"));
        }
    }
    if let Some(sid) = &r.sid {
        if !is_sid(sid) {
            return Some(format!(
                "process sid {sid:?} is not a security identifier like \"S-1-5-21-...\""
            ));
        }
    }
    if let Some(user) = &r.user {
        let ok = user
            .split_once('\\')
            .is_some_and(|(d, n)| !d.is_empty() && !n.is_empty() && !n.contains('\\'))
            && user.len() <= 256;
        if !ok {
            return Some(format!(
                "process user {user:?} must be a Windows account as 'DOMAIN\\name'"
            ));
        }
    }
    None
}

/// An absolute path on this system, or a Windows one (`C:\...`) on any
/// system, so a Windows config validates on the Linux box that lints it.
fn is_absolute_exe(exe: &str) -> bool {
    let b = exe.as_bytes();
    Path::new(exe).is_absolute()
        || (b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

/// `S-1-` followed by decimal sub-authorities.
fn is_sid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("S-1-") else {
        return false;
    };
    s.len() <= 184
        && rest
            .split('-')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_finds_only_listed_names() {
        assert_eq!(choose("batch", FSYNC_CHOICES), Some(Fsync::Batch));
        assert_eq!(choose("Batch", FSYNC_CHOICES), None);
        assert_eq!(choose("", SYSLOG_RECORDS_CHOICES), None);
    }
}
