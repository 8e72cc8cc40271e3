//! Just-in-time elevation against a real OpenBao (and PostgreSQL for a
//! dynamic privileged secret): requests, decisions signed with approver
//! keys made here, through the Vault mailbox and as files, every check a
//! decision must pass, window ends that revoke their leases, and the
//! records of it all.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const OWNER: &str = "alice@corp.example";

/// An approver's certificate and key, made for the test.
struct Approver {
    name: String,
    cert: PathBuf,
    key: PathBuf,
}

fn approver(h: &Harness, name: &str) -> Approver {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(name.try_into().unwrap())];
    let cert = params.self_signed(&key).unwrap();
    let dir = h.dir.join("approvers");
    std::fs::create_dir_all(&dir).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    Approver {
        name: name.into(),
        cert: c,
        key: k,
    }
}

/// The standard config plus the privileged KV secret `sap-admin` (and,
/// with a database, the privileged dynamic `erp-admin-login`), both
/// granted to invoice-bot, `[elevation]` and the approvers as
/// (approver, teams).
fn config(
    h: &Harness,
    approvers: &[(&Approver, &str)],
    approvals: u32,
    webhook: Option<&str>,
    db: bool,
) -> String {
    let mut extra = format!(
        "[elevation]\nmax_window = \"1h\"\nmailbox = {{ mount = \"secret\", prefix = \"botward/elevations\" }}\npoll_interval = \"1s\"\n{}\n\
         [[secret]]\nname = \"sap-admin\"\nkind = \"kv\"\nmount = \"secret\"\npath = \"rpa/sap-admin\"\nprivileged = true\napprovals = {approvals}\n",
        webhook.map(|w| format!("webhook = \"{w}\"")).unwrap_or_default()
    );
    if db {
        extra.push_str("\n[[secret]]\nname = \"erp-admin-login\"\nkind = \"dynamic\"\npath = \"database/creds/erp-readonly\"\nprivileged = true\n");
    }
    for (a, teams) in approvers {
        extra.push_str(&format!(
            "\n[[approver]]\nname = \"{}\"\ncert = \"{}\"\nteams = [{teams}]\n",
            a.name,
            a.cert.display()
        ));
    }
    let grants = if db {
        r#"secrets = ["erp-db", "sap-admin", "erp-admin-login"]"#
    } else {
        r#"secrets = ["erp-db", "sap-admin"]"#
    };
    h.config(Auth::AppRole, &h.audit_path(), &extra)
        .replacen(r#"secrets = ["erp-db"]"#, grants, 1)
}

/// botward's Vault policy: the secrets, the database, leases and the
/// elevation mailbox.
fn policy(h: &Harness) {
    h.bao
        .kv_put(
            "rpa/sap-admin",
            &[("username", "sap_admin"), ("password", "sap-admin-pw")],
        )
        .unwrap();
    let policy = "path \"secret/data/rpa/*\" { capabilities = [\"read\"] }\n\
                  path \"database/creds/*\" { capabilities = [\"read\"] }\n\
                  path \"sys/leases/revoke\" { capabilities = [\"update\"] }\n\
                  path \"sys/leases/renew\" { capabilities = [\"update\"] }\n\
                  path \"secret/data/botward/elevations/requests/*\" { capabilities = [\"create\", \"update\", \"read\"] }\n\
                  path \"secret/data/botward/elevations/decisions/*\" { capabilities = [\"read\"] }\n\
                  path \"secret/metadata/botward/elevations/decisions/*\" { capabilities = [\"list\"] }\n";
    h.bao
        .cli(&["policy", "write", "botward", "-"], Some(policy))
        .unwrap();
}

fn post(h: &Harness, b: &Botward, bot: &BotCert, path: &str, body: &str) -> (u16, Value) {
    let (code, text) = curl_as(
        h,
        bot,
        &b.url(path),
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ],
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ask(h: &Harness, b: &Botward, secret: &str, duration: &str) -> String {
    let body = format!(
        r#"{{"secret":"{secret}","duration":"{duration}","reason":"month-end close","ticket":"CHG-1234"}}"#
    );
    let (code, v) = post(h, b, &h.bot("invoice-bot"), "/v1/elevations", &body);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "pending");
    v["id"].as_str().unwrap().to_owned()
}

fn status(h: &Harness, b: &Botward, id: &str, wait: &str) -> Value {
    let path = if wait.is_empty() {
        format!("/v1/elevations/{id}")
    } else {
        format!("/v1/elevations/{id}?wait={wait}")
    };
    let (code, v) = b.get_json(h, &h.bot("invoice-bot"), &path);
    assert_eq!(code, 200, "{v}");
    v
}

/// Waits until request `id` has `want` as its status.
fn await_status(h: &Harness, b: &Botward, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = status(h, b, id, "10s");
        if v["status"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "still {v}");
    }
}

