//! The core sidecar against a real OpenBao dev server and the real binary:
//! granted reads, rotation, every refusal, Vault outages, token loss,
//! malformed requests, reloads and a full audit disk.

#![allow(unsafe_code)] // libc calls on the processes under test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use botward::certs::Validity;
use common::*;

#[test]
fn granted_read_then_rotation_reaches_the_next_request() {
    let Some(h) = Harness::new("rotation") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");

    let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "erp-db");
    assert_eq!(v["data"]["password"], h.erp_password.as_str());
    assert_eq!(v["version"], 1);
    assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Ops rotate the secret in Vault; the bot's script does not change.
    let rotated = format!("rotated-{}", random_hex(8));
    h.bao
        .kv_put(
            "rpa/erp-db",
            &[("username", "erp_invoice"), ("password", &rotated)],
        )
        .unwrap();
    let a = b.call(&h, &bot, "GET", "/v1/secrets/erp-db?field=password");
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("text/plain"));
    assert_eq!(a.body.expose_secret(), rotated.as_bytes());
    let (_, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
    assert_eq!(v["version"], 2);

    let reads: Vec<_> = audit_records(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "secret.read")
        .collect();
    assert_eq!(reads.len(), 3);
    for r in &reads {
        assert_eq!(r["decision"], "allow");
        assert_eq!(r["bot"], "invoice-bot");
        assert_eq!(r["secret"], "erp-db");
        assert_eq!(r["backend"]["path"], "secret/data/rpa/erp-db");
        assert_eq!(r["peer"]["transport"], "tcp");
        assert_eq!(r["cert"]["sha256"].as_str().unwrap().len(), 64);
    }
    assert_eq!(reads[2]["backend"]["version"], 2);
}

