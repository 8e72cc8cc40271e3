//! The config parser and validator (`Config::parse`), as `check-config`,
//! `serve` and every reload run it.
//!
//! The config sits in a directory that holds the files a config names
//! (`server.pem`, `server-key.pem`, `ca.pem`, `crl.pem`, `vault-ca.pem`,
//! `token`, `role-id`, `secret-id`, `vault-client.pem`,
//! `vault-client-key.pem`; `dir` is a directory), so that relative paths to
//! them validate.
//!
//! Invariants:
//! - a refused config lists at least one problem, each at a line and column
//!   inside the text;
//! - an accepted config keeps every rule `check-config` promises: names in
//!   the name alphabet, grants only of defined secrets, a loopback listener,
//!   http(s) Vault addresses, limits within their ranges, clean Vault paths,
//!   `cache_ttl` only on KV secrets and at most 24 h, `max_use` and `renew`
//!   only on dynamic ones, process rules with a uid or an absolute exe,
//!   thresholds of at most 100, a lower-case trust domain, a header limit
//!   hyper accepts; durations that can be added to the current time;
//! - parsing is deterministic, and nothing panics.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use botward::config::Config;
use botward::policy::{is_valid_name, Schedule, SecretSource};
use libfuzzer_sys::fuzz_target;

const FILES: [&str; 10] = [
    "server.pem",
    "server-key.pem",
    "ca.pem",
    "crl.pem",
    "vault-ca.pem",
    "token",
    "role-id",
    "secret-id",
    "vault-client.pem",
    "vault-client-key.pem",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = config_path();
    let parsed = Config::parse(text, path);
    let again = Config::parse(text, path);
    assert_eq!(parsed, again, "parsing is not deterministic");
    match parsed {
        Err(problems) => {
            assert!(!problems.0.is_empty(), "refused without a problem");
            let lines = text.split('\n').count();
            for p in &problems.0 {
                assert_eq!(p.file, path);
                if let Some((line, col)) = p.at {
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {p:?}");
                    let len = text
                        .split('\n')
                        .nth(line - 1)
                        .map_or(0, |l| l.chars().count());
                    assert!(col >= 1 && col <= len + 1, "column {col} of {len}: {p:?}");
                }
            }
            let _ = problems.to_string();
        }
        Ok(c) => accepted(&c),
    }
});

fn accepted(c: &Config) {
    if let Some(a) = c.listen.tcp {
        assert!(a.ip().is_loopback(), "{a}");
    } else {
        assert!(c.listen.unix.is_some(), "no listener");
    }
    assert!(c.listen.unix_mode <= 0o777);
    let td = &c.tls.trust_domain;
    assert!(!td.is_empty() && td.len() <= 255);
    assert!(td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));

    assert!(!c.vault.addresses.is_empty());
    for a in &c.vault.addresses {
        let rest = a
            .strip_prefix("https://")
            .or_else(|| a.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("vault address {a:?}"));
        assert!(
            !rest.is_empty() && !rest.contains('/'),
            "vault address {a:?}"
        );
    }
    let ms = |d: Duration, lo: u128, hi: u128| (lo..=hi).contains(&d.as_millis());
    assert!(ms(c.vault.timeout, 1, 300_000));
    assert!(ms(c.limits.header_read_timeout, 100, 300_000));
    assert!(ms(c.limits.handshake_timeout, 100, 300_000));
    assert!((1..=100_000).contains(&c.limits.max_connections));
    // hyper panics on a read buffer smaller than 8 KiB.
    assert!((8192..=1 << 20).contains(&c.limits.max_header_bytes));
    let secs = |d: Duration| (1..=86_400).contains(&d.as_secs());
    assert!(secs(c.audit.checkpoint_interval) && secs(c.audit.ratchet_interval));
    assert!(c.audit.checkpoint_every >= 1);
    assert!(!c.anomaly.train.is_zero());
    // The server adds each duration to the current time.
    let mut durations = vec![("anomaly.train", c.anomaly.train)];
    for s in c.secrets.values() {
        durations.extend(s.max_use.map(|d| ("max_use", d)));
        durations.extend(s.cache_ttl.map(|d| ("cache_ttl", d)));
    }
    for (key, d) in durations {
        let later = jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|d| jiff::Timestamp::now().checked_add(d).ok());
        assert!(
            later.is_some(),
            "{key} {d:?} cannot be added to the current time"
        );
        assert!(
            std::time::Instant::now().checked_add(d).is_some(),
            "{key} {d:?}"
        );
    }

    for (key, s) in &c.secrets {
        assert_eq!(key, &s.name);
        assert!(is_valid_name(key), "secret {key:?}");
        let (path, dynamic) = match &s.source {
            SecretSource::Kv { mount, path } => {
                assert!(!mount.is_empty() && !mount.starts_with('/') && !mount.ends_with('/'));
                (path, false)
            }
            SecretSource::Dynamic { path } => (path, true),
        };
        assert!(
            path.split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".."),
            "secret {key:?}: path {path:?}"
        );
        if let Some(ttl) = s.cache_ttl {
            assert!(!dynamic && !ttl.is_zero() && ttl <= Duration::from_secs(86_400));
        }
        if s.max_use.is_some() || s.renew {
            assert!(dynamic, "secret {key:?}");
        }
        assert!(s.max_use.is_none_or(|d| !d.is_zero()));
    }
    for (key, b) in &c.bots {
        assert_eq!(key, &b.name);
        assert!(is_valid_name(key), "bot {key:?}");
        assert!(!b.owner.trim().is_empty() && !b.team.trim().is_empty());
        for s in &b.secrets {
            assert!(
                c.secrets.contains_key(s),
                "bot {key:?} granted undefined {s:?}"
            );
        }
        for p in &b.processes {
            assert!(p.uid.is_some() || p.exe.is_some());
            assert!(p.exe.as_deref().is_none_or(Path::is_absolute));
        }
        assert!(b.anomaly.threshold <= 100);
        if let Some(s) = &b.schedule {
            let again = Schedule::parse(s.as_str()).expect("a schedule that parsed parses again");
            assert_eq!(again.fuzz_windows(), s.fuzz_windows());
        }
    }
}

/// `botward.toml` in a directory that holds the files configs refer to.
fn config_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // One directory for every fuzzing process: they all write the same.
        let dir = std::env::temp_dir().join("botward-fuzz-config");
        std::fs::create_dir_all(dir.join("dir")).expect("fixture dir");
        for f in FILES {
            std::fs::write(dir.join(f), "x").expect("fixture file");
        }
        dir.join("botward.toml")
    })
}