/// Runs `botward elevation ARGS` as an approver with the root token.
fn approver_cli(h: &Harness, args: &[&str]) -> (i32, String) {
    let out = Command::new(botward_bin())
        .arg("elevation")
        .args(args)
        .env("VAULT_ADDR", &h.bao.addr)
        .env("VAULT_TOKEN", h.bao.root_token())
        .env_remove("VAULT_CACERT")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn decide(h: &Harness, verdict: &str, id: &str, a: &Approver, more: &[&str]) -> (i32, String) {
    let (c, k) = (a.cert.display().to_string(), a.key.display().to_string());
    let mut args = vec![verdict, id, "--cert", &c, "--key", &k];
    args.extend_from_slice(more);
    approver_cli(h, &args)
}

fn read(h: &Harness, b: &Botward, secret: &str) -> (u16, Value) {
    b.get_json(h, &h.bot("invoice-bot"), &format!("/v1/secrets/{secret}"))
}

fn reason_of(h: &Harness, id: &str) -> Vec<Value> {
    audit_records(&h.audit_path())
        .into_iter()
        .filter(|r| r["detail"]["elevation"]["id"] == id || r["elevation"]["id"] == id)
        .collect()
}

/// One HTTP request received on a local listener, answered 200.
fn webhook_listener() -> (String, std::sync::mpsc::Receiver<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/rpa", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_owned());
                    }
                }
            };
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Some(b) = body {
                let _ = tx.send(b);
            }
        }
    });
    (url, rx)
}

