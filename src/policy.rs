//! The access decision: a pure function of the bot's definition, the request
//! and its context. Default deny: anything not explicitly allowed is refused.
//!
//! The definitions it decides over (bots, secrets, schedules and the rules
//! for their names) live here too, and depend on nothing else in the crate;
//! the config builds them.

use std::path::PathBuf;

use jiff::Timestamp;

mod domain;
mod elevation;
mod lifecycle;
mod names;
mod schedule;

pub use domain::{
    AnomalyAction, AnomalyPolicy, BotDef, ProcessRule, SecretDef, SecretSource, DEFAULT_MAX_LEASES,
};
pub use elevation::{ApproverDef, Window};
pub use lifecycle::{Enforcement, Lifecycle, State};
pub use names::{is_person_name, is_valid_name, MAX_NAME_LEN};
pub use schedule::Schedule;

/// What the server knows about the caller beyond its certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerFacts {
    /// Process facts from the kernel: on the unix socket, a Windows named
    /// pipe, and loopback TCP on Windows.
    pub uid: Option<u32>,
    pub exe: Option<PathBuf>,
    pub sid: Option<String>,
    pub user: Option<String>,
    /// Whether the kernel named the process behind the connection; without
    /// that, process rules cannot be checked and refuse.
    pub verified: bool,
}

/// The inputs of one decision besides the bot.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub now: Timestamp,
    pub peer: &'a PeerFacts,
    /// Since when the bot has made no request (see
    /// [`Lifecycle::state_at`]); `None` when unknown.
    pub quiet_since: Option<Timestamp>,
}

/// What the caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Read the secret with this logical name.
    Secret(&'a str),
    /// Read a privileged secret, with the bot's window for it if one is
    /// open: without one there is no access, whatever the grant.
    Privileged {
        secret: &'a str,
        window: Option<&'a Window>,
    },
    /// Endpoints that reveal nothing secret (whoami, health).
    Metadata,
    /// A new certificate for the bot's identity.
    Renew,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    UnknownBot,
    NotGranted,
    OutsideSchedule,
    ProcessMismatch,
    ProcessUnverifiable,
    ElevationRequired,
    /// The bot is disabled.
    Disabled,
    /// The bot is past its `expires` date.
    BotExpired,
    /// The bot is past its `review_by` date, and overdue reviews deny.
    ReviewOverdue,
    /// The bot made no request for `dormant_after`, and dormancy denies.
    Dormant,
}

/// Decides one request. `bot` is `None` when the certificate names no
/// registered bot.
pub fn decide(bot: Option<&BotDef>, request: Request<'_>, cx: &Context<'_>) -> Decision {
    let Some(bot) = bot else {
        return Decision::Deny(DenyReason::UnknownBot);
    };
    if let Some(reason) = lifecycle_refusal(bot, request, cx) {
        return Decision::Deny(reason);
    }
    if !bot.processes.is_empty() {
        if !cx.peer.verified {
            return Decision::Deny(DenyReason::ProcessUnverifiable);
        }
        if !bot.processes.iter().any(|rule| rule_matches(rule, cx.peer)) {
            return Decision::Deny(DenyReason::ProcessMismatch);
        }
    }
    let (name, window) = match request {
        Request::Metadata | Request::Renew => return Decision::Allow,
        Request::Secret(name) => (name, None),
        Request::Privileged { secret, window } => (secret, Some(window)),
    };
    if !bot.secrets.contains(name) {
        return Decision::Deny(DenyReason::NotGranted);
    }
    if let Some(schedule) = &bot.schedule {
        if !schedule.contains(cx.now) {
            return Decision::Deny(DenyReason::OutsideSchedule);
        }
    }
    match window {
        Some(w) if !w.is_some_and(|w| w.admits(&bot.name, name, cx.now)) => {
            Decision::Deny(DenyReason::ElevationRequired)
        }
        _ => Decision::Allow,
    }
}

