//! Online scoring in `serve`: every request's audit record carries its
//! anomaly verdict, a bot with `action = "deny"` is refused above its
//! threshold, and baselines survive a restart.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn anomalous_requests_are_scored_denied_and_baselines_persist() {
    let Some(h) = Harness::new("online") else {
        return;
    };
    let audit = h.audit_path();
    let config = h
        .config(Auth::AppRole, &audit, "\n[anomaly]\ntrain = \"3s\"\n")
        .replace(
            r#"secrets = ["erp-db"]"#,
            "secrets = [\"erp-db\", \"sftp\"]\nanomaly = { action = \"deny\", threshold = 70 }",
        );
    let mut b = h.start(&config);
    let bot = h.bot("invoice-bot");
    // Training: the bot reads erp-db.
    for _ in 0..3 {
        assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    }
    std::thread::sleep(Duration::from_secs(4));
    // Scored: a granted secret it never used is anomalous, and denied.
    let (status, v) = b.get_json(&h, &bot, "/v1/secrets/sftp");
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("usual behaviour"));
    let r = wait_for_record(&audit, Duration::from_secs(5), |r| r["reason"] == "anomaly");
    assert_eq!(r["anomaly"]["detectors"], serde_json::json!(["new_secret"]));
    assert!(r["anomaly"]["score"].as_u64().unwrap() >= 70);
    // A retry is still anomalous: a denied request does not become normal.
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/sftp").0, 403);
    // Its usual secret is fine, and scored 0.
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    let last_read = audit_records(&audit)
        .into_iter()
        .rfind(|r| r["kind"] == "secret.read")
        .unwrap();
    assert_eq!(last_read["anomaly"]["score"], 0);

    // Baselines survive a restart: erp-db stays normal, sftp stays new.
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(20)), Some(0));
    assert!(h.dir.join("baselines.json").exists());
    let b = h.start(&config);
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/sftp").0, 403);
    // Every request record carries a verdict.
    for r in audit_records(&audit)
        .iter()
        .filter(|r| r["kind"] == "secret.read")
    {
        assert!(r["anomaly"]["score"].is_u64(), "{r}");
    }
}

#[test]
fn an_alert_action_posts_to_the_webhook() {
    use std::io::{BufRead, BufReader, Read};
    let Some(h) = Harness::new("alert") else {
        return;
    };
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hook.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = hook.accept().unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        use std::io::Write;
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
        tx.send(body).unwrap();
    });
    let config = h
        .config(
            Auth::AppRole,
            &h.audit_path(),
            &format!("\n[anomaly]\ntrain = \"2s\"\nwebhook = \"http://127.0.0.1:{port}/hook\"\n"),
        )
        .replace(
            r#"secrets = ["erp-db"]"#,
            "secrets = [\"erp-db\", \"sftp\"]\nanomaly = { action = \"alert\", threshold = 70 }",
        );
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    std::thread::sleep(Duration::from_secs(3));
    // Alerted, not denied.
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/sftp").0, 200);
    let body = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a webhook call");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["bot"], "invoice-bot");
    assert_eq!(v["detectors"], serde_json::json!(["new_secret"]));
    assert_eq!(v["secret"], "sftp");
}
