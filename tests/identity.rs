//! Bot certificates from a real OpenBao PKI engine, mounted by the test:
//! an operator's one-time token, enrollment over the unix socket by the
//! bot's account, use, renewal with a new key (by hand and by `get` itself),
//! and each refusal audited: a reused token, a wrong account, a caller
//! without a certificate, renewal after the bot is disabled.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TRUST: &str = "corp.example";

/// Mounts PKI with a root CA and role `rpa-bot`, lets botward's AppRole
/// sign with it, and adds the root to the CA file botward and the bots
/// trust.
fn mount_pki(h: &Harness) {
    let cli = |args: &[&str]| h.bao.cli(args, None).unwrap();
    cli(&["secrets", "enable", "pki"]);
    cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
    let root = cli(&[
        "write",
        "-field=certificate",
        "pki/root/generate/internal",
        "common_name=botward test bot PKI",
        "ttl=87600h",
    ]);
    cli(&[
        "write",
        "pki/roles/rpa-bot",
        "allow_any_name=true",
        "enforce_hostnames=false",
        &format!("allowed_uri_sans=spiffe://{TRUST}/bot/*"),
        "use_csr_common_name=false",
        "use_csr_sans=false",
        "client_flag=true",
        "server_flag=false",
        "key_type=any",
        "max_ttl=48h",
    ]);
    let policy = "path \"secret/data/rpa/*\" { capabilities = [\"read\"] }\n\
                  path \"pki/sign/rpa-bot\" { capabilities = [\"update\"] }\n\
                  path \"sys/leases/revoke\" { capabilities = [\"update\"] }\n\
                  path \"sys/leases/renew\" { capabilities = [\"update\"] }\n";
    h.bao
        .cli(&["policy", "write", "botward", "-"], Some(policy))
        .unwrap();
    let ca = h.ca_pem();
    let mut pem = std::fs::read_to_string(&ca).unwrap();
    pem.push_str(root.trim());
    pem.push('\n');
    std::fs::write(&ca, pem).unwrap();
}

fn config(h: &Harness, invoice_lines: &str) -> String {
    let uid = unsafe_free_uid();
    let extra = "[identity]\npki = { mount = \"pki\", role = \"rpa-bot\" }\nttl = \"24h\"\nenroll_token_ttl = \"15m\"\n";
    h.config(Auth::AppRole, &h.audit_path(), extra)
        .replacen(
            "name = \"invoice-bot\"\n",
            &format!("name = \"invoice-bot\"\nenroll = {{ uid = {uid} }}\n{invoice_lines}\n"),
            1,
        )
        .replacen(
            "name = \"report-bot\"\n",
            "name = \"report-bot\"\nenroll = { uid = 4242 }\n",
            1,
        )
}

/// This process's uid, as the kernel reports it for the socket's peer.
fn unsafe_free_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn botward(args: &[&str]) -> Output {
    Command::new(botward_bin())
        .args(args)
        .env_remove("BOTWARD_ADDR")
        .env_remove("BOTWARD_CA")
        .output()
        .unwrap()
}

fn unix_addr(b: &Botward) -> String {
    format!("unix://{}", b.unix.as_ref().unwrap().display())
}