/// Why the bot's lifecycle state refuses `request`, if it does: disabled
/// and expired bots get nothing; a dormant bot (under `dormant = "deny"`)
/// and one overdue for review (under `review_overdue = "deny"`) may still
/// ask who they are.
pub fn lifecycle_refusal(
    bot: &BotDef,
    request: Request<'_>,
    cx: &Context<'_>,
) -> Option<DenyReason> {
    let life = &bot.lifecycle;
    match life.state(cx.now) {
        State::Disabled => return Some(DenyReason::Disabled),
        State::Expired => return Some(DenyReason::BotExpired),
        State::Dormant | State::ReviewOverdue | State::Active => {}
    }
    if request == Request::Metadata {
        return None;
    }
    if life.dormant == Enforcement::Deny && life.is_dormant(cx.now, cx.quiet_since) {
        return Some(DenyReason::Dormant);
    }
    if life.overdue == Enforcement::Deny && life.state(cx.now) == State::ReviewOverdue {
        return Some(DenyReason::ReviewOverdue);
    }
    None
}

/// Whether the process the kernel named matches every part of `rule`. A
/// part the platform could not read never matches.
fn rule_matches(rule: &ProcessRule, peer: &PeerFacts) -> bool {
    let same = |want: &Option<String>, got: &Option<String>| {
        want.as_deref().is_none_or(|w| {
            got.as_deref()
                .is_some_and(|g| g.to_lowercase() == w.to_lowercase())
        })
    };
    rule.uid.is_none_or(|uid| peer.uid == Some(uid))
        && rule.exe.as_deref().is_none_or(|exe| {
            peer.exe
                .as_deref()
                .is_some_and(|got| crate::platform::same_exe(got, exe))
        })
        && same(&rule.sid, &peer.sid)
        && same(&rule.user, &peer.user)
}