#[test]
fn a_cached_secret_is_served_until_its_ttl_and_a_reload_empties_the_cache() {
    let Some(h) = Harness::new("cache") else {
        return;
    };
    let audit = h.audit_path();
    let with_ttl = |ttl: &str| {
        h.template(Auth::AppRole, &audit)
            .edit_secret("erp-db", |s| s.cache_ttl(ttl))
            .render()
    };
    let b = h.start(&with_ttl("2s"));
    let bot = h.bot("invoice-bot");
    let rotate = |n: u32| {
        let pw = format!("rotated-{n}-{}", random_hex(8));
        h.bao
            .kv_put(
                "rpa/erp-db",
                &[("username", "erp_invoice"), ("password", &pw)],
            )
            .unwrap();
        pw
    };
    let read = || {
        let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
        assert_eq!(status, 200, "{v}");
        (
            v["version"].as_u64().unwrap(),
            v["data"]["password"].as_str().unwrap().to_owned(),
        )
    };

    // Each config change is picked up by the file watcher alone, so that
    // no second reload empties the cache behind the test's back.
    let reloaded = |config: String| {
        let before = audit_records(&audit)
            .iter()
            .filter(|r| r["kind"] == "config.reload")
            .count();
        std::fs::write(&b.config_path, config).unwrap();
        let start = std::time::Instant::now();
        loop {
            let recs: Vec<_> = audit_records(&audit)
                .into_iter()
                .filter(|r| r["kind"] == "config.reload")
                .collect();
            if recs.len() > before {
                assert_eq!(recs[before]["decision"], "allow", "{}", recs[before]);
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no reload");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // After the TTL Vault is read again. The entry was stored before the
    // first answer arrived, so waiting past the TTL from then is enough on
    // any host.
    assert_eq!(read(), (1, h.erp_password.clone()));
    std::thread::sleep(Duration::from_millis(2100));
    let v2 = rotate(2);
    assert_eq!(read(), (2, v2.clone()), "after the TTL Vault is read again");

    // Within the TTL the cached copy is served, and the record says so. A
    // TTL of an hour holds however slow the host; the reload that sets it
    // empties the cache.
    reloaded(with_ttl("1h"));
    let first = read();
    assert_eq!(first, (2, v2.clone()));
    let v3 = rotate(3);
    let second = read();
    assert_eq!(second, first, "served from the cache within its TTL");

    // A reload starts with an empty cache, even under a longer TTL.
    reloaded(with_ttl("2h"));
    assert_eq!(read(), (3, v3.clone()));
    let v4 = rotate(4);
    reloaded(with_ttl("1h"));
    assert_eq!(read(), (4, v4.clone()));
    let v5 = rotate(5);
    assert_eq!(read(), (4, v4.clone()), "cached for an hour now");

    let reads: Vec<_> = audit_records(&audit)
        .into_iter()
        .filter(|r| r["kind"] == "secret.read")
        .collect();
    let last = &reads[reads.len() - 5..];
    let reasons: Vec<_> = last
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reasons, ["", "cached", "", "", "cached"]);
    let versions: Vec<_> = last
        .iter()
        .map(|r| r["backend"]["version"].as_u64().unwrap())
        .collect();
    let m = 3;
    assert_eq!(
        versions,
        [m - 1, m - 1, m, m + 1, m + 1],
        "cached reads name the version they served"
    );
    assert!(reads.iter().all(|r| r["decision"] == "allow"));
    let text = std::fs::read_to_string(&audit).unwrap() + &b.log_text();
    for pw in [&h.erp_password, &v2, &v3, &v4, &v5] {
        assert!(
            !text.contains(pw.as_str()),
            "a secret value reached the audit log or the logs"
        );
    }
}

#[test]
fn every_refusal_is_refused_and_audited() {
    let Some(h) = Harness::new("refusals") else {
        return;
    };
    let audit = h.audit_path();
    // A revoked bot, and a bot whose only window is on another weekday.
    let revoked = h.issue_bot("revoked-bot", Validity::default());
    let crl = h.dir.join("bots.crl.pem");
    std::fs::write(&crl, h.ca.crl(&[&revoked.serial]).unwrap()).unwrap();
    let tomorrow = ["Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Mon"][jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday()
        .to_monday_zero_offset()
        as usize];
    let extra = format!(
        r#"
[[bot]]
name = "revoked-bot"
owner = "x@corp.example"
team = "t"
secrets = ["erp-db"]

[[bot]]
name = "night-bot"
owner = "x@corp.example"
team = "t"
secrets = ["erp-db"]
schedule = "{tomorrow} 00:00-00:01 UTC"
"#
    );
    let config = h.config(Auth::AppRole, &audit, &extra).replace(
        "trust_domain",
        &format!("crl = [\"{}\"]\ntrust_domain", crl.display()),
    );
    let b = h.start(&config);
    let url = b.url("/v1/secrets/erp-db");
    let ca = h.ca_pem().display().to_string();

    // No client certificate: the handshake fails.
    let (status, _) = curl(&["--cacert", &ca, &url]);
    assert_eq!(status, 0);
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "auth.failure" && r["reason"] == "no_client_certificate"
    });

    // A certificate from another CA.
    let other = botward::certs::Ca::generate("other CA").unwrap();
    let stranger = other
        .issue_bot(TRUST_DOMAIN, "invoice-bot", Validity::default())
        .unwrap();
    let (c, k) = stranger.write(&h.tls, "stranger").unwrap();
    let (status, _) = curl(&[
        "--cert",
        &c.display().to_string(),
        "--key",
        &k.display().to_string(),
        "--cacert",
        &ca,
        &url,
    ]);
    assert_eq!(status, 0);
    let r = wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "unknown_issuer"
    });
    assert_eq!(
        r["cert"]["sha256"].as_str().unwrap().len(),
        64,
        "the refused certificate is fingerprinted"
    );

    // An expired certificate.
    let expired = h.issue_bot(
        "expired-bot",
        Validity {
            starts_days_ago: 30,
            ends_in_days: -2,
        },
    );
    let (status, _) = curl_as(&h, &expired, &url, &[]);
    assert_eq!(status, 0);
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "certificate_expired"
            && r["claimed_bot"] == "expired-bot"
            && r["bot"].is_null()
    });

    // A revoked certificate.
    let (status, _) = curl_as(&h, &revoked, &url, &[]);
    assert_eq!(status, 0);
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "certificate_revoked"
            && r["claimed_bot"] == "revoked-bot"
            && r["bot"].is_null()
    });

    // A valid certificate of a bot that is not registered.
    let ghost = h.issue_bot("ghost-bot", Validity::default());
    let (status, body) = curl_as(&h, &ghost, &url, &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"unauthenticated\""));
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "unknown_bot"
            && r["claimed_bot"] == "ghost-bot"
            && r["bot"].is_null()
            && r["status"] == 401
    });

    // A secret the bot is not granted, and one that does not exist at all:
    // both 403, so a bot cannot probe which names exist.
    for name in ["sftp", "no-such-secret"] {
        let (status, body) = curl_as(
            &h,
            &h.bot("invoice-bot"),
            &b.url(&format!("/v1/secrets/{name}")),
            &[],
        );
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("\"forbidden\""));
    }
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "not_granted" && r["secret"] == "sftp"
    });

    // Outside the schedule.
    let night = h.issue_bot("night-bot", Validity::default());
    let (status, body) = curl_as(&h, &night, &url, &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("schedule"));
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "outside_schedule" && r["bot"] == "night-bot"
    });

    // No secret value ever reached the audit log.
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(&h.erp_password));
}

