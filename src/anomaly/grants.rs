//! Grants over time, rebuilt from the log, and the two least-privilege
//! detectors judged on them: `unused_grant` and `privilege_creep`.
//!
//! `server.start` records the grants in force and `config.reload` the
//! grants added and removed; each is a version of the config as the log
//! shows it.
//!
//! A secret is *privileged* (readable only inside an approved elevation
//! window) when the analysis was told so ([`super::Analyzer::privileged`]),
//! when a `server.start` lists it under `privileged` or a reload marks an
//! added grant `"privileged": true`, or when the log shows it elevated
//! ([`crate::audit::elevations::shows_privileged`]). Whether a grant is
//! privileged is judged at the end of the log, so a window recorded after a
//! grant was added still tells.
//!
//! - `unused_grant`: a grant not read in 30, 60 or 90 days; a privileged
//!   grant the bot has not asked to elevate in 90 days (an `elevation.request`
//!   of any outcome), which stands for the read-based finding on that grant.
//! - `privilege_creep`: a grant added by a reload whose config has no
//!   `[meta] change_ticket`, scored higher when the secret is privileged; and
//!   a privileged grant that appears at a `server.start` after an earlier
//!   config version, when that start names no `change_ticket`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::{fmt_ts, Detector, Finding};

/// Grants over time, last use and last elevation per grant.
#[derive(Default)]
pub(super) struct Grants {
    current: BTreeMap<String, BTreeSet<String>>,
    /// When each (bot, secret) grant was first seen.
    since: HashMap<(String, String), Timestamp>,
    last_use: HashMap<(String, String), Timestamp>,
    /// When each bot last asked to elevate for each secret.
    last_elevation: HashMap<(String, String), Timestamp>,
    privileged: BTreeSet<String>,
    /// Whether a config version was seen, so a later start is a change.
    seen_config: bool,
    /// Grants added without a change ticket, judged at the end.
    unticketed: Vec<Unticketed>,
}

/// A grant added without a change ticket.
struct Unticketed {
    bot: String,
    secret: String,
    ts: Timestamp,
    evidence: Vec<String>,
    /// Added by a `config.reload` (else it appeared at a `server.start`).
    by_reload: bool,
}

/// The days a grant may go unread: the finding's threshold and score.
const IDLE_THRESHOLDS: [(i64, u8); 3] = [(90, 80), (60, 60), (30, 40)];
/// The days a privileged grant may go without an elevation request.
const ELEVATION_DAYS: i64 = 90;

// === impl Grants ===

impl Grants {
    /// Secrets to treat as privileged whatever the log shows.
    pub(super) fn add_privileged(&mut self, secrets: impl IntoIterator<Item = String>) {
        self.privileged.extend(secrets);
    }

    /// A secret the log shows to be privileged.
    pub(super) fn mark_privileged(&mut self, secret: &str) {
        if !self.privileged.contains(secret) {
            self.privileged.insert(secret.to_owned());
        }
    }

    /// An allowed read of `secret` by `bot`.
    pub(super) fn used(&mut self, bot: &str, secret: &str, ts: Timestamp) {
        self.last_use
            .insert((bot.to_owned(), secret.to_owned()), ts);
    }

    /// `bot` asked to elevate for `secret`.
    pub(super) fn elevation_requested(&mut self, bot: &str, secret: &str, ts: Timestamp) {
        self.last_elevation
            .insert((bot.to_owned(), secret.to_owned()), ts);
    }

