//! Audit records as OCSF 1.1 events, for SIEMs that speak the Open
//! Cybersecurity Schema Framework.
//!
//! Each record becomes one event of one of two classes:
//!
//! | record | OCSF class | activity |
//! |---|---|---|
//! | `kind` `auth.failure`, or any `status` 401 (refused as unauthenticated) | Authentication (category 3, class 3002) | 1 Logon, always `status_id` 2 Failure |
//! | `secret.read`, `whoami`, `health` | API Activity (category 6, class 6003) | 2 Read |
//! | `config.reload` | API Activity | 3 Update |
//! | `lease.release` | API Activity | 4 Delete |
//! | any other kind | API Activity | 99 Other |
//!
//! Common attributes:
//!
//! | OCSF attribute | from the record |
//! |---|---|
//! | `type_uid` | `class_uid * 100 + activity_id` |
//! | `time` | `ts` as epoch milliseconds (left out if `ts` is unreadable; the raw text goes to `unmapped.ts`) |
//! | `severity_id` / `severity` | `decision`: allow 1 Informational, deny 3 Medium, error 4 High, otherwise 0 Unknown |
//! | `status_id` / `status` | API Activity: 1 Success for allow, 2 Failure otherwise |
//! | `status_code` | `status`, as a string |
//! | `status_detail` | `reason` |
//! | `message` | one line built from kind, secret, bot, decision, status and reason |
//! | `metadata` | `version` "1.1.0", `product` {name, vendor_name "botward", version of this build}, `uid` = `id`, `sequence` = `seq`, `original_time` = `ts`, `log_name` "botward-audit" |
//! | `actor.user` | `name` = `bot` (verified only, see below), `uid` = `cert.sha256` |
//! | `actor.app_name` | `bot` (verified only) |
//! | `actor.process` | `peer.pid`, `file.path` = `peer.exe`, `user.uid` = `peer.uid` (when any is known) |
//! | `src_endpoint` | tcp: `ip` and `port` parsed from `peer.addr` (`name` = the raw address if it does not parse); unix: `svc_name` "unix", `name` = `peer.addr` |
//! | `dst_endpoint.hostname` | `host` |
//!
//! API Activity only:
//!
//! | OCSF attribute | from the record |
//! |---|---|
//! | `api.operation` | `method` + " " + `path`, or `kind` when there was no HTTP request |
//! | `api.request.uid` | `id` |
//! | `api.response.code` | `status` |
//! | `resources` | `[{name: secret, type: "secret", uid: backend.path}]` when `secret` is set |
//!
//! Authentication only:
//!
//! | OCSF attribute | from the record |
//! |---|---|
//! | `user` | same as `actor.user` (the identity that tried to log on) |
//! | `auth_protocol_id` / `auth_protocol` | 99 / "mTLS" |
//! | `logon_type_id` / `logon_type` | 3 / "Network" |
//! | `service.name` | "botward" |
//! | `certificate` | `serial_number` = `cert.serial`, `fingerprints` = [SHA-256 `cert.sha256`], `expiration_time` = `cert.not_after` in epoch ms |
//! | `unmapped.method`, `unmapped.path` | the HTTP request, if any |
//!
//! `unmapped` carries, when not null: `kind`, `latency_us`, `bytes`,
//! `backend_version`, `lease_hmac`, `cert_serial`, `error`, `detail`,
//! `anomaly`, `claimed_bot`, and the chain fields `hash`, `mac`, `prev`,
//! `epoch`. Attributes whose source is null are left out.
//!
//! A host-level record (an `auth.failure`, a 401, or any record with
//! `claimed_bot`; see [`super::fields::host_level`]) has no verified
//! identity: `actor.user.name`, `user.name` and `actor.app_name` are left
//! out, and the name its certificate claimed goes to `unmapped.claimed_bot`
//! only, also for logs whose `auth.failure` records carry it in `bot`. The
//! message then reads "by unidentified peer (claimed: NAME)".

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use super::fields::{claimed_bot, record_time, str_field, verified_bot};

const OCSF_VERSION: &str = "1.1.0";

