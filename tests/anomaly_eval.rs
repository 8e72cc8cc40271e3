//! Evaluation of the anomaly detectors on labelled scenarios: recall per
//! detector and false findings per 100 bot-days, over several seeds.

use std::collections::BTreeMap;

use botward::anomaly::scenario::{generate, Label};
use botward::anomaly::{Analyzer, Detector, Finding, Options};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

fn matches(f: &Finding, l: &Label) -> bool {
    let (Ok(s), Ok(e)) = (f.start.parse::<Timestamp>(), f.end.parse::<Timestamp>()) else {
        return false;
    };
    f.bot == l.bot
        && f.detector == l.detector
        && s <= l.end + SignedDuration::from_mins(6)
        && e >= l.start - SignedDuration::from_mins(1)
}

#[test]
fn detectors_reach_recall_0_9_with_under_1_false_finding_per_100_bot_days() {
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let mut hits: BTreeMap<Detector, (usize, usize)> = BTreeMap::new();
    let mut false_findings = 0usize;
    let mut bot_days = 0.0;
    let mut false_examples = Vec::new();
    for seed in [1u64, 2, 3, 4, 5] {
        let sc = generate(seed, 1, 56, 28, &tz);
        let mut a = Analyzer::new(Options {
            train: SignedDuration::from_hours(24 * 28),
            tz: tz.clone(),
        });
        for line in &sc.lines {
            a.line(line.as_bytes());
        }
        let out = a.finish();
        bot_days += out.scored_bot_days;
        for l in &sc.labels {
            let e = hits.entry(l.detector).or_default();
            e.1 += 1;
            if out.findings.iter().any(|f| matches(f, l)) {
                e.0 += 1;
            }
        }
        // A finding is false when it points at normal behaviour: it overlaps
        // no injected anomaly of its bot. (A tenfold run that also reads its
        // secrets in a new order is one anomaly seen by two detectors.)
        for f in out
            .findings
            .iter()
            .filter(|f| Detector::BEHAVIOURAL.contains(&f.detector))
        {
            let on_anomaly = sc.labels.iter().any(|l| {
                let relabelled = Label {
                    detector: f.detector,
                    ..l.clone()
                };
                matches(f, &relabelled)
            });
            if !on_anomaly {
                false_findings += 1;
                if false_examples.len() < 10 {
                    false_examples.push(format!(
                        "{} {} {} {}",
                        f.bot, f.detector, f.start, f.explanation
                    ));
                }
            }
        }
    }
    let rate = false_findings as f64 / bot_days * 100.0;
    eprintln!("detector          recall   (found/injected)");
    for d in Detector::BEHAVIOURAL {
        let (found, total) = hits.get(&d).copied().unwrap_or((0, 0));
        eprintln!(
            "{d:16}  {:6.3}   ({found}/{total})",
            found as f64 / total.max(1) as f64
        );
    }
    eprintln!(
        "false findings: {false_findings} over {bot_days:.0} bot-days = {rate:.2} per 100 bot-days"
    );
    for e in &false_examples {
        eprintln!("  false: {e}");
    }
    for d in Detector::BEHAVIOURAL {
        let (found, total) = hits[&d];
        assert!(total > 0, "{d}: nothing injected");
        assert!(
            found as f64 / total as f64 >= 0.9,
            "{d}: recall {found}/{total}"
        );
    }
    assert!(rate <= 1.0, "{rate:.2} false findings per 100 bot-days");
}

#[test]
fn least_privilege_findings_and_the_cli_formats() {
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let sc = generate(11, 1, 56, 28, &tz);
    let dir = std::env::temp_dir().join(format!("botward-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    std::fs::write(&log, sc.lines.join("\n") + "\n").unwrap();
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_botward"))
            .args([
                "analyze",
                "--train-days",
                "28",
                "--tz",
                "Europe/Berlin",
                "--format",
                format,
            ])
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (json, stderr) = run("json");
    assert!(
        stderr.contains("no chain fields"),
        "unverified logs are analysed with a warning: {stderr}"
    );
    let findings: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(!findings.is_empty());
    for f in &findings {
        for key in [
            "bot",
            "detector",
            "score",
            "start",
            "end",
            "actual",
            "typical",
            "explanation",
            "evidence",
        ] {
            assert!(f.get(key).is_some(), "{key} missing in {f}");
        }
        assert!(f["score"].as_u64().unwrap() <= 100);
    }
    let unused = findings
        .iter()
        .find(|f| f["detector"] == "unused_grant")
        .expect("an unused grant");
    assert_eq!(unused["bot"], "invoice-bot");
    assert_eq!(unused["actual"]["secret"], "legacy-ftp");
    assert_eq!(
        unused["typical"]["suggested_grant"],
        serde_json::json!(["erp-db", "erp-db-login", "sftp"])
    );
    let creep = findings
        .iter()
        .find(|f| f["detector"] == "privilege_creep")
        .expect("privilege creep");
    assert_eq!(creep["bot"], "report-bot");
    assert_eq!(creep["actual"]["added_grant"], "payroll-db");

    let (text, _) = run("text");
    assert!(text.contains("suggested minimal grants"), "{text}");
    assert!(
        text.contains("invoice-bot: [\"erp-db\", \"erp-db-login\", \"sftp\"]"),
        "{text}"
    );
    let (html, _) = run("html");
    assert!(
        html.contains("<svg") && !html.to_lowercase().contains("<script"),
        "html report"
    );
}