    /// The grants in force at a `server.start`: a privileged grant new since
    /// the last config version, with no change ticket, is noted for
    /// `privilege_creep`.
    pub(super) fn at_start(&mut self, d: &Value, id: Option<&str>, ts: Timestamp) {
        let Some(g) = d.get("grants").and_then(Value::as_object) else {
            return;
        };
        self.add_privileged(strings(d.get("privileged")).map(str::to_owned));
        let compare = self.seen_config && ticket(d).is_none();
        let previous = std::mem::take(&mut self.current);
        for (bot, secrets) in g {
            let set: BTreeSet<String> = strings(Some(secrets)).map(str::to_owned).collect();
            for s in &set {
                let key = (bot.clone(), s.clone());
                if compare && !previous.get(bot).is_some_and(|p| p.contains(s)) {
                    self.unticketed.push(Unticketed {
                        bot: bot.clone(),
                        secret: s.clone(),
                        ts,
                        evidence: id.map(|i| vec![i.to_owned()]).unwrap_or_default(),
                        by_reload: false,
                    });
                }
                self.since.entry(key).or_insert(ts);
            }
            self.current.insert(bot.clone(), set);
        }
        self.seen_config = true;
    }

    /// The grants an allowed `config.reload` added and removed; a grant
    /// added without a change ticket is noted for `privilege_creep`.
    pub(super) fn reloaded(&mut self, d: &Value, id: Option<&str>, ts: Timestamp) {
        let unticketed = ticket(d).is_none();
        for (bot, secret, privileged) in grant_pairs(d, "added_grants") {
            if privileged {
                self.mark_privileged(secret);
            }
            self.current
                .entry(bot.to_owned())
                .or_default()
                .insert(secret.to_owned());
            self.since.insert((bot.to_owned(), secret.to_owned()), ts);
            if unticketed {
                self.unticketed.push(Unticketed {
                    bot: bot.to_owned(),
                    secret: secret.to_owned(),
                    ts,
                    evidence: id.map(|i| vec![i.to_owned()]).unwrap_or_default(),
                    by_reload: true,
                });
            }
        }
        for (bot, secret, _) in grant_pairs(d, "removed_grants") {
            if let Some(set) = self.current.get_mut(bot) {
                set.remove(secret);
            }
        }
        self.seen_config = true;
    }

    /// The least-privilege findings at `end`, the end of the log (`first`,
    /// its start, stands for grants whose start is unknown), and per bot the
    /// secrets it read in the last 90 days: the grant it needs.
    pub(super) fn findings(
        &self,
        first: Option<Timestamp>,
        end: Timestamp,
        out: &mut Vec<Finding>,
    ) -> BTreeMap<String, Vec<String>> {
        out.extend(self.unticketed.iter().filter_map(|u| self.creep(u)));
        let mut suggested = BTreeMap::new();
        for (bot, secrets) in &self.current {
            let used: Vec<String> = secrets
                .iter()
                .filter(|s| self.read_within(bot, s, end, 90))
                .cloned()
                .collect();
            for s in secrets {
                let key = (bot.clone(), s.clone());
                let since = self.since.get(&key).copied().or(first).unwrap_or(end);
                let finding = if self.privileged.contains(s) {
                    self.never_elevated(&key, since, end, &used)
                } else {
                    None
                };
                out.extend(finding.or_else(|| self.unused(&key, since, end, &used)));
            }
            suggested.insert(bot.clone(), used);
        }
        suggested
    }

    fn read_within(&self, bot: &str, secret: &str, end: Timestamp, days: i64) -> bool {
        self.last_use
            .get(&(bot.to_owned(), secret.to_owned()))
            .is_some_and(|l| end.duration_since(*l) < SignedDuration::from_hours(24 * days))
    }

    /// `unused_grant`: the grant was not read in 30, 60 or 90 days.
    fn unused(
        &self,
        (bot, s): &(String, String),
        since: Timestamp,
        end: Timestamp,
        used: &[String],
    ) -> Option<Finding> {
        let last = self.last_use.get(&(bot.clone(), s.clone())).copied();
        let idle_from = last.unwrap_or(since);
        let idle_days = end.duration_since(idle_from).as_secs() / 86_400;
        let &(threshold, score) = IDLE_THRESHOLDS.iter().find(|t| idle_days >= t.0)?;
        Some(Finding {
            bot: bot.clone(),
            detector: Detector::UnusedGrant,
            score,
            start: fmt_ts(idle_from),
            end: fmt_ts(end),
            actual: json!({"secret": s, "idle_days": idle_days, "last_used": last.map(fmt_ts)}),
            typical: json!({"used_within_days": threshold, "suggested_grant": used}),
            explanation: format!(
                "{bot} is granted {s:?} but has not read it in {idle_days} days ({}); suggested grant: [{}]",
                last.map_or("never read in this log".into(), |l| format!("last read {}", fmt_ts(l))),
                used.join(", ")
            ),
            evidence: Vec::new(),
        })
    }