const CATEGORY_IAM: u64 = 3;
const CLASS_AUTHENTICATION: u64 = 3002;
const CATEGORY_APPLICATION: u64 = 6;
const CLASS_API_ACTIVITY: u64 = 6003;

/// Maps one audit record to one OCSF 1.1 event. Never fails: fields that are
/// missing or of an unexpected type are left out of the event.
pub fn to_ocsf(rec: &Value) -> Value {
    let kind = str_field(rec, "kind").unwrap_or("");
    let decision = str_field(rec, "decision").unwrap_or("");
    let status = rec.get("status").and_then(Value::as_u64);
    let is_auth = kind == "auth.failure" || status == Some(401);

    let mut ev = Map::new();
    put_class(&mut ev, kind, is_auth);
    if let Some(ts) = record_time(rec) {
        ev.insert("time".into(), json!(ts.as_millisecond()));
    }
    put_outcome(&mut ev, decision, is_auth);
    if let Some(code) = status {
        ev.insert("status_code".into(), json!(code.to_string()));
    }
    put(&mut ev, "status_detail", rec.get("reason"));
    ev.insert(
        "message".into(),
        json!(message(rec, kind, decision, status)),
    );
    ev.insert("metadata".into(), metadata(rec));

    let peer = rec.get("peer").filter(|p| p.is_object());
    let cert = rec.get("cert").filter(|c| c.is_object());
    let user = user(rec, cert);
    if let Some(actor) = actor(rec, &user, peer) {
        ev.insert("actor".into(), actor);
    }
    if let Some(src) = peer.and_then(src_endpoint) {
        ev.insert("src_endpoint".into(), src);
    }
    if let Some(host) = rec.get("host").and_then(Value::as_str) {
        ev.insert("dst_endpoint".into(), json!({ "hostname": host }));
    }

    let mut unmapped = Map::new();
    if is_auth {
        put_authentication(&mut ev, user, cert);
        put(&mut unmapped, "method", rec.get("method"));
        put(&mut unmapped, "path", rec.get("path"));
    } else {
        put_api_activity(&mut ev, rec, kind, status);
    }
    let has_time = ev.contains_key("time");
    put_unmapped(&mut unmapped, rec, kind, cert, has_time);
    ev.insert("unmapped".into(), Value::Object(unmapped));

    Value::Object(ev)
}

/// The event's category, class and activity, and the type they make.
fn put_class(ev: &mut Map<String, Value>, kind: &str, is_auth: bool) {
    let (category_uid, category_name, class_uid, class_name, (activity_id, activity_name)) =
        if is_auth {
            (
                CATEGORY_IAM,
                "Identity & Access Management",
                CLASS_AUTHENTICATION,
                "Authentication",
                (1, "Logon"),
            )
        } else {
            (
                CATEGORY_APPLICATION,
                "Application Activity",
                CLASS_API_ACTIVITY,
                "API Activity",
                api_activity(kind),
            )
        };
    ev.insert("category_uid".into(), json!(category_uid));
    ev.insert("category_name".into(), json!(category_name));
    ev.insert("class_uid".into(), json!(class_uid));
    ev.insert("class_name".into(), json!(class_name));
    ev.insert("activity_id".into(), json!(activity_id));
    ev.insert("activity_name".into(), json!(activity_name));
    ev.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    ev.insert(
        "type_name".into(),
        json!(format!("{class_name}: {activity_name}")),
    );
}

/// Severity by the decision, and status: Success only for an allowed API
/// Activity.
fn put_outcome(ev: &mut Map<String, Value>, decision: &str, is_auth: bool) {
    let (severity_id, severity) = match decision {
        "allow" => (1, "Informational"),
        "deny" => (3, "Medium"),
        "error" => (4, "High"),
        _ => (0, "Unknown"),
    };
    ev.insert("severity_id".into(), json!(severity_id));
    ev.insert("severity".into(), json!(severity));

    let success = !is_auth && decision == "allow";
    ev.insert("status_id".into(), json!(if success { 1 } else { 2 }));
    ev.insert(
        "status".into(),
        json!(if success { "Success" } else { "Failure" }),
    );
}