#[test]
fn a_privileged_read_needs_an_approved_window_and_its_end_revokes_the_lease() {
    let Some(h) = Harness::new("elev-window") else {
        return;
    };
    let Some(pg) = Postgres::start("elev-window") else {
        return;
    };
    h.enable_database(&pg, "1h");
    policy(&h);
    let lead = approver(&h, "finance-lead@corp.example");
    let (hook, hooked) = webhook_listener();
    let b = h.start(&config(
        &h,
        &[(&lead, "\"finance-ops\"")],
        1,
        Some(&hook),
        true,
    ));

    // No standing access, grant or not.
    let (code, v) = read(&h, &b, "sap-admin");
    assert_eq!(code, 403, "{v}");
    let last = audit_records(&h.audit_path()).pop().unwrap();
    assert_eq!(last["reason"], "elevation_required");
    assert_eq!(
        read(&h, &b, "erp-db").0,
        200,
        "ordinary grants are untouched"
    );

    let id = ask(&h, &b, "sap-admin", "15m");
    let note: Value = serde_json::from_str(
        &hooked
            .recv_timeout(Duration::from_secs(30))
            .expect("webhook called"),
    )
    .unwrap();
    assert!(note["text"].as_str().unwrap().contains(&id), "{note}");
    assert_eq!(note["elevation"]["ticket"], "CHG-1234");
    let (code, listed) = approver_cli(&h, &["list", "--pending"]);
    assert_eq!(code, 0, "{listed}");
    assert!(
        listed.contains(&id) && listed.contains("invoice-bot") && listed.contains("CHG-1234"),
        "{listed}"
    );
    assert_eq!(read(&h, &b, "sap-admin").0, 403, "pending opens nothing");

    let (code, out) = decide(&h, "approve", &id, &lead, &[]);
    assert_eq!(code, 0, "{out}");
    let approved_at = Instant::now();
    let v = await_status(&h, &b, &id, "approved");
    assert_eq!(
        v["approvers"],
        serde_json::json!(["finance-lead@corp.example"])
    );
    let (code, secret) = read(&h, &b, "sap-admin");
    let to_first_read = approved_at.elapsed();
    assert_eq!(code, 200, "{secret}");
    assert_eq!(secret["data"]["password"], "sap-admin-pw");
    let rec = audit_records(&h.audit_path())
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "secret.read" && r["decision"] == "allow")
        .unwrap();
    assert_eq!(rec["elevation"]["id"], id.as_str());
    // Another privileged secret is not opened by this window.
    assert_eq!(read(&h, &b, "erp-admin-login").0, 403);

    // Latency of reads inside the window against ordinary reads.
    let time = |secret: &str| {
        let t = Instant::now();
        for _ in 0..30 {
            assert_eq!(read(&h, &b, secret).0, 200);
        }
        t.elapsed() / 30
    };
    let (plain, elevated) = (time("erp-db"), time("sap-admin"));
    eprintln!(
        "elevation: approval written to first read {:?}; read inside a window {:?} vs ordinary read {:?} (curl per read)",
        to_first_read, elevated, plain
    );

    // Revoked: closed at once, reads refused.
    let (code, out) = decide(&h, "revoke", &id, &lead, &[]);
    assert_eq!(code, 0, "{out}");
    await_status(&h, &b, &id, "revoked");
    assert_eq!(read(&h, &b, "sap-admin").0, 403);
    let close = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "elevation.close" && r["detail"]["elevation"]["id"] == id.as_str()
    });
    assert_eq!(close["detail"]["elevation"]["closed"], "revoked");
    assert_eq!(
        close["detail"]["elevation"]["reads"]
            .as_array()
            .unwrap()
            .len(),
        31
    );

    // A dynamic lease taken inside a window is revoked at Vault when the
    // window's time is up. The window is short; on a host too slow to read
    // inside it, the test asks again with twice as long.
    let mut seconds = 4;
    let (id, lease) = loop {
        let id = ask(&h, &b, "erp-admin-login", "10m");
        let d = format!("{seconds}s");
        let (code, out) = decide(&h, "approve", &id, &lead, &["--duration", &d]);
        assert_eq!(code, 0, "{out}");
        await_status(&h, &b, &id, "approved");
        let (code, v) = read(&h, &b, "erp-admin-login");
        if code == 200 {
            break (id, v["lease"]["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(v["error"]["code"], "forbidden", "{v}");
        seconds *= 2;
        assert!(seconds <= 64, "never read inside a window");
    };
    h.bao
        .cli(&["lease", "lookup", &lease], None)
        .expect("the lease lives inside the window");
    let close = wait_for_record(&h.audit_path(), Duration::from_secs(120), |r| {
        r["kind"] == "elevation.close" && r["detail"]["elevation"]["id"] == id.as_str()
    });
    assert_eq!(close["detail"]["elevation"]["closed"], "expired");
    let reads = close["detail"]["elevation"]["reads"].as_array().unwrap();
    assert_eq!(reads.len(), 1);
    let hmac = reads[0]["lease_hmac"].as_str().unwrap().to_owned();
    // The lease ends with the window: the lease reaper or the window's
    // close revokes it, whichever runs first, and records it.
    let released = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "lease.release" && r["backend"]["lease_hmac"] == hmac.as_str()
    });
    assert_eq!(released["decision"], "allow", "{released}");
    assert!(
        h.bao.cli(&["lease", "lookup", &lease], None).is_err(),
        "the lease is gone at Vault"
    );
    assert_eq!(status(&h, &b, &id, "")["status"], "expired");
    let (code, v) = read(&h, &b, "erp-admin-login");
    assert_eq!(code, 403, "{v}");
    drop(pg);
}

