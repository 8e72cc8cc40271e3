//! `botward.exe serve` under Wine, against a real OpenBao and PostgreSQL on
//! the Linux side: curl from Linux over loopback TCP, `botward.exe get`
//! under Wine over the named pipe and TCP, process rules by exe and SID,
//! refusals in the audit log, leases revoked at shutdown, the log verified
//! by the Linux binary, and a shared state file refused at start.
//!
//! scripts/windows.sh runs these (they are `#[ignore]`d in the Linux run),
//! with the Windows build and its prefix named as tests/common/wine.rs
//! reads them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use botward::dev::{BotEntry, ConfigTemplate, SecretEntry, VaultLogin};
use common::*;
use serde_json::Value;

/// Starts `botward.exe serve` under Wine and waits until it listens.
fn serve(wine: &Wine, config: &Path, dir: &Path) -> WineProcess {
    let cfg = z_drive(config);
    let mut cmd = wine.command(["serve", "--config", &cfg]);
    cmd.env("RUST_LOG", "info");
    let mut p = WineProcess::spawn(cmd, dir, "botward");
    p.wait_for_line(LIMIT, |l| l.starts_with("botward ready"));
    p
}

/// A generous bound for a step under Wine on a busy machine.
const LIMIT: Duration = Duration::from_secs(120);

/// A free loopback port for botward.exe to listen on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The config, with every path in its Windows form.
fn config(h: &Harness, audit: &Path, port: u16, pipe: &str, extra: &str) -> String {
    let login = VaultLogin::Token {
        token_file: PathBuf::from(z_drive(&h.token_file)),
    };
    let text = ConfigTemplate::new(
        Path::new(&z_drive(&h.tls)),
        &h.bao.addr,
        login,
        Path::new(&z_drive(audit)),
    )
    .tcp(&format!("127.0.0.1:{port}"))
    .trust_domain(TRUST_DOMAIN)
    .secrets(vec![
        SecretEntry::kv("erp-db", "rpa/erp-db"),
        SecretEntry::dynamic("erp-db-login", "database/creds/erp-readonly"),
    ])
    .bots(vec![BotEntry::new(
        "invoice-bot",
        "alice@corp.example",
        "finance-ops",
        &["erp-db", "erp-db-login"],
    )])
    .extra(extra)
    .render();
    text.replace("[listen]\n", &format!("[listen]\npipe = '{pipe}'\n"))
}

/// A bot granted erp-db that may run only as `rule`.
fn pinned_bot(name: &str, rule: &str) -> String {
    format!(
        "\n[[bot]]\nname = \"{name}\"\nowner = \"x@corp.example\"\nteam = \"t\"\nsecrets = [\"erp-db\"]\nprocesses = [{rule}]\n"
    )
}

/// Reads `name` as `bot` with `exe get` under Wine at `addr`: the exit
/// code, and stdout followed by stderr.
fn get(wine: &Wine, exe: &Path, h: &Harness, bot: &str, addr: &str, name: &str) -> (i32, String) {
    let b = h.bot(bot);
    let (cert, key, ca) = (z_drive(&b.cert), z_drive(&b.key), z_drive(&h.ca_pem()));
    let cmd = wine.wine_command(
        exe,
        [
            "get", "--addr", addr, "--cert", &cert, "--key", &key, "--ca", &ca, "--field",
            "password", name,
        ],
    );
    let done = WineProcess::spawn(cmd, &h.dir, "get").finish(LIMIT);
    (
        done.code.unwrap_or(-1),
        format!("{}{}", done.stdout, done.stderr),
    )
}

fn records(audit: &Path, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    audit_records(audit)
        .into_iter()
        .filter(|r| pred(r))
        .collect()
}