fn metadata(rec: &Value) -> Value {
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "botward",
            "vendor_name": "botward",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "log_name": "botward-audit",
    });
    let meta = metadata.as_object_mut().expect("metadata is an object");
    put(meta, "uid", rec.get("id"));
    put(meta, "sequence", rec.get("seq").filter(|v| v.is_u64()));
    put(meta, "original_time", rec.get("ts"));
    metadata
}

/// The actor: its user, the verified bot as `app_name`, and the peer's
/// process; `None` when none is known.
fn actor(rec: &Value, user: &Map<String, Value>, peer: Option<&Value>) -> Option<Value> {
    let mut actor = Map::new();
    if !user.is_empty() {
        actor.insert("user".into(), Value::Object(user.clone()));
    }
    if let Some(bot) = verified_bot(rec) {
        actor.insert("app_name".into(), json!(bot));
    }
    if let Some(process) = peer.and_then(process) {
        actor.insert("process".into(), process);
    }
    (!actor.is_empty()).then_some(Value::Object(actor))
}

/// The attributes of the Authentication class.
fn put_authentication(ev: &mut Map<String, Value>, user: Map<String, Value>, cert: Option<&Value>) {
    if !user.is_empty() {
        ev.insert("user".into(), Value::Object(user));
    }
    ev.insert("auth_protocol_id".into(), json!(99));
    ev.insert("auth_protocol".into(), json!("mTLS"));
    ev.insert("logon_type_id".into(), json!(3));
    ev.insert("logon_type".into(), json!("Network"));
    ev.insert("service".into(), json!({ "name": "botward" }));
    if let Some(certificate) = cert.map(certificate) {
        ev.insert("certificate".into(), certificate);
    }
}

/// The attributes of the API Activity class.
fn put_api_activity(ev: &mut Map<String, Value>, rec: &Value, kind: &str, status: Option<u64>) {
    ev.insert("api".into(), api(rec, kind, status));
    if let Some(secret) = rec.get("secret").and_then(Value::as_str) {
        let mut resource = json!({ "name": secret, "type": "secret" });
        let path = rec.get("backend").and_then(|b| b.get("path"));
        put(resource.as_object_mut().expect("object"), "uid", path);
        ev.insert("resources".into(), json!([resource]));
    }
}

/// The record's fields OCSF has no attribute for; `ts` only when the event
/// has no `time`.
fn put_unmapped(
    unmapped: &mut Map<String, Value>,
    rec: &Value,
    kind: &str,
    cert: Option<&Value>,
    has_time: bool,
) {
    if !kind.is_empty() {
        unmapped.insert("kind".into(), json!(kind));
    }
    if !has_time {
        put(unmapped, "ts", rec.get("ts"));
    }
    put(unmapped, "latency_us", rec.get("latency_us"));
    put(unmapped, "bytes", rec.get("bytes"));
    let backend = rec.get("backend");
    put(
        unmapped,
        "backend_version",
        backend.and_then(|b| b.get("version")),
    );
    put(
        unmapped,
        "lease_hmac",
        backend.and_then(|b| b.get("lease_hmac")),
    );
    put(unmapped, "cert_serial", cert.and_then(|c| c.get("serial")));
    for key in ["error", "detail", "anomaly"] {
        put(unmapped, key, rec.get(key));
    }
    if let Some(claim) = claimed_bot(rec) {
        unmapped.insert("claimed_bot".into(), json!(claim));
    }
    for key in ["hash", "mac", "prev", "epoch"] {
        put(unmapped, key, rec.get(key));
    }
}

/// The API Activity activity for a record kind.
fn api_activity(kind: &str) -> (u64, &'static str) {
    match kind {
        "secret.read" | "whoami" | "health" => (2, "Read"),
        "config.reload" => (3, "Update"),
        "lease.release" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

/// Inserts `key` unless `value` is absent or null.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        map.insert(key.into(), v.clone());
    }
}

