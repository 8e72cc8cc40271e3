//! Just-in-time database credentials from OpenBao's database engine over a
//! real PostgreSQL: issued, used, released, revoked at exit, after a crash,
//! and at `max_use`.

#![allow(unsafe_code)] // libc calls on the processes under test

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const DYNAMIC: &str = r#"
[[secret]]
name = "erp-db-login"
kind = "dynamic"
path = "database/creds/erp-readonly"
renew = true
"#;

fn config(h: &Harness, max_use: Option<&str>) -> String {
    let mut extra = DYNAMIC.to_owned();
    if let Some(m) = max_use {
        extra = extra.replace("renew = true", &format!("renew = true\nmax_use = \"{m}\""));
    }
    h.config(Auth::AppRole, &h.audit_path(), &extra).replace(
        r#"secrets = ["erp-db"]"#,
        r#"secrets = ["erp-db", "erp-db-login"]"#,
    )
}

fn setup(test: &str) -> Option<(Harness, Postgres)> {
    let h = Harness::new(test)?;
    let pg = Postgres::start(test)?;
    h.enable_database(&pg, "1h");
    Some((h, pg))
}

fn issue(h: &Harness, b: &Botward) -> (String, String, String) {
    let (status, v) = b.get_json(h, &h.bot("invoice-bot"), "/v1/secrets/erp-db-login");
    assert_eq!(status, 200, "{v}");
    let lease = v["lease"]["id"].as_str().expect("a lease").to_owned();
    assert!(v["lease"]["ttl_seconds"].as_u64().unwrap() > 0);
    (
        v["data"]["username"].as_str().unwrap().to_owned(),
        v["data"]["password"].as_str().unwrap().to_owned(),
        lease,
    )
}

fn lease_path(lease: &str) -> String {
    format!("/v1/leases/{}", botward::client::encode(lease))
}

