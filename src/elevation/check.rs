//! The checks every decision passes before it counts. A pure function of
//! the signed decision, the request it claims to answer, the configured
//! approvers and the time; the mailbox it came through is never trusted.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::statement::{self, Signed, Statement, Unverified, Verdict};
use crate::policy::ApproverDef;

/// The request a decision is checked against: what the bot asked for, and
/// who owns the bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked<'a> {
    pub id: &'a str,
    pub bot: &'a str,
    pub owner: &'a str,
    pub team: &'a str,
    pub secret: &'a str,
    pub host: &'a str,
    pub ticket: &'a str,
    pub duration: Duration,
    /// When the request expires undecided: no window may start later.
    pub expires: Timestamp,
}

/// Why a decision does not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    Unverified(Unverified),
    /// The statement names no configured approver.
    UnknownApprover,
    /// The approver owns the bot.
    SelfApproval,
    /// The approver may not decide for the bot's team.
    TeamNotAllowed,
    /// The statement is about another request, bot, secret, host or ticket.
    Mismatch(&'static str),
    /// The window is longer than the request or `max_window`.
    WindowTooLong,
    /// An approval without a window, or one that ends before it starts.
    WindowInvalid,
    /// The window has already ended.
    WindowOver,
    /// The window starts after the request expires.
    StartsTooLate,
    /// The approver's certificate is not valid now (expired, or not yet
    /// valid).
    CertNotValid,
}

impl Rejected {
    /// The audit record's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Unverified(u) => u.as_str(),
            Rejected::UnknownApprover => "unknown_approver",
            Rejected::SelfApproval => "self_approval",
            Rejected::TeamNotAllowed => "team_not_allowed",
            Rejected::Mismatch(_) => "statement_mismatch",
            Rejected::WindowTooLong => "window_too_long",
            Rejected::WindowInvalid => "window_invalid",
            Rejected::WindowOver => "window_over",
            Rejected::StartsTooLate => "window_starts_too_late",
            Rejected::CertNotValid => "approver_certificate_not_valid",
        }
    }

    /// The field that did not match, for a [`Rejected::Mismatch`].
    pub fn field(self) -> Option<&'static str> {
        match self {
            Rejected::Mismatch(f) => Some(f),
            _ => None,
        }
    }
}

/// The name a decision claims to be signed by, before anything is
/// verified: only for the audit record of a rejection.
pub fn claimed_approver(signed: &Signed) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Claim {
        approver: String,
    }
    if signed.statement.len() > statement::MAX_STATEMENT {
        return None;
    }
    serde_json::from_str::<Claim>(&signed.statement)
        .ok()
        .map(|c| c.approver)
}

