//! Leases botward handed out: who holds them, until when, and an on-disk
//! ledger so that leases orphaned by a crash are revoked at the next start.
//!
//! The ledger holds lease IDs, the owning bot, the secret's logical name and
//! the times; never a secret value. It is a journal, mode 0600: each change
//! (`insert`, `update`, `remove`, `defer`) is one JSON line, appended and
//! synced before the call returns. Once the journal holds more than
//! max(64, 4 × live) entries it is compacted: the live set goes to a new
//! file, which is synced and renamed over the old one, and the directory is
//! synced. Opening replays the journal and compacts it. A last line torn by
//! a crash during an append is dropped with a warning; any other line that
//! does not parse is an error, since a lease botward forgets is a lease it
//! never revokes. A ledger in the earlier format (the whole table as one
//! JSON document) is read, then rewritten as a journal.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::warn;

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

/// The lease table and its ledger.
pub struct Leases {
    table: Mutex<Table>,
}

struct Table {
    held: HashMap<String, Held>,
    journal: Option<Journal>,
}

/// The ledger file, open for appending.
struct Journal {
    path: PathBuf,
    /// `None` after a failed write or compaction: the file's end, or
    /// whether the file in place survives a crash, is then unknown, so the
    /// next change compacts instead of appending.
    file: Option<File>,
    /// Entries in the file, live or not.
    entries: usize,
}

/// One line of the journal.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Entry<'a> {
    Insert {
        lease: Cow<'a, Held>,
    },
    Update {
        lease: Cow<'a, Held>,
    },
    Remove {
        id: Cow<'a, str>,
    },
    Defer {
        id: Cow<'a, str>,
        revoke_attempts: u32,
        retry_at: Option<Timestamp>,
    },
}

/// The ledger as botward wrote it before it became a journal.
#[derive(Deserialize)]
struct LedgerFile {
    leases: Vec<Held>,
}

