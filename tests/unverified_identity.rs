//! Only a verified identity is a bot. A certificate that names a bot but
//! cannot be verified leaves an `auth.failure` with the name in
//! `claimed_bot`, and the auditor's tools (`analyze`, `audit report`,
//! `audit query`, OCSF) treat such records as the host's, never as that
//! bot's, also in logs written before `claimed_bot` existed, whose
//! `auth.failure` records carry the name in `bot`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{botward_bin, curl, curl_as, wait_for_record, Auth, BotCert, Harness, TRUST_DOMAIN};
use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("botward-unverified-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the botward CLI; returns (exit code, stdout, stderr).
fn botward(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(botward_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the botward CLI and insists that it succeeds; returns stdout.
fn botward_ok(args: &[&str]) -> String {
    let (code, out, err) = botward(args);
    assert_eq!(code, 0, "botward {args:?} failed:\n{out}\n{err}");
    out
}

fn findings_of<'a>(findings: &'a [Value], bot: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["bot"] == bot).collect()
}

fn ids(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The summary row of a bot in `audit report`: requests, allowed, denied.
fn report_row(html: &str, bot: &str) -> (u64, u64, u64) {
    let after = html
        .split(&format!("\">{bot}</a></td>"))
        .nth(1)
        .unwrap_or_else(|| panic!("no summary row for {bot}"));
    let nums: Vec<u64> = after
        .split("<td class=\"num\">")
        .skip(1)
        .take(3)
        .map(|c| c.split('<').next().unwrap().parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2])
}

/// The "Unauthenticated attempts" section of a report.
fn attempts_section(html: &str) -> &str {
    html.split("<h2>Unauthenticated attempts</h2>")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap_or_else(|| panic!("no unauthenticated attempts section:\n{html}"))
}

/// Writes audit records as JSON lines, the way botward's records look.
struct Log {
    lines: Vec<(Timestamp, String)>,
    n: u64,
}

#[derive(Clone, Copy)]
enum Who<'a> {
    /// A verified bot, as `bot`.
    Bot(&'a str),
    /// An unverified claim as 909baa2 wrote it: the name in `bot`.
    OldClaim(&'a str),
    /// An unverified claim as it is written now: `bot` null, `claimed_bot`.
    Claim(&'a str),
}

impl Log {
    fn new() -> Log {
        Log {
            lines: Vec::new(),
            n: 0,
        }
    }

    fn grants(&mut self, ts: Timestamp, grants: Value) {
        self.lines.push((
            ts,
            json!({"v": 1, "seq": 0, "ts": fmt(ts), "id": "start", "host": "rpa-host-0",
                "kind": "server.start", "decision": "allow", "status": 0, "latency_us": 0,
                "bot": null, "detail": {"grants": grants}})
            .to_string(),
        ));
    }

    /// One record; returns its id, which starts with `g-` for a verified
    /// bot's and `a-` for an unverified claim's.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        ts: Timestamp,
        who: Who<'_>,
        kind: &str,
        status: u16,
        secret: Option<&str>,
        reason: Option<&str>,
        peer: Value,
    ) -> String {
        self.n += 1;
        let (bot, claimed, tag) = match who {
            Who::Bot(b) => (json!(b), None, "g"),
            Who::OldClaim(b) => (json!(b), None, "a"),
            Who::Claim(b) => (Value::Null, Some(b), "a"),
        };
        let id = format!("{tag}-{:06}", self.n);
        let decision = if status == 200 { "allow" } else { "deny" };
        let mut r = json!({
            "v": 1, "seq": 0, "ts": fmt(ts), "id": id, "host": "rpa-host-0", "kind": kind,
            "decision": decision, "status": status, "latency_us": 800, "bot": bot,
            "cert": {"sha256": if tag == "a" { "ee".repeat(32) } else { "ab".repeat(32) },
                     "serial": "01", "not_after": "2027-01-01T00:00:00Z"},
            "peer": peer, "secret": secret, "backend": null, "reason": reason,
            "bytes": 100, "anomaly": null,
        });
        if let Some(c) = claimed {
            r["claimed_bot"] = json!(c);
        }
        self.lines.push((ts, r.to_string()));
        id
    }

    /// A verified bot's request over the unix socket.
    fn read(&mut self, ts: Timestamp, bot: &str, secret: &str, status: u16, exe: &str) -> String {
        let reason = (status != 200).then_some("not_granted");
        let peer = json!({"transport": "unix", "addr": null, "pid": 4000, "uid": 1001, "exe": exe});
        self.record(
            ts,
            Who::Bot(bot),
            "secret.read",
            status,
            Some(secret),
            reason,
            peer,
        )
    }

    /// A refused handshake from `ip`, claiming a bot.
    fn refused(&mut self, ts: Timestamp, who: Who<'_>, ip: &str) -> String {
        let peer = json!({"transport": "tcp", "addr": format!("{ip}:{}", 40000 + self.n % 20000),
            "pid": null, "uid": null, "exe": null});
        self.record(
            ts,
            who,
            "auth.failure",
            0,
            None,
            Some("unknown_issuer"),
            peer,
        )
    }

    fn write(mut self, path: &Path) {
        self.lines.sort_by_key(|(t, _)| *t);
        let text: String = self.lines.into_iter().map(|(_, l)| l + "\n").collect();
        std::fs::write(path, text).unwrap();
    }
}

fn fmt(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `day` days after Monday 2026-03-02, at `h:m:s` UTC.
fn at(day: i64, h: i8, m: i8, s: i8) -> Timestamp {
    date(2026, 3, 2)
        .at(h, m, s, 0)
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp()
        + SignedDuration::from_hours(24 * day)
}

const INVOICE_EXE: &str = "/opt/rpa/bin/invoice";
const REPORT_EXE: &str = "/opt/rpa/bin/report";
const INVOICE_SECRETS: [&str; 3] = ["erp-db", "erp-db-login", "sftp"];

/// invoice-bot's daily run at about 07:00 and report-bot's at 09:00, for
/// `days` days. Returns the ids written.
fn routine(log: &mut Log, days: i64, skip_report: &[i64]) -> Vec<String> {
    let mut ids = Vec::new();
    for d in 0..days {
        let start = at(d, 7, (d % 7) as i8, 0);
        for (k, s) in INVOICE_SECRETS.iter().enumerate() {
            let t = start + SignedDuration::from_secs(3 * k as i64);
            ids.push(log.read(t, "invoice-bot", s, 200, INVOICE_EXE));
        }
        if !skip_report.contains(&d) {
            ids.push(log.read(at(d, 9, 0, 0), "report-bot", "sftp", 200, REPORT_EXE));
        }
    }
    ids
}

fn analyze(log: &Path, format: &str) -> String {
    let log = log.display().to_string();
    botward_ok(&[
        "analyze",
        "--train-days",
        "14",
        "--tz",
        "UTC",
        "--format",
        format,
        &log,
    ])
}

/// Claims in a log in the older shape (`bot` set on `auth.failure` and on
/// 401s) and in the new one (`claimed_bot`), mixed with the real traffic of
/// the bots they claim: no tool counts them as those bots' activity.
#[test]
fn claimed_identities_in_old_and_new_logs_are_never_a_bots_activity() {
    let dir = tmp("claims");
    let path = dir.join("audit.jsonl");
    let mut log = Log::new();
    log.grants(
        at(0, 0, 1, 0),
        json!({"invoice-bot": INVOICE_SECRETS, "report-bot": ["sftp"]}),
    );
    let mut genuine = routine(&mut log, 35, &[20]);
    let mut claims_invoice = Vec::new();
    let mut claims_report = Vec::new();

    // Training: an attacker claims report-bot inside its runs, from TCP (a
    // transport report-bot never uses), eight refusals in three minutes.
    for i in 0..8 {
        let t = at(3, 9, 0, 10) + SignedDuration::from_secs(20 * i);
        claims_report.push(log.refused(t, Who::OldClaim("report-bot"), "198.51.100.9"));
        let t = at(4, 9, 0, 10) + SignedDuration::from_secs(20 * i);
        claims_report.push(log.refused(t, Who::Claim("report-bot"), "198.51.100.9"));
    }
    // A revoked certificate's requests, as 909baa2 recorded them: 401 with
    // the certificate's name in `bot`.
    for i in 0..3 {
        let t = at(5, 9, 0, 20) + SignedDuration::from_secs(5 * i);
        let peer = json!({"transport": "tcp", "addr": "198.51.100.9:41000", "pid": null, "uid": null, "exe": null});
        claims_report.push(log.record(
            t,
            Who::OldClaim("report-bot"),
            "secret.read",
            401,
            Some("sftp"),
            Some("certificate_revoked"),
            peer,
        ));
    }

    // Scored: report-bot itself, once over TCP (a new source), ...
    let peer = json!({"transport": "tcp", "addr": "127.0.0.1:50000", "pid": null, "uid": null, "exe": null});
    genuine.push(log.record(
        at(20, 9, 0, 0),
        Who::Bot("report-bot"),
        "secret.read",
        200,
        Some("sftp"),
        None,
        peer,
    ));
    // ... and six real denials in three minutes (a burst).
    for i in 0..6 {
        let t = at(22, 9, 0, 30) + SignedDuration::from_secs(30 * i);
        genuine.push(log.read(t, "report-bot", "sftp", 403, REPORT_EXE));
    }
    // invoice-bot is denied once, and seven refusals claiming it land in
    // the same ten minutes: 7 of 8 denials would be the attacker's.
    let t = at(25, 7, 4, 10);
    genuine.push(log.read(t, "invoice-bot", "sftp", 403, INVOICE_EXE));
    for i in 0..7 {
        let t = at(25, 7, 4, 20) + SignedDuration::from_secs(15 * i);
        claims_invoice.push(log.refused(t, Who::OldClaim("invoice-bot"), "203.0.113.7"));
    }
    // At 03:00, when invoice-bot never runs: claims of both shapes.
    for i in 0..8 {
        let t = at(26, 3, 0, 0) + SignedDuration::from_secs(10 * i);
        claims_invoice.push(log.refused(t, Who::OldClaim("invoice-bot"), "203.0.113.7"));
        let t = at(26, 3, 0, 5) + SignedDuration::from_secs(10 * i);
        claims_invoice.push(log.refused(t, Who::Claim("invoice-bot"), "203.0.113.7"));
    }
    log.write(&path);
    let file = path.display().to_string();

    // analyze: nothing of the attacker's is invoice-bot's.
    let findings: Vec<Value> = serde_json::from_str(&analyze(&path, "json")).unwrap();
    let invoice = findings_of(&findings, "invoice-bot");
    assert!(
        invoice.is_empty(),
        "invoice-bot behaved; the claims are not its: {invoice:#?}"
    );
    for f in &findings {
        for e in f["evidence"].as_array().unwrap() {
            assert!(
                e.as_str().unwrap().starts_with("g-"),
                "a claim is evidence of a finding: {f:#}"
            );
        }
    }
    // Training did not learn the attacker's source, nor raise the denial
    // ceiling: report-bot's own first TCP call and its own burst are flagged.
    let report = findings_of(&findings, "report-bot");
    assert!(
        report.iter().any(|f| f["detector"] == "new_source"
            && f["actual"].to_string().contains("transport=tcp")
            && f["start"].as_str().unwrap().starts_with("2026-03-22")),
        "the baseline learned the attacker's TCP: {report:#?}"
    );
    assert!(
        report.iter().any(|f| f["detector"] == "denied_burst"
            && f["start"].as_str().unwrap().starts_with("2026-03-24")),
        "the claims raised report-bot's denial ceiling: {report:#?}"
    );
    let text = analyze(&path, "text");
    let head = text.lines().next().unwrap();
    assert!(head.contains(", 2 bots,"), "{head}");
    let unauth = claims_invoice.len() + claims_report.len();
    assert!(
        head.contains(&format!("; {unauth} unauthenticated attempts")),
        "{head}"
    );

    // audit query: --bot selects the bot's own records only, --claimed-bot
    // the claims, --kind auth.failure every refused handshake.
    let mut own: Vec<String> = ids(&botward_ok(&[
        "audit",
        "query",
        "--bot",
        "invoice-bot",
        "--format",
        "jsonl",
        &file,
    ]));
    own.extend(ids(&botward_ok(&[
        "audit",
        "query",
        "--bot",
        "report-bot",
        "--format",
        "jsonl",
        &file,
    ])));
    own.sort();
    genuine.sort();
    assert_eq!(own, genuine, "--bot returns exactly the bots' own records");
    let claimed = ids(&botward_ok(&[
        "audit",
        "query",
        "--claimed-bot",
        "invoice-bot",
        "--format",
        "jsonl",
        &file,
    ]));
    assert_eq!(claimed, claims_invoice);
    let refused = ids(&botward_ok(&[
        "audit",
        "query",
        "--kind",
        "auth.failure",
        "--format",
        "jsonl",
        &file,
    ]));
    assert_eq!(
        refused.len(),
        claims_invoice.len() + claims_report.len() - 3
    );
    assert!(refused.iter().all(|i| i.starts_with("a-")));
    let table = botward_ok(&[
        "audit",
        "query",
        "--claimed-bot",
        "invoice-bot",
        "--format",
        "table",
        &file,
    ]);
    assert_eq!(table.lines().count(), claims_invoice.len() + 1, "{table}");
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.contains("claimed: invoice-bot")),
        "{table}"
    );
    let ocsf = botward_ok(&[
        "audit",
        "query",
        "--claimed-bot",
        "report-bot",
        "--format",
        "ocsf",
        &file,
    ]);
    for line in ocsf.lines() {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["class_uid"], 3002, "{ev}");
        assert!(ev.pointer("/actor/user/name").is_none(), "{ev}");
        assert!(ev.pointer("/user/name").is_none(), "{ev}");
        assert!(ev.pointer("/actor/app_name").is_none(), "{ev}");
        assert_eq!(ev["unmapped"]["claimed_bot"], "report-bot", "{ev}");
    }
    assert_eq!(ocsf.lines().count(), claims_report.len());

    // audit report: the bots' rows count their own requests; the claims
    // are in a section of their own, shown as claims.
    let out = dir.join("report.html");
    botward_ok(&[
        "audit",
        "report",
        "--html",
        &out.display().to_string(),
        &file,
    ]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(report_row(&html, "invoice-bot"), (35 * 3 + 1, 35 * 3, 1));
    assert_eq!(report_row(&html, "report-bot"), (34 + 1 + 6, 35, 6));
    let section = attempts_section(&html);
    assert!(section.contains("tcp 203.0.113.7"), "{section}");
    assert!(section.contains("claimed: invoice-bot"), "{section}");
    assert!(section.contains("tcp 198.51.100.9"), "{section}");
    assert!(section.contains("claimed: report-bot"), "{section}");
    assert!(section.contains("certificate_revoked"), "{section}");
    let invoice_access = html
        .split("\">invoice-bot</h3>")
        .nth(1)
        .and_then(|s| s.split("<h3").next())
        .unwrap();
    assert!(
        !invoice_access.contains("203.0.113.7") && !invoice_access.contains("unknown_issuer"),
        "invoice-bot's accesses hold none of the claims"
    );
}

/// A self-signed client certificate whose URI SAN names bot `name`.
fn self_signed_bot(dir: &Path, name: &str) -> BotCert {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType,
    };
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{TRUST_DOMAIN}/bot/{name}")
            .try_into()
            .unwrap(),
    )];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let (c, k) = (dir.join("forged.pem"), dir.join("forged-key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    BotCert {
        cert: c,
        key: k,
        serial: vec![],
    }
}

