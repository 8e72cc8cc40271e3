//! Bot lifecycle against a real OpenBao and PostgreSQL: a bot that is
//! disabled, past its end date or overdue for review, each change recorded
//! once, and the leases of a bot switched off revoked at Vault at once.
//! Dates are moved by reloads, never by waiting for a clock.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const DYNAMIC: &str = r#"
[[secret]]
name = "erp-db-login"
kind = "dynamic"
path = "database/creds/erp-readonly"
"#;

/// The standard config with a dynamic grant, `[lifecycle]` as given, and
/// `bot_lines` added to invoice-bot's table.
fn config(h: &Harness, lifecycle: &str, bot_lines: &str) -> String {
    let extra = format!("{DYNAMIC}\n[lifecycle]\n{lifecycle}\n");
    h.config(Auth::AppRole, &h.audit_path(), &extra)
        .replacen(
            r#"secrets = ["erp-db"]"#,
            r#"secrets = ["erp-db", "erp-db-login"]"#,
            1,
        )
        .replacen(
            "name = \"invoice-bot\"\n",
            &format!("name = \"invoice-bot\"\n{bot_lines}\n"),
            1,
        )
}

/// A day `days` from today (UTC), as `YYYY-MM-DD`.
fn day(days: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    today
        .checked_add(jiff::Span::new().days(days))
        .unwrap()
        .to_string()
}

/// Writes `config`, reloads, and waits for the reload's record.
fn reload(h: &Harness, b: &Botward, config: &str) {
    let before = reloads(h);
    std::fs::write(&b.config_path, config).unwrap();
    b.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reloads(h) == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = audit_records(&h.audit_path())
        .into_iter()
        .rfind(|r| r["kind"] == "config.reload")
        .unwrap();
    assert_eq!(last["decision"], "allow", "reload refused: {last}");
}

fn reloads(h: &Harness) -> usize {
    audit_records(&h.audit_path())
        .iter()
        .filter(|r| r["kind"] == "config.reload")
        .count()
}

/// Waits for a record of `kind` about invoice-bot, then returns all of them.
fn changed(h: &Harness, kind: &str) -> Vec<Value> {
    wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == kind && r["bot"] == "invoice-bot"
    });
    of_kind(h, kind)
}

