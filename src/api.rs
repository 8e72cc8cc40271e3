//! Routes, request parsing and responses of the HTTP API.
//!
//! Every request produces exactly one audit record, and the response leaves
//! only after that record is written. Bodies that carry secrets are built in
//! [`WipedBuf`]s, which are wiped once hyper has sent them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Backend, Decision, Record};
use crate::config::is_valid_name;
use crate::config::AnomalyAction;
use crate::error::ApiError;
use crate::leases::Held;
use crate::policy::{self, DenyReason};
use crate::secret::WipedBuf;
use crate::server::{Conn, Runtime, Shared};
use crate::vault::backend_path;

/// Request IDs are made by the audit log, which records them.
pub use crate::audit::request_id;

pub type Body = Full<Bytes>;

/// Longest field name accepted in `?field=`.
const MAX_FIELD_LEN: usize = 256;
/// Longest request path recorded in the audit log.
const MAX_LOGGED_PATH: usize = 256;
/// Longest request method recorded in the audit log; hyper accepts any
/// token as an extension method.
const MAX_LOGGED_METHOD: usize = 16;

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Secret { name: String, field: Option<String> },
    Release { lease: String },
    Renew { lease: String },
    Whoami,
    Health,
}

/// A successful answer.
enum Reply {
    Json(WipedBuf),
    Text(WipedBuf),
    /// 204, for a released lease.
    Empty,
}

/// Longest lease ID accepted.
const MAX_LEASE_LEN: usize = 512;

/// Serves one request.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let rt = shared.runtime();
    let id = request_id();
    let route = parse(req.method(), req.uri());
    // The methods a path takes, for the Allow header of a 405.
    let allow = if req.uri().path().starts_with("/v1/leases/") {
        if req.uri().path().ends_with("/renew") {
            "POST"
        } else {
            "DELETE"
        }
    } else {
        "GET"
    };
    let kind = match &route {
        Ok(Route::Secret { .. }) => "secret.read",
        Ok(Route::Release { .. }) => "lease.release",
        Ok(Route::Renew { .. }) => "lease.renew",
        Ok(Route::Whoami) => "whoami",
        Ok(Route::Health) => "health",
        Err(_) => "request",
    };
    let mut rec = Record::new(kind, id.clone(), shared.audit.host());
    rec.method = Some(crate::audit::truncate(
        req.method().as_str(),
        MAX_LOGGED_METHOD,
    ));
    // Lease IDs appear in the audit log only as HMACs, the path included.
    rec.path = Some(match &route {
        Ok(Route::Release { lease }) => format!("/v1/leases/{}", rt.lease_hmac(lease)),
        Ok(Route::Renew { lease }) => format!("/v1/leases/{}/renew", rt.lease_hmac(lease)),
        _ if req.uri().path().starts_with("/v1/leases/") => "/v1/leases/…".into(),
        _ => crate::audit::truncate(req.uri().path(), MAX_LOGGED_PATH),
    });
    rec.peer = Some(conn.peer.clone());
    rec.cert = Some(conn.cert.clone());
    if let Ok(Route::Secret { name, .. }) = &route {
        rec.secret = Some(name.clone());
    }
    drop(req);

    let mut issued = None;
    // Only a verified, registered bot is recorded as `bot`; otherwise the
    // name the certificate gave is only a claim.
    let auth = authenticate(&conn, &rt, jiff::Timestamp::now());
    match &auth {
        Ok(bot) => rec.bot = Some(bot.name.clone()),
        Err(_) => rec.claimed_bot = conn.claimed(),
    }
    let mut result = match (route, auth) {
        (_, Err(e)) | (Err(e), _) => Err(e),
        (Ok(route), Ok(bot)) => {
            serve(route, bot, &conn, &rt, &shared, &mut rec, &id, &mut issued).await
        }
    };
    // A reload that took effect while the request was served (a revoked
    // certificate, a removed bot) is honoured before anything leaves.
    if result.is_ok() {
        let now_rt = shared.runtime();
        if now_rt.generation != rt.generation {
            match authenticate(&conn, &now_rt, jiff::Timestamp::now()) {
                Ok(bot) if rec.bot.as_deref() == Some(bot.name.as_str()) => {}
                Ok(_) => result = Err(ApiError::Unauthenticated("no_identity")),
                Err(e) => result = Err(e),
            }
            if result.is_err() {
                rec.claimed_bot = rec.bot.take();
            }
        }
    }
    if let Err(e) = &result {
        // A lease issued for a request that then failed (no such field, an
        // identity revoked meanwhile, ...) is revoked at once: nobody
        // received it.
        if let Some(lease) = issued.take() {
            let reason = match e {
                ApiError::Unauthenticated(_) => "identity_revoked",
                _ => "request_failed",
            };
            shared.revoke_held(&lease, reason).await;
        }
    }
    let (status, reply) = match result {
        Ok(reply) => {
            rec.decision = Decision::Allow;
            let status = if matches!(reply, Reply::Empty) {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            };
            (status, reply)
        }
        Err(err) => {
            rec.decision = if err.is_denial() {
                Decision::Deny
            } else {
                Decision::Error
            };
            rec.reason = Some(err.reason().to_owned());
            if !err.is_denial() {
                rec.error = Some(err.to_string());
            }
            (err.status(), Reply::Json(error_body(&err, &id)))
        }
    };
    let body_len = match &reply {
        Reply::Json(b) | Reply::Text(b) => b.len(),
        Reply::Empty => 0,
    };
    rec.status = status.as_u16();
    rec.bytes = Some(body_len as u64);
    rec.latency_us = started.elapsed().as_micros() as u64;
    if shared.audit.write(rec).await.is_err() {
        // Fail closed: the reply, and any secret in it, is wiped unsent,
        // and a lease issued for it is revoked.
        drop(reply);
        if let Some(lease) = issued {
            shared.revoke_held(&lease, "audit_unavailable").await;
        }
        let err = ApiError::AuditUnavailable;
        return Ok(respond(
            err.status(),
            Reply::Json(error_body(&err, &id)),
            &id,
            allow,
        ));
    }
    Ok(respond(status, reply, &id, allow))
}