/// A self-signed certificate that names invoice-bot, against a real
/// botward: refused at the handshake, recorded as a claim, and attributed
/// to invoice-bot by none of the auditor's tools.
#[test]
fn a_self_signed_certificate_naming_a_bot_is_refused_and_only_a_claim() {
    let Some(h) = Harness::new("unverified") else {
        return;
    };
    let audit = h.audit_path();
    let mut b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let forged = self_signed_bot(&h.dir, "invoice-bot");
    let bot = h.bot("invoice-bot");

    // invoice-bot is denied once; the forger tries seven times.
    let (status, _) = curl_as(&h, &bot, &b.url("/v1/secrets/sftp"), &[]);
    assert_eq!(status, 403);
    for _ in 0..7 {
        let (status, _) = curl_as(&h, &forged, &b.url("/v1/secrets/erp-db"), &[]);
        assert_eq!(status, 0, "refused at the handshake");
    }
    let (status, _) = curl_as(&h, &bot, &b.url("/v1/secrets/erp-db"), &[]);
    assert_eq!(status, 200);
    let refused = wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "auth.failure"
    });
    assert_eq!(refused["reason"], "unknown_issuer", "{refused}");
    assert!(
        refused["bot"].is_null(),
        "an unverified name in bot: {refused}"
    );
    assert_eq!(refused["claimed_bot"], "invoice-bot", "{refused}");
    // Refusals are summed per source and reason: the first in full, the
    // rest in a summary written when the window ends or at shutdown.
    let summed = |recs: &[Value], pred: &dyn Fn(&Value) -> bool| -> u64 {
        recs.iter()
            .filter(|r| r["kind"] == "auth.failure" && pred(r))
            .map(|r| r["detail"]["aggregated"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    // A client without any certificate is refused too, and claims nothing.
    let (status, _) = curl(&[
        "--cacert",
        &h.ca_pem().display().to_string(),
        &b.url("/v1/whoami"),
    ]);
    assert_eq!(status, 0);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(20)), Some(0));
    let file = audit.display().to_string();
    let recs = common::audit_records(&audit);
    assert_eq!(summed(&recs, &|r| r["reason"] == "unknown_issuer"), 7);
    assert!(recs
        .iter()
        .filter(|r| r["kind"] == "auth.failure")
        .all(|r| r["bot"].is_null()));

    // Scored from the first record: seven refusals and the one real denial
    // would make a denied_burst of invoice-bot's.
    let json = botward_ok(&["analyze", "--train-days", "0", "--format", "json", &file]);
    let findings: Vec<Value> = serde_json::from_str(&json).unwrap();
    let burst: Vec<_> = findings
        .iter()
        .filter(|f| f["detector"] == "denied_burst")
        .collect();
    assert!(burst.is_empty(), "{burst:#?}");
    let text = botward_ok(&["analyze", "--train-days", "0", "--format", "text", &file]);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("unauthenticated attempts"),
        "{text}"
    );

    let own = botward_ok(&[
        "audit",
        "query",
        "--bot",
        "invoice-bot",
        "--format",
        "jsonl",
        &file,
    ]);
    let own: Vec<Value> = own
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(own.len(), 2, "invoice-bot's own two requests: {own:#?}");
    assert!(own.iter().all(|r| r["kind"] == "secret.read"));
    let claims = botward_ok(&[
        "audit",
        "query",
        "--claimed-bot",
        "invoice-bot",
        "--format",
        "jsonl",
        &file,
    ]);
    let claims: Vec<Value> = claims
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summed(&claims, &|_| true), 7, "{claims:#?}");

    let out = h.dir.join("report.html");
    botward_ok(&[
        "audit",
        "report",
        "--html",
        &out.display().to_string(),
        "--config",
        &b.config_path.display().to_string(),
    ]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(report_row(&html, "invoice-bot"), (2, 1, 1));
    let section = attempts_section(&html);
    assert!(section.contains("claimed: invoice-bot"), "{section}");
    assert!(section.contains("<td class=\"num\">7</td>"), "{section}");
}
