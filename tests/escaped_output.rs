//! Whatever an audit record, a config file or a peer holds, every text
//! output of every command prints it escaped: a crafted exe path, file
//! name or error message cannot forge a line or recolour a terminal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::botward_bin;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

const CRAFTED_EXE: &str = "/opt/x\n\u{1b}[31mFAKE LINE";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("botward-escaped-{name}-{}", std::process::id()));
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

/// report-bot's daily read of sftp at 09:00 UTC for `days` days from
/// 2026-03-02, then one more at 09:30 the next day from `exe`.
fn write_log(path: &Path, days: i64, exe: &str) {
    let start: Timestamp = "2026-03-02T09:00:00Z".parse().unwrap();
    let line = |n: i64, ts: Timestamp, exe: &str| -> String {
        json!({
            "v": 1, "seq": n, "ts": ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "id": format!("r-{n}"), "host": "rpa-host-0", "kind": "secret.read",
            "decision": "allow", "status": 200, "latency_us": 800, "bot": "report-bot",
            "cert": null,
            "peer": {"transport": "unix", "addr": null, "pid": 4000, "uid": 1001, "exe": exe},
            "secret": "sftp", "backend": null, "reason": null, "bytes": 100, "anomaly": null,
        })
        .to_string()
            + "\n"
    };
    let day = SignedDuration::from_hours(24);
    let mut text: String = (0..days)
        .map(|d| line(d, start + day * d as i32, "/opt/rpa/bin/report"))
        .collect();
    text.push_str(&line(
        days,
        start + day * days as i32 + SignedDuration::from_mins(30),
        exe,
    ));
    std::fs::write(path, text).unwrap();
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

/// A record whose exe holds a newline and an ANSI escape: every text
/// output that shows it prints it escaped, on its own line.
#[test]
fn a_crafted_exe_path_is_printed_escaped_on_one_line() {
    let dir = tmp("escape");
    let path = dir.join("audit.jsonl");
    write_log(&path, 16, CRAFTED_EXE);
    let file = path.display().to_string();
    let escaped = "/opt/x\\n\\x1b[31mFAKE LINE";

    let no_raw_controls = |what: &str, out: &str| {
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\r'),
            "{what} printed a control character raw:\n{out}"
        );
        assert!(
            !out.lines()
                .any(|l| l.starts_with("FAKE LINE") || l.contains("\u{1b}")),
            "{what} forged a line:\n{out}"
        );
    };

    let text = analyze(&path, "text");
    no_raw_controls("analyze --format text", &text);
    let line = text
        .lines()
        .find(|l| l.contains("FAKE LINE"))
        .unwrap_or_else(|| panic!("the new source is reported:\n{text}"));
    assert!(
        line.contains("report-bot") && line.contains("new_source") && line.contains(escaped),
        "{line}"
    );

    let json = analyze(&path, "json");
    no_raw_controls("analyze --format json", &json);
    let findings: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert!(findings
        .iter()
        .any(|f| f["explanation"].as_str().unwrap().contains(CRAFTED_EXE)));

    let html = analyze(&path, "html");
    no_raw_controls("analyze --format html", &html);
    assert!(html.contains(escaped), "analyze --format html");

    let csv = botward_ok(&[
        "audit",
        "query",
        "--bot",
        "report-bot",
        "--format",
        "csv",
        &file,
    ]);
    no_raw_controls("audit query --format csv", &csv);
    assert_eq!(
        csv.lines().count(),
        1 + 16 + 1,
        "one line per record:\n{csv}"
    );
    assert!(csv.lines().any(|l| l.contains(escaped)), "{csv}");

    let table = botward_ok(&[
        "audit",
        "query",
        "--bot",
        "report-bot",
        "--format",
        "table",
        &file,
    ]);
    no_raw_controls("audit query --format table", &table);
    assert_eq!(
        table.lines().count(),
        1 + 16 + 1,
        "one line per record:\n{table}"
    );
    assert!(table.contains("exe=/opt/x\\n\\x1b"), "{table}");

    let jsonl = botward_ok(&[
        "audit",
        "query",
        "--bot",
        "report-bot",
        "--format",
        "jsonl",
        &file,
    ]);
    no_raw_controls("audit query --format jsonl", &jsonl);
    assert!(jsonl.contains(
        CRAFTED_EXE
            .replace('\n', "\\n")
            .replace('\u{1b}', "\\u001b")
            .as_str()
    ));

    let out = dir.join("report.html");
    botward_ok(&[
        "audit",
        "report",
        "--html",
        &out.display().to_string(),
        &file,
    ]);
    let report = std::fs::read_to_string(&out).unwrap();
    no_raw_controls("audit report", &report);
    assert!(report.contains(escaped), "audit report");

    // A log file whose very name is crafted: verify names it escaped.
    let crafted = dir.join("audit\n\u{1b}[32mintact and sealed.jsonl");
    std::fs::copy(&path, &crafted).unwrap();
    let key = dir.join("audit.pub");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let (code, out, err) = botward(&[
        "audit",
        "verify",
        "--public-key",
        &key.display().to_string(),
        &crafted.display().to_string(),
    ]);
    assert_eq!(
        code, 1,
        "records without a chain are not sealed: {out}{err}"
    );
    no_raw_controls("audit verify", &format!("{out}{err}"));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("TAMPERED: ") && out.contains("audit\\n\\x1b[32mintact"),
        "{out}"
    );

    // check-config: every problem line names the file escaped.
    let config = dir.join("bad\n\u{1b}[31mok.toml");
    std::fs::write(&config, "[listen]\ntcp = \"localhost:eighty\"\n").unwrap();
    let (code, out, err) = botward(&["check-config", &config.display().to_string()]);
    assert_eq!(code, 64, "{out}{err}");
    no_raw_controls("check-config", &format!("{out}{err}"));
    assert!(
        err.lines()
            .all(|l| l.contains("bad\\n\\x1b[31mok.toml") || l.contains("problem(s) found")),
        "{err}"
    );
}