/// The bot behind the connection, if the current config registers it and
/// its certificate still holds: not expired (a resumed TLS session skips the
/// handshake's check), valid under the current CA and CRLs when the
/// configuration changed since it was last verified or a CRL expired, and
/// naming the bot under the current identity rules. On the unix socket the
/// calling process must still be the one that connected.
fn authenticate<'r>(
    conn: &Conn,
    rt: &'r Runtime,
    now: jiff::Timestamp,
) -> Result<&'r crate::config::BotDef, ApiError> {
    if conn.not_after.is_some_and(|t| t < now) {
        return Err(ApiError::Unauthenticated("certificate_expired"));
    }
    let name = conn.identify(rt, now).map_err(ApiError::Unauthenticated)?;
    if conn.process.as_ref().is_some_and(|p| !p.still_holds()) {
        return Err(ApiError::Forbidden("process_changed"));
    }
    match name {
        None => Err(ApiError::Unauthenticated("no_identity")),
        Some(name) => rt
            .config
            .bot(&name)
            .ok_or(ApiError::Unauthenticated("unknown_bot")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    route: Route,
    bot: &crate::config::BotDef,
    conn: &Conn,
    rt: &Runtime,
    shared: &Shared,
    rec: &mut Record,
    id: &str,
    issued: &mut Option<Held>,
) -> Result<Reply, ApiError> {
    // A lease is found before the decision: renewing it is judged like
    // reading its secret again.
    let held = match &route {
        Route::Release { lease } | Route::Renew { lease } => {
            rec.backend = Some(Backend {
                path: lease_prefix(lease),
                version: None,
                lease_hmac: Some(rt.lease_hmac(lease)),
            });
            let h = shared
                .leases
                .get(lease)
                .ok_or(ApiError::NotFound("no_lease"))?;
            if !crate::secret::constant_time_eq(h.bot.as_bytes(), bot.name.as_bytes()) {
                // Answered like an unknown lease; the record keeps why.
                return Err(ApiError::NotFound("lease_not_owned"));
            }
            rec.secret = Some(h.secret.clone());
            Some(h)
        }
        _ => None,
    };
    let request = match (&route, &held) {
        (Route::Secret { name, .. }, _) => policy::Request::Secret(name),
        (Route::Renew { .. }, Some(h)) => policy::Request::Secret(&h.secret),
        _ => policy::Request::Metadata,
    };
    let now = jiff::Timestamp::now();
    let cx = policy::Context {
        now,
        peer: &conn.facts,
    };
    let decision = policy::decide(Some(bot), request, &cx);
    let anomaly = score(
        shared,
        bot,
        rec,
        &conn.peer,
        now,
        matches!(decision, policy::Decision::Deny(_)),
    );
    if let policy::Decision::Deny(reason) = decision {
        return Err(denied(reason));
    }
    if anomaly.score >= bot.anomaly.threshold && !anomaly.detectors.is_empty() {
        let alert = serde_json::json!({
            "bot": bot.name, "score": anomaly.score, "detectors": anomaly.detectors,
            "request_id": id, "kind": rec.kind, "secret": rec.secret, "ts": rec.ts,
        });
        tracing::warn!(bot = %bot.name, score = anomaly.score, detectors = ?anomaly.detectors, "Anomalous request");
        match bot.anomaly.action {
            AnomalyAction::Log => {}
            AnomalyAction::Alert => {
                if let Some(s) = &shared.scorer {
                    s.alert(alert);
                }
            }
            AnomalyAction::Deny => return Err(ApiError::Forbidden("anomaly")),
        }
    }
    match route {
        Route::Release { .. } => {
            let h = held.ok_or(ApiError::NotFound("no_lease"))?;
            rt.vault.revoke_lease(&h.id).await?;
            rec.reason = Some("released".into());
            shared.forget_lease(&h.id);
            Ok(Reply::Empty)
        }
        Route::Renew { .. } => {
            let h = held.ok_or(ApiError::NotFound("no_lease"))?;
            let def = rt
                .config
                .secret(&h.secret)
                .ok_or(ApiError::Forbidden("not_granted"))?;
            if !def.renew || !h.renewable {
                return Err(ApiError::Forbidden("renew_not_allowed"));
            }
            let now = jiff::Timestamp::now();
            let remaining = h
                .max_until
                .map(|m| (m.as_second() - now.as_second()).max(0) as u64);
            if remaining == Some(0) {
                return Err(ApiError::Forbidden("max_use_reached"));
            }
            // Ask for the lease's original TTL again, never past max_use.
            let increment = remaining
                .map_or(h.ttl_seconds, |r| r.min(h.ttl_seconds))
                .max(1);
            let info = rt.vault.renew_lease(&h.id, increment).await?;
            let ttl = remaining.map_or(info.ttl_seconds, |r| r.min(info.ttl_seconds));
            let renewed = Held {
                expires: now + ttl_duration(info.ttl_seconds),
                renewable: info.renewable,
                ..h
            };
            if let Err(e) = tokio::task::block_in_place(|| shared.leases.update(renewed.clone())) {
                tracing::warn!(error = %e, "Lease renewed but the ledger could not be updated");
            }
            let body = serde_json::json!({
                "lease": {"id": renewed.id, "ttl_seconds": ttl, "renewable": info.renewable && def.renew && remaining.is_none_or(|r| r > ttl)},
                "request_id": id,
            });
            Ok(Reply::Json(json(&body, 256 + renewed.id.len())))
        }
        Route::Whoami => {
            #[derive(Serialize)]
            struct Whoami<'a> {
                bot: &'a str,
                owner: &'a str,
                team: &'a str,
                purpose: &'a str,
                secrets: Vec<&'a str>,
                request_id: &'a str,
            }
            let body = Whoami {
                bot: &bot.name,
                owner: &bot.owner,
                team: &bot.team,
                purpose: &bot.purpose,
                secrets: bot.secrets.iter().map(String::as_str).collect(),
                request_id: id,
            };
            Ok(Reply::Json(json(&body, 256)))
        }
        Route::Health => {
            // Bots learn only whether Vault can be used; which address
            // answers, and how, is for the operator's log.
            let nodes = rt.vault.health().await;
            let usable = crate::vault::Vault::usable(&nodes);
            let detail = serde_json::to_string(&nodes).unwrap_or_default();
            // Logged when it changes, so that bots polling health do not
            // fill the operator's log.
            let changed = {
                let mut last = crate::lock(&shared.last_health);
                let changed = *last != detail;
                if changed {
                    last.clone_from(&detail);
                }
                changed
            };
            if changed && usable {
                tracing::info!(nodes = %detail, "Vault health");
            } else if changed {
                tracing::warn!(nodes = %detail, "Vault health: no usable address");
            }
            let vault = if usable { "ok" } else { "unreachable" };
            let crl = rt.crl_state(jiff::Timestamp::now()).as_str();
            let body =
                serde_json::json!({"status": "ok", "vault": vault, "crl": crl, "request_id": id});
            Ok(Reply::Json(json(&body, 256)))
        }
        Route::Secret { name, field } => {
            let def = rt
                .config
                .secret(&name)
                .ok_or(ApiError::Forbidden("not_granted"))?;
            rec.backend = Some(Backend {
                path: backend_path(def),
                version: None,
                lease_hmac: None,
            });
            // Identical concurrent KV reads share one Vault call that
            // started after they arrived; dynamic reads never do, since
            // every caller gets its own lease.
            let kv = matches!(def.source, crate::config::SecretSource::Kv { .. });
            let coalesced = if kv {
                let now = std::time::Instant::now();
                match def.cache_ttl.and_then(|_| rt.kv_cache.get(&name, now)) {
                    Some(hit) => {
                        rec.reason = Some("cached".into());
                        Some(hit)
                    }
                    None => {
                        let v = rt.kv_reads.run(&name, || rt.vault.read(def)).await?;
                        if let Some(ttl) = def.cache_ttl {
                            rt.kv_cache.insert(&name, v.clone(), now, ttl);
                        }
                        Some(v)
                    }
                }
            } else {
                None
            };
            // A dynamic read mints a credential: the bot must have room
            // under its max_leases first.
            let slot = match kv {
                true => None,
                false => Some(
                    shared
                        .lease_slot(&bot.name, bot.max_leases)
                        .ok_or(ApiError::RateLimited("max_leases"))?,
                ),
            };
            let mut owned = match kv {
                true => None,
                false => Some(rt.vault.read(def).await?),
            };
            if let Some(view) = coalesced.as_deref().or(owned.as_ref()) {
                if let Some(b) = rec.backend.as_mut() {
                    b.version = view.version;
                    b.lease_hmac = view.lease.as_ref().map(|l| rt.lease_hmac(&l.id));
                }
            }
            if let Some(lease) = owned.as_mut().and_then(|f| f.lease.as_mut()) {
                // Track it before anyone sees it: if it cannot be recorded,
                // it cannot be revoked later, so it is revoked now.
                let now = jiff::Timestamp::now();
                let max_until = def
                    .max_use
                    .map(|m| now + jiff::SignedDuration::from_secs(m.as_secs() as i64));
                let held = Held {
                    id: lease.id.clone(),
                    bot: bot.name.clone(),
                    secret: name.clone(),
                    issued: now,
                    expires: now + ttl_duration(lease.ttl_seconds),
                    ttl_seconds: lease.ttl_seconds,
                    revoke_attempts: 0,
                    retry_at: None,
                    max_until,
                    renewable: lease.renewable,
                };
                if let Some(m) = def.max_use {
                    lease.ttl_seconds = lease.ttl_seconds.min(m.as_secs());
                }
                lease.renewable = lease.renewable && def.renew;
                // The chain first, so that a reload that revokes it finds
                // the lease with its chain.
                shared.note_lease_chain(&held.id, conn.chain.clone());
                if let Err(e) = tokio::task::block_in_place(|| shared.leases.insert(held.clone())) {
                    tracing::error!(error = %e, "Cannot record a lease in the ledger; revoking it");
                    let _ = rt.vault.revoke_lease(&held.id).await;
                    shared.forget_lease(&held.id);
                    return Err(ApiError::AuditUnavailable);
                }
                *issued = Some(held);
            }
            drop(slot);
            let Some(fetched) = coalesced.as_deref().or(owned.as_ref()) else {
                return Err(ApiError::Vault(crate::error::VaultError::BadResponse(
                    "no data",
                )));
            };
            if let Some(field) = field {
                return fetched
                    .data
                    .field_text(&field)
                    .map(Reply::Text)
                    .ok_or(ApiError::NotFound("no_field"));
            }
            #[derive(Serialize)]
            struct Lease<'a> {
                id: &'a str,
                ttl_seconds: u64,
                renewable: bool,
            }
            #[derive(Serialize)]
            struct SecretBody<'a> {
                name: &'a str,
                data: &'a serde_json::Map<String, Value>,
                #[serde(skip_serializing_if = "Option::is_none")]
                version: Option<u64>,
                #[serde(skip_serializing_if = "Option::is_none")]
                lease: Option<Lease<'a>>,
                request_id: &'a str,
            }
            let data = fetched.data.expose_secret();
            let body = SecretBody {
                name: &name,
                data,
                version: fetched.version,
                lease: fetched.lease.as_ref().map(|l| Lease {
                    id: &l.id,
                    ttl_seconds: l.ttl_seconds,
                    renewable: l.renewable,
                }),
                request_id: id,
            };
            let estimate = 256
                + name.len()
                + approx_json_len_map(data)
                + fetched.lease.as_ref().map_or(0, |l| json_str_len(&l.id));
            Ok(Reply::Json(json(&body, estimate)))
        }
    }
}