#[test]
fn process_rules_are_enforced_on_the_unix_socket() {
    let Some(h) = Harness::new("process") else {
        return;
    };
    let audit = h.audit_path();
    let uid = unsafe { libc::getuid() };
    let curl_exe = std::fs::canonicalize(which("curl")).unwrap();
    let extra = format!(
        r#"
[[bot]]
name = "pinned-bot"
owner = "x@corp.example"
team = "t"
secrets = ["erp-db"]
processes = [{{ uid = {uid}, exe = "{}" }}]

[[bot]]
name = "wrong-uid-bot"
owner = "x@corp.example"
team = "t"
secrets = ["erp-db"]
processes = [{{ uid = {} }}]
"#,
        curl_exe.display(),
        uid + 4242
    );
    let b = h.start(&h.config(Auth::AppRole, &audit, &extra));
    let sock = b.unix.clone().expect("unix socket").display().to_string();
    let pinned = h.issue_bot("pinned-bot", Validity::default());
    let wrong = h.issue_bot("wrong-uid-bot", Validity::default());

    // The right uid and exe over the unix socket.
    let (status, body) = curl_as(
        &h,
        &pinned,
        "https://localhost/v1/secrets/erp-db?field=password",
        &["--unix-socket", &sock],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, h.erp_password);
    let r = wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["bot"] == "pinned-bot" && r["decision"] == "allow"
    });
    assert_eq!(r["peer"]["transport"], "unix");
    assert_eq!(r["peer"]["uid"], uid);
    assert_eq!(r["peer"]["exe"], curl_exe.display().to_string());
    assert!(r["peer"]["pid"].as_i64().unwrap() > 0);

    // The wrong uid.
    let (status, body) = curl_as(
        &h,
        &wrong,
        "https://localhost/v1/secrets/erp-db",
        &["--unix-socket", &sock],
    );
    assert_eq!(status, 403, "{body}");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["bot"] == "wrong-uid-bot" && r["reason"] == "process_mismatch"
    });

    // The right uid but another executable: botward's own client.
    let out = std::process::Command::new(common::botward_bin())
        .args(["get", "erp-db"])
        .env("BOTWARD_ADDR", format!("unix://{sock}"))
        .env("BOTWARD_CERT", &pinned.cert)
        .env("BOTWARD_KEY", &pinned.key)
        .env("BOTWARD_CA", h.ca_pem())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("forbidden"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line on stderr: {err}");

    // Over TCP the process cannot be verified: refused.
    let (status, body) = curl_as(&h, &pinned, &b.url("/v1/secrets/erp-db"), &[]);
    assert_eq!(status, 403, "{body}");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["bot"] == "pinned-bot" && r["reason"] == "process_unverifiable"
    });
}

fn which(cmd: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .expect(cmd)
}

#[test]
fn vault_down_gives_503_and_recovery_needs_no_restart() {
    let Some(mut h) = Harness::new("vault-down") else {
        return;
    };
    let audit = h.audit_path();
    // The root token survives a dev-server restart with the same ID.
    let b = h.start(&h.config(Auth::RootToken, &audit, ""));
    let bot = h.bot("invoice-bot");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);

    h.bao.kill();
    let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "vault_unavailable");
    let (status, v) = b.get_json(&h, &bot, "/v1/health");
    assert_eq!(status, 200);
    assert_eq!(v["vault"], "unreachable");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["status"] == 503 && r["decision"] == "error" && r["reason"] == "vault_unavailable"
    });

    h.bao.restart().expect("restart bao");
    h.bao
        .kv_put("rpa/erp-db", &[("password", "after-restart")])
        .unwrap();
    let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["password"], "after-restart");
    assert_eq!(b.get_json(&h, &bot, "/v1/health").1["vault"], "ok");
}

