//! Aggregation of refusals that happen before a bot is authenticated: failed
//! handshakes, connections closed before a handshake, connection limits.
//!
//! Anyone who can reach the socket can cause these, so writing a full,
//! synced record for each would let an unauthenticated flood fill the disk,
//! and a full disk makes every bot fail closed. Per source (the peer's IP
//! address on TCP, its uid on the unix socket) and reason, the first refusal
//! of a window is recorded in full at once; the ones that follow within the
//! window are counted and recorded as one summary (`detail.aggregated`, with
//! the count and the first and last time) when the window ends, or at
//! shutdown. Every refusal is therefore counted, and a burst costs at most two
//! records per source and reason per window. Authenticated requests are
//! never aggregated.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::audit::Transport;

/// The window over which refusals of one source and reason are summed.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Distinct sources and reasons tracked at once; past this, new ones share
/// one key per reason, so an attacker who varies its source cannot grow the
/// table.
const MAX_KEYS: usize = 1024;

/// What one refusal is grouped by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub transport: Transport,
    /// `127.0.0.1` or `uid:1001`; `other` once the table is full.
    pub source: String,
    pub reason: &'static str,
}

/// Refusals counted since a key's first, recorded one when its window ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub key: Key,
    /// Refusals after the first one of the window, which had its own record.
    pub count: u64,
    /// RFC 3339 times of the first and last counted refusal.
    pub first: String,
    pub last: String,
}

struct Window {
    opened: Instant,
    count: u64,
    first: String,
    last: String,
}

/// The table of open windows.
pub struct Refusals {
    window: Duration,
    open: Mutex<HashMap<Key, Window>>,
}

// === impl Refusals ===

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(WINDOW)
    }
}

impl Refusals {
    pub fn new(window: Duration) -> Refusals {
        Refusals {
            window,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one refusal at `now` (`ts` is its RFC 3339 time). Returns
    /// `true` when it opens a window and must be recorded in full now, and
    /// `false` when it was counted into the window's summary.
    pub fn note(&self, mut key: Key, now: Instant, ts: &str) -> bool {
        let mut open = crate::lock(&self.open);
        if !open.contains_key(&key) && open.len() >= MAX_KEYS {
            key.source = "other".into();
        }
        match open.get_mut(&key) {
            Some(w) if now.saturating_duration_since(w.opened) < self.window => {
                if w.count == 0 {
                    w.first = ts.to_owned();
                }
                w.count += 1;
                w.last.clear();
                w.last.push_str(ts);
                false
            }
            // A window that ended but was not collected yet: its summary is
            // still owed, so this refusal joins it rather than starting a
            // new window behind its back.
            Some(w) if w.count > 0 => {
                w.count += 1;
                w.last.clear();
                w.last.push_str(ts);
                false
            }
            _ => {
                open.insert(
                    key,
                    Window {
                        opened: now,
                        count: 0,
                        first: String::new(),
                        last: String::new(),
                    },
                );
                true
            }
        }
    }

    /// Removes the windows that ended by `now`, and returns the summaries
    /// owed for those that counted anything.
    pub fn due(&self, now: Instant) -> Vec<Summary> {
        self.take(|w| now.saturating_duration_since(w.opened) >= self.window)
    }

    /// Removes every window, e.g. at shutdown.
    pub fn drain(&self) -> Vec<Summary> {
        self.take(|_| true)
    }

    fn take(&self, ended: impl Fn(&Window) -> bool) -> Vec<Summary> {
        let mut open = crate::lock(&self.open);
        let keys: Vec<Key> = open
            .iter()
            .filter(|(_, w)| ended(w))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(w) = open.remove(&k) {
                if w.count > 0 {
                    out.push(Summary {
                        key: k,
                        count: w.count,
                        first: w.first,
                        last: w.last,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.first.cmp(&b.first));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source: &str, reason: &'static str) -> Key {
        Key {
            transport: Transport::Tcp,
            source: source.into(),
            reason,
        }
    }

    #[test]
    fn a_burst_costs_one_full_record_and_one_summary_per_window() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let k = key("127.0.0.1", "connection_closed");
        assert!(r.note(k.clone(), t0, "t0"));
        for i in 1..=999u64 {
            assert!(!r.note(k.clone(), t0 + Duration::from_millis(i), "tn"));
        }
        // Nothing is due before the window ends.
        assert!(r.due(t0 + Duration::from_secs(9)).is_empty());
        let due = r.due(t0 + Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 999);
        assert_eq!(due[0].key, k);
        // The next refusal opens a new window and is recorded in full.
        assert!(r.note(k, t0 + Duration::from_secs(11), "t11"));
    }

    #[test]
    fn sources_and_reasons_are_counted_apart() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(r.note(key("127.0.0.1", "a"), t0, "x"));
        assert!(r.note(key("127.0.0.1", "b"), t0, "x"));
        assert!(r.note(key("127.0.0.2", "a"), t0, "x"));
        assert!(!r.note(key("127.0.0.2", "a"), t0, "y"));
        let all = r.drain();
        assert_eq!(all.len(), 1, "only the window that counted owes a summary");
        assert_eq!(all[0].key.source, "127.0.0.2");
        assert_eq!((all[0].first.as_str(), all[0].last.as_str()), ("y", "y"));
    }

    #[test]
    fn a_late_collection_loses_no_count() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let k = key("127.0.0.1", "tls_timeout");
        assert!(r.note(k.clone(), t0, "a"));
        assert!(!r.note(k.clone(), t0 + Duration::from_secs(1), "b"));
        // The window ended, but nobody collected it yet.
        assert!(!r.note(k.clone(), t0 + Duration::from_secs(30), "c"));
        let due = r.due(t0 + Duration::from_secs(30));
        assert_eq!(due[0].count, 2);
        assert_eq!(due[0].last, "c");
    }

    #[test]
    fn varying_the_source_cannot_grow_the_table() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 500) {
            r.note(key(&format!("src-{i}"), "x"), t0, "t");
        }
        assert!(crate::lock(&r.open).len() <= MAX_KEYS + 1);
        let other = r.drain().into_iter().find(|s| s.key.source == "other");
        assert_eq!(other.map(|s| s.count), Some(499));
    }
}