/// Scores the request online and records the verdict in the audit record.
fn score(
    shared: &Shared,
    bot: &crate::config::BotDef,
    rec: &mut Record,
    peer: &crate::audit::Peer,
    now: jiff::Timestamp,
    denied: bool,
) -> crate::anomaly::model::Verdict {
    let Some(scorer) = &shared.scorer else {
        return Default::default();
    };
    let tz = bot
        .schedule
        .as_ref()
        .map(|s| s.time_zone())
        .unwrap_or_else(jiff::tz::TimeZone::system);
    let transport = match peer.transport {
        crate::audit::Transport::Tcp => "tcp",
        crate::audit::Transport::Unix => "unix",
    };
    let ev = crate::anomaly::Event {
        ts: now,
        kind: rec.kind,
        secret: rec.secret.as_deref(),
        denied,
        source: crate::anomaly::model::source_key(
            &rec.host,
            transport,
            peer.uid,
            peer.exe.as_deref(),
        ),
        id: &rec.id,
    };
    let verdict = scorer.score(
        &bot.name,
        &tz,
        &ev,
        bot.anomaly.action != AnomalyAction::Deny,
    );
    rec.anomaly = Some(serde_json::json!({"score": verdict.score, "detectors": verdict.detectors}));
    verdict
}

/// A TTL from Vault as a duration, capped at ten years so that no value
/// can overflow a timestamp.
fn ttl_duration(secs: u64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(secs.min(10 * 365 * 86_400) as i64)
}