#[test]
fn two_approvals_need_two_distinct_approvers() {
    let Some(h) = Harness::new("elev-two") else {
        return;
    };
    policy(&h);
    let lead = approver(&h, "finance-lead@corp.example");
    let cfo = approver(&h, "cfo@corp.example");
    let b = h.start(&config(
        &h,
        &[(&lead, "\"finance-ops\""), (&cfo, "\"*\"")],
        2,
        None,
        false,
    ));
    let id = ask(&h, &b, "sap-admin", "15m");
    // Entries nobody should write, sorted before the approvers' own and
    // more than a pass reads besides them: they hide no decision.
    for i in 0..70 {
        h.bao
            .kv_put(
                &format!("botward/elevations/decisions/{id}/aaa-{i:03}"),
                &[("junk", "x")],
            )
            .unwrap();
    }
    assert_eq!(decide(&h, "approve", &id, &lead, &[]).0, 0);
    wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "elevation.decision" && r["detail"]["elevation"]["id"] == id.as_str()
    });
    let junk_rejected = || {
        reason_of(&h, &id)
            .iter()
            .filter(|r| r["kind"] == "elevation.rejected" && r["reason"] == "malformed_decision")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while junk_rejected() < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        junk_rejected(),
        8,
        "8 other entries a pass, each recorded once"
    );
    let v = status(&h, &b, &id, "");
    assert_eq!(v["status"], "pending", "one of two approvals: {v}");
    assert_eq!(read(&h, &b, "sap-admin").0, 403);
    // The same approver again, newly signed, still counts once.
    let file = h.dir.join("again.json");
    let f = file.display().to_string();
    assert_eq!(decide(&h, "approve", &id, &lead, &["--out", &f]).0, 0);
    let (code, v) = post(
        &h,
        &b,
        &h.bot("invoice-bot"),
        &format!("/v1/elevations/{id}/decisions"),
        &std::fs::read_to_string(&file).unwrap(),
    );
    assert_eq!(code, 403, "{v}");
    let last = audit_records(&h.audit_path()).pop().unwrap();
    assert_eq!(last["kind"], "elevation.rejected");
    assert_eq!(last["reason"], "duplicate_approver");
    assert_eq!(status(&h, &b, &id, "")["status"], "pending");
    assert_eq!(decide(&h, "approve", &id, &cfo, &[]).0, 0);
    let v = await_status(&h, &b, &id, "approved");
    assert_eq!(v["approvers"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(read(&h, &b, "sap-admin").0, 200);
    let open = reason_of(&h, &id)
        .into_iter()
        .find(|r| r["kind"] == "elevation.open")
        .unwrap();
    assert_eq!(
        open["detail"]["elevation"]["approvers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The analysis shows the bot's elevations.
    let out = Command::new(botward_bin())
        .args(["analyze", "--train-days", "0", "--config"])
        .arg(&b.config_path)
        .arg(h.audit_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("invoice-bot: 1 requested, 1 approved"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A reload that removes an approver the window counted closes it.
    let fewer = config(&h, &[(&cfo, "\"*\"")], 1, None, false);
    std::fs::write(&b.config_path, fewer).unwrap();
    b.signal(libc::SIGHUP);
    await_status(&h, &b, &id, "revoked");
    let close = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "elevation.close" && r["detail"]["elevation"]["id"] == id.as_str()
    });
    assert_eq!(close["detail"]["elevation"]["closed"], "config_changed");
    assert_eq!(read(&h, &b, "sap-admin").0, 403);
    // Every pass since read the same entries again, and none of them was
    // recorded twice.
    assert_eq!(junk_rejected(), 8);

    // Shutdown ends a request still pending, on the record.
    let pending = ask(&h, &b, "sap-admin", "15m");
    let mut b = b;
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(60)), Some(0));
    let cancelled: Vec<Value> = reason_of(&h, &pending)
        .into_iter()
        .filter(|r| r["kind"] == "elevation.cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0]["reason"], "shutdown");
    assert_eq!(cancelled[0]["status"], 0);
    assert_eq!(cancelled[0]["bot"], "invoice-bot");
}

#[test]
fn decisions_that_fail_a_check_are_rejected_and_audited() {
    let Some(h) = Harness::new("elev-reject") else {
        return;
    };
    policy(&h);
    let lead = approver(&h, "finance-lead@corp.example");
    let owner = approver(&h, OWNER);
    let hr = approver(&h, "hr-lead@corp.example");
    let b = h.start(&config(
        &h,
        &[
            (&lead, "\"finance-ops\""),
            (&owner, "\"*\""),
            (&hr, "\"hr\""),
        ],
        1,
        None,
        false,
    ));
    let id = ask(&h, &b, "sap-admin", "15m");
    let request = h.dir.join("request.json");
    std::fs::write(
        &request,
        serde_json::to_string(&status(&h, &b, &id, "")).unwrap(),
    )
    .unwrap();
    let r = request.display().to_string();
    let out = h.dir.join("decision.json");
    let o = out.display().to_string();
    let bot = h.bot("invoice-bot");
    let submit = |file: &std::path::Path| {
        post(
            &h,
            &b,
            &bot,
            &format!("/v1/elevations/{id}/decisions"),
            &std::fs::read_to_string(file).unwrap(),
        )
    };
    let rejected = |why: &str, file: &std::path::Path| {
        let (code, v) = submit(file);
        assert_eq!(code, 403, "{why}: {v}");
        assert_eq!(v["error"]["code"], "forbidden");
        let last = audit_records(&h.audit_path()).pop().unwrap();
        assert_eq!(last["kind"], "elevation.rejected", "{why}");
        assert_eq!(last["reason"], why);
        last
    };
    // Self-approval by the bot's owner.
    assert_eq!(
        decide(&h, "approve", &id, &owner, &["--request", &r, "--out", &o]).0,
        0
    );
    rejected("self_approval", &out);
    // An approver outside the bot's team.
    assert_eq!(
        decide(&h, "approve", &id, &hr, &["--request", &r, "--out", &o]).0,
        0
    );
    rejected("team_not_allowed", &out);
    // A key that is not the named approver's.
    let (c, k) = (
        lead.cert.display().to_string(),
        hr.key.display().to_string(),
    );
    assert_eq!(
        approver_cli(
            &h,
            &[
                "approve",
                &id,
                "--cert",
                &c,
                "--key",
                &k,
                "--request",
                &r,
                "--out",
                &o
            ]
        )
        .0,
        0
    );
    rejected("bad_signature", &out);
    // A name no [[approver]] has.
    let stranger = approver(&h, "mallory@corp.example");
    assert_eq!(
        decide(
            &h,
            "approve",
            &id,
            &stranger,
            &["--request", &r, "--out", &o]
        )
        .0,
        0
    );
    rejected("unknown_approver", &out);
    // Statements for another bot, secret or host.
    for (field, value) in [
        ("bot", "report-bot"),
        ("secret", "erp-db"),
        ("host", "rpa-other"),
    ] {
        let mut req: Value =
            serde_json::from_str(&std::fs::read_to_string(&request).unwrap()).unwrap();
        req[field] = value.into();
        let edited = h.dir.join(format!("request-{field}.json"));
        std::fs::write(&edited, req.to_string()).unwrap();
        let e = edited.display().to_string();
        assert_eq!(
            decide(&h, "approve", &id, &lead, &["--request", &e, "--out", &o]).0,
            0
        );
        let last = rejected("statement_mismatch", &out);
        assert_eq!(last["detail"]["elevation"]["field"], field);
    }
    // A window over max_window (1h), from a request file that claims 2h.
    let mut req: Value = serde_json::from_str(&std::fs::read_to_string(&request).unwrap()).unwrap();
    req["duration_s"] = 7200.into();
    let long = h.dir.join("request-long.json");
    std::fs::write(&long, req.to_string()).unwrap();
    let l = long.display().to_string();
    assert_eq!(
        decide(&h, "approve", &id, &lead, &["--request", &l, "--out", &o]).0,
        0
    );
    rejected("window_too_long", &out);
    // A tampered statement.
    assert_eq!(
        decide(&h, "approve", &id, &lead, &["--request", &r, "--out", &o]).0,
        0
    );
    let mut signed: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let statement = signed["statement"]
        .as_str()
        .unwrap()
        .replace("CHG-1234", "CHG-9999");
    signed["statement"] = statement.into();
    let tampered = h.dir.join("tampered.json");
    std::fs::write(&tampered, signed.to_string()).unwrap();
    rejected("bad_signature", &tampered);
    // A body that is no decision at all.
    let (code, v) = post(
        &h,
        &b,
        &bot,
        &format!("/v1/elevations/{id}/decisions"),
        "{\"approve\": true}",
    );
    assert_eq!(code, 400, "{v}");
    // Nothing above opened anything.
    assert_eq!(status(&h, &b, &id, "")["status"], "pending");
    assert_eq!(read(&h, &b, "sap-admin").0, 403);
    // Bad requests get clear errors.
    for (body, want) in [
        (
            r#"{"secret":"sap-admin","duration":"2h","reason":"x","ticket":"CHG-1"}"#,
            400,
        ),
        (
            r#"{"secret":"sap-admin","duration":"15m","ticket":"CHG-1"}"#,
            400,
        ),
        (
            r#"{"secret":"sap-admin","duration":"15m","reason":"x"}"#,
            400,
        ),
        (
            r#"{"secret":"erp-db","duration":"15m","reason":"x","ticket":"CHG-1"}"#,
            400,
        ),
        (
            r#"{"secret":"sftp","duration":"15m","reason":"x","ticket":"CHG-1"}"#,
            403,
        ),
    ] {
        let (code, v) = post(&h, &b, &bot, "/v1/elevations", body);
        assert_eq!(code, want, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    // Another bot cannot see this bot's request.
    let (code, _) = b.get_json(&h, &h.bot("report-bot"), &format!("/v1/elevations/{id}"));
    assert_eq!(code, 404);
    // A good decision after all that still works.
    assert_eq!(
        decide(&h, "approve", &id, &lead, &["--request", &r, "--out", &o]).0,
        0
    );
    let (code, v) = submit(&out);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "approved");
}

#[test]
fn an_approval_file_works_with_vault_unreachable() {
    let Some(mut h) = Harness::new("elev-offline") else {
        return;
    };
    policy(&h);
    let lead = approver(&h, "finance-lead@corp.example");
    let b = h.start(&config(&h, &[(&lead, "\"finance-ops\"")], 1, None, false));
    let id = ask(&h, &b, "sap-admin", "15m");
    let request = h.dir.join("request.json");
    std::fs::write(
        &request,
        serde_json::to_string(&status(&h, &b, &id, "")).unwrap(),
    )
    .unwrap();
    h.bao.kill();
    // The approver signs from the request file, with no Vault at all.
    let out = h.dir.join("decision.json");
    let (c, k) = (
        lead.cert.display().to_string(),
        lead.key.display().to_string(),
    );
    let signed = Command::new(botward_bin())
        .args(["elevation", "approve", &id, "--cert", &c, "--key", &k])
        .args([
            "--request".as_ref(),
            request.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_ADDR")
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let (code, v) = post(
        &h,
        &b,
        &h.bot("invoice-bot"),
        &format!("/v1/elevations/{id}/decisions"),
        &std::fs::read_to_string(&out).unwrap(),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "approved");
    // The window is open: the read now fails only for want of Vault.
    let (code, v) = read(&h, &b, "sap-admin");
    assert_eq!(code, 503, "{v}");
    let last = audit_records(&h.audit_path())
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "elevation.decision")
        .unwrap();
    assert_eq!(last["detail"]["elevation"]["via"], "local");
    assert_eq!(last["detail"]["elevation"]["status"], "approved");
}

#[cfg(target_os = "linux")]
#[test]
fn a_window_whose_opening_cannot_be_recorded_does_not_open() {
    let Some(h) = Harness::new("elev-audit-full") else {
        return;
    };
    policy(&h);
    let mnt = h.dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "mounting a small tmpfs needs root, which CI has"
        );
        eprintln!("SKIP elev-audit-full: cannot mount a tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let audit = mnt.join("audit.jsonl");
    let lead = approver(&h, "finance-lead@corp.example");
    let cfg = config(&h, &[(&lead, "\"finance-ops\"")], 1, None, false)
        .replace(
            &h.audit_path().display().to_string(),
            &audit.display().to_string(),
        )
        .replace(
            "[audit]\n",
            &format!("[audit]\nstate_dir = \"{}/audit-state\"\n", h.dir.display()),
        );
    let b = h.start(&cfg);
    let id = ask(&h, &b, "sap-admin", "15m");
    // The disk fills up before the approval arrives.
    let filler = mnt.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    // The log file's last page still has room: requests use it up until
    // one is refused for want of its record.
    let mut refused = false;
    for _ in 0..500 {
        let (code, v) = b.get_json(&h, &h.bot("invoice-bot"), &format!("/v1/elevations/{id}"));
        if code == 503 {
            assert_eq!(v["error"]["code"], "audit_unavailable", "{v}");
            refused = true;
            break;
        }
        assert_eq!(code, 200, "{v}");
    }
    assert!(refused, "the audit log never filled up");
    assert_eq!(decide(&h, "approve", &id, &lead, &[]).0, 0);
    // botward takes the approval, cannot record the window, and closes it:
    // the mailbox shows it revoked.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mailbox_status = || {
        h.bao
            .cli(
                &[
                    "kv",
                    "get",
                    "-format=json",
                    "-mount=secret",
                    &format!("botward/elevations/requests/{id}"),
                ],
                None,
            )
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| v["data"]["data"]["status"].clone())
    };
    while mailbox_status() != Some(Value::from("revoked")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(mailbox_status(), Some(Value::from("revoked")));
    assert!(
        b.log_text().contains("Cannot write audit record"),
        "{}",
        b.log_text()
    );
    // With room again, the secret stays closed: no window stands.
    std::fs::remove_file(&filler).unwrap();
    let (code, v) = read(&h, &b, "sap-admin");
    assert_ne!(code, 200, "{v}");
    assert!(!v.to_string().contains("sap-admin-pw"), "{v}");
}