#[test]
fn issued_credentials_work_until_released() {
    let Some((h, pg)) = setup("dyn-release") else {
        return;
    };
    let b = h.start(&config(&h, None));
    let (user, pass, lease) = issue(&h, &b);
    let (ok, out) = pg.psql(&user, &pass, "select current_user");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), user);
    assert_eq!(h.db_leases(), 1);

    // Another bot cannot release it, and learns nothing from trying: its
    // answer is the 404 of an unknown lease.
    let a = b.call(&h, &h.bot("report-bot"), "DELETE", &lease_path(&lease));
    assert_eq!(a.status, 404);
    let a = b.call(
        &h,
        &h.bot("invoice-bot"),
        "DELETE",
        "/v1/leases/database%2Fcreds%2Ferp-readonly%2Fnope",
    );
    assert_eq!(a.status, 404);

    // The owner releases it: revoked at once.
    let a = b.call(&h, &h.bot("invoice-bot"), "DELETE", &lease_path(&lease));
    assert_eq!(a.status, 204);
    assert!(
        !pg.psql(&user, &pass, "select 1").0,
        "released credentials still log in"
    );
    assert_eq!(h.db_leases(), 0);
    let releases: Vec<_> = audit_records(&h.audit_path())
        .into_iter()
        .filter(|r| r["kind"] == "lease.release")
        .collect();
    assert_eq!(
        releases
            .iter()
            .map(|r| r["decision"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["deny", "deny", "allow"]
    );
    let mine = &releases[2];
    assert_eq!(mine["bot"], "invoice-bot");
    assert_eq!(mine["secret"], "erp-db-login");
    assert_eq!(mine["status"], 204);
    // Lease IDs appear only as HMACs.
    let text = std::fs::read_to_string(h.audit_path()).unwrap();
    let suffix = lease.rsplit('/').next().unwrap();
    assert!(
        !text.contains(&lease) && !text.contains(suffix) && !text.contains(&pass),
        "lease ID or password in the audit log"
    );
    assert!(mine["backend"]["lease_hmac"].as_str().unwrap().len() == 64);
}

#[test]
fn renewal_works_but_never_past_max_use() {
    let Some((h, _pg)) = setup("dyn-renew") else {
        return;
    };
    let max_use = Duration::from_secs(6);
    let b = h.start(&config(&h, Some("6s")));
    // The renewal must reach botward within max_use of the issue. On a host
    // too slow for that the lease is already revoked, and a fresh lease
    // tries again.
    let mut tries = 0;
    let a = loop {
        tries += 1;
        let asked = std::time::Instant::now();
        let (_, _, lease) = issue(&h, &b);
        std::thread::sleep(Duration::from_secs(2));
        let (status, v) = b.get_json(
            &h,
            &h.bot("invoice-bot"),
            &format!("{}/renew", lease_path(&lease)),
        );
        // GET is not the renew method.
        assert_eq!(status, 405, "{v}");
        let a = b.call(
            &h,
            &h.bot("invoice-bot"),
            "POST",
            &format!("{}/renew", lease_path(&lease)),
        );
        if a.status == 200 || asked.elapsed() < max_use {
            break a;
        }
        assert!(tries < 5, "could not renew within max_use in 5 tries");
    };
    assert_eq!(a.status, 200);
    let v: serde_json::Value = serde_json::from_slice(a.body.expose_secret()).unwrap();
    let ttl = v["lease"]["ttl_seconds"].as_u64().unwrap();
    assert!(ttl <= 4, "renewed past max_use: {v}");
}

#[test]
fn max_use_revokes_a_lease_before_vaults_ttl() {
    let Some((h, pg)) = setup("dyn-maxuse") else {
        return;
    };
    let max_use = Duration::from_secs(3);
    let b = h.start(&config(&h, Some("3s")));
    // The credentials must log in within max_use of the issue. On a host
    // too slow for that they are already revoked, and a fresh lease tries
    // again.
    let mut tries = 0;
    let (user, pass) = loop {
        tries += 1;
        let asked = std::time::Instant::now();
        let (status, v) = b.get_json(&h, &h.bot("invoice-bot"), "/v1/secrets/erp-db-login");
        assert_eq!(status, 200);
        assert!(v["lease"]["ttl_seconds"].as_u64().unwrap() <= 3, "{v}");
        let (user, pass) = (
            v["data"]["username"].as_str().unwrap().to_owned(),
            v["data"]["password"].as_str().unwrap().to_owned(),
        );
        let logged_in = pg.psql(&user, &pass, "select 1").0;
        if logged_in || asked.elapsed() < max_use {
            assert!(logged_in);
            break (user, pass);
        }
        assert!(tries < 5, "could not log in within max_use in 5 tries");
    };
    // One max_use release per lease issued; this lease's is the last.
    let start = std::time::Instant::now();
    let r = loop {
        let released: Vec<_> = audit_records(&h.audit_path())
            .into_iter()
            .filter(|r| r["kind"] == "lease.release" && r["reason"] == "max_use")
            .collect();
        if released.len() >= tries {
            break released[tries - 1].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no max_use release:\n{}",
            std::fs::read_to_string(h.audit_path()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(r["decision"], "allow");
    assert!(!pg.psql(&user, &pass, "select 1").0);
    assert_eq!(h.db_leases(), 0);
}

#[test]
fn exec_gives_the_child_credentials_and_releases_them() {
    let Some((h, pg)) = setup("dyn-exec") else {
        return;
    };
    let b = h.start(&config(&h, None));
    let bot = h.bot("invoice-bot");
    let exec = |args: &[&str]| {
        let mut c = Command::new(common::botward_bin());
        c.arg("exec")
            .args([
                "--env",
                "PGUSER=erp-db-login#username",
                "--env",
                "PGPASSWORD=erp-db-login#password",
                "--env",
                "ERP_DB=erp-db",
            ])
            .arg("--")
            .args(args)
            .env("BOTWARD_ADDR", format!("https://{}", b.tcp))
            .env("BOTWARD_CERT", &bot.cert)
            .env("BOTWARD_KEY", &bot.key)
            .env("BOTWARD_CA", h.ca_pem())
            .env_remove("PGUSER")
            .env_remove("PGPASSWORD");
        c
    };
    // The child logs in with credentials it got only through its environment.
    let out = exec(&[
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        &pg.port.to_string(),
        "-d",
        "postgres",
        "-tA",
        "-c",
        "select current_user",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(user.starts_with("v-"), "{user}");
    assert_eq!(h.db_leases(), 0, "exec released its lease");
    // A whole KV secret arrives as JSON.
    let out = exec(&["sh", "-c", "printf %s \"$ERP_DB\""])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["password"], h.erp_password.as_str());

    // Exit codes pass through, and a child killed by a signal still
    // releases its leases.
    assert_eq!(
        exec(&["sh", "-c", "exit 7"]).status().unwrap().code(),
        Some(7)
    );
    assert_eq!(
        exec(&["sh", "-c", "kill -KILL $$"])
            .status()
            .unwrap()
            .code(),
        Some(137)
    );
    assert_eq!(h.db_leases(), 0);

    // Signals sent to exec reach the child.
    // The child says when its trap is set, so the signal cannot come first.
    let ready = h.dir.join("trap-set");
    let script = format!(
        "trap 'exit 42' TERM; : > '{}'; while :; do sleep 0.1; done",
        ready.display()
    );
    let mut running = exec(&["sh", "-c", &script]).spawn().unwrap();
    wait_until(Duration::from_secs(10), || h.db_leases() == 1);
    wait_until(Duration::from_secs(30), || ready.exists());
    unsafe {
        libc::kill(running.id() as i32, libc::SIGTERM);
    }
    assert_eq!(running.wait().unwrap().code(), Some(42));
    assert_eq!(h.db_leases(), 0);
}

fn wait_until(limit: Duration, f: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "condition not met in {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_revokes_the_leases_still_held() {
    let Some((h, pg)) = setup("dyn-sigterm") else {
        return;
    };
    let mut b = h.start(&config(&h, None));
    let creds: Vec<_> = (0..3).map(|_| issue(&h, &b)).collect();
    assert_eq!(h.db_leases(), 3);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(25)), Some(0));
    assert_eq!(h.db_leases(), 0);
    for (user, pass, _) in &creds {
        assert!(!pg.psql(user, pass, "select 1").0);
    }
    let n = audit_records(&h.audit_path())
        .iter()
        .filter(|r| r["kind"] == "lease.release" && r["reason"] == "shutdown")
        .count();
    assert_eq!(n, 3);
}

#[test]
fn leases_orphaned_by_kill_9_are_revoked_at_the_next_start() {
    let Some((h, pg)) = setup("dyn-kill9") else {
        return;
    };
    let config = config(&h, None);
    let mut b = h.start(&config);
    let creds: Vec<_> = (0..2).map(|_| issue(&h, &b)).collect();
    b.signal(libc::SIGKILL);
    b.wait(Duration::from_secs(5));
    assert_eq!(h.db_leases(), 2, "a crash leaves the leases behind");
    let ledger = std::fs::read_to_string(h.dir.join("leases.json")).unwrap();
    for (_, pass, _) in &creds {
        assert!(
            !ledger.contains(pass.as_str()),
            "the ledger holds no secret values"
        );
    }

    let _b = h.start(&config);
    wait_until(Duration::from_secs(10), || h.db_leases() == 0);
    for (user, pass, _) in &creds {
        assert!(!pg.psql(user, pass, "select 1").0);
    }
    let n = audit_records(&h.audit_path())
        .iter()
        .filter(|r| r["kind"] == "lease.release" && r["reason"] == "orphaned")
        .count();
    assert_eq!(n, 2);
}