/// What a hostile peer answers reaches the terminal escaped: `botward get`
/// against a TLS server (holding a certificate of the CA the bot trusts)
/// whose error message forges a line and recolours the terminal.
#[test]
fn a_peers_error_message_is_printed_escaped() {
    let dir = tmp("peer");
    let tls = dir.join("tls").display().to_string();
    botward_ok(&["certs", "init", "--dir", &tls]);
    botward_ok(&["certs", "issue", "--bot", "invoice-bot", "--dir", &tls]);
    let server = r#"
import json, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/server.pem", sys.argv[1] + "/server-key.pem")
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
t = ctx.wrap_socket(c, server_side=True)
req = b""
while b"\r\n\r\n" not in req:
    req += t.recv(4096)
body = json.dumps({"error": {"code": "forbidden", "request_id": "r1",
    "message": "denied\n\u001b[32mbotward: access granted\u001b[0m"}}).encode()
t.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
t.close()
"#;
    let mut peer = Command::new(common::python())
        .args(["-c", server, &tls])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(peer.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let out = Command::new(botward_bin())
        .args(["get", "erp-db"])
        .env("BOTWARD_ADDR", format!("https://127.0.0.1:{}", port.trim()))
        .env("BOTWARD_CERT", format!("{tls}/invoice-bot.pem"))
        .env("BOTWARD_KEY", format!("{tls}/invoice-bot-key.pem"))
        .env("BOTWARD_CA", format!("{tls}/ca.pem"))
        .output()
        .unwrap();
    // botward is done with it: the peer has answered, or never will.
    let _ = peer.kill();
    let _ = peer.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one error, one line: {err}");
    assert!(
        err.contains("forbidden: denied\\n\\x1b[32mbotward: access granted\\x1b[0m (request r1)"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err}");
}