fn of_kind(h: &Harness, kind: &str) -> Vec<Value> {
    audit_records(&h.audit_path())
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// A request and the reason its record gives.
fn get(h: &Harness, b: &Botward, path: &str) -> (u16, Value, Value) {
    let (code, v) = b.get_json(h, &h.bot("invoice-bot"), path);
    let rec = audit_records(&h.audit_path())
        .into_iter()
        .rfind(|r| r["bot"] == "invoice-bot" && r["status"] == code)
        .unwrap_or(Value::Null);
    (code, v, rec["reason"].clone())
}

#[test]
fn lifecycle_states_refuse_record_and_revoke() {
    let Some(h) = Harness::new("lifecycle") else {
        return;
    };
    let Some(pg) = Postgres::start("lifecycle") else {
        return;
    };
    h.enable_database(&pg, "1h");
    let review = format!("review_by = \"{}\"\nexpires = \"{}\"", day(30), day(60));
    let b = h.start(&config(&h, "review_overdue = \"warn\"", &review));

    let (code, v, _) = get(&h, &b, "/v1/whoami");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "active");
    assert_eq!(v["review_by"], day(30).as_str());
    assert_eq!(v["expires"], day(60).as_str());
    let (code, v) = b.get_json(&h, &h.bot("invoice-bot"), "/v1/secrets/erp-db-login");
    assert_eq!(code, 200, "{v}");
    assert_eq!(h.db_leases(), 1);

    // Disabled: refused at once, its lease revoked at Vault.
    reload(
        &h,
        &b,
        &config(&h, "review_overdue = \"warn\"", "disabled = true"),
    );
    let disabled = changed(&h, "bot.disabled");
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0]["bot"], "invoice-bot");
    assert_eq!(disabled[0]["detail"]["lifecycle"]["was"], "active");
    let released = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "lease.release" && r["reason"] == "bot_disabled"
    });
    assert_eq!(released["bot"], "invoice-bot");
    assert_eq!(h.db_leases(), 0, "the lease is gone at Vault");
    for path in ["/v1/secrets/erp-db", "/v1/whoami"] {
        let (code, v, reason) = get(&h, &b, path);
        assert_eq!(code, 403, "{path}: {v}");
        assert_eq!(v["error"]["code"], "forbidden");
        assert_eq!(reason, "disabled", "{path}");
    }
    // Other bots are untouched.
    assert_eq!(
        b.get_json(&h, &h.bot("report-bot"), "/v1/secrets/sftp").0,
        200
    );

    // Past its end date: treated as disabled.
    let ended = format!("expires = \"{}\"", day(-1));
    reload(&h, &b, &config(&h, "review_overdue = \"warn\"", &ended));
    assert_eq!(changed(&h, "bot.expired").len(), 1);
    let (code, _, reason) = get(&h, &b, "/v1/secrets/erp-db");
    assert_eq!((code, reason.as_str()), (403, Some("bot_expired")));

    // Overdue for review, warn: served, and recorded once.
    let overdue = format!("review_by = \"{}\"", day(-1));
    reload(&h, &b, &config(&h, "review_overdue = \"warn\"", &overdue));
    assert_eq!(changed(&h, "bot.review_overdue").len(), 1);
    let (code, v, _) = get(&h, &b, "/v1/secrets/erp-db");
    assert_eq!(code, 200, "{v}");
    // Deny: refused, but the bot may still ask who it is.
    reload(&h, &b, &config(&h, "review_overdue = \"deny\"", &overdue));
    let (code, _, reason) = get(&h, &b, "/v1/secrets/erp-db");
    assert_eq!((code, reason.as_str()), (403, Some("review_overdue")));
    let (code, v, _) = get(&h, &b, "/v1/whoami");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "review_overdue");

    // Reviewed: active again.
    let reviewed = format!("review_by = \"{}\"", day(90));
    reload(&h, &b, &config(&h, "review_overdue = \"deny\"", &reviewed));
    let back = changed(&h, "bot.reactivated");
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["detail"]["lifecycle"]["was"], "review_overdue");
    // The reload to "deny" left the state as it was: nothing recorded.
    assert_eq!(of_kind(&h, "bot.review_overdue").len(), 1);
    assert_eq!(get(&h, &b, "/v1/secrets/erp-db").0, 200);

    // A bad date is a config error, and the running config stays.
    let before = reloads(&h);
    std::fs::write(&b.config_path, config(&h, "", "review_by = \"2027-3-1\"")).unwrap();
    b.signal(libc::SIGHUP);
    let refused = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "config.reload" && r["decision"] != "allow"
    });
    assert!(reloads(&h) > before);
    assert!(
        refused.to_string().contains("review_by must be a date"),
        "{refused}"
    );
    assert_eq!(get(&h, &b, "/v1/secrets/erp-db").0, 200);
    drop(pg);
}

/// Writes botward's activity state as if invoice-bot had made its last
/// request `days` ago, with the reactivation tickets already spent.
fn quiet_for(h: &Harness, days: i64, spent: &[&str]) {
    let ago =
        |d: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * d)).to_string();
    let state = serde_json::json!({"bots": {"invoice-bot": {
        "last_seen": ago(days), "since": ago(days + 10), "tickets": spent,
    }}});
    std::fs::write(h.dir.join("activity.json"), state.to_string()).unwrap();
}

