//! Leases botward handed out: who holds them, until when, and an on-disk
//! ledger so that leases orphaned by a crash are revoked at the next start.
//!
//! The ledger holds lease IDs, the owning bot, the secret's logical name and
//! the times; never a secret value. It is rewritten atomically (mode 0600) on
//! every change.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One lease held by a bot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub id: String,
    pub bot: String,
    pub secret: String,
    pub issued: Timestamp,
    /// When Vault will expire it, as of the last issue or renewal.
    pub expires: Timestamp,
    /// The hard end set by the secret's `max_use`, if any.
    pub max_until: Option<Timestamp>,
    pub renewable: bool,
    /// The TTL Vault first granted, asked for again at renewal.
    #[serde(default)]
    pub ttl_seconds: u64,
    /// Failed revocations so far, and when to try again.
    #[serde(default)]
    pub revoke_attempts: u32,
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
}

#[derive(Serialize, Deserialize, Default)]
struct LedgerFile {
    leases: Vec<Held>,
}

/// The lease table and its ledger.
pub struct Leases {
    held: Mutex<HashMap<String, Held>>,
    ledger: Option<PathBuf>,
}

// === impl Held ===

impl Held {
    /// When botward revokes it on its own: the earlier of Vault's expiry and
    /// `max_use`.
    pub fn deadline(&self) -> Timestamp {
        match self.max_until {
            Some(m) if m < self.expires => m,
            _ => self.expires,
        }
    }
}

// === impl Leases ===

impl Leases {
    /// Opens the ledger and returns the leases it still lists: after a crash
    /// these are orphans, to be revoked. The table starts with them, so they
    /// stay in the ledger until revoked.
    pub fn open(ledger: Option<&Path>) -> io::Result<(Leases, Vec<Held>)> {
        let mut orphans = Vec::new();
        if let Some(path) = ledger {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let file: LedgerFile = serde_json::from_slice(&bytes).map_err(|e| {
                        io::Error::other(format!("lease ledger {} is corrupt: {e}", path.display()))
                    })?;
                    orphans = file.leases;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let held = orphans.iter().map(|h| (h.id.clone(), h.clone())).collect();
        let me = Leases {
            held: Mutex::new(held),
            ledger: ledger.map(Path::to_owned),
        };
        me.persist(&me.lock())?;
        Ok((me, orphans))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new lease. It is on disk before this returns.
    pub fn insert(&self, h: Held) -> io::Result<()> {
        let mut held = self.lock();
        held.insert(h.id.clone(), h);
        self.persist(&held)
    }

    /// Finds a lease by its ID, comparing in constant time.
    pub fn get(&self, id: &str) -> Option<Held> {
        let held = self.lock();
        held.values()
            .find(|h| crate::secret::constant_time_eq(h.id.as_bytes(), id.as_bytes()))
            .cloned()
    }

    pub fn update(&self, h: Held) -> io::Result<()> {
        let mut held = self.lock();
        if held.contains_key(&h.id) {
            held.insert(h.id.clone(), h);
        }
        self.persist(&held)
    }

    pub fn remove(&self, id: &str) -> io::Result<Option<Held>> {
        let mut held = self.lock();
        let gone = held.remove(id);
        self.persist(&held)?;
        Ok(gone)
    }

    /// Leases whose deadline has passed, and whose last failed revocation,
    /// if any, is far enough back to try again.
    pub fn due(&self, now: Timestamp) -> Vec<Held> {
        self.lock()
            .values()
            .filter(|h| h.deadline() <= now && h.retry_at.is_none_or(|r| r <= now))
            .cloned()
            .collect()
    }

    /// Notes a failed revocation: the next try waits 2 s, doubling to 5
    /// minutes, so that an outage does not turn into a flood of attempts
    /// and audit records.
    pub fn defer(&self, id: &str, now: Timestamp) -> io::Result<()> {
        let mut held = self.lock();
        if let Some(h) = held.get_mut(id) {
            h.revoke_attempts = h.revoke_attempts.saturating_add(1);
            let wait = (1u64 << h.revoke_attempts.min(9)).min(300);
            h.retry_at = Some(now + jiff::SignedDuration::from_secs(wait as i64));
        }
        self.persist(&held)
    }

    pub fn all(&self) -> Vec<Held> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn persist(&self, held: &HashMap<String, Held>) -> io::Result<()> {
        let Some(path) = &self.ledger else {
            return Ok(());
        };
        let mut leases: Vec<&Held> = held.values().collect();
        leases.sort_by(|a, b| a.issued.cmp(&b.issued).then_with(|| a.id.cmp(&b.id)));
        let body = serde_json::to_vec(&serde_json::json!({ "leases": leases }))
            .map_err(io::Error::other)?;
        crate::state_file::replace(path, &body, 0o600)
    }
}

/// Parses a duration like `15m`, `90s`, `2h` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration like \"15m\", \"90s\" or \"1h30m\"");
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|t| t.checked_add(total))
            .ok_or_else(|| format!("{s:?} is longer than 36500d"))?;
        any = true;
    }
    if !num.is_empty() || !any || total == 0 {
        return Err(bad());
    }
    // A century at most: the server adds these to the current time.
    if total > 36_500 * 86_400 {
        return Err(format!("{s:?} is longer than 36500d"));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, secs: i64) -> Held {
        let now = Timestamp::now();
        Held {
            id: id.into(),
            bot: "b".into(),
            secret: "s".into(),
            issued: now,
            expires: now + jiff::SignedDuration::from_secs(secs),
            max_until: None,
            renewable: true,
            ttl_seconds: secs as u64,
            revoke_attempts: 0,
            retry_at: None,
        }
    }

    #[test]
    fn the_ledger_survives_a_restart_and_lists_orphans() {
        let dir = std::env::temp_dir().join(format!("botward-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("leases.json");
        let _ = std::fs::remove_file(&path);
        let (l, orphans) = Leases::open(Some(&path)).unwrap();
        assert!(orphans.is_empty());
        l.insert(held("database/creds/r/a", 60)).unwrap();
        l.insert(held("database/creds/r/b", 60)).unwrap();
        l.remove("database/creds/r/a").unwrap();
        drop(l);
        let (l, orphans) = Leases::open(Some(&path)).unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].id, "database/creds/r/b");
        assert!(l.get("database/creds/r/b").is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn deadline_is_the_earlier_of_expiry_and_max_use() {
        let mut h = held("x", 3600);
        assert_eq!(h.deadline(), h.expires);
        h.max_until = Some(h.issued + jiff::SignedDuration::from_secs(60));
        assert_eq!(h.deadline(), h.max_until.unwrap());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("45s").unwrap().as_secs(), 45);
        for bad in ["", "15", "m", "1x", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_past_a_century_are_refused_not_wrapped() {
        assert_eq!(parse_duration("36500d").unwrap().as_secs(), 36_500 * 86_400);
        // The first overflows u64 seconds; the second cannot be added to
        // the current time, which the server does with max_use and train.
        for bad in [
            "213503982334602d",
            "99999999999d",
            "36500d1s",
            "18446744073709551615s1s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