/// `botward bot enroll-token BOT`, and how long it took.
fn token(h: &Harness, b: &Botward, bot: &str) -> (Output, Duration) {
    let ca = h.ca_pem();
    let t = Instant::now();
    let out = botward(&[
        "bot",
        "enroll-token",
        bot,
        "--addr",
        &unix_addr(b),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    (out, t.elapsed())
}

fn enroll(h: &Harness, b: &Botward, token: &str, dir: &Path) -> (Output, Duration) {
    let ca = h.ca_pem();
    let t = Instant::now();
    let out = botward(&[
        "enroll",
        "--token",
        token,
        "--out",
        dir.to_str().unwrap(),
        "--addr",
        &unix_addr(b),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    (out, t.elapsed())
}

fn renew(h: &Harness, b: &Botward, dir: &Path) -> (Output, Duration) {
    let ca = h.ca_pem();
    let t = Instant::now();
    let out = botward(&[
        "renew",
        "--dir",
        dir.to_str().unwrap(),
        "--addr",
        &format!("https://{}", b.tcp),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    (out, t.elapsed())
}

fn get(h: &Harness, b: &Botward, dir: &Path) -> Output {
    let ca = h.ca_pem();
    botward(&[
        "get",
        "erp-db",
        "--field",
        "password",
        "--dir",
        dir.to_str().unwrap(),
        "--addr",
        &unix_addr(b),
        "--ca",
        ca.to_str().unwrap(),
    ])
}

/// The identity of the certificate in `dir/bot.pem`.
fn cert_of(dir: &Path) -> (Option<String>, String, jiff::Timestamp, String) {
    let certs = botward::tls::load_certs(&dir.join("bot.pem")).unwrap();
    let id = botward::identity::from_der(certs[0].as_ref(), TRUST, false);
    let not_after = id.cert.not_after.unwrap().parse().unwrap();
    (id.bot, id.cert.serial, not_after, id.cert.sha256)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last(h: &Harness, kind: &str) -> Value {
    audit_records(&h.audit_path())
        .into_iter()
        .rfind(|r| r["kind"] == kind)
        .unwrap_or(Value::Null)
}

fn reload(h: &Harness, b: &Botward, config: &str) {
    let count = || {
        audit_records(&h.audit_path())
            .iter()
            .filter(|r| r["kind"] == "config.reload")
            .count()
    };
    let before = count();
    std::fs::write(&b.config_path, config).unwrap();
    b.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last(h, "config.reload")["decision"], "allow");
}

#[test]
fn bots_enroll_renew_and_are_refused_with_a_record() {
    let Some(h) = Harness::new("identity") else {
        return;
    };
    mount_pki(&h);
    let b = h.start(&config(&h, ""));
    let dir: PathBuf = h.dir.join("invoice-identity");

    // The operator's token.
    let (out, token_rt) = token(&h, &b, "invoice-bot");
    assert!(out.status.success(), "{}", stderr(&out));
    let t = stdout(&out);
    assert!(t.starts_with("bwe1_") && t.len() == 5 + 16 + 1 + 32, "{t}");
    let rec = last(&h, "identity.enroll_token");
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["detail"]["identity"]["bot"], "invoice-bot");
    assert!(
        !std::fs::read_to_string(h.audit_path())
            .unwrap()
            .contains(&t[22..]),
        "the token's secret is not in the audit log"
    );

    // Enrollment: a key made here, a certificate from Vault PKI.
    let (out, enroll_rt) = enroll(&h, &b, &t, &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("bot.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (bot, serial, not_after, _) = cert_of(&dir);
    assert_eq!(bot.as_deref(), Some("invoice-bot"));
    let left = not_after.duration_since(jiff::Timestamp::now());
    assert!(left <= jiff::SignedDuration::from_hours(24) + jiff::SignedDuration::from_mins(5));
    assert!(left >= jiff::SignedDuration::from_hours(23), "{left:?}");
    let rec = last(&h, "identity.enroll");
    assert_eq!(rec["decision"], "allow", "{rec}");
    assert_eq!(rec["bot"], "invoice-bot");
    assert_eq!(rec["detail"]["identity"]["serial"], serial.as_str());
    assert_eq!(rec["detail"]["identity"]["ttl_s"], 86_400);

    // Use: the enrolled identity reads its secret.
    let out = get(&h, &b, &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), h.erp_password);

    // The same token again: refused, and recorded as a reuse.
    let other = h.dir.join("second");
    let (out, _) = enroll(&h, &b, &t, &other);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    let rec = last(&h, "identity.enroll");
    assert_eq!(rec["reason"], "bad_enroll_token");
    assert_eq!(rec["detail"]["identity"]["token"], "used");
    assert!(rec["bot"].is_null());
    assert!(!other.join("bot.pem").exists());

    // The wrong account: report-bot may enroll only as uid 4242.
    let (out, _) = token(&h, &b, "report-bot");
    let (out, _) = enroll(&h, &b, &stdout(&out), &other);
    assert_eq!(out.status.code(), Some(1));
    let rec = last(&h, "identity.enroll");
    assert_eq!(
        (rec["reason"].as_str(), rec["status"].as_u64()),
        (Some("wrong_account"), Some(403))
    );
    assert_eq!(rec["claimed_bot"], "report-bot");
    assert!(rec["bot"].is_null());

    // Another account may not make tokens. (Running as root, the test can
    // be that other account.)
    if unsafe_free_uid() == 0 {
        use std::os::unix::process::CommandExt;
        let ca = h.ca_pem();
        let out = Command::new(botward_bin())
            .args([
                "bot",
                "enroll-token",
                "invoice-bot",
                "--addr",
                &unix_addr(&b),
            ])
            .arg("--ca")
            .arg(&ca)
            .uid(65534)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stdout(&out).is_empty());
        let rec = last(&h, "identity.enroll_token");
        assert_eq!(rec["reason"], "not_operator", "{rec}");
        assert_eq!(rec["detail"]["identity"]["uid"], 65534);
    }

    // Without a certificate, nothing else is served on the unix socket,
    // and a flood of such requests costs one record and one summary.
    let curl = |url: &str, unix: bool| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(h.ca_pem());
        if unix {
            c.arg("--unix-socket").arg(b.unix.as_ref().unwrap());
        }
        let out = c.arg(url).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = audit_records(&h.audit_path()).len();
    for path in ["/v1/secrets/erp-db", "/v1/whoami", "/v1/identity/renew"] {
        for _ in 0..7 {
            assert_eq!(
                curl(&format!("https://localhost{path}"), true),
                "401",
                "{path}"
            );
        }
    }
    let refused: Vec<Value> = audit_records(&h.audit_path())[before..]
        .iter()
        .filter(|r| r["reason"] == "no_client_certificate")
        .cloned()
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["kind"], "auth.failure");
    // TCP still requires a certificate at the handshake.
    assert_eq!(curl(&format!("https://{}/v1/whoami", b.tcp), false), "000");

    // Renewal: a new key and serial, the old serial recorded.
    let (_, _, _, old_sha) = cert_of(&dir);
    let copy = h.dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("bot.pem"), copy.join("bot.pem")).unwrap();
    let (out, renew_rt) = renew(&h, &b, &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let (bot, renewed_serial, _, new_sha) = cert_of(&dir);
    assert_eq!(bot.as_deref(), Some("invoice-bot"));
    assert_ne!(renewed_serial, serial);
    assert_ne!(new_sha, old_sha);
    let rec = last(&h, "identity.renew");
    assert_eq!(rec["decision"], "allow", "{rec}");
    assert_eq!(rec["bot"], "invoice-bot");
    assert_eq!(
        rec["detail"]["identity"]["previous_serial"],
        serial.as_str()
    );
    assert_eq!(stdout(&get(&h, &b, &dir)), h.erp_password);
    // The renewed certificate, renewed again by a second holder of its key:
    // refused and recorded.
    let (out, _) = renew(&h, &b, &copy);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rec = last(&h, "identity.renew");
    assert_eq!(
        (rec["reason"].as_str(), rec["status"].as_u64()),
        (Some("already_renewed"), Some(403))
    );
    let (_, copy_serial, _, _) = cert_of(&copy);
    assert_eq!(copy_serial, serial, "the refused holder keeps its file");

    // `get` renews by itself once less than a third of the life is left:
    // here a certificate from the test CA with one of four days left.
    let aging = h.dir.join("aging");
    std::fs::create_dir_all(&aging).unwrap();
    let old = h.issue_bot(
        "invoice-bot",
        botward::certs::Validity {
            starts_days_ago: 3,
            ends_in_days: 1,
        },
    );
    let pem =
        std::fs::read_to_string(&old.key).unwrap() + &std::fs::read_to_string(&old.cert).unwrap();
    std::fs::write(aging.join("bot.pem"), pem).unwrap();
    let renewals = audit_records(&h.audit_path())
        .iter()
        .filter(|r| r["kind"] == "identity.renew")
        .count();
    let out = get(&h, &b, &aging);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), h.erp_password);
    let (_, auto_serial, auto_after, _) = cert_of(&aging);
    assert_ne!(auto_serial, botward::identity::hex(&old.serial));
    assert!(auto_after > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(23));
    let after = audit_records(&h.audit_path())
        .iter()
        .filter(|r| r["kind"] == "identity.renew")
        .count();
    assert_eq!(after, renewals + 1);

    // Revoked at Vault, with Vault's CRL given to botward: the renewed
    // certificate cannot renew again (its handshake fails).
    let (_, current, _, _) = cert_of(&dir);
    let colons = current
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    h.bao
        .cli(
            &["write", "pki/revoke", &format!("serial_number={colons}")],
            None,
        )
        .unwrap();
    let crl = h
        .bao
        .cli(&["read", "-field=certificate", "pki/cert/crl"], None)
        .unwrap();
    let crl_file = h.dir.join("pki-crl.pem");
    std::fs::write(&crl_file, crl.trim().to_owned() + "\n").unwrap();
    let with_crl = |cfg: String| {
        cfg.replacen(
            "[tls]\n",
            &format!("[tls]\ncrl = [\"{}\"]\n", crl_file.display()),
            1,
        )
    };
    reload(&h, &b, &with_crl(config(&h, "")));
    let (out, _) = renew(&h, &b, &dir);
    assert!(!out.status.success(), "a revoked certificate renewed");
    let (_, still, _, _) = cert_of(&dir);
    assert_eq!(still, current, "bot.pem is unchanged");
    let refused = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "auth.failure" && r["reason"] == "certificate_revoked"
    });
    assert_eq!(refused["claimed_bot"], "invoice-bot");
    reload(&h, &b, &config(&h, ""));

    // Disabled: no renewal, no enrollment.
    reload(&h, &b, &config(&h, "disabled = true"));
    let (out, _) = renew(&h, &b, &dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rec = last(&h, "identity.renew");
    assert_eq!(
        (rec["reason"].as_str(), rec["status"].as_u64()),
        (Some("disabled"), Some(403))
    );
    let (out, _) = token(&h, &b, "invoice-bot");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert_eq!(last(&h, "identity.enroll_token")["reason"], "disabled");

    // At shutdown the counted refusals are recorded as one summary.
    let mut b = b;
    b.signal(libc::SIGTERM);
    b.wait(Duration::from_secs(30));
    let summary = audit_records(&h.audit_path())
        .into_iter()
        .rfind(|r| r["reason"] == "no_client_certificate" && !r["detail"]["aggregated"].is_null())
        .expect("a summary of the refusals");
    assert_eq!(summary["detail"]["aggregated"]["count"], 20);

    eprintln!(
        "identity round trips (CLI process start included): enroll-token {:.1} ms, enroll {:.1} ms, renew {:.1} ms",
        token_rt.as_secs_f64() * 1e3,
        enroll_rt.as_secs_f64() * 1e3,
        renew_rt.as_secs_f64() * 1e3
    );
}

/// Median round trips of enrollment and renewal, each a whole CLI run
/// (process start, key generation, TLS, Vault PKI signing, the checks, the
/// audit record, the file written). Figures only; nothing is timed.
#[test]
fn enrollment_and_renewal_round_trips() {
    let Some(h) = Harness::new("identity-rt") else {
        return;
    };
    mount_pki(&h);
    let b = h.start(&config(&h, ""));
    let (mut tokens, mut enrolls, mut renews) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..10 {
        let dir = h.dir.join(format!("rt-{i}"));
        let (out, t) = token(&h, &b, "invoice-bot");
        assert!(out.status.success(), "{}", stderr(&out));
        tokens.push(t);
        let (out, t) = enroll(&h, &b, &stdout(&out), &dir);
        assert!(out.status.success(), "{}", stderr(&out));
        enrolls.push(t);
        let (out, t) = renew(&h, &b, &dir);
        assert!(out.status.success(), "{}", stderr(&out));
        renews.push(t);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    eprintln!(
        "identity round trips, median of 10 CLI runs: enroll-token {:.1} ms, enroll {:.1} ms, renew {:.1} ms",
        median(&mut tokens),
        median(&mut enrolls),
        median(&mut renews)
    );
}

/// With the audit disk full, no token is handed out and no certificate
/// either: each answer waits for its record, and fails closed.
#[cfg(target_os = "linux")]
#[test]
fn enrollment_fails_closed_when_its_record_cannot_be_written() {
    let Some(h) = Harness::new("identity-audit-full") else {
        return;
    };
    mount_pki(&h);
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
        eprintln!("SKIP identity-audit-full: cannot mount a tmpfs");
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
    let cfg = config(&h, "")
        .replace(
            &h.audit_path().display().to_string(),
            &audit.display().to_string(),
        )
        .replace(
            "[audit]\n",
            &format!("[audit]\nstate_dir = \"{}/audit-state\"\n", h.dir.display()),
        );
    let b = h.start(&cfg);
    let (out, _) = token(&h, &b, "invoice-bot");
    assert!(out.status.success(), "{}", stderr(&out));
    let early = stdout(&out);
    // The disk fills up; requests use the last page until one is refused.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k"])
        .arg(format!("of={}", mnt.join("filler").display()))
        .stderr(std::process::Stdio::null())
        .status();
    let mut refused = None;
    for _ in 0..500 {
        let (out, _) = token(&h, &b, "invoice-bot");
        if !out.status.success() {
            refused = Some(out);
            break;
        }
    }
    let out = refused.expect("the audit log never filled up");
    assert!(stdout(&out).is_empty(), "no token without its record");
    assert!(
        stderr(&out).contains("audit_unavailable"),
        "{}",
        stderr(&out)
    );
    // The token made before: its enrollment cannot be recorded, so no
    // certificate is handed out.
    let dir = h.dir.join("full-identity");
    let (out, _) = enroll(&h, &b, &early, &dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("audit_unavailable"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("bot.pem").exists());
}
