//! botward's own Vault tokens, counted with the root token: revoked at
//! shutdown, after a re-login and after a reload that replaced the Vault
//! client, but kept while a lease issued under them is held. And the lease
//! journal: after `kill -9` every lease it lists is revoked, a torn last
//! line included, and a ledger in the earlier format still loads.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Accessors of the live tokens botward's AppRole issued.
fn approle_tokens(h: &Harness) -> Vec<String> {
    let list = h
        .bao
        .cli(&["list", "-format=json", "auth/token/accessors"], None)
        .unwrap();
    let accessors: Vec<String> = serde_json::from_str(&list).unwrap();
    accessors
        .into_iter()
        .filter(|a| {
            // A token revoked since the list was taken no longer looks up.
            let Ok(out) = h
                .bao
                .cli(&["token", "lookup", "-format=json", "-accessor", a], None)
            else {
                return false;
            };
            let v: Value = serde_json::from_str(&out).unwrap();
            v["data"]["path"] == "auth/approle/login" && v["data"]["meta"]["role_name"] == "botward"
        })
        .collect()
}

/// Waits until one AppRole token is live, and it is none of `old`.
fn wait_for_one_token_besides(h: &Harness, old: &[String], what: &str) {
    wait_until(what, Duration::from_secs(10), || {
        let now = approle_tokens(h);
        now.len() == 1 && !old.contains(&now[0])
    });
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bot granted a secret that botward's Vault policy does not cover: Vault
/// answers 403 even to a fresh token, so each request makes botward log in
/// again while its token is still live.
const FORBIDDEN_IN_VAULT: &str = r#"
[[secret]]
name = "forbidden-in-vault"
kind = "kv"
mount = "secret"
path = "other/thing"

[[bot]]
name = "greedy-bot"
owner = "x@corp.example"
team = "t"
secrets = ["forbidden-in-vault"]
"#;

const DYNAMIC: &str = r#"
[[secret]]
name = "erp-db-login"
kind = "dynamic"
path = "database/creds/erp-readonly"
renew = true
"#;

fn dynamic_config(h: &Harness, extra: &str) -> String {
    h.config(Auth::AppRole, &h.audit_path(), &format!("{DYNAMIC}{extra}"))
        .replace(
            r#"secrets = ["erp-db"]"#,
            r#"secrets = ["erp-db", "erp-db-login"]"#,
        )
}

fn issue(h: &Harness, b: &Botward) -> (String, String, String) {
    let (status, v) = b.get_json(h, &h.bot("invoice-bot"), "/v1/secrets/erp-db-login");
    assert_eq!(status, 200, "{v}");
    (
        v["data"]["username"].as_str().unwrap().to_owned(),
        v["data"]["password"].as_str().unwrap().to_owned(),
        v["lease"]["id"].as_str().expect("a lease").to_owned(),
    )
}

fn lease_path(lease: &str) -> String {
    format!("/v1/leases/{}", botward::client::encode(lease))
}

/// The ops of the ledger's journal lines.
fn journal_ops(ledger: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(ledger)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("ledger line is not JSON ({e}): {l}"));
            v["op"]
                .as_str()
                .unwrap_or_else(|| panic!("ledger line without an op: {l}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn approle_tokens_are_revoked_at_shutdown() {
    let Some(h) = Harness::new("tokens-stop") else {
        return;
    };
    let before = approle_tokens(&h);
    for cycle in 1..=2 {
        let mut b = h.start(&h.config(Auth::AppRole, &h.audit_path(), ""));
        assert_eq!(
            b.get_json(&h, &h.bot("invoice-bot"), "/v1/secrets/erp-db")
                .0,
            200
        );
        assert_eq!(approle_tokens(&h).len(), before.len() + 1);
        b.signal(libc::SIGTERM);
        assert_eq!(b.wait(Duration::from_secs(25)), Some(0));
        assert_eq!(
            approle_tokens(&h),
            before,
            "cycle {cycle} left its token live:\n{}",
            b.log_text()
        );
        assert!(
            b.log_text()
                .contains("Revoked a Vault token botward no longer needs"),
            "{}",
            b.log_text()
        );
    }
}

#[test]
fn a_token_from_token_file_is_never_revoked() {
    let Some(h) = Harness::new("tokens-file") else {
        return;
    };
    let audit = h.audit_path();
    let config = h.config(Auth::RootToken, &audit, "");
    let mut b = h.start(&config);
    let bot = h.bot("invoice-bot");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    // A reload that replaces the Vault client drops the old session...
    std::fs::write(
        &b.config_path,
        config.replace("timeout_ms = 2000", "timeout_ms = 3000"),
    )
    .unwrap();
    b.signal(libc::SIGHUP);
    wait_until("the reload is audited", Duration::from_secs(10), || {
        audit_records(&audit)
            .iter()
            .any(|r| r["kind"] == "config.reload" && r["decision"] == "allow")
    });
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    // ...and shutdown drops the current one.
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(25)), Some(0));
    // The operator's token still works.
    h.bao
        .cli(&["token", "lookup"], None)
        .expect("botward revoked the token it was given");
    assert!(!b.log_text().contains("Vault token botward no longer needs"));
}