fn message(rec: &Value, kind: &str, decision: &str, status: Option<u64>) -> String {
    let mut msg = kind.to_string();
    if let Some(secret) = str_field(rec, "secret") {
        msg.push_str(&format!(" {secret}"));
    }
    match (verified_bot(rec), claimed_bot(rec)) {
        (Some(bot), _) => msg.push_str(&format!(" by {bot}")),
        (None, Some(claim)) => msg.push_str(&format!(" by unidentified peer (claimed: {claim})")),
        (None, None) => msg.push_str(" by unidentified peer"),
    }
    msg.push_str(&format!(": {decision}"));
    if let Some(status) = status.filter(|s| *s != 0) {
        msg.push_str(&format!(" {status}"));
    }
    if let Some(reason) = str_field(rec, "reason") {
        msg.push_str(&format!(" ({reason})"));
    }
    msg
}

fn user(rec: &Value, cert: Option<&Value>) -> Map<String, Value> {
    let mut user = Map::new();
    if let Some(bot) = verified_bot(rec) {
        user.insert("name".into(), json!(bot));
    }
    put(&mut user, "uid", cert.and_then(|c| c.get("sha256")));
    user
}

fn process(peer: &Value) -> Option<Value> {
    let mut process = Map::new();
    put(&mut process, "pid", peer.get("pid"));
    if let Some(exe) = peer.get("exe").and_then(Value::as_str) {
        let name = exe.rsplit('/').next().unwrap_or(exe);
        process.insert(
            "file".into(),
            json!({ "path": exe, "name": name, "type_id": 1, "type": "Regular File" }),
        );
    }
    if let Some(uid) = peer.get("uid").filter(|u| !u.is_null()) {
        let uid = uid.as_str().map_or_else(|| uid.to_string(), String::from);
        process.insert("user".into(), json!({ "uid": uid }));
    }
    (!process.is_empty()).then_some(Value::Object(process))
}

fn src_endpoint(peer: &Value) -> Option<Value> {
    let addr = peer.get("addr").and_then(Value::as_str);
    match str_field(peer, "transport") {
        Some("tcp") => {
            let addr = addr?;
            Some(match addr.parse::<SocketAddr>() {
                Ok(sa) => json!({ "ip": sa.ip().to_string(), "port": sa.port() }),
                Err(_) => json!({ "name": addr }),
            })
        }
        Some("unix") => {
            let mut ep = json!({ "svc_name": "unix" });
            if let Some(addr) = addr {
                ep["name"] = json!(addr);
            }
            Some(ep)
        }
        _ => None,
    }
}

fn certificate(cert: &Value) -> Value {
    let mut c = Map::new();
    put(&mut c, "serial_number", cert.get("serial"));
    if let Some(sha) = cert.get("sha256").and_then(Value::as_str) {
        c.insert(
            "fingerprints".into(),
            json!([{ "algorithm_id": 3, "algorithm": "SHA-256", "value": sha }]),
        );
    }
    let expiry = str_field(cert, "not_after").and_then(|s| s.parse::<jiff::Timestamp>().ok());
    if let Some(expiry) = expiry {
        c.insert("expiration_time".into(), json!(expiry.as_millisecond()));
    }
    Value::Object(c)
}