/// The verified statement of `signed`, if it passes every check for
/// `asked` at `now`.
pub fn check(
    signed: &Signed,
    asked: &Asked<'_>,
    approvers: &BTreeMap<String, ApproverDef>,
    max_window: Duration,
    now: Timestamp,
) -> Result<Statement, Rejected> {
    let claimed = claimed_approver(signed).ok_or(Rejected::Unverified(Unverified::Malformed))?;
    let approver = approvers.get(&claimed).ok_or(Rejected::UnknownApprover)?;
    let s = statement::verify(signed, &approver.cert_der).map_err(Rejected::Unverified)?;
    if s.approver != approver.name {
        return Err(Rejected::UnknownApprover);
    }
    if !statement::cert_valid_at(&approver.cert_der, now) {
        return Err(Rejected::CertNotValid);
    }
    let same = [
        ("request", &s.request, asked.id),
        ("bot", &s.bot, asked.bot),
        ("secret", &s.secret, asked.secret),
        ("host", &s.host, asked.host),
        ("ticket", &s.ticket, asked.ticket),
    ];
    if let Some((field, _, _)) = same.iter().find(|(_, got, want)| got.as_str() != *want) {
        return Err(Rejected::Mismatch(field));
    }
    if approver.owns(asked.owner) {
        return Err(Rejected::SelfApproval);
    }
    if !approver.covers(asked.team) {
        return Err(Rejected::TeamNotAllowed);
    }
    match (s.decision, s.not_before, s.not_after) {
        (Verdict::Approve, Some(from), Some(until)) => {
            if until <= from {
                return Err(Rejected::WindowInvalid);
            }
            let limit = asked.duration.min(max_window);
            if from.duration_until(until)
                > SignedDuration::try_from(limit).unwrap_or(SignedDuration::MAX)
            {
                return Err(Rejected::WindowTooLong);
            }
            if until <= now {
                return Err(Rejected::WindowOver);
            }
            if from > asked.expires {
                return Err(Rejected::StartsTooLate);
            }
        }
        (Verdict::Approve, _, _) => return Err(Rejected::WindowInvalid),
        _ => {}
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elevation::statement::{sign, STATEMENT_TYPE};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    struct Approver {
        def: ApproverDef,
        key: PrivateKeyDer<'static>,
    }

    fn approver(name: &str, teams: &[&str]) -> Approver {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Approver {
            def: ApproverDef {
                name: name.into(),
                cert: "approver.pem".into(),
                cert_der: cert.der().to_vec(),
                teams: teams.iter().map(|t| t.to_string()).collect(),
            },
            key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        }
    }

    fn asked() -> Asked<'static> {
        Asked {
            id: "0123456789abcdef0123456789abcdef",
            bot: "invoice-bot",
            owner: "alice@corp.example",
            team: "finance-ops",
            secret: "sap-admin",
            host: "rpa-01",
            ticket: "CHG-1234",
            duration: Duration::from_secs(15 * 60),
            expires: ts("2026-12-01T11:00:00Z"),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn approval(by: &str, minutes: i64) -> Statement {
        let a = asked();
        Statement {
            kind: STATEMENT_TYPE.into(),
            decision: Verdict::Approve,
            request: a.id.into(),
            bot: a.bot.into(),
            secret: a.secret.into(),
            host: a.host.into(),
            ticket: a.ticket.into(),
            not_before: Some(ts("2026-12-01T10:00:00Z")),
            not_after: Some(ts("2026-12-01T10:00:00Z") + SignedDuration::from_mins(minutes)),
            approver: by.into(),
            signed_at: ts("2026-12-01T10:00:00Z"),
        }
    }

    #[test]
    fn every_check_refuses_what_it_should() {
        let lead = approver("finance-lead@corp.example", &["finance-ops"]);
        let alice = approver("alice@corp.example", &["*"]);
        let hr = approver("hr-lead@corp.example", &["hr"]);
        let approvers: BTreeMap<_, _> = [&lead, &alice, &hr]
            .iter()
            .map(|a| (a.def.name.clone(), a.def.clone()))
            .collect();
        let now = ts("2026-12-01T10:01:00Z");
        let max = Duration::from_secs(3600);
        let run = |s: &Statement, key: &PrivateKeyDer<'_>| {
            check(&sign(s, key).unwrap(), &asked(), &approvers, max, now)
        };
        let good = approval("finance-lead@corp.example", 10);
        assert_eq!(run(&good, &lead.key), Ok(good.clone()));
        // Signed with a key that is not the named approver's.
        assert_eq!(
            run(&good, &hr.key),
            Err(Rejected::Unverified(Unverified::BadSignature))
        );
        let stranger = approval("mallory@corp.example", 10);
        assert_eq!(run(&stranger, &lead.key), Err(Rejected::UnknownApprover));
        let own = approval("alice@corp.example", 10);
        assert_eq!(run(&own, &alice.key), Err(Rejected::SelfApproval));
        let outside = approval("hr-lead@corp.example", 10);
        assert_eq!(run(&outside, &hr.key), Err(Rejected::TeamNotAllowed));
        for (field, f) in [
            (
                "request",
                (|s: &mut Statement| s.request = "f".repeat(32)) as fn(&mut Statement),
            ),
            ("bot", |s| s.bot = "report-bot".into()),
            ("secret", |s| s.secret = "erp-db".into()),
            ("host", |s| s.host = "rpa-02".into()),
            ("ticket", |s| s.ticket = "CHG-9999".into()),
        ] {
            let mut s = good.clone();
            f(&mut s);
            assert_eq!(
                run(&s, &lead.key),
                Err(Rejected::Mismatch(field)),
                "{field}"
            );
        }
        // Longer than the request asked (15 min), or than max_window.
        assert_eq!(
            run(&approval("finance-lead@corp.example", 16), &lead.key),
            Err(Rejected::WindowTooLong)
        );
        let short_max = check(
            &sign(&good, &lead.key).unwrap(),
            &asked(),
            &approvers,
            Duration::from_secs(300),
            now,
        );
        assert_eq!(short_max, Err(Rejected::WindowTooLong));
        let mut backwards = good.clone();
        backwards.not_after = Some(ts("2026-12-01T09:59:00Z"));
        assert_eq!(run(&backwards, &lead.key), Err(Rejected::WindowInvalid));
        let mut open_ended = good.clone();
        open_ended.not_after = None;
        assert_eq!(run(&open_ended, &lead.key), Err(Rejected::WindowInvalid));
        let late = check(
            &sign(&good, &lead.key).unwrap(),
            &asked(),
            &approvers,
            max,
            ts("2026-12-01T10:10:00Z"),
        );
        assert_eq!(late, Err(Rejected::WindowOver));
        // Deny and revoke carry no window.
        let mut deny = good.clone();
        deny.decision = Verdict::Deny;
        deny.not_before = None;
        deny.not_after = None;
        assert_eq!(run(&deny, &lead.key), Ok(deny.clone()));
        // A window that starts after the request expires undecided.
        let mut later = good.clone();
        later.not_before = Some(ts("2026-12-01T11:00:01Z"));
        later.not_after = Some(ts("2026-12-01T11:05:00Z"));
        assert_eq!(run(&later, &lead.key), Err(Rejected::StartsTooLate));
    }

    #[test]
    fn an_approver_certificate_out_of_its_dates_counts_for_nothing() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 6, 30);
        let cert = params.self_signed(&key).unwrap();
        let def = ApproverDef {
            name: "finance-lead@corp.example".into(),
            cert: "approver.pem".into(),
            cert_der: cert.der().to_vec(),
            teams: ["finance-ops".to_owned()].into(),
        };
        let approvers: BTreeMap<_, _> = [(def.name.clone(), def)].into();
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        let signed = sign(&approval("finance-lead@corp.example", 10), &key).unwrap();
        let max = Duration::from_secs(3600);
        assert_eq!(
            check(
                &signed,
                &asked(),
                &approvers,
                max,
                ts("2026-12-01T10:01:00Z")
            ),
            Err(Rejected::CertNotValid)
        );
        // While the certificate was valid, the same decision counts.
        assert_eq!(
            check(
                &signed,
                &asked(),
                &approvers,
                max,
                ts("2026-06-01T10:00:00Z")
            ),
            Ok(approval("finance-lead@corp.example", 10))
        );
    }
}