    /// `unused_grant` of a privileged grant: the bot has not asked to
    /// elevate for it in [`ELEVATION_DAYS`], so it has not needed it.
    fn never_elevated(
        &self,
        (bot, s): &(String, String),
        since: Timestamp,
        end: Timestamp,
        used: &[String],
    ) -> Option<Finding> {
        let last = self.last_elevation.get(&(bot.clone(), s.clone())).copied();
        let idle_from = last.unwrap_or(since);
        let idle_days = end.duration_since(idle_from).as_secs() / 86_400;
        if idle_days < ELEVATION_DAYS {
            return None;
        }
        Some(Finding {
            bot: bot.clone(),
            detector: Detector::UnusedGrant,
            score: 80,
            start: fmt_ts(idle_from),
            end: fmt_ts(end),
            actual: json!({"secret": s, "privileged": true, "idle_days": idle_days,
                "last_elevation_request": last.map(fmt_ts)}),
            typical: json!({"elevated_within_days": ELEVATION_DAYS, "suggested_grant": used}),
            explanation: format!(
                "{bot} is granted privileged {s:?} but has not asked to elevate for it in {idle_days} days ({}); suggested grant: [{}]",
                last.map_or("never asked in this log".into(), |l| format!("last asked {}", fmt_ts(l))),
                used.join(", ")
            ),
            evidence: Vec::new(),
        })
    }

    /// `privilege_creep` for a grant added without a change ticket: any
    /// grant a reload added, a privileged one scored higher; at a start,
    /// privileged grants only.
    fn creep(&self, u: &Unticketed) -> Option<Finding> {
        let privileged = self.privileged.contains(&u.secret);
        if !u.by_reload && !privileged {
            return None;
        }
        let (bot, secret) = (&u.bot, &u.secret);
        let mut actual = json!({"added_grant": secret, "change_ticket": null});
        let explanation = if privileged {
            actual["privileged"] = json!(true);
            let how = if u.by_reload {
                "a config reload"
            } else {
                "a restart with a changed config"
            };
            format!("{how} granted privileged {secret:?} to {bot} without a change ticket")
        } else {
            format!("a config reload granted {secret:?} to {bot} without a change ticket")
        };
        Some(Finding {
            bot: bot.clone(),
            detector: Detector::PrivilegeCreep,
            score: if privileged { 90 } else { 70 },
            start: fmt_ts(u.ts),
            end: fmt_ts(u.ts),
            actual,
            typical: json!("grants are added with a change ticket"),
            explanation,
            evidence: u.evidence.clone(),
        })
    }
}

/// The change ticket a config version names, if any.
fn ticket(d: &Value) -> Option<&str> {
    d.get("change_ticket")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
}