#[test]
fn a_token_revoked_behind_botwards_back_leads_to_a_fresh_login() {
    let Some(h) = Harness::new("token-revoked") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);

    // Revoke every token AppRole ever issued: botward's among them.
    h.bao
        .cli(
            &["token", "revoke", "-mode=path", "auth/approle/login"],
            None,
        )
        .unwrap();
    let (status, v) = b.get_json(&h, &bot, "/v1/secrets/erp-db");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["password"], h.erp_password.as_str());
    assert!(
        b.log_text().contains("logging in again"),
        "{}",
        b.log_text()
    );
}

#[test]
fn vault_errors_are_502_with_json() {
    let Some(h) = Harness::new("vault-error") else {
        return;
    };
    let audit = h.audit_path();
    // The AppRole policy does not cover this path: Vault answers 403 to a
    // fresh token too.
    let extra = r#"
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
    h.bao.kv_put("other/thing", &[("k", "v")]).unwrap();
    let b = h.start(&h.config(Auth::AppRole, &audit, extra));
    let greedy = h.issue_bot("greedy-bot", Validity::default());
    let (status, v) = b.get_json(&h, &greedy, "/v1/secrets/forbidden-in-vault");
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "vault_error");
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["status"] == 502 && r["decision"] == "error"
    });
}

/// Sends raw bytes over TLS as `bot` and returns the raw response.
fn raw_tls(h: &Harness, addr: &str, bot: &BotCert, request: &[u8]) -> String {
    let cfg = botward::tls::client_config(&h.ca_pem(), &bot.cert, &bot.key).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_and_oversized_requests_get_clean_errors() {
    let Some(h) = Harness::new("malformed") else {
        return;
    };
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    let bot = h.bot("invoice-bot");

    for (path, want) in [
        ("/v1/secrets/..%2F..%2Fsys", 400),
        ("/v1/secrets/a%2Fb", 400),
        ("/v1/secrets/erp-db?field=a&other=b", 400),
        ("/v1/secrets/erp-db?field=nope", 404),
        ("/v1/nothing", 404),
        ("/v1/secrets/", 400),
    ] {
        let (status, v) = b.get_json(&h, &bot, path);
        assert_eq!(status, want, "{path}: {v}");
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
        assert!(v["error"]["request_id"].is_string());
    }
    let long = format!("/v1/secrets/{}", "a".repeat(300));
    let (status, v) = b.get_json(&h, &bot, &long);
    assert_eq!(status, 400, "{v}");
    let a = b.call(&h, &bot, "POST", "/v1/whoami");
    assert_eq!(a.status, 405);
    let a = b.call(&h, &bot, "DELETE", "/v1/secrets/erp-db");
    assert_eq!(a.status, 405);

    // Not HTTP at all.
    let resp = raw_tls(&h, &b.tcp, &bot, b"\x00\x01garbage\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // Headers larger than the limit.
    let big = format!(
        "GET /v1/whoami HTTP/1.1\r\nhost: localhost\r\nx-pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let resp = raw_tls(&h, &b.tcp, &bot, big.as_bytes());
    // botward answers 431 and closes; with request bytes still unread the
    // kernel may reset the connection before the client reads the answer.
    // The audit record below is the evidence either way.
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "{resp}"
    );
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "headers_too_large" && r["status"] == 431
    });
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "malformed_http" && r["status"] == 400
    });

    // The server is still fine.
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
}