#[test]
#[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
fn botward_exe_serves_bots_over_tcp_and_a_named_pipe_under_wine() {
    let Some(wine) = Wine::find("windows-e2e") else {
        return;
    };
    let Some(h) = Harness::new("windows-e2e") else {
        return;
    };
    let Some(pg) = Postgres::start("windows-e2e") else {
        return;
    };
    h.enable_database(&pg, "1h");
    for bot in ["exe-bot", "sid-bot", "wrong-sid-bot"] {
        h.issue_bot(bot, Default::default());
    }
    // Another Windows program: the same binary under another name.
    let other = h.dir.join("other.exe");
    std::fs::copy(&wine.exe, &other).unwrap();
    let audit = h.dir.join("audit.jsonl");
    let port = free_port();
    let pipe = format!(r"\\.\pipe\botward-e2e-{}", std::process::id());
    let npipe = format!("npipe:////./pipe/botward-e2e-{}", std::process::id());
    let tcp = format!("https://127.0.0.1:{port}");
    let exe_rule = format!(
        "{{ exe = '{}' }}",
        z_drive(&wine.exe.canonicalize().unwrap())
    );
    let extra = pinned_bot("exe-bot", &exe_rule)
        + &pinned_bot("wrong-sid-bot", r#"{ sid = "S-1-5-21-1-2-3-4" }"#);
    let config_path = h.dir.join("botward.toml");
    std::fs::write(&config_path, config(&h, &audit, port, &pipe, &extra)).unwrap();
    let mut served = serve(&wine, &config_path, &h.dir);

    // curl from Linux, over loopback TCP with mTLS.
    let url = format!("{tcp}/v1/secrets/erp-db");
    let (status, body) = curl_as(&h, &h.bot("invoice-bot"), &url, &[]);
    assert_eq!(status, 200, "{body}\n{}", served.stderr_text());
    assert!(body.contains(&h.erp_password));

    // botward.exe get under Wine, over the named pipe.
    let (code, out) = get(&wine, &wine.exe, &h, "invoice-bot", &npipe, "erp-db");
    assert_eq!((code, out.trim()), (0, h.erp_password.as_str()), "{out}");

    // An exe rule admits botward.exe, over the pipe and over TCP, where the
    // owner comes from the connection table; another program and a Linux
    // process (curl, which Wine cannot name) are refused.
    assert_eq!(get(&wine, &wine.exe, &h, "exe-bot", &npipe, "erp-db").0, 0);
    assert_eq!(get(&wine, &wine.exe, &h, "exe-bot", &tcp, "erp-db").0, 0);
    let (code, out) = get(&wine, &other, &h, "exe-bot", &npipe, "erp-db");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("forbidden"), "{out}");
    let (status, _) = curl_as(&h, &h.bot("exe-bot"), &url, &[]);
    assert_eq!(status, 403);
    assert_ne!(
        get(&wine, &wine.exe, &h, "wrong-sid-bot", &npipe, "erp-db").0,
        0
    );

    let allowed = records(&audit, |r| {
        r["bot"] == "exe-bot" && r["decision"] == "allow" && r["kind"] == "secret.read"
    });
    assert_eq!(allowed.len(), 2, "{allowed:?}");
    let via_pipe = &allowed[0]["peer"];
    assert_eq!(via_pipe["transport"], "pipe");
    assert_eq!(allowed[1]["peer"]["transport"], "tcp");
    let sid = via_pipe["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("S-1-5-"), "{via_pipe}");
    assert!(
        via_pipe["user"].as_str().unwrap().contains('\\'),
        "{via_pipe}"
    );
    assert!(via_pipe["pid"].as_i64().unwrap() > 0);
    assert!(allowed[1]["peer"]["pid"].as_i64().unwrap() > 0);
    let reasons: Vec<(String, String)> = records(&audit, |r| r["decision"] == "deny")
        .iter()
        .map(|r| {
            (
                r["bot"].as_str().unwrap_or("").to_owned(),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for want in [
        ("exe-bot", "process_mismatch"),
        ("exe-bot", "process_unverifiable"),
        ("wrong-sid-bot", "process_mismatch"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(b, r)| (b.as_str(), r.as_str()) == want),
            "{want:?} not in {reasons:?}"
        );
    }

    // A SID rule with the account Wine runs everything as, added by a
    // reload the file watcher picks up.
    let extra = extra + &pinned_bot("sid-bot", &format!("{{ sid = \"{sid}\" }}"));
    std::fs::write(&config_path, config(&h, &audit, port, &pipe, &extra)).unwrap();
    wait_for_record(&audit, Duration::from_secs(120), |r| {
        r["kind"] == "config.reload" && r["decision"] == "allow"
    });
    let (code, out) = get(&wine, &wine.exe, &h, "sid-bot", &npipe, "erp-db");
    assert_eq!(code, 0, "{out}");

    // A dynamic lease is revoked when botward.exe stops.
    let login_url = format!("{tcp}/v1/secrets/erp-db-login");
    let (status, body) = curl_as(&h, &h.bot("invoice-bot"), &login_url, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.db_leases(), 1);
    assert_eq!(served.stop(LIMIT), Some(0), "{}", served.stderr_text());
    assert_eq!(h.db_leases(), 0, "a lease outlived botward.exe");
    assert!(!records(&audit, |r| r["kind"] == "lease.release").is_empty());

    // The log written on Windows verifies with the Linux binary.
    let pub_key = audit.with_extension("jsonl.pub");
    let seed = audit.with_extension("jsonl.seed");
    let out = Command::new(botward_bin())
        .args(["audit", "verify", "--public-key"])
        .arg(&pub_key)
        .arg("--seed")
        .arg(&seed)
        .arg(&audit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("intact and sealed"), "{text}");

    // Its own state files are private: it starts again on them.
    let mut again = serve(&wine, &config_path, &h.dir);
    assert_eq!(again.stop(LIMIT), Some(0), "{}", again.stderr_text());
}

#[test]
#[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
fn a_state_file_others_may_read_is_refused_at_start() {
    let Some(wine) = Wine::find("windows-dacl") else {
        return;
    };
    let Some(h) = Harness::new("windows-dacl") else {
        return;
    };
    let audit = h.dir.join("audit.jsonl");
    // A file Linux made with mode 0644: Wine gives it a DACL that lets
    // Everyone read it.
    std::fs::write(&audit, b"").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pipe = format!(r"\\.\pipe\botward-dacl-{}", std::process::id());
    let config_path = h.dir.join("botward.toml");
    std::fs::write(&config_path, config(&h, &audit, free_port(), &pipe, "")).unwrap();
    let cfg = z_drive(&config_path);
    let done = wine.run(&h.dir, ["serve", "--config", &cfg], LIMIT);
    assert_ne!(done.code, Some(0), "{done:?}");
    assert!(done.stderr.contains("may be read by Everyone"), "{done:?}");
    assert_eq!(
        std::fs::read(&audit).unwrap(),
        b"",
        "the refused log was written to"
    );
}

#[test]
#[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
fn a_log_written_on_linux_verifies_with_botward_exe() {
    let Some(wine) = Wine::find("windows-verify") else {
        return;
    };
    let Some(h) = Harness::new("windows-verify") else {
        return;
    };
    let audit = h.audit_path();
    let mut b = h.start(&h.config(Auth::RootToken, &audit, ""));
    let (status, _) = b.get_json(&h, &h.bot("invoice-bot"), "/v1/secrets/erp-db");
    assert_eq!(status, 200);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(LIMIT), Some(0), "{}", b.log_text());
    let (pub_key, seed) = (
        audit.with_extension("jsonl.pub"),
        audit.with_extension("jsonl.seed"),
    );
    let (pub_key, seed, log) = (z_drive(&pub_key), z_drive(&seed), z_drive(&audit));
    let args = [
        "audit",
        "verify",
        "--public-key",
        &pub_key,
        "--seed",
        &seed,
        &log,
    ];
    let done = wine.run(&h.dir, args, LIMIT);
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.stdout.contains("intact and sealed"), "{done:?}");
}
