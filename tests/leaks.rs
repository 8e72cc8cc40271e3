//! No secret value reaches a log, an error or the audit log, even with
//! `RUST_LOG=trace`.

mod common;

use std::time::Duration;

use common::*;

fn exercise(h: &Harness, b: &Botward) {
    let invoice = h.bot("invoice-bot");
    let report = h.bot("report-bot");
    for _ in 0..3 {
        assert_eq!(b.get_json(h, &invoice, "/v1/secrets/erp-db").0, 200);
        assert_eq!(
            b.call(h, &invoice, "GET", "/v1/secrets/erp-db?field=password")
                .status,
            200
        );
        assert_eq!(b.get_json(h, &report, "/v1/secrets/sftp").0, 200);
    }
    assert_eq!(
        b.call(h, &invoice, "GET", "/v1/secrets/erp-db?field=nope")
            .status,
        404
    );
    assert_eq!(b.call(h, &invoice, "GET", "/v1/secrets/sftp").status, 403);
    assert_eq!(b.call(h, &invoice, "GET", "/v1/whoami").status, 200);
    assert_eq!(b.call(h, &invoice, "GET", "/v1/health").status, 200);
    b.signal(libc::SIGHUP);
    wait_for_record(&h.audit_path(), Duration::from_secs(30), |r| {
        r["kind"] == "config.reload"
    });
}

fn assert_absent(haystack: &str, what: &str, needle: &str) {
    assert!(!needle.is_empty());
    assert!(
        !haystack.contains(needle),
        "{what} contains a secret value ({} bytes)",
        needle.len()
    );
}

#[test]
fn trace_logs_and_audit_hold_no_secret_values() {
    let Some(h) = Harness::new("leaks") else {
        return;
    };
    let secret_id = std::fs::read_to_string(&h.secret_id).unwrap();

    // AppRole login: the secret ID and both secrets must stay out of logs.
    let b = h.start_with_env(
        &h.config(Auth::AppRole, &h.audit_path(), ""),
        &[("RUST_LOG", "trace")],
    );
    exercise(&h, &b);
    // Token revoked behind botward's back: the re-login path too.
    h.bao
        .cli(
            &["token", "revoke", "-mode=path", "auth/approle/login"],
            None,
        )
        .unwrap();
    assert_eq!(
        b.call(&h, &h.bot("invoice-bot"), "GET", "/v1/secrets/erp-db")
            .status,
        200
    );
    drop(b);

    // Token login: the token itself must stay out of logs.
    let b2 = h.start_with_env(
        &h.config(Auth::RootToken, &h.audit_path(), ""),
        &[("RUST_LOG", "trace")],
    );
    exercise(&h, &b2);
    drop(b2);

    let mut logs = String::new();
    for entry in std::fs::read_dir(&h.dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    assert!(logs.lines().count() > 100, "trace logging was on");
    assert!(logs.contains("TRACE"), "trace logging was on");
    let audit = std::fs::read_to_string(h.audit_path()).unwrap();
    assert!(audit.lines().count() > 20);
    for (what, text) in [("the trace log", &logs), ("the audit log", &audit)] {
        assert_absent(text, what, &h.erp_password);
        assert_absent(text, what, "erp_invoice");
        assert_absent(text, what, &h.sftp_password);
        assert_absent(text, what, secret_id.trim());
        assert_absent(text, what, h.bao.root_token());
    }
}
