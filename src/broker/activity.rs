//! When each bot last made a request, kept across restarts, so that a bot
//! quiet for `[lifecycle] dormant_after` is dormant.
//!
//! Each bot is quiet since its last request, or since botward first knew
//! it, or since a change ticket last reactivated it, whichever is latest.
//! Requests update the table in memory; the lifecycle sweep writes it to
//! its state file (mode 0600) every few seconds when it changed, and at
//! shutdown, so a crash forgets at most those seconds, which only makes a
//! bot look quieter.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::policy::BotDef;

/// Reactivation tickets remembered per bot: each reactivates it once.
const MAX_TICKETS: usize = 16;

pub struct Activity {
    path: PathBuf,
    table: Mutex<Table>,
    /// Held from snapshot to rename, so that an older snapshot never lands
    /// after a newer one.
    saving: Mutex<()>,
    /// Whether the state file existed at start.
    loaded: bool,
}

/// Bots remembered at most, defined or not: a bot taken out of the config
/// and put back keeps its count and its spent tickets.
const MAX_BOTS: usize = 4096;

#[derive(Default)]
struct Table {
    bots: HashMap<String, Seen>,
    /// Changed since the file was last written.
    dirty: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Seen {
    last_seen: Option<Timestamp>,
    /// When botward first knew the bot, or a ticket last reactivated it.
    since: Timestamp,
    /// Change tickets that reactivated it, newest last.
    #[serde(default)]
    tickets: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct File {
    bots: BTreeMap<String, Seen>,
}

/// A bot brought back by a change ticket.
pub struct Reactivated {
    pub bot: String,
    pub ticket: String,
    /// The bot was dormant at that moment.
    pub was_dormant: bool,
}

impl Activity {
    /// Reads the state file; a missing one starts empty. An unreadable one
    /// is an error: starting empty would wake every dormant bot.
    pub fn open(path: &Path) -> io::Result<Activity> {
        let mut loaded = true;
        let bots = match std::fs::read(path) {
            Ok(bytes) => {
                let file: File = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unreadable ({e}); botward starts once it is repaired or moved aside, which makes every bot start its dormancy count anew"),
                    )
                })?;
                file.bots.into_iter().collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                loaded = false;
                HashMap::new()
            }
            Err(e) => return Err(e),
        };
        Ok(Activity {
            path: path.to_owned(),
            table: Mutex::new(Table { bots, dirty: false }),
            saving: Mutex::new(()),
            loaded,
        })
    }

    /// Whether the state file was there at start (`server.start` records
    /// it: a missing one starts every bot's count anew).
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Since when `bot` has been quiet; `None` for a bot not yet known.
    pub fn quiet_since(&self, bot: &str) -> Option<Timestamp> {
        crate::lock(&self.table)
            .bots
            .get(bot)
            .map(|s| s.last_seen.map_or(s.since, |l| l.max(s.since)))
    }

    /// Notes a request of `bot` at `now`.
    pub fn touch(&self, bot: &str, now: Timestamp) {
        let mut t = crate::lock(&self.table);
        match t.bots.get_mut(bot) {
            Some(seen) => seen.last_seen = Some(now),
            None => {
                let seen = Seen {
                    last_seen: Some(now),
                    since: now,
                    tickets: Vec::new(),
                };
                t.bots.insert(bot.to_owned(), seen);
            }
        }
        t.dirty = true;
    }

    /// Brings the table in line with the config at `now`: bots it does not
    /// know start their count, and a bot whose `reactivate` names the
    /// config's `change_ticket`, for the first time, starts its count anew.
    /// Bots no longer defined are kept (a bot put back is as quiet as it
    /// was), up to [`MAX_BOTS`], the quietest undefined ones going first.
    pub fn align<'a>(
        &self,
        bots: impl Iterator<Item = &'a BotDef>,
        change_ticket: Option<&str>,
        now: Timestamp,
    ) -> Vec<Reactivated> {
        let mut t = crate::lock(&self.table);
        let mut defined = std::collections::HashSet::new();
        let mut back = Vec::new();
        let mut dirty = false;
        for bot in bots {
            defined.insert(bot.name.as_str());
            let seen = t.bots.entry(bot.name.clone()).or_insert_with(|| {
                dirty = true;
                Seen {
                    last_seen: None,
                    since: now,
                    tickets: Vec::new(),
                }
            });
            let Some(ticket) = bot.lifecycle.reactivate.as_deref() else {
                continue;
            };
            if change_ticket != Some(ticket) || seen.tickets.iter().any(|t| t == ticket) {
                continue;
            }
            let quiet = seen.last_seen.map_or(seen.since, |l| l.max(seen.since));
            let was_dormant = bot.lifecycle.is_dormant(now, Some(quiet));
            seen.since = now;
            seen.tickets.push(ticket.to_owned());
            if seen.tickets.len() > MAX_TICKETS {
                seen.tickets.remove(0);
            }
            dirty = true;
            back.push(Reactivated {
                bot: bot.name.clone(),
                ticket: ticket.to_owned(),
                was_dormant,
            });
        }
        while t.bots.len() > MAX_BOTS {
            let quietest = t
                .bots
                .iter()
                .filter(|(name, _)| !defined.contains(name.as_str()))
                .min_by_key(|(_, s)| s.last_seen.map_or(s.since, |l| l.max(s.since)))
                .map(|(name, _)| name.clone());
            let Some(name) = quietest else { break };
            t.bots.remove(&name);
            dirty = true;
        }
        t.dirty |= dirty;
        back
    }

    /// Writes the table to its state file if it changed.
    pub fn save(&self) -> io::Result<()> {
        let _saving = crate::lock(&self.saving);
        let bytes = {
            let mut t = crate::lock(&self.table);
            if !t.dirty {
                return Ok(());
            }
            t.dirty = false;
            let file = File {
                bots: t.bots.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            serde_json::to_vec(&file).map_err(io::Error::other)?
        };
        crate::state_file::replace(&self.path, &bytes, 0o600).inspect_err(|_| {
            crate::lock(&self.table).dirty = true;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Enforcement, Lifecycle};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn bot(name: &str, reactivate: Option<&str>) -> BotDef {
        BotDef {
            name: name.into(),
            owner: "alice@corp.example".into(),
            team: "finance-ops".into(),
            purpose: String::new(),
            secrets: Default::default(),
            schedule: None,
            processes: Vec::new(),
            anomaly: Default::default(),
            max_leases: crate::policy::DEFAULT_MAX_LEASES,
            lifecycle: Lifecycle {
                dormant_after: Some(jiff::SignedDuration::from_hours(24)),
                dormant: Enforcement::Deny,
                reactivate: reactivate.map(str::to_owned),
                ..Lifecycle::default()
            },
        }
    }

    fn state_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("botward-activity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("activity.json")
    }

    #[test]
    fn quiet_since_survives_a_restart_and_tickets_reactivate_once() {
        let path = state_path("restart");
        let a = Activity::open(&path).unwrap();
        let b = bot("invoice-bot", Some("CHG-1"));
        assert!(a
            .align([&b].into_iter(), None, ts("2027-01-01T00:00:00Z"))
            .is_empty());
        assert_eq!(
            a.quiet_since("invoice-bot"),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        a.touch("invoice-bot", ts("2027-01-02T00:00:00Z"));
        a.save().unwrap();

        let a = Activity::open(&path).unwrap();
        assert_eq!(
            a.quiet_since("invoice-bot"),
            Some(ts("2027-01-02T00:00:00Z"))
        );
        // A ticket other than the config's does nothing.
        let later = ts("2027-01-05T00:00:00Z");
        assert!(a.align([&b].into_iter(), Some("CHG-2"), later).is_empty());
        let back = a.align([&b].into_iter(), Some("CHG-1"), later);
        assert_eq!(back.len(), 1);
        assert!(back[0].was_dormant && back[0].ticket == "CHG-1");
        assert_eq!(a.quiet_since("invoice-bot"), Some(later));
        // The same ticket does not reactivate twice, even after a restart.
        a.save().unwrap();
        let a = Activity::open(&path).unwrap();
        let much_later = ts("2027-02-01T00:00:00Z");
        assert!(a
            .align([&b].into_iter(), Some("CHG-1"), much_later)
            .is_empty());
        assert_eq!(a.quiet_since("invoice-bot"), Some(later));
        // A bot taken out of the config and put back is as quiet as it was,
        // and its spent ticket stays spent.
        let other = bot("other-bot", None);
        a.align([&other].into_iter(), None, much_later);
        assert_eq!(a.quiet_since("invoice-bot"), Some(later));
        assert_eq!(a.quiet_since("other-bot"), Some(much_later));
        assert!(a
            .align([&b].into_iter(), Some("CHG-1"), much_later)
            .is_empty());
        assert_eq!(a.quiet_since("invoice-bot"), Some(later));
        assert!(a.loaded());
        assert!(!Activity::open(&path.with_file_name("none.json"))
            .unwrap()
            .loaded());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn an_unreadable_state_file_refuses_to_open() {
        let path = state_path("corrupt");
        std::fs::write(&path, b"{\"bots\": [").unwrap();
        let e = Activity::open(&path).err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