/// A journal is compacted once it holds more entries than this many times
/// the live leases, and never below [`COMPACT_MIN`] entries.
const COMPACT_FACTOR: usize = 4;
const COMPACT_MIN: usize = 64;

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
        let mut held = HashMap::new();
        let mut journal = None;
        if let Some(path) = ledger {
            crate::platform::refuse_if_shared(path)?;
            held = match std::fs::read(path) {
                Ok(bytes) => replay(&bytes, path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
                Err(e) => return Err(e),
            };
            let mut j = Journal {
                path: path.to_owned(),
                file: None,
                entries: 0,
            };
            // A fresh journal of the live set: drops a torn tail and
            // upgrades the earlier format.
            j.compact(&held)?;
            journal = Some(j);
        }
        let mut orphans: Vec<Held> = held.values().cloned().collect();
        orphans.sort_by(|a, b| a.issued.cmp(&b.issued).then_with(|| a.id.cmp(&b.id)));
        let me = Leases {
            table: Mutex::new(Table { held, journal }),
        };
        Ok((me, orphans))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        crate::lock(&self.table)
    }

    /// Records a new lease. It is on disk before this returns.
    pub fn insert(&self, h: Held) -> io::Result<()> {
        let mut t = self.lock();
        let entry = Entry::Insert {
            lease: Cow::Borrowed(&h),
        };
        let line = encode(&entry)?;
        t.held.insert(h.id.clone(), h);
        t.record(&line)
    }

    /// Finds a lease by its ID, comparing in constant time.
    pub fn get(&self, id: &str) -> Option<Held> {
        let t = self.lock();
        t.held
            .values()
            .find(|h| crate::secret::constant_time_eq(h.id.as_bytes(), id.as_bytes()))
            .cloned()
    }

    /// Replaces a lease still in the table, e.g. after a renewal.
    pub fn update(&self, h: Held) -> io::Result<()> {
        let mut t = self.lock();
        if !t.held.contains_key(&h.id) {
            return Ok(());
        }
        let line = encode(&Entry::Update {
            lease: Cow::Borrowed(&h),
        })?;
        t.held.insert(h.id.clone(), h);
        t.record(&line)
    }

    pub fn remove(&self, id: &str) -> io::Result<Option<Held>> {
        let mut t = self.lock();
        let Some(gone) = t.held.remove(id) else {
            return Ok(None);
        };
        let line = encode(&Entry::Remove {
            id: Cow::Borrowed(id),
        })?;
        t.record(&line)?;
        Ok(Some(gone))
    }

    /// Leases whose deadline has passed, and whose last failed revocation,
    /// if any, is far enough back to try again.
    pub fn due(&self, now: Timestamp) -> Vec<Held> {
        self.lock()
            .held
            .values()
            .filter(|h| h.deadline() <= now && h.retry_at.is_none_or(|r| r <= now))
            .cloned()
            .collect()
    }

    /// Notes a failed revocation: the next try waits 2 s, doubling to 5
    /// minutes, so that an outage does not turn into a flood of attempts
    /// and audit records.
    pub fn defer(&self, id: &str, now: Timestamp) -> io::Result<()> {
        let mut t = self.lock();
        let Some(h) = t.held.get_mut(id) else {
            return Ok(());
        };
        h.revoke_attempts = h.revoke_attempts.saturating_add(1);
        let wait = (1u64 << h.revoke_attempts.min(9)).min(300);
        h.retry_at = Some(now + jiff::SignedDuration::from_secs(wait as i64));
        let line = encode(&Entry::Defer {
            id: Cow::Borrowed(id),
            revoke_attempts: h.revoke_attempts,
            retry_at: h.retry_at,
        })?;
        t.record(&line)
    }

    pub fn all(&self) -> Vec<Held> {
        self.lock().held.values().cloned().collect()
    }

    /// The leases `bot` holds.
    pub fn for_bot(&self, bot: &str) -> Vec<Held> {
        self.lock()
            .held
            .values()
            .filter(|h| h.bot == bot)
            .cloned()
            .collect()
    }

    /// How many leases `bot` holds.
    pub fn count_for(&self, bot: &str) -> usize {
        self.lock().held.values().filter(|h| h.bot == bot).count()
    }

    pub fn len(&self) -> usize {
        self.lock().held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === impl Table ===

impl Table {
    /// Writes one journal line for a change already made to `held`.
    fn record(&mut self, line: &[u8]) -> io::Result<()> {
        match &mut self.journal {
            None => Ok(()),
            Some(j) => j.append(line, &self.held),
        }
    }
}

// === impl Journal ===

impl Journal {
    /// Appends `line` and syncs it; `live` already includes its change.
    fn append(&mut self, line: &[u8], live: &HashMap<String, Held>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return self.compact(live);
        };
        if let Err(e) = file.write_all(line).and_then(|()| file.sync_data()) {
            self.file = None;
            return Err(e);
        }
        self.entries += 1;
        if self.entries > COMPACT_MIN.max(COMPACT_FACTOR * live.len()) {
            // The change is on disk in the old file and, if the rename went
            // through, in the new one: only later changes depend on this.
            if let Err(error) = self.compact(live) {
                warn!(%error, ledger = %self.path.display(), "Cannot compact the lease ledger; the next change tries again");
            }
        }
        Ok(())
    }

    /// Replaces the file with one `insert` line per live lease.
    fn compact(&mut self, live: &HashMap<String, Held>) -> io::Result<()> {
        let mut leases: Vec<&Held> = live.values().collect();
        leases.sort_by(|a, b| a.issued.cmp(&b.issued).then_with(|| a.id.cmp(&b.id)));
        let mut body = Vec::with_capacity(256 * leases.len());
        for h in leases {
            body.extend_from_slice(&encode(&Entry::Insert {
                lease: Cow::Borrowed(h),
            })?);
        }
        // Closed first (Windows renames over an open file badly); should
        // anything below fail, the next change compacts again.
        self.file = None;
        crate::state_file::replace_durably(&self.path, &body, 0o600)?;
        self.entries = live.len();
        self.file = Some(std::fs::OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }
}

/// One journal line, newline included.
fn encode(entry: &Entry<'_>) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// Rebuilds the table from a ledger file in either format.
fn replay(bytes: &[u8], path: &Path) -> io::Result<HashMap<String, Held>> {
    if let Ok(old) = serde_json::from_slice::<LedgerFile>(bytes) {
        return Ok(old.leases.into_iter().map(|h| (h.id.clone(), h)).collect());
    }
    let mut held = HashMap::new();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.iter().rposition(|l| !l.trim_ascii().is_empty());
    for (n, line) in lines.iter().enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let entry: Entry<'static> = match serde_json::from_slice(line) {
            Ok(e) => e,
            // A crash during an append leaves a prefix of the line, or
            // zeros, never well-formed JSON of the wrong shape.
            Err(e) if Some(n) == last && !e.is_data() => {
                warn!(ledger = %path.display(), line = n + 1, "Dropped the torn last entry of the lease ledger, left by a crash during an append");
                break;
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "corrupt at line {} ({e}); it may list leases still to be revoked, so botward starts only once it is repaired, or its leases are revoked by hand and it is moved aside",
                        n + 1
                    ),
                ))
            }
        };
        match entry {
            Entry::Insert { lease } | Entry::Update { lease } => {
                let lease = lease.into_owned();
                held.insert(lease.id.clone(), lease);
            }
            Entry::Remove { id } => {
                held.remove(id.as_ref());
            }
            Entry::Defer {
                id,
                revoke_attempts,
                retry_at,
            } => {
                if let Some(h) = held.get_mut(id.as_ref()) {
                    h.revoke_attempts = revoke_attempts;
                    h.retry_at = retry_at;
                }
            }
        }
    }
    Ok(held)
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

    /// A ledger path in a directory of its own.
    fn fresh_ledger(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("botward-ledger-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("leases.json")
    }

    fn ops(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["op"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    fn ids(leases: &[Held]) -> Vec<&str> {
        leases.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn every_change_is_one_appended_line_and_a_restart_replays_them() {
        let path = fresh_ledger("replay");
        let (l, _) = Leases::open(Some(&path)).unwrap();
        for id in ["a", "b", "c"] {
            l.insert(held(id, 60)).unwrap();
        }
        let mut b = l.get("b").unwrap();
        b.expires += jiff::SignedDuration::from_secs(600);
        l.update(b.clone()).unwrap();
        let now = Timestamp::now();
        l.defer("c", now).unwrap();
        assert_eq!(l.remove("a").unwrap().map(|h| h.id), Some("a".into()));
        // Changes to leases the table does not hold write nothing.
        assert_eq!(l.remove("a").unwrap(), None);
        l.update(held("gone", 60)).unwrap();
        l.defer("gone", now).unwrap();
        assert_eq!(
            ops(&path),
            ["insert", "insert", "insert", "update", "defer", "remove"]
        );
        let c = l.get("c").unwrap();
        drop(l);

        let (l, orphans) = Leases::open(Some(&path)).unwrap();
        assert_eq!(ids(&orphans), ["b", "c"]);
        assert_eq!(orphans[0], b);
        assert_eq!(orphans[1], c);
        assert_eq!(c.revoke_attempts, 1);
        assert_eq!(c.retry_at, Some(now + jiff::SignedDuration::from_secs(2)));
        assert_eq!(l.len(), 2);
        // Opening compacts: one insert per live lease.
        assert_eq!(ops(&path), ["insert", "insert"]);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_replays() {
        let path = fresh_ledger("torn");
        let (l, _) = Leases::open(Some(&path)).unwrap();
        l.insert(held("a", 60)).unwrap();
        l.insert(held("b", 60)).unwrap();
        drop(l);
        let whole = encode(&Entry::Insert {
            lease: Cow::Owned(held("c", 60)),
        })
        .unwrap();
        let good = std::fs::read(&path).unwrap();
        // A crash during an append: a prefix of the line, or the zeros a
        // file system leaves where data did not reach the disk.
        let torn_tails = [
            whole[..whole.len() / 2].to_vec(),
            whole[..whole.len() - 2].to_vec(),
            vec![0u8; 40],
            [&whole[..10], &[0u8; 30][..], b"\n"].concat(),
        ];
        for tail in torn_tails {
            std::fs::write(&path, [&good[..], &tail[..]].concat()).unwrap();
            let (l, orphans) = Leases::open(Some(&path)).unwrap();
            assert_eq!(ids(&orphans), ["a", "b"]);
            // The torn bytes are gone, so later appends replay cleanly.
            l.insert(held("d", 60)).unwrap();
            drop(l);
            let (_, orphans) = Leases::open(Some(&path)).unwrap();
            assert_eq!(ids(&orphans), ["a", "b", "d"]);
            std::fs::write(&path, &good).unwrap();
        }
    }

    #[test]
    fn a_line_that_does_not_parse_before_the_end_is_an_error() {
        let path = fresh_ledger("corrupt");
        let (l, _) = Leases::open(Some(&path)).unwrap();
        l.insert(held("a", 60)).unwrap();
        l.insert(held("b", 60)).unwrap();
        drop(l);
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = text.replacen("\"op\":\"insert\"", "\"op\":\"ins", 1);
        std::fs::write(&path, &bad).unwrap();
        let e = Leases::open(Some(&path))
            .err()
            .expect("a corrupt ledger is refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("line 1"), "{e}");
        // The file is left as it was, for the operator.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);

        // A whole last line of the wrong shape is no torn append either.
        std::fs::write(
            &path,
            format!("{text}{{\"op\":\"replace\",\"id\":\"a\"}}\n"),
        )
        .unwrap();
        let e = Leases::open(Some(&path))
            .err()
            .expect("an unknown entry is refused");
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn the_journal_is_compacted_once_it_outgrows_the_live_set() {
        let path = fresh_ledger("compact");
        let (l, _) = Leases::open(Some(&path)).unwrap();
        l.insert(held("kept", 60)).unwrap();
        let mut most = 0;
        for i in 0..200 {
            let id = format!("short-lived-{i}");
            l.insert(held(&id, 60)).unwrap();
            l.remove(&id).unwrap();
            most = most.max(ops(&path).len());
        }
        // 401 changes, at most 2 live leases: the entry that takes the
        // journal past COMPACT_MIN compacts it before the call returns.
        assert!((COMPACT_MIN - 1..=COMPACT_MIN).contains(&most), "{most}");
        assert!(ops(&path).len() < COMPACT_MIN);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        assert!(!Path::new(&tmp).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(l);
        let (_, orphans) = Leases::open(Some(&path)).unwrap();
        assert_eq!(ids(&orphans), ["kept"]);
    }

    #[test]
    fn a_ledger_in_the_old_format_loads_and_is_rewritten_as_a_journal() {
        let path = fresh_ledger("upgrade");
        let (a, b) = (
            held("database/creds/r/a", 60),
            held("database/creds/r/b", 60),
        );
        // As 909baa2 wrote it: the whole table as one JSON document.
        let old = serde_json::to_vec(&serde_json::json!({ "leases": [&a, &b] })).unwrap();
        // Created private, as botward creates its state files.
        std::io::Write::write_all(
            &mut crate::platform::create_new(&path, 0o600).unwrap(),
            &old,
        )
        .unwrap();
        let (l, orphans) = Leases::open(Some(&path)).unwrap();
        assert_eq!(orphans, [a.clone(), b.clone()]);
        assert_eq!(ops(&path), ["insert", "insert"]);
        l.remove(&a.id).unwrap();
        drop(l);
        let (_, orphans) = Leases::open(Some(&path)).unwrap();
        assert_eq!(orphans, [b]);
    }

    #[test]
    fn leases_are_counted_and_listed_per_bot() {
        let (l, _) = Leases::open(None).unwrap();
        for (id, bot) in [("1", "x"), ("2", "y"), ("3", "x")] {
            l.insert(Held {
                bot: bot.into(),
                ..held(id, 60)
            })
            .unwrap();
        }
        assert_eq!(l.count_for("x"), 2);
        assert_eq!(l.count_for("z"), 0);
        let held = l.for_bot("x");
        let mut mine = ids(&held);
        mine.sort();
        assert_eq!(mine, ["1", "3"]);
    }

    #[test]
    fn deadline_is_the_earlier_of_expiry_and_max_use() {
        let mut h = held("x", 3600);
        assert_eq!(h.deadline(), h.expires);
        h.max_until = Some(h.issued + jiff::SignedDuration::from_secs(60));
        assert_eq!(h.deadline(), h.max_until.unwrap());
    }
}