/// The part of a lease ID before its random suffix: the Vault path it came
/// from, which may be logged.
fn lease_prefix(lease: &str) -> String {
    match lease.rsplit_once('/') {
        Some((prefix, _)) => prefix.to_owned(),
        None => String::new(),
    }
}

fn denied(reason: DenyReason) -> ApiError {
    match reason {
        DenyReason::UnknownBot => ApiError::Unauthenticated("unknown_bot"),
        other => ApiError::Forbidden(other.as_str()),
    }
}

/// Parses method, path and query strictly: exact routes, names from a small
/// alphabet, no percent-encoding, only the `field` query parameter.
fn parse(method: &Method, uri: &hyper::Uri) -> Result<Route, ApiError> {
    let path = uri.path();
    let query = uri.query().filter(|q| !q.is_empty());
    let get_only = |route: Route| {
        if method == Method::GET {
            Ok(route)
        } else {
            Err(ApiError::MethodNotAllowed)
        }
    };
    match path {
        "/v1/whoami" | "/v1/health" if query.is_some() => Err(ApiError::BadRequest(
            "this endpoint takes no query parameters".into(),
        )),
        "/v1/whoami" => get_only(Route::Whoami),
        "/v1/health" => get_only(Route::Health),
        _ if path.starts_with("/v1/leases/") => {
            if query.is_some() {
                return Err(ApiError::BadRequest(
                    "this endpoint takes no query parameters".into(),
                ));
            }
            let rest = &path["/v1/leases/".len()..];
            let (raw, renew) = match rest.strip_suffix("/renew") {
                Some(r) if method == Method::POST => (r, true),
                _ => (rest, false),
            };
            let lease = decode_lease_id(raw)?;
            match (renew, method) {
                (true, _) => Ok(Route::Renew { lease }),
                (false, &Method::DELETE) => Ok(Route::Release { lease }),
                _ => Err(ApiError::MethodNotAllowed),
            }
        }
        _ => {
            let Some(name) = path.strip_prefix("/v1/secrets/") else {
                return Err(ApiError::NotFound("no_route"));
            };
            if !is_valid_name(name) {
                return Err(ApiError::BadRequest(
                    "secret names are 1-128 letters, digits, '.', '_' or '-', with no slashes, '..' or percent-encoding".into(),
                ));
            }
            let field = match query {
                None => None,
                Some(q) => {
                    let value = q.strip_prefix("field=").ok_or_else(|| {
                        ApiError::BadRequest("the only query parameter is field".into())
                    })?;
                    let ok = !value.is_empty()
                        && value.len() <= MAX_FIELD_LEN
                        && value
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
                    if !ok {
                        return Err(ApiError::BadRequest(
                            "field must be 1-256 letters, digits, '.', '_' or '-'".into(),
                        ));
                    }
                    Some(value.to_owned())
                }
            };
            get_only(Route::Secret {
                name: name.to_owned(),
                field,
            })
        }
    }
}