#[test]
fn a_bad_reload_keeps_the_old_config_and_a_good_one_applies_without_dropping_connections() {
    let Some(h) = Harness::new("reload") else {
        return;
    };
    let audit = h.audit_path();
    let config = h.config(Auth::AppRole, &audit, "");
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");

    // A keep-alive connection opened before the reloads.
    let rt = rt();
    let mut conn = rt.block_on(KeepAlive::open(&h, &b, &bot));
    assert_eq!(rt.block_on(conn.get("/v1/secrets/sftp")), 403);

    // Broken: a grant of an undefined secret.
    std::fs::write(
        &b.config_path,
        config.replace(r#"secrets = ["erp-db"]"#, r#"secrets = ["erp-db", "nope"]"#),
    )
    .unwrap();
    b.signal(libc::SIGHUP);
    let r = wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "config.reload"
    });
    assert_eq!(r["decision"], "deny");
    assert!(
        r["detail"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{r}"
    );
    assert_eq!(
        b.get_json(&h, &bot, "/v1/secrets/erp-db").0,
        200,
        "old config still serves"
    );

    // Valid: grant sftp to invoice-bot.
    std::fs::write(
        &b.config_path,
        config.replace(r#"secrets = ["erp-db"]"#, r#"secrets = ["erp-db", "sftp"]"#),
    )
    .unwrap();
    b.signal(libc::SIGHUP);
    let r = wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "config.reload" && r["decision"] == "allow"
    });
    assert_eq!(r["detail"]["added_grants"][0]["secret"], "sftp");
    // The same connection, still open, sees the new grant.
    assert_eq!(rt.block_on(conn.get("/v1/secrets/sftp")), 200);
    assert_eq!(
        b.get_json(&h, &bot, "/v1/whoami").1["secrets"],
        serde_json::json!(["erp-db", "sftp"])
    );
}

/// An HTTP/1.1 connection kept open across requests.
struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
}

impl KeepAlive {
    async fn open(h: &Harness, b: &Botward, bot: &BotCert) -> KeepAlive {
        let cfg = botward::tls::client_config(&h.ca_pem(), &bot.cert, &bot.key).unwrap();
        let stream = tokio::net::TcpStream::connect(&b.tcp).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                stream,
            )
            .await
            .unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        KeepAlive { sender }
    }

    async fn get(&mut self, path: &str) -> u16 {
        self.try_get(path).await.expect("connection still open")
    }

    /// The status of a GET, or `None` when the connection is closed.
    async fn try_get(&mut self, path: &str) -> Option<u16> {
        use http_body_util::BodyExt;
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = self.sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        Some(status)
    }
}

#[test]
fn an_unwritable_audit_log_fails_closed() {
    let Some(h) = Harness::new("audit-full") else {
        return;
    };
    let config = h.config(Auth::AppRole, std::path::Path::new("/dev/full"), "");
    let config = config.replace(
        "[audit]\n",
        &format!("[audit]\nstate_dir = \"{}/audit-state\"\n", h.dir.display()),
    );
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    let a = b.call(&h, &bot, "GET", "/v1/secrets/erp-db");
    assert_eq!(a.status, 503);
    let body = String::from_utf8_lossy(a.body.expose_secret()).into_owned();
    assert!(body.contains("audit_unavailable"), "{body}");
    assert!(
        !body.contains(&h.erp_password),
        "no secret leaves without its audit record"
    );
    let a = b.call(&h, &bot, "GET", "/v1/secrets/erp-db?field=password");
    assert_eq!(a.status, 503);
    assert!(!String::from_utf8_lossy(a.body.expose_secret()).contains(&h.erp_password));
}