/// Waits for botward to write invoice-bot's activity after `check` holds.
fn activity_of(h: &Harness, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state: Value = std::fs::read(h.dir.join("activity.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let bot = &state["bots"]["invoice-bot"];
        if check(bot) || std::time::Instant::now() > deadline {
            return bot.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dormant_bots_stay_refused_until_a_change_ticket_reactivates_them() {
    let Some(h) = Harness::new("lifecycle-dormant") else {
        return;
    };
    let deny = "dormant_after = \"30d\"\ndormant = \"deny\"";
    quiet_for(&h, 40, &[]);
    let mut b = h.start(&config(&h, deny, ""));

    let dormant = changed(&h, "bot.dormant");
    assert_eq!(dormant.len(), 1, "{dormant:?}");
    assert_eq!(dormant[0]["decision"], "deny");
    assert_eq!(dormant[0]["detail"]["lifecycle"]["was"], "active");
    assert_eq!(
        dormant[0]["detail"]["lifecycle"]["dormant_after_s"],
        30 * 86_400
    );
    let (code, v, reason) = get(&h, &b, "/v1/secrets/erp-db");
    assert_eq!((code, reason.as_str()), (403, Some("dormant")), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("change ticket"),
        "{v}"
    );
    // The bot may ask why; asking does not wake it.
    let (code, v, _) = get(&h, &b, "/v1/whoami");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "dormant");
    assert_eq!(get(&h, &b, "/v1/secrets/erp-db").0, 403);
    // A bot botward has never seen starts its count now.
    assert_eq!(
        b.get_json(&h, &h.bot("report-bot"), "/v1/secrets/sftp").0,
        200
    );

    // A reactivate key whose ticket the config does not carry does nothing.
    let wake = "reactivate = \"CHG-7\"";
    reload(&h, &b, &config(&h, deny, wake));
    assert_eq!(get(&h, &b, "/v1/secrets/erp-db").0, 403);
    // With the ticket, it is back, and that is recorded once.
    let ticketed = format!("{deny}\n[meta]\nchange_ticket = \"CHG-7\"");
    reload(&h, &b, &config(&h, &ticketed, wake));
    let back = changed(&h, "bot.reactivated");
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["detail"]["lifecycle"]["was"], "dormant");
    assert_eq!(back[0]["detail"]["lifecycle"]["change_ticket"], "CHG-7");
    let (code, v, _) = get(&h, &b, "/v1/secrets/erp-db");
    assert_eq!(code, 200, "{v}");
    // The request and the spent ticket reach the state file.
    let seen = activity_of(&h, |s| {
        s["tickets"] == serde_json::json!(["CHG-7"]) && s["last_seen"] != s["since"]
    });
    assert_eq!(seen["tickets"], serde_json::json!(["CHG-7"]), "{seen}");
    b.signal(libc::SIGTERM);
    b.wait(Duration::from_secs(30));

    // A spent ticket does not reactivate the bot a second time.
    quiet_for(&h, 40, &["CHG-7"]);
    let b = h.start(&config(&h, &ticketed, wake));
    wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "bot.dormant" && r["ts"].as_str() > dormant[0]["ts"].as_str()
    });
    assert_eq!(get(&h, &b, "/v1/secrets/erp-db").0, 403);
    assert_eq!(of_kind(&h, "bot.reactivated").len(), 1);
    drop(b);

    // Under "warn" a dormant bot is served, and its request wakes it.
    quiet_for(&h, 40, &[]);
    let warn = "dormant_after = \"30d\"\ndormant = \"warn\"";
    let b = h.start(&config(&h, warn, ""));
    let dormant = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "bot.dormant" && r["decision"] == "allow"
    });
    assert_eq!(dormant["bot"], "invoice-bot");
    assert_eq!(get(&h, &b, "/v1/secrets/erp-db").0, 200);
    reload(&h, &b, &config(&h, warn, ""));
    let back = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "bot.reactivated" && r["detail"]["lifecycle"]["change_ticket"].is_null()
    });
    assert_eq!(back["detail"]["lifecycle"]["was"], "dormant");
    assert_eq!(get(&h, &b, "/v1/whoami").1["state"], "active");

    // Bad settings are config errors that name the key.
    let before = reloads(&h);
    std::fs::write(&b.config_path, config(&h, "dormant_after = \"10m\"", "")).unwrap();
    b.signal(libc::SIGHUP);
    let refused = wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "config.reload" && r["decision"] != "allow"
    });
    assert!(reloads(&h) > before);
    assert!(
        refused
            .to_string()
            .contains("dormant_after must be at least 1h"),
        "{refused}"
    );
}
