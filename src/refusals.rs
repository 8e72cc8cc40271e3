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

/// Full records per window, over all sources: past this, a new source's
/// first refusal is only counted, into the `other` summary of its reason.
/// An attacker with many addresses then costs a bounded number of records.
const MAX_FULL_PER_WINDOW: u32 = 64;

pub use crate::audit::source_of_ip;

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
    /// The bot names the counted refusals' certificates claimed, at most
    /// [`MAX_CLAIMS`] of them.
    pub claims: Vec<String>,
}

/// Distinct claimed names kept per window.
pub const MAX_CLAIMS: usize = 8;

struct Window {
    opened: Instant,
    count: u64,
    first: String,
    last: String,
    claims: Vec<String>,
}

impl Window {
    fn counted(&mut self, ts: &str, claim: Option<&str>) {
        if self.count == 0 {
            self.first = ts.to_owned();
        }
        self.count += 1;
        self.last.clear();
        self.last.push_str(ts);
        if let Some(c) = claim {
            if self.claims.len() < MAX_CLAIMS && !self.claims.iter().any(|k| k == c) {
                self.claims.push(c.to_owned());
            }
        }
    }
}

/// The table of open windows.
pub struct Refusals {
    window: Duration,
    open: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    windows: HashMap<Key, Window>,
    /// Full records written in the current budget window, and when it began.
    full: u32,
    budget_since: Option<Instant>,
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
            open: Mutex::new(Table::default()),
        }
    }

    /// Notes one refusal at `now` (`ts` is its RFC 3339 time). Returns
    /// `true` when it opens a window and must be recorded in full now, and
    /// `false` when it was counted into the window's summary.
    pub fn note(&self, mut key: Key, now: Instant, ts: &str, claim: Option<&str>) -> bool {
        let mut table = crate::lock(&self.open);
        if table
            .budget_since
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window)
        {
            table.budget_since = Some(now);
            table.full = 0;
        }
        let over_budget = table.full >= MAX_FULL_PER_WINDOW;
        let known = table.windows.contains_key(&key);
        if !known && (table.windows.len() >= MAX_KEYS || over_budget) {
            key.source = "other".into();
        }
        let table = &mut *table;
        let (window, full) = (self.window, &mut table.full);
        let open = &mut table.windows;
        if over_budget && !open.contains_key(&key) {
            // Counted only: the summary of `other` carries it.
            let mut w = Window {
                opened: now,
                count: 0,
                first: String::new(),
                last: String::new(),
                claims: Vec::new(),
            };
            w.counted(ts, claim);
            open.insert(key, w);
            return false;
        }
        let window_len = window;
        match open.get_mut(&key) {
            Some(w) if now.saturating_duration_since(w.opened) < window_len => {
                w.counted(ts, claim);
                false
            }
            // A window that ended but was not collected yet: its summary is
            // still owed, so this refusal joins it rather than starting a
            // new window behind its back.
            Some(w) if w.count > 0 => {
                w.counted(ts, claim);
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
                        claims: Vec::new(),
                    },
                );
                *full += 1;
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
        let mut table = crate::lock(&self.open);
        let open = &mut table.windows;
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
                        claims: w.claims,
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
        assert!(r.note(k.clone(), t0, "t0", None));
        for i in 1..=999u64 {
            assert!(!r.note(k.clone(), t0 + Duration::from_millis(i), "tn", None));
        }
        // Nothing is due before the window ends.
        assert!(r.due(t0 + Duration::from_secs(9)).is_empty());
        let due = r.due(t0 + Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 999);
        assert_eq!(due[0].key, k);
        // The next refusal opens a new window and is recorded in full.
        assert!(r.note(k, t0 + Duration::from_secs(11), "t11", None));
    }

    #[test]
    fn sources_and_reasons_are_counted_apart() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(r.note(key("127.0.0.1", "a"), t0, "x", None));
        assert!(r.note(key("127.0.0.1", "b"), t0, "x", None));
        assert!(r.note(key("127.0.0.2", "a"), t0, "x", None));
        assert!(!r.note(key("127.0.0.2", "a"), t0, "y", None));
        let all = r.drain();
        assert_eq!(all.len(), 1, "only the window that counted owes a summary");
        assert_eq!(all[0].key.source, "127.0.0.2");
        assert_eq!((all[0].first.as_str(), all[0].last.as_str()), ("y", "y"));
    }

    #[test]
    fn a_summary_keeps_the_names_its_refusals_claimed() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let k = key("203.0.113.7", "unknown_issuer");
        assert!(r.note(k.clone(), t0, "a", Some("invoice-bot")));
        for i in 0..20 {
            let claim = format!("bot-{}", i % 10);
            r.note(k.clone(), t0, "b", Some(&claim));
        }
        let s = r.drain().pop().unwrap();
        assert_eq!(s.count, 20);
        assert_eq!(s.claims.len(), MAX_CLAIMS, "bounded");
    }

    #[test]
    fn a_late_collection_loses_no_count() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let k = key("127.0.0.1", "tls_timeout");
        assert!(r.note(k.clone(), t0, "a", None));
        assert!(!r.note(k.clone(), t0 + Duration::from_secs(1), "b", None));
        // The window ended, but nobody collected it yet.
        assert!(!r.note(k.clone(), t0 + Duration::from_secs(30), "c", None));
        let due = r.due(t0 + Duration::from_secs(30));
        assert_eq!(due[0].count, 2);
        assert_eq!(due[0].last, "c");
    }

    #[test]
    fn varying_the_source_cannot_grow_the_table() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 500) {
            r.note(key(&format!("src-{i}"), "x"), t0, "t", None);
        }
        assert!(crate::lock(&r.open).windows.len() <= MAX_KEYS + 1);
        let other = r.drain().into_iter().find(|s| s.key.source == "other");
        // Past the budget of full records, every new source is counted.
        assert_eq!(
            other.map(|s| s.count),
            Some((MAX_KEYS + 500) as u64 - u64::from(MAX_FULL_PER_WINDOW))
        );
    }

    #[test]
    fn many_sources_cost_a_bounded_number_of_full_records() {
        let r = Refusals::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let full = (0..10_000)
            .filter(|i| {
                r.note(
                    key(&format!("10.0.{}.{}", i / 256, i % 256), "x"),
                    t0,
                    "t",
                    None,
                )
            })
            .count();
        assert_eq!(full, MAX_FULL_PER_WINDOW as usize);
        let counted: u64 = r.drain().iter().map(|s| s.count).sum();
        assert_eq!(full as u64 + counted, 10_000, "every refusal is counted");
        // A new window gives a new budget.
        assert!(r.note(
            key("10.9.9.9", "x"),
            t0 + Duration::from_secs(10),
            "t",
            None
        ));
    }

    #[test]
    fn loopback_is_one_source_and_ipv6_counts_by_its_64() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(source_of_ip(ip("127.0.0.1")), "loopback");
        assert_eq!(source_of_ip(ip("127.3.2.1")), "loopback");
        assert_eq!(source_of_ip(ip("::1")), "loopback");
        assert_eq!(source_of_ip(ip("::ffff:127.0.0.9")), "loopback");
        assert_eq!(source_of_ip(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(
            source_of_ip(ip("2001:db8:1:2:aaaa::1")),
            source_of_ip(ip("2001:db8:1:2:bbbb::2"))
        );
    }
}
