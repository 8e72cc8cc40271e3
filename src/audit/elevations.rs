//! Just-in-time elevations as the log records them, for the auditor's
//! tools: what one bot's `elevation.*` records add up to.
//!
//! A bot asks for a time-boxed window on a privileged secret
//! (`elevation.request`); approvers decide (`elevation.decision`, or
//! `elevation.rejected` for a decision that failed a check); the window
//! opens once enough distinct approvers agreed (`elevation.open`) and its
//! `elevation.close` lists the reads made inside it. A request nobody
//! decided ends in `elevation.expired`, one a reload or shutdown ended in
//! `elevation.cancelled`.

use serde::Serialize;
use serde_json::Value;

/// The elevation kinds that record what the server or an approver did, not
/// a request of the bot they name: they are counted, never scored or shown
/// as the bot's requests.
pub const EVENT_KINDS: [&str; 6] = [
    "elevation.decision",
    "elevation.rejected",
    "elevation.open",
    "elevation.close",
    "elevation.expired",
    "elevation.cancelled",
];

/// One bot's elevations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Elevations {
    /// Requests accepted for a decision (`elevation.request`, allowed).
    pub requested: u64,
    /// Windows that opened (`elevation.open`).
    pub approved: u64,
    /// Requests an approver turned down (an `elevation.decision` that left
    /// the request `denied`).
    pub denied: u64,
    /// Windows that closed after at least one read.
    pub used: u64,
    /// Windows that closed without a read: privilege granted, not needed.
    pub unused: u64,
}

impl Elevations {
    /// The five counts as HTML table cells, in the order of the columns
    /// of the reports' Elevations tables.
    pub fn cells(&self) -> String {
        [
            self.requested,
            self.approved,
            self.denied,
            self.used,
            self.unused,
        ]
        .iter()
        .map(|n| format!("<td class=\"num\">{n}</td>"))
        .collect()
    }

    /// Counts one record of the bot; records of other kinds count nothing.
    pub fn count(&mut self, kind: &str, decision: Option<&str>, detail: Option<&Value>) {
        let allowed = decision == Some("allow");
        let elevation = detail.and_then(|d| d.get("elevation"));
        match kind {
            "elevation.request" if allowed => self.requested += 1,
            "elevation.open" if allowed => self.approved += 1,
            "elevation.decision" if allowed && field(elevation, "status") == Some("denied") => {
                self.denied += 1;
            }
            "elevation.close" => {
                let read = elevation
                    .and_then(|e| e.get("reads"))
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty());
                if read {
                    self.used += 1;
                } else {
                    self.unused += 1;
                }
            }
            _ => {}
        }
    }

    /// Whether no elevation was recorded.
    pub fn is_empty(&self) -> bool {
        *self == Elevations::default()
    }
}

/// Whether a record of `kind` is one of [`EVENT_KINDS`].
pub fn is_event(kind: &str) -> bool {
    EVENT_KINDS.contains(&kind)
}

/// Whether a record shows its secret to be privileged: the log holds a
/// window for it, a read inside a window (`elevation` set on the record),
/// or a read refused for want of one. A refused `elevation.request` shows
/// nothing: a bot may ask for any secret.
pub fn shows_privileged(
    kind: &str,
    decision: Option<&str>,
    reason: Option<&str>,
    in_window: bool,
) -> bool {
    let refused = matches!(decision, Some("deny" | "error"));
    (kind.starts_with("elevation.") && !refused)
        || in_window
        || reason == Some("elevation_required")
}

fn field<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(key)).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn close(reads: Value) -> Value {
        json!({"elevation": {"id": "ab".repeat(16), "approvers": ["a@corp.example", "b@corp.example"],
            "closed": "expired", "reads": reads, "leases_revoked": 0}})
    }

    #[test]
    fn each_stage_of_a_window_counts_once() {
        let mut e = Elevations::default();
        let decided = |status: &str| json!({"elevation": {"decision": "deny", "status": status}});
        e.count("elevation.request", Some("allow"), None);
        e.count("elevation.request", Some("deny"), None);
        e.count("elevation.request", Some("error"), None);
        e.count(
            "elevation.decision",
            Some("allow"),
            Some(&decided("denied")),
        );
        e.count(
            "elevation.decision",
            Some("allow"),
            Some(&decided("pending")),
        );
        e.count("elevation.rejected", Some("deny"), Some(&decided("denied")));
        e.count("elevation.open", Some("allow"), None);
        e.count("elevation.open", Some("allow"), None);
        e.count(
            "elevation.close",
            Some("allow"),
            Some(&close(
                json!([{"ts": "2026-12-01T10:00:00Z", "request_id": "r1"}]),
            )),
        );
        e.count("elevation.close", Some("allow"), Some(&close(json!([]))));
        e.count(
            "elevation.close",
            Some("allow"),
            Some(&json!({"elevation": {}})),
        );
        e.count("elevation.expired", Some("allow"), None);
        e.count("secret.read", Some("allow"), None);
        assert_eq!(
            e,
            Elevations {
                requested: 1,
                approved: 2,
                denied: 1,
                used: 1,
                unused: 2,
            }
        );
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            json!({"requested": 1, "approved": 2, "denied": 1, "used": 1, "unused": 2})
        );
        assert!(!e.is_empty() && Elevations::default().is_empty());
    }

    #[test]
    fn a_refused_request_does_not_make_a_secret_privileged() {
        assert!(!shows_privileged(
            "elevation.request",
            Some("deny"),
            Some("not_privileged"),
            false
        ));
        assert!(shows_privileged(
            "elevation.request",
            Some("allow"),
            None,
            false
        ));
        assert!(shows_privileged("elevation.close", None, None, false));
        assert!(shows_privileged("secret.read", Some("allow"), None, true));
        assert!(shows_privileged(
            "secret.read",
            Some("deny"),
            Some("elevation_required"),
            false
        ));
        assert!(!shows_privileged("secret.read", Some("allow"), None, false));
    }

    #[test]
    fn only_the_servers_elevation_events_are_not_requests() {
        assert!(is_event("elevation.close") && is_event("elevation.decision"));
        assert!(!is_event("elevation.request") && !is_event("secret.read"));
    }
}
