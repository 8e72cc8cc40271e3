//! Real clients against a real botward: curl, Python `requests`, the
//! examples, `botward get`, PowerShell when present, and the OpenAPI spec
//! checked against live responses.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn bot_env(cmd: &mut Command, h: &Harness, b: &Botward, addr: Option<String>) {
    let bot = h.bot("invoice-bot");
    cmd.env(
        "BOTWARD_ADDR",
        addr.unwrap_or_else(|| format!("https://{}", b.tcp)),
    )
    .env("BOTWARD_CERT", &bot.cert)
    .env("BOTWARD_KEY", &bot.key)
    .env("BOTWARD_CA", h.ca_pem())
    // The machine's CA bundle setting must not override BOTWARD_CA.
    .env_remove("REQUESTS_CA_BUNDLE")
    .env_remove("CURL_CA_BUNDLE");
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("run client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_botward"))
        .parent()
        .unwrap()
        .join("examples")
}

#[test]
fn real_clients_get_secrets() {
    let Some(h) = Harness::new("clients") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let unix = format!("unix://{}", b.unix.as_ref().unwrap().display());

    // botward get, over TCP and the unix socket.
    for addr in [None, Some(unix.clone())] {
        let mut c = Command::new(common::botward_bin());
        c.args(["get", "erp-db", "--field", "password"]);
        bot_env(&mut c, &h, &b, addr.clone());
        let (code, out, err) = run(c);
        assert_eq!(
            (code, out.as_str()),
            (0, h.erp_password.as_str()),
            "{addr:?}: {err}"
        );

        let mut c = Command::new(common::botward_bin());
        c.args(["get", "erp-db"]);
        bot_env(&mut c, &h, &b, addr.clone());
        let (code, out, _) = run(c);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["password"], h.erp_password.as_str());
    }
    let mut c = Command::new(common::botward_bin());
    c.args(["get", "sftp"]);
    bot_env(&mut c, &h, &b, None);
    let (code, out, err) = run(c);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("botward: forbidden:"), "{err}");

    // examples/curl.sh, over TCP and the unix socket.
    for addr in [None, Some(unix.clone())] {
        let mut c = Command::new("bash");
        c.arg(repo().join("examples/curl.sh"))
            .args(["erp-db", "password"]);
        bot_env(&mut c, &h, &b, addr.clone());
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{addr:?}: {err}");
        assert_eq!(out.trim_end(), h.erp_password, "{addr:?}");
    }

    // Python requests.
    let mut c = Command::new(python());
    c.arg(repo().join("examples/python_client.py"))
        .args(["erp-db", "--field", "password"]);
    bot_env(&mut c, &h, &b, None);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim_end(), h.erp_password);
    let mut c = Command::new(python());
    c.arg(repo().join("examples/python_client.py"))
        .arg("erp-db");
    bot_env(&mut c, &h, &b, None);
    let (code, out, _) = run(c);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["username"],
        "erp_invoice"
    );
    let mut c = Command::new(python());
    c.arg(repo().join("examples/python_client.py")).arg("sftp");
    bot_env(&mut c, &h, &b, None);
    let (code, _, err) = run(c);
    assert_eq!(code, 1);
    assert!(err.starts_with("botward: forbidden:"), "{err}");

    // The Rust example, built by `cargo build --examples` (scripts/test.sh).
    let rust = examples_dir().join("rust_client");
    if rust.exists() {
        let mut c = Command::new(&rust);
        c.args(["erp-db", "password"]);
        bot_env(&mut c, &h, &b, None);
        let (code, out, err) = run(c);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim_end(), h.erp_password);
    } else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "examples/rust_client was not built; run cargo build --examples"
        );
        eprintln!("SKIP rust example: not built (run cargo build --examples)");
    }

    // PowerShell, where it is installed.
    match which("pwsh") {
        Some(pwsh) => {
            let mut c = Command::new(pwsh);
            c.args(["-NoProfile", "-File"])
                .arg(repo().join("examples/powershell_client.ps1"))
                .args(["-Name", "erp-db", "-Field", "password"]);
            bot_env(&mut c, &h, &b, None);
            let (code, out, err) = run(c);
            assert_eq!(code, 0, "{err}");
            assert_eq!(out.trim_end(), h.erp_password);
        }
        None => eprintln!("SKIP PowerShell example: pwsh is not installed"),
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

#[test]
fn live_responses_and_audit_records_match_the_specs() {
    let Some(h) = Harness::new("openapi") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let mut c = Command::new(python());
    c.arg(repo().join("tests/clients/openapi_check.py"))
        .args(["erp-db", "password", "sftp"]);
    bot_env(&mut c, &h, &b, None);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "openapi check failed:\n{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");

    // Some refusals, so the audit file holds every kind of record.
    let ghost = h.issue_bot("ghost-bot", botward::certs::Validity::default());
    curl_as(&h, &ghost, &b.url("/v1/whoami"), &[]);
    curl(&[
        "--cacert",
        &h.ca_pem().display().to_string(),
        &b.url("/v1/whoami"),
    ]);
    b.signal(libc::SIGHUP);
    wait_for_record(&audit, std::time::Duration::from_secs(30), |r| {
        r["kind"] == "config.reload"
    });
    wait_for_record(&audit, std::time::Duration::from_secs(30), |r| {
        r["kind"] == "auth.failure"
    });

    let mut c = Command::new(python());
    c.arg(repo().join("tests/clients/openapi_check.py"))
        .arg("--audit")
        .arg(&audit);
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "audit schema check failed:\n{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn auditor_tools_read_a_real_log() {
    let Some(h) = Harness::new("auditor") else {
        return;
    };
    let audit = h.audit_path();
    let mut b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");
    for _ in 0..5 {
        assert_eq!(b.call(&h, &bot, "GET", "/v1/secrets/erp-db").status, 200);
    }
    assert_eq!(b.call(&h, &bot, "GET", "/v1/secrets/sftp").status, 403);
    curl(&[
        "--cacert",
        &h.ca_pem().display().to_string(),
        &b.url("/v1/whoami"),
    ]);
    wait_for_record(&audit, std::time::Duration::from_secs(30), |r| {
        r["kind"] == "auth.failure"
    });
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(std::time::Duration::from_secs(20)), Some(0));

    let botward = |args: &[&str]| {
        let out = Command::new(common::botward_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file = audit.display().to_string();
    let jsonl = botward(&[
        "audit",
        "query",
        "--bot",
        "invoice-bot",
        "--kind",
        "secret.read",
        "--format",
        "jsonl",
        &file,
    ]);
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["bot"] == "invoice-bot"));
    let denied = botward(&[
        "audit",
        "query",
        "--decision",
        "deny",
        "--format",
        "csv",
        &file,
    ]);
    let lines: Vec<&str> = denied.lines().collect();
    assert!(lines[0].starts_with("ts,seq,id,"), "{denied}");
    assert_eq!(
        lines.len(),
        3,
        "header, the 403 and the failed handshake: {denied}"
    );
    let table = botward(&[
        "audit",
        "query",
        "--since",
        "2000-01-01",
        "--format",
        "table",
        &file,
    ]);
    assert!(table.lines().next().unwrap().starts_with("TS"), "{table}");
    let ocsf = botward(&["audit", "query", "--format", "ocsf", &file]);
    let classes: std::collections::BTreeSet<u64> = ocsf
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["class_uid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        classes.contains(&6003) && classes.contains(&3002),
        "{classes:?}"
    );

    let report = h.dir.join("report.html");
    let out = botward(&[
        "audit",
        "report",
        "--html",
        &report.display().to_string(),
        "--config",
        &b.config_path.display().to_string(),
    ]);
    assert!(out.contains("intact and sealed"), "{out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("intact and sealed") && html.contains("invoice-bot") && html.contains("<svg")
    );
    assert!(!html.to_lowercase().contains("<script"));
    assert!(!html.contains(&h.erp_password));
}