// === impl DenyReason ===

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::UnknownBot => "unknown_bot",
            DenyReason::NotGranted => "not_granted",
            DenyReason::OutsideSchedule => "outside_schedule",
            DenyReason::ProcessMismatch => "process_mismatch",
            DenyReason::ProcessUnverifiable => "process_unverifiable",
            DenyReason::ElevationRequired => "elevation_required",
            DenyReason::Disabled => "disabled",
            DenyReason::BotExpired => "bot_expired",
            DenyReason::ReviewOverdue => "review_overdue",
            DenyReason::Dormant => "dormant",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn bot(secrets: &[&str], schedule: Option<&str>, processes: Vec<ProcessRule>) -> BotDef {
        BotDef {
            name: "invoice-bot".into(),
            owner: "alice@corp.example".into(),
            team: "finance-ops".into(),
            purpose: String::new(),
            secrets: secrets
                .iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>(),
            schedule: schedule.map(|s| Schedule::parse(s).unwrap()),
            processes,
            anomaly: Default::default(),
            max_leases: DEFAULT_MAX_LEASES,
            lifecycle: Lifecycle::default(),
        }
    }

    /// Name, bot, request, peer, time and the decision expected.
    type Case<'a> = (
        &'a str,
        Option<&'a BotDef>,
        Request<'a>,
        &'a PeerFacts,
        Timestamp,
        Decision,
    );

    fn check(cases: Vec<Case<'_>>) {
        for (what, bot, req, peer, now, want) in cases {
            let got = decide(
                bot,
                req,
                &Context {
                    now,
                    peer,
                    quiet_since: None,
                },
            );
            assert_eq!(got, want, "{what}");
        }
    }

    /// The peers, bots and times the decision tables use.
    struct Table {
        tcp: PeerFacts,
        good_proc: PeerFacts,
        bad_uid: PeerFacts,
        bad_exe: PeerFacts,
        weekday_day: Timestamp,
        weekday_night: Timestamp,
        saturday: Timestamp,
        plain: BotDef,
        scheduled: BotDef,
        pinned: BotDef,
    }

    fn table() -> Table {
        let good_proc = PeerFacts {
            uid: Some(1001),
            exe: Some("/opt/rpa/bin/python3".into()),
            verified: true,
            ..PeerFacts::default()
        };
        let rule = || {
            vec![ProcessRule {
                uid: Some(1001),
                exe: Some("/opt/rpa/bin/python3".into()),
                ..ProcessRule::default()
            }]
        };
        let sched = Some("Mon-Fri 06:00-20:00 Europe/Berlin");
        Table {
            tcp: PeerFacts::default(),
            bad_uid: PeerFacts {
                uid: Some(0),
                ..good_proc.clone()
            },
            bad_exe: PeerFacts {
                exe: Some("/usr/bin/python3".into()),
                ..good_proc.clone()
            },
            good_proc,
            // Wednesday 2026-11-25 10:00 in Berlin is 09:00 UTC.
            weekday_day: ts("2026-11-25T09:00:00Z"),
            weekday_night: ts("2026-11-25T21:30:00Z"),
            saturday: ts("2026-11-28T09:00:00Z"),
            plain: bot(&["erp-db"], None, vec![]),
            scheduled: bot(&["erp-db"], sched, vec![]),
            pinned: bot(&["erp-db"], None, rule()),
        }
    }

    #[test]
    fn decide_unknown_bots_and_grants() {
        use Decision::*;
        use DenyReason::*;
        let t = table();
        check(vec![
            (
                "unknown bot",
                None,
                Request::Secret("erp-db"),
                &t.tcp,
                t.weekday_day,
                Deny(UnknownBot),
            ),
            (
                "unknown bot, metadata",
                None,
                Request::Metadata,
                &t.tcp,
                t.weekday_day,
                Deny(UnknownBot),
            ),
            (
                "granted",
                Some(&t.plain),
                Request::Secret("erp-db"),
                &t.tcp,
                t.weekday_day,
                Allow,
            ),
            (
                "not granted",
                Some(&t.plain),
                Request::Secret("payroll"),
                &t.tcp,
                t.weekday_day,
                Deny(NotGranted),
            ),
            (
                "metadata",
                Some(&t.plain),
                Request::Metadata,
                &t.tcp,
                t.saturday,
                Allow,
            ),
        ]);
    }

    #[test]
    fn decide_schedules() {
        use Decision::*;
        use DenyReason::*;
        let t = table();
        check(vec![
            (
                "in schedule",
                Some(&t.scheduled),
                Request::Secret("erp-db"),
                &t.tcp,
                t.weekday_day,
                Allow,
            ),
            (
                "after hours",
                Some(&t.scheduled),
                Request::Secret("erp-db"),
                &t.tcp,
                t.weekday_night,
                Deny(OutsideSchedule),
            ),
            (
                "weekend",
                Some(&t.scheduled),
                Request::Secret("erp-db"),
                &t.tcp,
                t.saturday,
                Deny(OutsideSchedule),
            ),
            (
                "schedule does not limit whoami",
                Some(&t.scheduled),
                Request::Metadata,
                &t.tcp,
                t.saturday,
                Allow,
            ),
            (
                "ungranted outside schedule is not_granted",
                Some(&t.scheduled),
                Request::Secret("x"),
                &t.tcp,
                t.saturday,
                Deny(NotGranted),
            ),
        ]);
    }

    #[test]
    fn decide_process_rules() {
        use Decision::*;
        use DenyReason::*;
        let t = table();
        check(vec![
            (
                "right process",
                Some(&t.pinned),
                Request::Secret("erp-db"),
                &t.good_proc,
                t.weekday_day,
                Allow,
            ),
            (
                "wrong uid",
                Some(&t.pinned),
                Request::Secret("erp-db"),
                &t.bad_uid,
                t.weekday_day,
                Deny(ProcessMismatch),
            ),
            (
                "wrong exe",
                Some(&t.pinned),
                Request::Secret("erp-db"),
                &t.bad_exe,
                t.weekday_day,
                Deny(ProcessMismatch),
            ),
            (
                "pinned bot over tcp",
                Some(&t.pinned),
                Request::Secret("erp-db"),
                &t.tcp,
                t.weekday_day,
                Deny(ProcessUnverifiable),
            ),
            (
                "pinned bot whoami over tcp",
                Some(&t.pinned),
                Request::Metadata,
                &t.tcp,
                t.weekday_day,
                Deny(ProcessUnverifiable),
            ),
        ]);
    }

    #[test]
    fn rule_with_only_uid_matches_any_exe() {
        let b = bot(
            &["s"],
            None,
            vec![ProcessRule {
                uid: Some(7),
                exe: None,
                ..ProcessRule::default()
            }],
        );
        let peer = PeerFacts {
            uid: Some(7),
            exe: Some("/bin/anything".into()),
            verified: true,
            ..PeerFacts::default()
        };
        assert_eq!(
            decide(
                Some(&b),
                Request::Secret("s"),
                &Context {
                    now: Timestamp::now(),
                    peer: &peer,
                    quiet_since: None,
                }
            ),
            Decision::Allow
        );
    }
    #[test]
    fn windows_rules_match_sid_and_account_and_fail_closed_without_them() {
        let b = bot(
            &["s"],
            None,
            vec![
                ProcessRule {
                    user: Some(r"CORP\svc-rpa-invoice".into()),
                    exe: Some(r"C:\Program Files\UiPath\UiPath.Executor.exe".into()),
                    ..ProcessRule::default()
                },
                ProcessRule {
                    sid: Some("S-1-5-21-1-2-3-1001".into()),
                    ..ProcessRule::default()
                },
            ],
        );
        let decide_for = |peer: &PeerFacts| {
            decide(
                Some(&b),
                Request::Secret("s"),
                &Context {
                    now: Timestamp::now(),
                    peer,
                    quiet_since: None,
                },
            )
        };
        let robot = PeerFacts {
            exe: Some(r"C:\Program Files\UiPath\UiPath.Executor.exe".into()),
            sid: Some("S-1-5-21-1-2-3-1107".into()),
            user: Some(r"corp\SVC-RPA-INVOICE".into()),
            verified: true,
            ..PeerFacts::default()
        };
        assert_eq!(decide_for(&robot), Decision::Allow);
        let other_user = PeerFacts {
            user: Some(r"CORP\svc-rpa-payroll".into()),
            ..robot.clone()
        };
        assert_eq!(
            decide_for(&other_user),
            Decision::Deny(DenyReason::ProcessMismatch)
        );
        let by_sid = PeerFacts {
            exe: Some(r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe".into()),
            sid: Some("S-1-5-21-1-2-3-1001".into()),
            user: None,
            ..robot.clone()
        };
        assert_eq!(decide_for(&by_sid), Decision::Allow);
        let unread = PeerFacts {
            user: None,
            sid: None,
            ..robot.clone()
        };
        assert_eq!(
            decide_for(&unread),
            Decision::Deny(DenyReason::ProcessMismatch)
        );
        let unverified = PeerFacts {
            verified: false,
            ..robot
        };
        assert_eq!(
            decide_for(&unverified),
            Decision::Deny(DenyReason::ProcessUnverifiable)
        );
    }

    #[test]
    fn a_privileged_secret_is_read_only_inside_its_own_window() {
        let b = bot(&["sap-admin", "erp-db"], None, vec![]);
        let peer = PeerFacts::default();
        let at = |t: &str| Context {
            now: ts(t),
            peer: &peer,
            quiet_since: None,
        };
        let window = Window {
            id: "e1".into(),
            bot: "invoice-bot".into(),
            secret: "sap-admin".into(),
            not_before: ts("2026-12-01T10:00:00Z"),
            not_after: ts("2026-12-01T10:15:00Z"),
            approvers: vec!["finance-lead@corp.example".into()],
        };
        let other_bot = Window {
            bot: "report-bot".into(),
            ..window.clone()
        };
        let other_secret = Window {
            secret: "erp-db".into(),
            ..window.clone()
        };
        let read = |w: Option<&Window>, t: &str| {
            decide(
                Some(&b),
                Request::Privileged {
                    secret: "sap-admin",
                    window: w,
                },
                &at(t),
            )
        };
        let required = Decision::Deny(DenyReason::ElevationRequired);
        assert_eq!(read(None, "2026-12-01T10:05:00Z"), required);
        assert_eq!(read(Some(&window), "2026-12-01T10:05:00Z"), Decision::Allow);
        assert_eq!(read(Some(&window), "2026-12-01T10:00:00Z"), Decision::Allow);
        assert_eq!(read(Some(&window), "2026-12-01T09:59:59Z"), required);
        assert_eq!(read(Some(&window), "2026-12-01T10:15:00Z"), required);
        assert_eq!(read(Some(&other_bot), "2026-12-01T10:05:00Z"), required);
        assert_eq!(read(Some(&other_secret), "2026-12-01T10:05:00Z"), required);
        // A window never stands in for a grant.
        let ungranted = bot(&["erp-db"], None, vec![]);
        assert_eq!(
            decide(
                Some(&ungranted),
                Request::Privileged {
                    secret: "sap-admin",
                    window: Some(&window)
                },
                &at("2026-12-01T10:05:00Z")
            ),
            Decision::Deny(DenyReason::NotGranted)
        );
    }

    #[test]
    fn lifecycle_states_refuse_before_anything_else() {
        let peer = PeerFacts::default();
        let now = ts("2027-03-10T12:00:00Z");
        let with = |l: Lifecycle| BotDef {
            lifecycle: l,
            ..bot(&["erp-db"], None, vec![])
        };
        let day = |s: &str| Some(s.parse().unwrap());
        let disabled = with(Lifecycle {
            disabled: true,
            ..Lifecycle::default()
        });
        let expired = with(Lifecycle {
            expires: day("2027-03-01"),
            ..Lifecycle::default()
        });
        let overdue_warn = with(Lifecycle {
            review_by: day("2027-03-01"),
            ..Lifecycle::default()
        });
        let overdue_deny = with(Lifecycle {
            review_by: day("2027-03-01"),
            overdue: Enforcement::Deny,
            ..Lifecycle::default()
        });
        let not_yet = with(Lifecycle {
            review_by: day("2027-03-10"),
            expires: day("2027-03-10"),
            overdue: Enforcement::Deny,
            ..Lifecycle::default()
        });
        let deny = |r| Decision::Deny(r);
        let kv = Request::Secret("erp-db");
        check(vec![
            (
                "disabled",
                Some(&disabled),
                kv,
                &peer,
                now,
                deny(DenyReason::Disabled),
            ),
            (
                "disabled whoami",
                Some(&disabled),
                Request::Metadata,
                &peer,
                now,
                deny(DenyReason::Disabled),
            ),
            (
                "expired",
                Some(&expired),
                kv,
                &peer,
                now,
                deny(DenyReason::BotExpired),
            ),
            (
                "expired whoami",
                Some(&expired),
                Request::Metadata,
                &peer,
                now,
                deny(DenyReason::BotExpired),
            ),
            (
                "overdue, warn",
                Some(&overdue_warn),
                kv,
                &peer,
                now,
                Decision::Allow,
            ),
            (
                "overdue, deny",
                Some(&overdue_deny),
                kv,
                &peer,
                now,
                deny(DenyReason::ReviewOverdue),
            ),
            (
                "overdue, deny, whoami",
                Some(&overdue_deny),
                Request::Metadata,
                &peer,
                now,
                Decision::Allow,
            ),
            (
                "on the day itself",
                Some(&not_yet),
                kv,
                &peer,
                now,
                Decision::Allow,
            ),
            // Disabled outranks a grant it lacks.
            (
                "disabled, not granted",
                Some(&disabled),
                Request::Secret("sftp"),
                &peer,
                now,
                deny(DenyReason::Disabled),
            ),
        ]);
    }

    #[test]
    fn dormancy_refuses_under_deny_but_lets_the_bot_ask_why() {
        let peer = PeerFacts::default();
        let b = |dormant| BotDef {
            lifecycle: Lifecycle {
                dormant_after: Some(jiff::SignedDuration::from_hours(24 * 30)),
                dormant,
                ..Lifecycle::default()
            },
            ..bot(&["erp-db"], None, vec![])
        };
        let (deny, warn) = (b(Enforcement::Deny), b(Enforcement::Warn));
        let cx = |quiet: &str| Context {
            now: ts("2027-03-10T12:00:00Z"),
            peer: &peer,
            quiet_since: Some(ts(quiet)),
        };
        let kv = Request::Secret("erp-db");
        let long_ago = cx("2027-02-08T12:00:00Z");
        let lately = cx("2027-02-08T12:00:01Z");
        assert_eq!(
            decide(Some(&deny), kv, &long_ago),
            Decision::Deny(DenyReason::Dormant)
        );
        assert_eq!(
            decide(Some(&deny), Request::Metadata, &long_ago),
            Decision::Allow
        );
        assert_eq!(decide(Some(&deny), kv, &lately), Decision::Allow);
        assert_eq!(decide(Some(&warn), kv, &long_ago), Decision::Allow);
        // A grant the bot lacks is still refused as such.
        assert_eq!(
            decide(Some(&warn), Request::Secret("sftp"), &long_ago),
            Decision::Deny(DenyReason::NotGranted)
        );
    }
}