/// A lease ID from the path: Vault's IDs contain slashes, which may come
/// raw or as `%2F`. Nothing else is decoded; the alphabet is Vault's.
fn decode_lease_id(raw: &str) -> Result<String, ApiError> {
    let id = raw.replace("%2F", "/").replace("%2f", "/");
    let ok = !id.is_empty()
        && id.len() <= MAX_LEASE_LEN
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'.' | b'_' | b'-'))
        && !id
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if ok {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(
            "lease IDs are Vault lease IDs: letters, digits, '/', '.', '_' and '-'".into(),
        ))
    }
}

fn respond(status: StatusCode, reply: Reply, id: &str, allow: &'static str) -> Response<Body> {
    let (ctype, buf) = match reply {
        Reply::Empty => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            return resp;
        }
        Reply::Json(b) => ("application/json", b),
        Reply::Text(b) => ("text/plain; charset=utf-8", b),
    };
    let mut resp = Response::new(Full::new(buf.into_bytes()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("x-request-id", v);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

/// `{"error":{"code","message","request_id"}}`
pub fn error_body(err: &ApiError, id: &str) -> WipedBuf {
    let body = serde_json::json!({"error": {"code": err.code().as_str(), "message": err.message_for_bot(), "request_id": id}});
    json(&body, 256)
}

fn json<T: Serialize>(value: &T, estimate: usize) -> WipedBuf {
    let mut buf = WipedBuf::with_capacity(estimate);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(buf.as_mut_vec(), value);
    buf
}

/// An upper estimate of a value's JSON length, so that the response buffer
/// is allocated once.
fn approx_json_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => json_str_len(s),
        Value::Array(a) => 2 + a.iter().map(|x| approx_json_len(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| json_str_len(k) + 1 + approx_json_len(x) + 1)
                .sum::<usize>()
        }
    }
}

