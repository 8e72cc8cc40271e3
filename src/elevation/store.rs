//! The elevation requests one botward holds, their approvals and windows,
//! and the reads made inside each window. Everything here is in memory: a
//! restart closes every window (its leases are revoked at shutdown) and
//! forgets pending requests, so a restart never widens access.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::statement::{Statement, Verdict};
use crate::lock;
use crate::policy::Window;

/// Pending requests one bot may have at once.
pub const MAX_PENDING_PER_BOT: usize = 8;
/// Requests held at once, in any state.
const MAX_ENTRIES: usize = 4096;
/// How long a decided or closed request can still be looked up.
const KEEP_ENDED: Duration = Duration::from_secs(3600);
/// Reads listed per window; later reads are counted, not listed.
const MAX_READS_LISTED: usize = 1000;
/// Mailbox entries remembered per request (see [`Elevations::first_sight`]).
pub const MAX_SEEN: usize = 64;

/// What a bot asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub bot: String,
    pub owner: String,
    pub team: String,
    pub secret: String,
    pub host: String,
    pub ticket: String,
    pub reason: String,
    pub duration: Duration,
    pub created: Timestamp,
    /// When it expires if nobody decides.
    pub expires: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
        }
    }
}

/// One read inside a window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Read {
    pub ts: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_hmac: Option<String>,
}

/// A request as the bot and the approvers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub request: Request,
    pub status: Status,
    pub window: Option<Window>,
    /// Approvers counted so far.
    pub approvers: Vec<String>,
}

/// A window that ended: what it allowed, every read made inside it and the
/// leases to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub request: Request,
    pub window: Window,
    pub reads: Vec<Read>,
    /// Reads beyond those listed.
    pub reads_unlisted: usize,
    pub leases: Vec<String>,
    /// `expired`, `revoked`, `config_changed` or `shutdown`.
    pub why: &'static str,
}

/// What a verified decision did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It counted; the request is now in `status`, and `opened` is the
    /// window when this decision opened it.
    Counted {
        status: Status,
        opened: Option<Window>,
    },
    /// This approver was already counted.
    Duplicate,
    /// The request is past the point where this decision applies.
    NotPending(Status),
    /// A revocation ended an open window.
    Closed(Box<Closed>),
    /// This approval's window does not overlap those already counted (or
    /// what they share has ended): it is not counted.
    NoCommonWindow,
    /// No such request.
    Unknown,
}

struct Entry {
    request: Request,
    status: Status,
    approvals: BTreeMap<String, (Timestamp, Timestamp)>,
    window: Option<Window>,
    reads: Vec<Read>,
    reads_unlisted: usize,
    leases: Vec<String>,
    /// The digest of the document last handled under each mailbox entry,
    /// so the mailbox is not re-read into records on every poll.
    seen: HashMap<String, [u8; 32]>,
    ended: Option<Timestamp>,
}

/// Why a request could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The bot has [`MAX_PENDING_PER_BOT`] pending already.
    Bot,
    /// botward holds as many requests as it may.
    Store,
}

