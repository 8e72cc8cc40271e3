//! The audit tools on logs whose records an attacker shaped: every command
//! runs to completion, whatever the records say. The `audit_line` fuzz
//! target (`fuzz/`) checks the same readers on generated logs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("botward-{test}-{}", common::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn botward(args: &[&str]) -> Output {
    Command::new(common::botward_bin())
        .args(args)
        .output()
        .expect("run botward")
}

/// Exit 0, and nothing on stderr that looks like a panic.
fn assert_completes(args: &[&str]) {
    let out = botward(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "botward {args:?}: {:?}\n{stderr}",
        out.status
    );
}

fn record(ts: &str) -> String {
    format!(
        r#"{{"v":1,"seq":0,"ts":"{ts}","id":"a1","host":"rpa-01","kind":"secret.read","decision":"allow","status":200,"bot":"invoice-bot","secret":"erp-db","peer":{{"transport":"unix","addr":null,"pid":7,"uid":1001,"exe":"/opt/rpa/bin/python3"}}}}"#
    )
}

fn write_log(dir: &Path, timestamps: &[&str]) -> String {
    let log = dir.join("audit.jsonl");
    let text: String = timestamps.iter().map(|t| record(t) + "\n").collect();
    std::fs::write(&log, text).unwrap();
    log.to_str().unwrap().to_owned()
}

#[test]
fn analyze_takes_records_at_the_end_of_time() {
    let dir = scratch("end-of-time");
    let log = write_log(
        &dir,
        &[
            "9999-12-30T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-03-02T08:00:00.000000Z",
        ],
    );
    for format in ["text", "json", "html"] {
        assert_completes(&["analyze", "--tz", "UTC", "--format", format, &log]);
    }
    let html = dir.join("report.html");
    assert_completes(&["audit", "report", "--html", html.to_str().unwrap(), &log]);
    assert_completes(&["audit", "query", "--format", "ocsf", &log]);
}

#[test]
fn analyze_takes_a_training_window_past_the_end_of_time() {
    let dir = scratch("long-training");
    let log = write_log(&dir, &["2026-03-02T08:00:00.000000Z"]);
    assert_completes(&["analyze", "--tz", "UTC", "--train-days", "4294967295", &log]);
}