fn approx_json_len_map(m: &serde_json::Map<String, Value>) -> usize {
    2 + m
        .iter()
        .map(|(k, x)| json_str_len(k) + 1 + approx_json_len(x) + 1)
        .sum::<usize>()
}

/// The exact length of a string once JSON-escaped and quoted.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// The route [`parse`] finds, as (kind, name or lease ID, field), for the
/// fuzz targets in `fuzz/`.
#[doc(hidden)]
pub fn fuzz_parse(
    method: &Method,
    uri: &hyper::Uri,
) -> Result<(&'static str, String, Option<String>), ApiError> {
    parse(method, uri).map(|route| match route {
        Route::Secret { name, field } => ("secret", name, field),
        Route::Release { lease } => ("release", lease, None),
        Route::Renew { lease } => ("renew", lease, None),
        Route::Whoami => ("whoami", String::new(), None),
        Route::Health => ("health", String::new(), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, uri: &str) -> Result<Route, ApiError> {
        parse(&method.parse().unwrap(), &uri.parse().unwrap())
    }

    #[test]
    fn routes_parse_strictly() {
        assert_eq!(
            p("GET", "/v1/secrets/erp-db"),
            Ok(Route::Secret {
                name: "erp-db".into(),
                field: None
            })
        );
        assert_eq!(
            p("GET", "/v1/secrets/erp-db?field=password"),
            Ok(Route::Secret {
                name: "erp-db".into(),
                field: Some("password".into())
            })
        );
        assert_eq!(p("GET", "/v1/whoami"), Ok(Route::Whoami));
        assert_eq!(p("GET", "/v1/health"), Ok(Route::Health));
        let bad = [
            "/v1/secrets/",
            "/v1/secrets/..",
            "/v1/secrets/../etc",
            "/v1/secrets/a/b",
            "/v1/secrets/a%2Fb",
            "/v1/secrets/%2e%2e",
            "/v1/secrets/erp-db?field=",
            "/v1/secrets/erp-db?field=a&field=b",
            "/v1/secrets/erp-db?version=1",
            "/v1/secrets/erp-db?field=p%61ss",
            "/v1/whoami?x=1",
        ];
        for uri in bad {
            assert!(
                matches!(p("GET", uri), Err(ApiError::BadRequest(_))),
                "{uri}"
            );
        }
        let long = format!("/v1/secrets/{}", "a".repeat(129));
        assert!(matches!(p("GET", &long), Err(ApiError::BadRequest(_))));
        assert_eq!(p("GET", "/v1/nothing"), Err(ApiError::NotFound("no_route")));
        assert_eq!(p("GET", "/v1/secrets"), Err(ApiError::NotFound("no_route")));
        assert_eq!(p("POST", "/v1/whoami"), Err(ApiError::MethodNotAllowed));
        assert_eq!(
            p("PUT", "/v1/secrets/erp-db"),
            Err(ApiError::MethodNotAllowed)
        );
    }

    #[test]
    fn request_ids_are_24_hex_digits_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        // Several refills of the pool, on two threads.
        let other = std::thread::spawn(|| (0..500).map(|_| request_id()).collect::<Vec<_>>());
        for id in (0..500).map(|_| request_id()).chain(other.join().unwrap()) {
            assert_eq!(id.len(), 24, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
            assert!(seen.insert(id.clone()), "repeated: {id}");
        }
    }

    #[test]
    fn error_body_has_the_contract_shape() {
        let b = error_body(&ApiError::Forbidden("not_granted"), "abc");
        let v: Value = serde_json::from_slice(b.expose_secret()).unwrap();
        assert_eq!(v["error"]["code"], "forbidden");
        assert_eq!(v["error"]["request_id"], "abc");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not granted"));
    }

    #[test]
    fn estimate_covers_serialized_size() {
        let v = serde_json::json!({"a": "x\"y\\z\u{1}\n", "b": [1, 2.5, null], "c": {"d": "ééé"}});
        assert!(approx_json_len(&v) >= serde_json::to_string(&v).unwrap().len());
    }
}