#[test]
fn a_replaced_token_is_revoked_and_one_stays_live() {
    let Some(h) = Harness::new("tokens-relogin") else {
        return;
    };
    h.bao.kv_put("other/thing", &[("k", "v")]).unwrap();
    let audit = h.audit_path();
    let config = h.config(Auth::AppRole, &audit, FORBIDDEN_IN_VAULT);
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    let first = approle_tokens(&h);
    assert_eq!(first.len(), 1);

    // Vault refuses a live token: botward logs in again, and revokes the
    // token it replaced.
    let greedy = h.issue_bot("greedy-bot", botward::certs::Validity::default());
    assert_eq!(
        b.get_json(&h, &greedy, "/v1/secrets/forbidden-in-vault").0,
        502
    );
    assert!(
        b.log_text().contains("logging in again"),
        "{}",
        b.log_text()
    );
    wait_for_one_token_besides(&h, &first, "the replaced token is revoked");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);

    // A reload that changes the Vault settings replaces the client: its
    // token goes when the old client does.
    let before_reload = approle_tokens(&h);
    let reloads = |decision: &str| {
        audit_records(&audit)
            .iter()
            .filter(|r| r["kind"] == "config.reload" && r["decision"] == decision)
            .count()
    };
    let done = reloads("allow");
    std::fs::write(
        &b.config_path,
        config.replace("timeout_ms = 2000", "timeout_ms = 3000"),
    )
    .unwrap();
    b.signal(libc::SIGHUP);
    wait_until("the reload is audited", Duration::from_secs(10), || {
        reloads("allow") > done
    });
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    wait_for_one_token_besides(&h, &before_reload, "the old client's token is revoked");

    // The token revoked behind botward's back: one fresh login (the new
    // client has not logged in again yet, so this is not refused as too
    // soon), one token.
    h.bao
        .cli(
            &["token", "revoke", "-mode=path", "auth/approle/login"],
            None,
        )
        .unwrap();
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    assert_eq!(approle_tokens(&h).len(), 1);
}

#[test]
fn a_replaced_token_stays_live_while_a_lease_issued_under_it_is_held() {
    let Some(h) = Harness::new("tokens-lease") else {
        return;
    };
    let Some(pg) = Postgres::start("tokens-lease") else {
        return;
    };
    h.enable_database(&pg, "1h");
    h.bao.kv_put("other/thing", &[("k", "v")]).unwrap();
    let b = h.start(&dynamic_config(&h, FORBIDDEN_IN_VAULT));
    let (user, pass, lease) = issue(&h, &b);
    let first = approle_tokens(&h);
    assert_eq!(first.len(), 1);

    let greedy = h.issue_bot("greedy-bot", botward::certs::Validity::default());
    assert_eq!(
        b.get_json(&h, &greedy, "/v1/secrets/forbidden-in-vault").0,
        502
    );
    assert!(
        b.log_text().contains("logging in again"),
        "{}",
        b.log_text()
    );
    // Revoking the old token would revoke the lease with it: both stay.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(approle_tokens(&h).len(), 2);
    let (ok, out) = pg.psql(&user, &pass, "select 1");
    assert!(
        ok,
        "the bot's credentials died with the replaced token: {out}"
    );
    assert_eq!(h.db_leases(), 1);

    // Its last lease released, the old token goes.
    let a = b.call(&h, &h.bot("invoice-bot"), "DELETE", &lease_path(&lease));
    assert_eq!(a.status, 204);
    wait_for_one_token_besides(&h, &first, "the replaced token is revoked");
    assert_eq!(h.db_leases(), 0);
}