#[test]
fn a_bad_config_at_start_exits_64_and_check_config_lists_every_problem() {
    let Some(h) = Harness::new("bad-config") else {
        return;
    };
    let text = h
        .config(Auth::AppRole, &h.audit_path(), "")
        .replace("127.0.0.1:0", "localhost:eighty")
        .replace(r#"secrets = ["sftp"]"#, r#"secrets = ["payroll"]"#)
        .replace("[audit]", "[audit]\nrotate = 1");
    let path = h.dir.join("bad.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(common::botward_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    // The unknown key stops the first stage; fix it and see the rest.
    std::fs::write(&path, text.replace("rotate = 1\n", "")).unwrap();
    let out = std::process::Command::new(common::botward_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen.tcp"), "{err}");
    assert!(err.contains("\"payroll\""), "{err}");
    assert!(err.contains("bad.toml:"), "{err}");
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let Some(h) = Harness::new("sigterm") else {
        return;
    };
    let audit = h.audit_path();
    let mut b = h.start(&h.config(Auth::AppRole, &audit, ""));
    assert_eq!(b.get_json(&h, &h.bot("invoice-bot"), "/v1/whoami").0, 200);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(Duration::from_secs(25)), Some(0));
    let kinds: Vec<_> = audit_records(&audit)
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("server.start"));
    assert_eq!(kinds[kinds.len() - 2..], ["server.stop", "checkpoint"]);
    let seal = audit_records(&audit).pop().unwrap();
    assert_eq!(seal["detail"]["final"], true);
    // An auditor on the host verifies the sealed log from the config.
    let out = std::process::Command::new(common::botward_bin())
        .args(["audit", "verify", "--config"])
        .arg(&b.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MACs and signatures"), "{text}");
}

#[test]
fn the_vault_token_is_renewed_before_it_expires() {
    let Some(h) = Harness::new("renew") else {
        return;
    };
    // A short TTL: botward renews at two thirds of it, which leaves each
    // renewal a third of the TTL, 5 s, to reach Vault.
    let ttl = Duration::from_secs(15);
    h.bao
        .cli(
            &[
                "write",
                "auth/approle/role/botward",
                "token_policies=botward",
                &format!("token_ttl={}s", ttl.as_secs()),
                "token_max_ttl=1h",
            ],
            None,
        )
        .unwrap();
    let audit = h.audit_path();
    let b = h.start(&h.config(Auth::AppRole, &audit, ""));
    // botward logs in before it reports ready: its first token expires
    // within `ttl` from here.
    let logged_in = std::time::Instant::now();
    let bot = h.bot("invoice-bot");
    let deadline = std::time::Instant::now() + ttl * 4;
    while !b.log_text().contains("Renewed Vault token") {
        assert!(
            std::time::Instant::now() < deadline,
            "no renewal:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past the original TTL, requests work without a fresh login.
    std::thread::sleep((ttl + Duration::from_secs(1)).saturating_sub(logged_in.elapsed()));
    assert_eq!(b.get_json(&h, &bot, "/v1/secrets/erp-db").0, 200);
    assert!(
        !b.log_text().contains("logging in again"),
        "{}",
        b.log_text()
    );
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_connections_are_capped() {
    let Some(h) = Harness::new("limits") else {
        return;
    };
    let audit = h.audit_path();
    let config = |idle_ms: u64| {
        h.template(Auth::AppRole, &audit)
            .limit("max_connections", "2")
            .limit("header_read_timeout_ms", &idle_ms.to_string())
            .render()
    };
    let mut idle_ms = 500;
    let mut b = h.start(&config(idle_ms));
    let bot = h.bot("invoice-bot");

    // A client that never finishes its request head is disconnected.
    let started = std::time::Instant::now();
    let resp = raw_tls(
        &h,
        &b.tcp,
        &bot,
        b"GET /v1/whoami HTTP/1.1\r\nhost: localhost\r\n",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow client held for {:?}",
        started.elapsed()
    );
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
        "{resp}"
    );

    // Two connections fill the cap; a third waits until one closes. A
    // client's TLS handshake ends before botward places the connection, so
    // each of the two is used once: an answer proves it holds its place.
    // The two stay open for the idle limit from their last use, so the
    // check counts only when it ended within that limit; on a host too
    // slow for it, botward starts again with twice the limit.
    let rt = rt();
    let (_first, _second) = loop {
        let s = b.settings(&h, &bot);
        let t0 = std::time::Instant::now();
        let mut first = rt.block_on(KeepAlive::open(&h, &b, &bot));
        let mut second = rt.block_on(KeepAlive::open(&h, &b, &bot));
        let used = rt.block_on(async {
            let a = first.try_get("/v1/whoami").await?;
            let b = second.try_get("/v1/whoami").await?;
            (a == b).then_some(a)
        });
        let third = used.map(|_| {
            rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_millis(300),
                    botward::client::call(&s, "GET", "/v1/whoami"),
                )
                .await
            })
        });
        if t0.elapsed() < Duration::from_millis(idle_ms) {
            assert_eq!(used, Some(200));
            assert!(
                third.is_some_and(|t| t.is_err()),
                "a third connection was served beyond the cap"
            );
            break (first, second);
        }
        drop((first, second));
        idle_ms *= 2;
        assert!(idle_ms <= 32_000, "could not fill the cap within 32 s");
        drop(b);
        b = h.start(&config(idle_ms));
    };
    let s = b.settings(&h, &bot);
    // Idle connections are closed, which frees the slots.
    std::thread::sleep(Duration::from_millis(idle_ms + 2000));
    let third = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            botward::client::call(&s, "GET", "/v1/whoami"),
        )
        .await
    });
    assert_eq!(
        third
            .expect("served after idle connections closed")
            .expect("request")
            .status,
        200
    );
}