/// The requests and windows of one botward. Every change bumps a counter
/// that long-polling status requests wait on.
pub struct Elevations {
    entries: Mutex<HashMap<String, Entry>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Elevations {
    fn default() -> Self {
        Elevations {
            entries: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

// === impl Elevations ===

impl Elevations {
    /// Takes a new pending request.
    pub fn create(&self, request: Request) -> Result<(), Full> {
        let mut entries = lock(&self.entries);
        let pending = entries
            .values()
            .filter(|e| e.status == Status::Pending && e.request.bot == request.bot)
            .count();
        if pending >= MAX_PENDING_PER_BOT {
            return Err(Full::Bot);
        }
        if entries.len() >= MAX_ENTRIES {
            return Err(Full::Store);
        }
        entries.insert(
            request.id.clone(),
            Entry {
                request,
                status: Status::Pending,
                approvals: BTreeMap::new(),
                window: None,
                reads: Vec::new(),
                reads_unlisted: 0,
                leases: Vec::new(),
                seen: HashMap::new(),
                ended: None,
            },
        );
        drop(entries);
        self.bump();
        Ok(())
    }

    pub fn view(&self, id: &str) -> Option<View> {
        lock(&self.entries).get(id).map(Entry::view)
    }

    /// The approved window that lets `bot` read `secret` at `now`, if any.
    pub fn window_for(&self, bot: &str, secret: &str, now: Timestamp) -> Option<Window> {
        lock(&self.entries)
            .values()
            .filter(|e| e.status == Status::Approved)
            .filter_map(|e| e.window.as_ref())
            .find(|w| w.admits(bot, secret, now))
            .cloned()
    }

    /// IDs of requests whose decisions may still change something:
    /// pending ones and approved ones (which a revocation can close).
    pub fn live(&self) -> Vec<String> {
        lock(&self.entries)
            .values()
            .filter(|e| matches!(e.status, Status::Pending | Status::Approved))
            .map(|e| e.request.id.clone())
            .collect()
    }

    /// Whether the mailbox entry `key` of request `id` holds a document
    /// other than the one last handled there (`digest` is the document's);
    /// marks it handled. At most [`MAX_SEEN`] entries are remembered per
    /// request: past that, new entries are not taken, while those already
    /// known still are when their content changes.
    pub fn first_sight(&self, id: &str, key: &str, digest: [u8; 32]) -> bool {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(id) else {
            return false;
        };
        let full = e.seen.len() >= MAX_SEEN;
        match e.seen.get_mut(key) {
            Some(last) if *last == digest => false,
            Some(last) => {
                *last = digest;
                true
            }
            None if full => false,
            None => {
                e.seen.insert(key.to_owned(), digest);
                true
            }
        }
    }

    /// Applies a verified statement for request `id`, which needs
    /// `needed` distinct approvals, at `now`.
    pub fn apply(&self, id: &str, s: &Statement, needed: usize, now: Timestamp) -> Applied {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(id) else {
            return Applied::Unknown;
        };
        let applied = match s.decision {
            Verdict::Approve => e.approve(s, needed, now),
            Verdict::Deny if e.status == Status::Pending => {
                e.end(Status::Denied, now);
                Applied::Counted {
                    status: Status::Denied,
                    opened: None,
                }
            }
            Verdict::Revoke if e.status == Status::Pending => {
                e.end(Status::Revoked, now);
                Applied::Counted {
                    status: Status::Revoked,
                    opened: None,
                }
            }
            Verdict::Revoke if e.status == Status::Approved => match e.close("revoked", now) {
                Some(c) => Applied::Closed(Box::new(c)),
                None => Applied::NotPending(e.status),
            },
            _ => Applied::NotPending(e.status),
        };
        drop(entries);
        self.bump();
        applied
    }

    /// Records a read made inside request `id`'s window, and the lease it
    /// issued. False when the window is no longer open: the caller must
    /// then not hand the secret out.
    pub fn note_read(&self, id: &str, read: Read, lease: Option<String>) -> bool {
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(id).filter(|e| e.status == Status::Approved) else {
            return false;
        };
        if e.reads.len() < MAX_READS_LISTED {
            e.reads.push(read);
        } else {
            e.reads_unlisted += 1;
        }
        e.leases.extend(lease);
        true
    }

    /// The leases issued or renewed inside windows that are open.
    pub fn window_leases(&self) -> HashSet<String> {
        lock(&self.entries)
            .values()
            .filter(|e| e.status == Status::Approved)
            .flat_map(|e| e.leases.iter().cloned())
            .collect()
    }

    /// Forgets a read whose answer never left (its audit record could not
    /// be written).
    pub fn unnote_read(&self, id: &str, request_id: &str) {
        if let Some(e) = lock(&self.entries).get_mut(id) {
            e.reads.retain(|r| r.request_id != request_id);
        }
    }

    /// Windows whose time is up, and pending requests nobody decided in
    /// time, at `now`. Requests that ended long ago are forgotten.
    pub fn due(&self, now: Timestamp) -> (Vec<Closed>, Vec<Request>) {
        let mut entries = lock(&self.entries);
        let mut closed = Vec::new();
        let mut expired = Vec::new();
        for e in entries.values_mut() {
            match e.status {
                Status::Approved if e.window.as_ref().is_some_and(|w| w.not_after <= now) => {
                    closed.extend(e.close("expired", now));
                }
                Status::Pending if e.request.expires <= now => {
                    e.end(Status::Expired, now);
                    expired.push(e.request.clone());
                }
                _ => {}
            }
        }
        let keep = jiff::SignedDuration::try_from(KEEP_ENDED).unwrap_or_default();
        entries.retain(|_, e| e.ended.is_none_or(|t| t + keep > now));
        let changed = !closed.is_empty() || !expired.is_empty();
        drop(entries);
        if changed {
            self.bump();
        }
        (closed, expired)
    }

    /// Closes every open window for which `ends` is true, as `why`.
    /// Pending requests it is true for are revoked, and returned second.
    pub fn close_where(
        &self,
        why: &'static str,
        now: Timestamp,
        ends: impl Fn(&Request, Option<&Window>) -> bool,
    ) -> (Vec<Closed>, Vec<Request>) {
        let mut entries = lock(&self.entries);
        let mut closed = Vec::new();
        let mut cancelled = Vec::new();
        for e in entries.values_mut() {
            if !ends(&e.request, e.window.as_ref()) {
                continue;
            }
            match e.status {
                Status::Approved => closed.extend(e.close(why, now)),
                Status::Pending => {
                    e.end(Status::Revoked, now);
                    cancelled.push(e.request.clone());
                }
                _ => {}
            }
        }
        drop(entries);
        // Long polls wake only for a change: the lifecycle sweep asks every
        // few seconds while a bot is off.
        if !closed.is_empty() || !cancelled.is_empty() {
            self.bump();
        }
        (closed, cancelled)
    }

    /// Drops from pending requests the approvals `keep` no longer accepts.
    pub fn forget_approvers(&self, keep: impl Fn(&Request, &str) -> bool) {
        for e in lock(&self.entries).values_mut() {
            if e.status == Status::Pending {
                let request = &e.request;
                e.approvals.retain(|a, _| keep(request, a));
            }
        }
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

// === impl Entry ===

impl Entry {
    fn view(&self) -> View {
        View {
            request: self.request.clone(),
            status: self.status,
            window: self.window.clone(),
            approvers: self.approvals.keys().cloned().collect(),
        }
    }

    fn approve(&mut self, s: &Statement, needed: usize, now: Timestamp) -> Applied {
        if self.status != Status::Pending {
            return Applied::NotPending(self.status);
        }
        let (Some(start), Some(end)) = (s.not_before, s.not_after) else {
            return Applied::NotPending(self.status);
        };
        if self.approvals.contains_key(&s.approver) {
            return Applied::Duplicate;
        }
        // The window every counted approver agreed to, this one included:
        // an approval that leaves no time in common does not count.
        let from = self.approvals.values().map(|w| w.0).fold(start, Ord::max);
        let until = self.approvals.values().map(|w| w.1).fold(end, Ord::min);
        if until <= from || until <= now {
            return Applied::NoCommonWindow;
        }
        self.approvals.insert(s.approver.clone(), (start, end));
        if self.approvals.len() < needed.max(1) {
            return Applied::Counted {
                status: Status::Pending,
                opened: None,
            };
        }
        let window = Window {
            id: self.request.id.clone(),
            bot: self.request.bot.clone(),
            secret: self.request.secret.clone(),
            not_before: from,
            not_after: until,
            approvers: self.approvals.keys().cloned().collect(),
        };
        self.status = Status::Approved;
        self.window = Some(window.clone());
        Applied::Counted {
            status: Status::Approved,
            opened: Some(window),
        }
    }

    fn end(&mut self, status: Status, now: Timestamp) {
        self.status = status;
        self.ended = Some(now);
    }

    fn close(&mut self, why: &'static str, now: Timestamp) -> Option<Closed> {
        let window = self.window.clone()?;
        let status = if why == "expired" {
            Status::Expired
        } else {
            Status::Revoked
        };
        self.end(status, now);
        Some(Closed {
            request: self.request.clone(),
            window,
            reads: std::mem::take(&mut self.reads),
            reads_unlisted: std::mem::take(&mut self.reads_unlisted),
            leases: std::mem::take(&mut self.leases),
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elevation::statement::STATEMENT_TYPE;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn request(id: &str) -> Request {
        Request {
            id: id.into(),
            bot: "invoice-bot".into(),
            owner: "alice@corp.example".into(),
            team: "finance-ops".into(),
            secret: "sap-admin".into(),
            host: "rpa-01".into(),
            ticket: "CHG-1".into(),
            reason: "month end".into(),
            duration: Duration::from_secs(900),
            created: ts("2026-12-01T10:00:00Z"),
            expires: ts("2026-12-01T11:00:00Z"),
        }
    }

    fn decision(id: &str, by: &str, verdict: Verdict, from: &str, until: &str) -> Statement {
        Statement {
            kind: STATEMENT_TYPE.into(),
            decision: verdict,
            request: id.into(),
            bot: "invoice-bot".into(),
            secret: "sap-admin".into(),
            host: "rpa-01".into(),
            ticket: "CHG-1".into(),
            not_before: (verdict == Verdict::Approve).then(|| ts(from)),
            not_after: (verdict == Verdict::Approve).then(|| ts(until)),
            approver: by.into(),
            signed_at: ts(from),
        }
    }

    const T0: &str = "2026-12-01T10:01:00Z";

    #[test]
    fn two_distinct_approvers_open_the_window_they_both_allow() {
        let s = Elevations::default();
        s.create(request("a")).unwrap();
        let first = decision(
            "a",
            "lead",
            Verdict::Approve,
            "2026-12-01T10:01:00Z",
            "2026-12-01T10:11:00Z",
        );
        let now = ts(T0);
        assert_eq!(
            s.apply("a", &first, 2, now),
            Applied::Counted {
                status: Status::Pending,
                opened: None
            }
        );
        // The same approver again counts once.
        let again = decision(
            "a",
            "lead",
            Verdict::Approve,
            "2026-12-01T10:02:00Z",
            "2026-12-01T10:12:00Z",
        );
        assert_eq!(s.apply("a", &again, 2, now), Applied::Duplicate);
        assert!(s.window_for("invoice-bot", "sap-admin", now).is_none());
        let second = decision(
            "a",
            "cfo",
            Verdict::Approve,
            "2026-12-01T10:03:00Z",
            "2026-12-01T10:15:00Z",
        );
        let Applied::Counted {
            status: Status::Approved,
            opened: Some(w),
        } = s.apply("a", &second, 2, now)
        else {
            panic!("not opened")
        };
        assert_eq!(w.not_before, ts("2026-12-01T10:03:00Z"));
        assert_eq!(w.not_after, ts("2026-12-01T10:11:00Z"));
        assert_eq!(w.approvers, vec!["cfo".to_owned(), "lead".to_owned()]);
        assert!(s
            .window_for("invoice-bot", "sap-admin", ts("2026-12-01T10:05:00Z"))
            .is_some());
        assert!(s
            .window_for("report-bot", "sap-admin", ts("2026-12-01T10:05:00Z"))
            .is_none());
        assert!(s.note_read(
            "a",
            Read {
                ts: "t".into(),
                request_id: "r1".into(),
                lease_hmac: None
            },
            Some("lease/1".into())
        ));
        // Time up: closed with its reads and leases, reads refused after.
        let (closed, expired) = s.due(ts("2026-12-01T10:11:00Z"));
        assert!(expired.is_empty());
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].why, "expired");
        assert_eq!(closed[0].reads.len(), 1);
        assert_eq!(closed[0].leases, vec!["lease/1".to_owned()]);
        assert_eq!(s.view("a").unwrap().status, Status::Expired);
        assert!(!s.note_read(
            "a",
            Read {
                ts: "t".into(),
                request_id: "r2".into(),
                lease_hmac: None
            },
            None
        ));
        assert!(s
            .window_for("invoice-bot", "sap-admin", ts("2026-12-01T10:10:00Z"))
            .is_none());
    }

    #[test]
    fn deny_revoke_and_expiry_end_requests() {
        let s = Elevations::default();
        for id in ["d", "r", "x", "o"] {
            s.create(request(id)).unwrap();
        }
        let now = ts(T0);
        let deny = decision("d", "lead", Verdict::Deny, T0, T0);
        assert!(matches!(
            s.apply("d", &deny, 1, now),
            Applied::Counted {
                status: Status::Denied,
                ..
            }
        ));
        let approve = decision("d", "lead", Verdict::Approve, T0, "2026-12-01T10:05:00Z");
        assert_eq!(
            s.apply("d", &approve, 1, now),
            Applied::NotPending(Status::Denied)
        );
        let revoke = decision("r", "lead", Verdict::Revoke, T0, T0);
        assert!(matches!(
            s.apply("r", &revoke, 1, now),
            Applied::Counted {
                status: Status::Revoked,
                ..
            }
        ));
        let open = decision("o", "lead", Verdict::Approve, T0, "2026-12-01T10:30:00Z");
        assert!(matches!(
            s.apply("o", &open, 1, now),
            Applied::Counted {
                status: Status::Approved,
                ..
            }
        ));
        let revoke_open = decision("o", "lead", Verdict::Revoke, T0, T0);
        let Applied::Closed(c) = s.apply("o", &revoke_open, 1, now) else {
            panic!("open window not closed")
        };
        assert_eq!(c.why, "revoked");
        assert!(s
            .window_for("invoice-bot", "sap-admin", ts("2026-12-01T10:02:00Z"))
            .is_none());
        let (_, expired) = s.due(ts("2026-12-01T11:00:00Z"));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, "x");
        assert_eq!(s.view("x").unwrap().status, Status::Expired);
        // Ended requests are forgotten an hour later.
        let _ = s.due(ts("2026-12-01T12:00:01Z"));
        assert!(s.view("x").is_none());
        assert_eq!(s.apply("x", &deny, 1, now), Applied::Unknown);
    }

    #[test]
    fn a_bot_has_only_so_many_requests_pending() {
        let s = Elevations::default();
        for i in 0..MAX_PENDING_PER_BOT {
            s.create(request(&format!("p{i}"))).unwrap();
        }
        assert_eq!(s.create(request("one-more")), Err(Full::Bot));
        let other = Request {
            bot: "report-bot".into(),
            ..request("other")
        };
        s.create(other).unwrap();
    }

    #[test]
    fn a_config_change_closes_the_windows_that_depended_on_it() {
        let s = Elevations::default();
        s.create(request("a")).unwrap();
        s.create(request("b")).unwrap();
        let now = ts(T0);
        let open = decision("a", "lead", Verdict::Approve, T0, "2026-12-01T10:30:00Z");
        s.apply("a", &open, 1, now);
        let (closed, cancelled) = s.close_where("config_changed", now, |_, w| {
            w.is_some_and(|w| w.approvers.iter().any(|a| a == "lead"))
        });
        assert_eq!(closed.len(), 1);
        assert!(cancelled.is_empty());
        assert_eq!(s.view("a").unwrap().status, Status::Revoked);
        assert_eq!(s.view("b").unwrap().status, Status::Pending);
        // Pending requests it ends are handed back, to be recorded.
        let (closed, cancelled) = s.close_where("shutdown", now, |_, _| true);
        assert!(closed.is_empty());
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].id, "b");
        assert_eq!(s.view("b").unwrap().status, Status::Revoked);
    }

    #[test]
    fn approvals_without_time_in_common_do_not_open_a_window() {
        let s = Elevations::default();
        s.create(request("a")).unwrap();
        let now = ts(T0);
        let early = decision("a", "lead", Verdict::Approve, T0, "2026-12-01T10:05:00Z");
        assert!(matches!(
            s.apply("a", &early, 2, now),
            Applied::Counted {
                status: Status::Pending,
                ..
            }
        ));
        let later = decision(
            "a",
            "cfo",
            Verdict::Approve,
            "2026-12-01T10:05:00Z",
            "2026-12-01T10:20:00Z",
        );
        assert_eq!(s.apply("a", &later, 2, now), Applied::NoCommonWindow);
        assert_eq!(s.view("a").unwrap().approvers, vec!["lead".to_owned()]);
        // What two approvals share must still be ahead.
        let overlapping = decision(
            "a",
            "cfo",
            Verdict::Approve,
            "2026-12-01T10:02:00Z",
            "2026-12-01T10:20:00Z",
        );
        assert_eq!(
            s.apply("a", &overlapping, 2, ts("2026-12-01T10:05:00Z")),
            Applied::NoCommonWindow
        );
        let Applied::Counted {
            opened: Some(w), ..
        } = s.apply("a", &overlapping, 2, now)
        else {
            panic!("not opened")
        };
        assert_eq!(w.not_before, ts("2026-12-01T10:02:00Z"));
        assert_eq!(w.not_after, ts("2026-12-01T10:05:00Z"));
    }

    #[test]
    fn the_mailbox_is_remembered_by_entry_and_content() {
        let s = Elevations::default();
        s.create(request("a")).unwrap();
        assert!(s.first_sight("a", "lead", [1; 32]));
        assert!(!s.first_sight("a", "lead", [1; 32]));
        // A new document under the same entry is taken.
        assert!(s.first_sight("a", "lead", [2; 32]));
        for i in 1..MAX_SEEN {
            assert!(s.first_sight("a", &format!("junk-{i}"), [0; 32]));
        }
        assert!(!s.first_sight("a", "one-more", [0; 32]));
        // Known entries still count when they change.
        assert!(s.first_sight("a", "lead", [3; 32]));
        assert!(!s.first_sight("unknown", "lead", [1; 32]));
    }
}