fn api(rec: &Value, kind: &str, status: Option<u64>) -> Value {
    let operation = match (str_field(rec, "method"), str_field(rec, "path")) {
        (Some(m), Some(p)) => format!("{m} {p}"),
        (Some(m), None) => m.to_string(),
        _ => kind.to_string(),
    };
    let mut api = json!({ "operation": operation, "service": { "name": "botward" } });
    if let Some(id) = rec.get("id").filter(|v| !v.is_null()) {
        api["request"] = json!({ "uid": id });
    }
    if let Some(code) = status {
        api["response"] = json!({ "code": code });
    }
    api
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_read() -> Value {
        json!({
            "v": 1, "seq": 41, "ts": "2026-11-27T21:57:54.653999Z", "id": "req-41", "host": "rpa-01",
            "kind": "secret.read", "decision": "allow", "status": 200, "latency_us": 1830,
            "bot": "invoice-bot",
            "cert": {"sha256": "ab".repeat(32), "serial": "1f:02", "not_after": "2027-01-01T00:00:00Z"},
            "peer": {"transport": "unix", "addr": null, "pid": 4242, "uid": 1001, "exe": "/opt/rpa/bin/runner"},
            "secret": "erp-db",
            "backend": {"path": "database/creds/erp-ro", "version": null, "lease_hmac": "beef"},
            "reason": null, "bytes": 96, "anomaly": null,
            "method": "GET", "path": "/v1/secrets/erp-db", "error": null, "detail": null,
            "prev": "aa", "mac": "bb"
        })
    }

    fn auth_failure() -> Value {
        json!({
            "v": 1, "seq": 42, "ts": "2026-11-27T21:58:00.000000Z", "id": "req-42", "host": "rpa-01",
            "kind": "auth.failure", "decision": "deny", "status": 401, "latency_us": 90,
            "bot": null,
            "cert": {"sha256": "cd".repeat(32), "serial": "99", "not_after": "2026-01-01T00:00:00Z"},
            "peer": {"transport": "tcp", "addr": "127.0.0.1:5555", "pid": null, "uid": null, "exe": null},
            "secret": null, "backend": null, "reason": "unknown_bot", "bytes": null, "anomaly": null,
            "method": null, "path": null, "error": null, "detail": null, "prev": "bb", "mac": "cc"
        })
    }

    #[test]
    fn allowed_secret_read_is_api_activity_read() {
        let ev = to_ocsf(&secret_read());
        assert_eq!(ev["category_uid"], 6);
        assert_eq!(ev["class_uid"], 6003);
        assert_eq!(ev["activity_id"], 2);
        assert_eq!(ev["type_uid"], 600302);
        assert_eq!(ev["severity_id"], 1);
        assert_eq!(ev["status_id"], 1);
        assert_eq!(ev["status"], "Success");
        assert_eq!(ev["status_code"], "200");
        assert_eq!(ev["time"], 1_795_816_674_653_i64);
        assert_eq!(ev["api"]["operation"], "GET /v1/secrets/erp-db");
        assert_eq!(ev["api"]["request"]["uid"], "req-41");
        assert_eq!(ev["api"]["response"]["code"], 200);
        assert_eq!(ev["resources"][0]["name"], "erp-db");
        assert_eq!(ev["resources"][0]["type"], "secret");
        assert_eq!(ev["resources"][0]["uid"], "database/creds/erp-ro");
        assert!(ev.get("user").is_none());
    }

    #[test]
    fn denied_auth_failure_is_failed_logon() {
        let ev = to_ocsf(&auth_failure());
        assert_eq!(ev["category_uid"], 3);
        assert_eq!(ev["class_uid"], 3002);
        assert_eq!(ev["activity_id"], 1);
        assert_eq!(ev["type_uid"], 300201);
        assert_eq!(ev["status_id"], 2);
        assert_eq!(ev["status"], "Failure");
        assert_eq!(ev["severity_id"], 3);
        assert_eq!(ev["status_detail"], "unknown_bot");
        assert_eq!(ev["user"]["uid"], "cd".repeat(32));
        assert_eq!(ev["src_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(ev["src_endpoint"]["port"], 5555);
        assert_eq!(ev["certificate"]["serial_number"], "99");
        assert!(ev.get("api").is_none());
        assert!(ev.get("resources").is_none());
    }

    #[test]
    fn a_claimed_name_is_never_the_user() {
        let mut old = auth_failure();
        old["bot"] = json!("invoice-bot");
        let mut new = auth_failure();
        new["claimed_bot"] = json!("invoice-bot");
        let mut revoked = secret_read();
        revoked["status"] = json!(401);
        revoked["decision"] = json!("deny");
        revoked["reason"] = json!("certificate_revoked");
        for rec in [old, new, revoked] {
            let ev = to_ocsf(&rec);
            assert_eq!(ev["class_uid"], 3002, "{rec}");
            assert!(ev["actor"].get("app_name").is_none(), "{ev}");
            assert!(ev["actor"]["user"].get("name").is_none(), "{ev}");
            assert!(ev["user"].get("name").is_none(), "{ev}");
            assert_eq!(ev["user"]["uid"], rec["cert"]["sha256"]);
            assert_eq!(ev["unmapped"]["claimed_bot"], "invoice-bot");
            let msg = ev["message"].as_str().unwrap();
            assert!(
                msg.contains("by unidentified peer (claimed: invoice-bot)"),
                "{msg}"
            );
        }
        assert!(to_ocsf(&secret_read())["unmapped"]
            .get("claimed_bot")
            .is_none());
    }

    #[test]
    fn request_with_401_is_authentication_too() {
        let mut rec = auth_failure();
        rec["kind"] = json!("request");
        assert_eq!(to_ocsf(&rec)["class_uid"], 3002);
        rec["status"] = json!(403);
        assert_eq!(to_ocsf(&rec)["class_uid"], 6003);
        assert_eq!(to_ocsf(&rec)["activity_id"], 99);
    }

    #[test]
    fn activities_follow_the_kind() {
        for (kind, activity) in [
            ("whoami", 2),
            ("health", 2),
            ("config.reload", 3),
            ("lease.release", 4),
            ("checkpoint", 99),
            ("server.start", 99),
        ] {
            let mut rec = secret_read();
            rec["kind"] = json!(kind);
            let ev = to_ocsf(&rec);
            assert_eq!(ev["activity_id"], activity, "{kind}");
            assert_eq!(ev["type_uid"], 600300 + activity, "{kind}");
        }
    }

    #[test]
    fn severity_follows_the_decision() {
        let mut rec = secret_read();
        rec["decision"] = json!("error");
        let ev = to_ocsf(&rec);
        assert_eq!(ev["severity_id"], 4);
        assert_eq!(ev["status_id"], 2);
    }

    #[test]
    fn event_carries_metadata_actor_and_unmapped() {
        let ev = to_ocsf(&secret_read());
        let md = &ev["metadata"];
        assert_eq!(md["version"], "1.1.0");
        assert_eq!(md["product"]["name"], "botward");
        assert_eq!(md["product"]["vendor_name"], "botward");
        assert_eq!(md["product"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(md["uid"], "req-41");
        assert_eq!(md["sequence"], 41);
        assert_eq!(md["log_name"], "botward-audit");
        assert!(ev["message"]
            .as_str()
            .unwrap()
            .contains("erp-db by invoice-bot: allow 200"));

        let actor = &ev["actor"];
        assert_eq!(actor["user"]["name"], "invoice-bot");
        assert_eq!(actor["user"]["uid"], "ab".repeat(32));
        assert_eq!(actor["app_name"], "invoice-bot");
        assert_eq!(actor["process"]["pid"], 4242);
        assert_eq!(actor["process"]["file"]["path"], "/opt/rpa/bin/runner");
        assert_eq!(actor["process"]["file"]["name"], "runner");
        assert_eq!(actor["process"]["user"]["uid"], "1001");
        assert_eq!(ev["src_endpoint"]["svc_name"], "unix");
        assert_eq!(ev["dst_endpoint"]["hostname"], "rpa-01");

        let un = ev["unmapped"].as_object().unwrap();
        assert_eq!(un["kind"], "secret.read");
        assert_eq!(un["latency_us"], 1830);
        assert_eq!(un["lease_hmac"], "beef");
        assert_eq!(un["prev"], "aa");
        assert_eq!(un["mac"], "bb");
        for absent in [
            "backend_version",
            "anomaly",
            "hash",
            "epoch",
            "error",
            "detail",
            "ts",
        ] {
            assert!(
                !un.contains_key(absent),
                "{absent} is null and must be left out"
            );
        }
        assert!(ev.get("status_detail").is_none());
    }

    #[test]
    fn junk_record_still_maps() {
        let ev = to_ocsf(&json!({"ts": "not a time", "seq": "x"}));
        assert_eq!(ev["class_uid"], 6003);
        assert!(ev.get("time").is_none());
        assert_eq!(ev["unmapped"]["ts"], "not a time");
        assert!(ev["metadata"].get("sequence").is_none());
        let ev = to_ocsf(&json!(42));
        assert_eq!(ev["activity_id"], 99);
    }
}