#[test]
fn a_changed_crl_file_takes_effect_without_a_signal() {
    let Some(h) = Harness::new("crl-watch") else {
        return;
    };
    let audit = h.audit_path();
    let crl = h.dir.join("bots.crl.pem");
    std::fs::write(&crl, h.ca.crl(&[]).unwrap()).unwrap();
    let config = h.config(Auth::AppRole, &audit, "").replace(
        "trust_domain",
        &format!("crl = [\"{}\"]\ntrust_domain", crl.display()),
    );
    let b = h.start(&config);
    let victim = h.issue_bot("invoice-bot", botward::certs::Validity::default());
    assert_eq!(curl_as(&h, &victim, &b.url("/v1/whoami"), &[]).0, 200);
    // A connection opened before the revocation.
    let rt = rt();
    let mut open_conn = rt.block_on(KeepAlive::open(&h, &b, &victim));
    assert_eq!(rt.block_on(open_conn.get("/v1/whoami")), 200);

    std::fs::write(&crl, h.ca.crl(&[&victim.serial]).unwrap()).unwrap();
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["kind"] == "config.reload" && r["detail"]["trigger"] == "file_change"
    });
    assert_eq!(
        curl_as(&h, &victim, &b.url("/v1/whoami"), &[]).0,
        0,
        "revoked certificate refused"
    );
    // The open connection is checked again under the new CRL.
    assert_eq!(rt.block_on(open_conn.get("/v1/whoami")), 401);
    wait_for_record(&audit, Duration::from_secs(30), |r| {
        r["reason"] == "certificate_revoked"
    });
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_fails_requests_closed_and_keeps_the_chain_intact() {
    let Some(h) = Harness::new("disk-full") else {
        return;
    };
    let mnt = h.dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "mounting a small tmpfs needs root, which CI has"
        );
        eprintln!("SKIP disk-full: cannot mount a tmpfs");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let audit = mnt.join("audit.jsonl");
    let config = h.config(Auth::AppRole, &audit, "").replace(
        "[audit]\n",
        &format!("[audit]\nstate_dir = \"{}/audit-state\"\n", h.dir.display()),
    );
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    let mut served = 0;
    let mut refused = 0;
    for _ in 0..400 {
        let a = b.call(&h, &bot, "GET", "/v1/secrets/erp-db?field=password");
        let body = String::from_utf8_lossy(a.body.expose_secret()).into_owned();
        match a.status {
            200 => {
                assert_eq!(refused, 0, "a secret was served after the disk filled up");
                served += 1;
            }
            503 => {
                assert!(body.contains("audit_unavailable"), "{body}");
                assert!(!body.contains(&h.erp_password));
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        served > 10 && refused >= 5,
        "served {served}, refused {refused}"
    );
    // Every record that was written is whole: the chain verifies, unsealed.
    let out = std::process::Command::new(common::botward_bin())
        .args(["audit", "verify", "--config"])
        .arg(&b.config_path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_vault_outage_fails_fast_without_a_retry_storm() {
    let Some(h) = Harness::new("storm") else {
        return;
    };
    // Something on Vault's port that accepts and hangs up at once, counting
    // every connection botward makes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let config = h.config(Auth::AppRole, &h.audit_path(), "").replace(
        &format!("addresses = [\"{}\"]", h.bao.addr),
        &format!("addresses = [\"http://127.0.0.1:{port}\"]"),
    );
    let b = h.start(&config);
    let bot = h.bot("invoice-bot");
    let before = count.load(std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses.push(b.call(&h, &bot, "GET", "/v1/secrets/erp-db").status);
    }
    let elapsed = started.elapsed();
    let attempts = count.load(std::sync::atomic::Ordering::SeqCst) - before;
    eprintln!("outage: 100 requests in {elapsed:?}, {attempts} connections to Vault");
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert!(
        attempts <= 20,
        "{attempts} connections for 100 requests: a retry storm"
    );
}