#[test]
fn after_kill_9_every_lease_in_the_journal_is_revoked_a_torn_last_line_too() {
    let Some(h) = Harness::new("journal-kill9") else {
        return;
    };
    let Some(pg) = Postgres::start("journal-kill9") else {
        return;
    };
    h.enable_database(&pg, "1h");
    let config = dynamic_config(&h, "");
    let mut b = h.start(&config);
    let creds: Vec<_> = (0..5).map(|_| issue(&h, &b)).collect();
    let bot = h.bot("invoice-bot");
    for (_, _, lease) in &creds[..2] {
        assert_eq!(b.call(&h, &bot, "DELETE", &lease_path(lease)).status, 204);
    }
    let renew = format!("{}/renew", lease_path(&creds[2].2));
    assert_eq!(b.call(&h, &bot, "POST", &renew).status, 200);
    b.signal(libc::SIGKILL);
    b.wait(Duration::from_secs(5));
    assert_eq!(h.db_leases(), 3, "a crash leaves the leases behind");

    let ledger = h.dir.join("leases.json");
    assert_eq!(
        journal_ops(&ledger),
        ["insert", "insert", "insert", "insert", "insert", "remove", "remove", "update"]
    );
    let text = std::fs::read_to_string(&ledger).unwrap();
    for (_, pass, _) in &creds {
        assert!(
            !text.contains(pass.as_str()),
            "a secret value in the ledger"
        );
    }
    // A crash in the middle of the next append.
    let line = text.lines().next().unwrap();
    let torn = format!("{text}{}", &line[..line.len() / 2]);
    std::fs::write(&ledger, torn).unwrap();

    let b = h.start(&config);
    wait_until("the orphans are revoked", Duration::from_secs(10), || {
        h.db_leases() == 0
    });
    for (user, pass, _) in &creds {
        assert!(!pg.psql(user, pass, "select 1").0, "{user} still logs in");
    }
    let orphaned = audit_records(&h.audit_path())
        .iter()
        .filter(|r| r["kind"] == "lease.release" && r["reason"] == "orphaned")
        .count();
    assert_eq!(orphaned, 3);
    assert!(b.log_text().contains("torn last entry"), "{}", b.log_text());
    // Compacted at start, then one line per revocation.
    assert_eq!(
        journal_ops(&ledger),
        ["insert", "insert", "insert", "remove", "remove", "remove"]
    );
}

#[test]
fn a_ledger_in_the_earlier_format_is_revoked_and_rewritten_as_a_journal() {
    let Some(h) = Harness::new("journal-upgrade") else {
        return;
    };
    let Some(pg) = Postgres::start("journal-upgrade") else {
        return;
    };
    h.enable_database(&pg, "1h");
    let config = dynamic_config(&h, "");
    let mut b = h.start(&config);
    let creds: Vec<_> = (0..2).map(|_| issue(&h, &b)).collect();
    b.signal(libc::SIGKILL);
    b.wait(Duration::from_secs(5));

    // The same leases as an earlier botward wrote them: one JSON document.
    let ledger = h.dir.join("leases.json");
    let leases: Vec<Value> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["lease"].clone())
        .collect();
    assert_eq!(leases.len(), 2);
    std::fs::write(
        &ledger,
        serde_json::to_vec(&serde_json::json!({ "leases": leases })).unwrap(),
    )
    .unwrap();

    let b = h.start(&config);
    wait_until("the orphans are revoked", Duration::from_secs(10), || {
        h.db_leases() == 0
    });
    for (user, pass, _) in &creds {
        assert!(!pg.psql(user, pass, "select 1").0);
    }
    // Rewritten as a journal; the next lease is appended to it.
    issue(&h, &b);
    assert_eq!(
        journal_ops(&ledger),
        ["insert", "insert", "remove", "remove", "insert"]
    );
}

#[test]
fn a_ledger_line_that_does_not_parse_stops_botward_from_starting() {
    let Some(h) = Harness::new("journal-corrupt") else {
        return;
    };
    let config_path = h.dir.join("botward.toml");
    std::fs::write(&config_path, h.config(Auth::AppRole, &h.audit_path(), "")).unwrap();
    let ledger = h.dir.join("leases.json");
    let good = r#"{"op":"insert","lease":{"id":"database/creds/erp-readonly/x","bot":"invoice-bot","secret":"erp-db-login","issued":"2026-01-01T00:00:00Z","expires":"2026-01-01T01:00:00Z","max_until":null,"renewable":true}}"#;
    let corrupt = format!("{good}\n{{\"op\":\"insert\",\"lease\":{{\"id\":\n{good}\n");
    std::fs::write(&ledger, &corrupt).unwrap();
    let out = std::process::Command::new(common::botward_bin())
        .args(["serve", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("corrupt at line 2"), "{err}");
    // Left as it was, for the operator to look at.
    assert_eq!(std::fs::read_to_string(&ledger).unwrap(), corrupt);
}