/// The strings of a JSON array; anything else is skipped.
fn strings(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The `(bot, secret, privileged)` grants listed under `key` of a reload's
/// detail; entries without both names are skipped.
fn grant_pairs<'a>(d: &'a Value, key: &str) -> impl Iterator<Item = (&'a str, &'a str, bool)> + 'a {
    d.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| {
            Some((
                g.get("bot").and_then(Value::as_str)?,
                g.get("secret").and_then(Value::as_str)?,
                g.get("privileged").and_then(Value::as_bool) == Some(true),
            ))
        })
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use serde_json::json;

    use super::super::{Analysis, Analyzer, Options};
    use super::*;

    const DAY: i64 = 86_400;

    fn at(secs: i64) -> String {
        fmt_ts(Timestamp::from_second(1_771_977_600 + secs).unwrap())
    }

    /// A log built record by record.
    struct Log(Vec<String>);

    impl Log {
        fn start(grants: Value, extra: Value) -> Log {
            let mut log = Log(Vec::new());
            log.restart(0, grants, extra);
            log
        }

        fn restart(&mut self, secs: i64, grants: Value, extra: Value) {
            let mut detail = json!({ "grants": grants });
            for (k, v) in extra.as_object().into_iter().flatten() {
                detail[k] = v.clone();
            }
            self.push(
                json!({"ts": at(secs), "kind": "server.start", "id": format!("start-{secs}"),
                "decision": "allow", "bot": null, "detail": detail}),
            );
        }

        fn reload(&mut self, secs: i64, added: Value, ticket: Option<&str>) {
            self.push(
                json!({"ts": at(secs), "kind": "config.reload", "id": format!("reload-{secs}"),
                "decision": "allow", "bot": null,
                "detail": {"added_grants": added, "removed_grants": [], "change_ticket": ticket}}),
            );
        }

        fn bot(&mut self, secs: i64, bot: &str, kind: &str, secret: &str, extra: Value) {
            let mut r = json!({"ts": at(secs), "kind": kind, "id": format!("r-{secs}"),
                "decision": "allow", "status": 200, "bot": bot, "secret": secret, "host": "rpa-01",
                "peer": {"transport": "unix", "uid": 1001, "exe": "/opt/rpa/runner"}});
            for (k, v) in extra.as_object().into_iter().flatten() {
                r[k] = v.clone();
            }
            self.push(r);
        }

        /// `bot` reads `secret` at 09:00 on days `from..to`.
        fn daily_reads(&mut self, bot: &str, secret: &str, days: std::ops::Range<i64>) {
            for d in days {
                self.bot(d * DAY + 9 * 3600, bot, "secret.read", secret, json!({}));
            }
        }

        fn push(&mut self, r: Value) {
            self.0.push(r.to_string());
        }

        fn analyse(&self, privileged: &[&str]) -> Analysis {
            let mut a = Analyzer::new(Options {
                train: SignedDuration::from_hours(24 * 7),
                tz: TimeZone::UTC,
            })
            .privileged(privileged.iter().map(|s| (*s).to_owned()));
            for line in &self.0 {
                a.line(line.as_bytes());
            }
            a.finish()
        }
    }

    fn of<'a>(a: &'a Analysis, detector: Detector, secret: &str) -> Vec<&'a Finding> {
        a.findings
            .iter()
            .filter(|f| f.detector == detector)
            .filter(|f| {
                f.actual
                    .get("secret")
                    .or_else(|| f.actual.get("added_grant"))
                    == Some(&json!(secret))
            })
            .collect()
    }

    fn report_bot_log() -> Log {
        let mut log = Log::start(json!({"report-bot": ["payroll-db", "sftp"]}), json!({}));
        log.daily_reads("report-bot", "sftp", 0..100);
        log
    }

    #[test]
    fn a_privileged_grant_never_elevated_in_90_days_is_unused() {
        let a = report_bot_log().analyse(&["payroll-db"]);
        let unused = of(&a, Detector::UnusedGrant, "payroll-db");
        assert_eq!(unused.len(), 1, "one finding per grant: {unused:?}");
        let f = unused[0];
        assert_eq!((f.bot.as_str(), f.score), ("report-bot", 80));
        assert_eq!(f.actual["privileged"], true);
        assert_eq!(f.actual["idle_days"], 99);
        assert_eq!(f.actual["last_elevation_request"], Value::Null);
        assert_eq!(f.typical["suggested_grant"], json!(["sftp"]));
        assert!(
            f.explanation.contains("has not asked to elevate"),
            "{}",
            f.explanation
        );
        assert!(of(&a, Detector::UnusedGrant, "sftp").is_empty());
    }

    #[test]
    fn a_privileged_grant_elevated_and_read_recently_is_not_unused() {
        let mut log = report_bot_log();
        let ask = 90 * DAY + 10 * 3600;
        log.bot(
            ask,
            "report-bot",
            "elevation.request",
            "payroll-db",
            json!({}),
        );
        log.bot(
            ask + 60,
            "report-bot",
            "secret.read",
            "payroll-db",
            json!({"elevation": {"id": "ab".repeat(16), "approvers": ["a@corp.example"]}}),
        );
        let a = log.analyse(&["payroll-db"]);
        assert!(
            of(&a, Detector::UnusedGrant, "payroll-db").is_empty(),
            "{:?}",
            a.findings
        );
        assert_eq!(a.suggested_grants["report-bot"], ["payroll-db", "sftp"]);
    }

    #[test]
    fn an_elevated_grant_never_read_is_judged_on_its_reads() {
        let mut log = report_bot_log();
        log.bot(
            95 * DAY,
            "report-bot",
            "elevation.request",
            "payroll-db",
            json!({}),
        );
        let a = log.analyse(&["payroll-db"]);
        let unused = of(&a, Detector::UnusedGrant, "payroll-db");
        assert_eq!(unused.len(), 1);
        assert_eq!(unused[0].actual.get("privileged"), None);
        assert_eq!(unused[0].actual["last_used"], Value::Null);
    }

    #[test]
    fn the_log_shows_a_secret_privileged_without_being_told() {
        let mut log = Log::start(json!({"report-bot": ["payroll-db", "sftp"]}), json!({}));
        log.daily_reads("report-bot", "sftp", 0..50);
        // Another bot's read refused for want of a window.
        log.bot(
            50 * DAY,
            "audit-bot",
            "secret.read",
            "payroll-db",
            json!({"decision": "deny", "status": 403, "reason": "elevation_required"}),
        );
        log.daily_reads("report-bot", "sftp", 50..100);
        let a = log.analyse(&[]);
        let unused = of(&a, Detector::UnusedGrant, "payroll-db");
        assert_eq!(unused.len(), 1);
        assert_eq!(unused[0].actual["privileged"], true, "{unused:?}");
    }

    #[test]
    fn a_privileged_grant_added_without_a_ticket_scores_higher() {
        let mut log = Log::start(json!({"report-bot": ["sftp"]}), json!({}));
        log.reload(
            DAY,
            json!([{"bot": "report-bot", "secret": "payroll-db", "privileged": true},
            {"bot": "report-bot", "secret": "erp-db"}]),
            None,
        );
        log.reload(
            2 * DAY,
            json!([{"bot": "invoice-bot", "secret": "payroll-db", "privileged": true}]),
            Some("CHG-1234"),
        );
        let a = log.analyse(&[]);
        let creep = of(&a, Detector::PrivilegeCreep, "payroll-db");
        assert_eq!(creep.len(), 1, "the ticketed reload is no creep: {creep:?}");
        assert_eq!((creep[0].bot.as_str(), creep[0].score), ("report-bot", 90));
        assert_eq!(
            creep[0].actual,
            json!({"added_grant": "payroll-db", "change_ticket": null, "privileged": true})
        );
        assert_eq!(creep[0].evidence, [format!("reload-{DAY}")]);
        assert_eq!(creep[0].explanation,
            "a config reload granted privileged \"payroll-db\" to report-bot without a change ticket");
        let plain = of(&a, Detector::PrivilegeCreep, "erp-db");
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].score, 70);
        assert_eq!(
            plain[0].actual,
            json!({"added_grant": "erp-db", "change_ticket": null})
        );
    }

    #[test]
    fn a_grant_is_judged_privileged_by_the_whole_log() {
        let mut log = Log::start(json!({"report-bot": ["sftp"]}), json!({}));
        log.reload(
            DAY,
            json!([{"bot": "report-bot", "secret": "payroll-db"}]),
            None,
        );
        log.bot(
            3 * DAY,
            "report-bot",
            "elevation.request",
            "payroll-db",
            json!({}),
        );
        let a = log.analyse(&[]);
        let creep = of(&a, Detector::PrivilegeCreep, "payroll-db");
        assert_eq!(creep.len(), 1);
        assert_eq!(creep[0].score, 90);
    }

    #[test]
    fn a_privileged_grant_that_appears_at_a_restart_without_a_ticket_is_creep() {
        let mut log = Log::start(json!({"report-bot": ["sftp"]}), json!({}));
        let grown = json!({"report-bot": ["sftp", "payroll-db", "erp-db"]});
        log.restart(DAY, grown.clone(), json!({"privileged": ["payroll-db"]}));
        log.restart(2 * DAY, grown.clone(), json!({}));
        let a = log.analyse(&[]);
        let creep: Vec<_> = a
            .findings
            .iter()
            .filter(|f| f.detector == Detector::PrivilegeCreep)
            .collect();
        assert_eq!(
            creep.len(),
            1,
            "erp-db is not privileged; the second start changed nothing: {creep:?}"
        );
        assert_eq!(creep[0].actual["added_grant"], "payroll-db");
        assert_eq!(creep[0].score, 90);
        assert_eq!(creep[0].evidence, [format!("start-{DAY}")]);
        assert!(creep[0]
            .explanation
            .starts_with("a restart with a changed config"));

        let mut ticketed = Log::start(json!({"report-bot": ["sftp"]}), json!({}));
        ticketed.restart(DAY, grown, json!({"change_ticket": "CHG-1234"}));
        assert!(ticketed
            .analyse(&["payroll-db"])
            .findings
            .iter()
            .all(|f| f.detector != Detector::PrivilegeCreep));
    }

    #[test]
    fn the_first_start_of_a_log_is_no_creep() {
        let log = Log::start(json!({"report-bot": ["payroll-db"]}), json!({}));
        assert!(log.analyse(&["payroll-db"]).findings.is_empty());
    }

    #[test]
    fn elevations_are_summed_per_bot_and_the_servers_events_are_not_scored() {
        let mut log = report_bot_log();
        let e = |extra: Value| json!({"detail": {"elevation": extra}});
        let night = 100 * DAY + 3 * 3600;
        log.bot(
            night,
            "report-bot",
            "elevation.open",
            "payroll-db",
            e(json!({"id": "1"})),
        );
        log.bot(
            night + 900,
            "report-bot",
            "elevation.close",
            "payroll-db",
            e(json!({"id": "1", "reads": []})),
        );
        log.bot(
            night + 1000,
            "report-bot",
            "elevation.decision",
            "payroll-db",
            e(json!({"id": "2", "status": "denied"})),
        );
        let a = log.analyse(&[]);
        let summary = serde_json::to_value(&a.per_bot).unwrap();
        assert_eq!(
            summary,
            json!({"report-bot": {"elevations":
            {"requested": 0, "approved": 1, "denied": 1, "used": 0, "unused": 1}}})
        );
        assert!(
            a.findings
                .iter()
                .all(|f| Detector::LEAST_PRIVILEGE.contains(&f.detector)),
            "{:?}",
            a.findings
        );
        let text = super::super::text(&a);
        assert!(
            text.contains(
                "\njust-in-time elevations:\n  report-bot: 0 requested, 1 approved, \
            1 denied, 0 used, 1 unused\n"
            ),
            "{text}"
        );

        // The same hour is off schedule for a read of the bot's own.
        log.bot(night + 2000, "report-bot", "secret.read", "sftp", json!({}));
        let a = log.analyse(&[]);
        assert!(a
            .findings
            .iter()
            .any(|f| f.detector == Detector::OffSchedule));
    }
}
