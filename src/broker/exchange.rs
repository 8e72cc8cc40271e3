//! One request on an authenticated connection, from its arrival until its
//! audit record is written.
//!
//! Every request produces exactly one audit record, and the answer leaves
//! only after that record is written: [`Exchange::finish`] writes it, and
//! when it cannot, wipes the reply unsent and revokes any lease issued for
//! it.

use std::time::Instant;

use crate::audit::{Decision, Record};
use crate::error::{ApiError, Forbidden, Unauthenticated};
use crate::leases::Held;
use crate::policy::{self, DenyReason};
use crate::policy::{AnomalyAction, BotDef};
use crate::secret::WipedBuf;

use super::{Conn, Runtime, Shared};

/// Longest request path recorded in the audit log.
const MAX_LOGGED_PATH: usize = 256;
/// Longest request method recorded in the audit log; HTTP accepts any
/// token as an extension method.
const MAX_LOGGED_METHOD: usize = 16;

/// A successful answer, before it is framed for the transport.
pub enum Reply {
    Json(WipedBuf),
    Text(WipedBuf),
    /// JSON for a request taken but not yet done (202).
    Accepted(WipedBuf),
    /// Nothing to say, e.g. for a released lease.
    Empty,
}

/// What a request asks, as recorded before it is served.
pub struct Arrival<'r> {
    /// The audit record's `kind`, e.g. `secret.read`.
    pub kind: &'static str,
    pub method: &'r str,
    /// The path as it may be logged: lease IDs already replaced by their
    /// HMACs. Capped here.
    pub path: &'r str,
    /// The secret named in the request, if any.
    pub secret: Option<&'r str>,
}

/// The answer and the status it goes with, once its record is written.
pub struct Answer {
    pub status: u16,
    pub reply: Reply,
    pub request_id: String,
}

/// A request being served: the connection it came on, the runtime snapshot
/// it is served under, its audit record and any lease issued for it.
pub struct Exchange<'a> {
    pub shared: &'a Shared,
    pub conn: &'a Conn,
    pub rt: &'a Runtime,
    pub rec: Record,
    pub id: String,
    /// A lease issued for this request, revoked if the request then fails.
    pub(super) issued: Option<Held>,
    /// The elevation window a privileged read was decided under.
    pub(super) elevation: Option<policy::Window>,
    /// The lease a renewal renewed, attached to the window it was renewed
    /// in.
    pub(super) renewed: Option<String>,
    started: Instant,
}

impl<'a> Exchange<'a> {
    pub fn begin(
        shared: &'a Shared,
        conn: &'a Conn,
        rt: &'a Runtime,
        arrival: Arrival<'_>,
        started: Instant,
    ) -> Exchange<'a> {
        let id = crate::audit::request_id();
        let mut rec = Record::new(arrival.kind, id.clone(), shared.audit.host());
        rec.method = Some(crate::audit::truncate(arrival.method, MAX_LOGGED_METHOD));
        rec.path = Some(crate::audit::truncate(arrival.path, MAX_LOGGED_PATH));
        rec.peer = Some(conn.peer.clone());
        rec.cert = Some(conn.cert.clone());
        rec.secret = arrival.secret.map(str::to_owned);
        Exchange {
            shared,
            conn,
            rt,
            rec,
            id,
            issued: None,
            elevation: None,
            renewed: None,
            started,
        }
    }

    /// The bot behind the connection. Only a verified, registered bot is
    /// recorded as `bot`; otherwise the name the certificate gave is only a
    /// claim.
    pub fn authenticate(&mut self) -> Result<&'a BotDef, ApiError> {
        let auth = authenticate(self.conn, self.rt, jiff::Timestamp::now());
        match &auth {
            Ok(bot) => self.rec.bot = Some(bot.name.clone()),
            Err(_) => self.rec.claimed_bot = self.conn.claimed(),
        }
        auth
    }

    /// Decides `request` for `bot`: policy first, then online anomaly
    /// scoring, whose verdict is recorded and, per the bot's
    /// `anomaly.action`, logged, alerted or enforced.
    pub fn decide(&mut self, bot: &BotDef, request: policy::Request<'_>) -> Result<(), ApiError> {
        let now = jiff::Timestamp::now();
        let quiet_since = self.shared.activity.quiet_since(&bot.name);
        let cx = policy::Context {
            now,
            peer: &self.conn.facts,
            quiet_since,
        };
        let window = match request {
            policy::Request::Secret(name)
                if self.rt.config.secret(name).is_some_and(|s| s.privileged) =>
            {
                let cfg = &self.rt.config;
                let w = self.shared.elevations.window_for(&bot.name, name, now);
                Some(w.filter(|w| super::standing::window_holds(cfg, w)))
            }
            _ => None,
        };
        let request = match (&window, request) {
            (Some(w), policy::Request::Secret(secret)) => policy::Request::Privileged {
                secret,
                window: w.as_ref(),
            },
            _ => request,
        };
        let decision = policy::decide(Some(bot), request, &cx);
        // Activity is a served use of a secret (a read, a lease renewal):
        // asking who it is, renewing its certificate or being refused keeps
        // no bot awake.
        let uses_secret = matches!(
            request,
            policy::Request::Secret(_) | policy::Request::Privileged { .. }
        );
        if uses_secret && decision == policy::Decision::Allow {
            self.shared.activity.touch(&bot.name, now);
        }
        if decision == policy::Decision::Allow {
            if let Some(w) = window.flatten() {
                self.rec.elevation =
                    Some(serde_json::json!({"id": w.id, "approvers": w.approvers}));
                self.elevation = Some(w);
            }
        }
        let denied = matches!(decision, policy::Decision::Deny(_));
        let anomaly = self.score(bot, now, denied);
        if let policy::Decision::Deny(reason) = decision {
            return Err(denied_by_policy(reason));
        }
        if anomaly.score >= bot.anomaly.threshold && !anomaly.detectors.is_empty() {
            let alert = serde_json::json!({
                "bot": bot.name, "score": anomaly.score, "detectors": anomaly.detectors,
                "request_id": self.id, "kind": self.rec.kind, "secret": self.rec.secret, "ts": self.rec.ts,
            });
            tracing::warn!(bot = %bot.name, score = anomaly.score, detectors = ?anomaly.detectors, "Anomalous request");
            match bot.anomaly.action {
                AnomalyAction::Log => {}
                AnomalyAction::Alert => {
                    if let Some(s) = &self.shared.scorer {
                        s.alert(alert);
                    }
                }
                AnomalyAction::Deny => return Err(ApiError::Forbidden(Forbidden::Anomaly)),
            }
        }
        Ok(())
    }

    /// Scores the request online and records the verdict.
    fn score(
        &mut self,
        bot: &BotDef,
        now: jiff::Timestamp,
        denied: bool,
    ) -> crate::anomaly::model::Verdict {
        let Some(scorer) = &self.shared.scorer else {
            return Default::default();
        };
        let rec = &self.rec;
        let peer = &self.conn.peer;
        let tz = bot
            .schedule
            .as_ref()
            .map(|s| s.time_zone())
            .unwrap_or_else(jiff::tz::TimeZone::system);
        let transport = match peer.transport {
            crate::audit::Transport::Tcp => "tcp",
            crate::audit::Transport::Unix => "unix",
            crate::audit::Transport::Pipe => "pipe",
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
        self.rec.anomaly =
            Some(serde_json::json!({"score": verdict.score, "detectors": verdict.detectors}));
        verdict
    }

    /// Writes the audit record of the request and gives the answer that may
    /// leave. A reload that took effect while the request was served (a
    /// revoked certificate, a removed bot) is honoured first. A failed
    /// request's lease is revoked, since nobody received it. When the
    /// record cannot be written the reply is wiped unsent: the request
    /// fails closed. `error_body` renders an error for the bot.
    pub async fn finish(
        mut self,
        mut result: Result<Reply, ApiError>,
        error_body: impl Fn(&ApiError, &str) -> WipedBuf,
    ) -> Answer {
        if result.is_ok() {
            self.authenticate_again(&mut result);
        }
        if result.is_ok() {
            self.note_elevated_read(&mut result);
        }
        if let Err(e) = &result {
            if let Some(lease) = self.issued.take() {
                let reason = match e {
                    ApiError::Unauthenticated(_) => "identity_revoked",
                    _ => "request_failed",
                };
                self.shared.revoke_held(&lease, reason).await;
            }
        }
        let (status, reply) = match result {
            Ok(reply) => {
                self.rec.decision = Decision::Allow;
                let status = match reply {
                    Reply::Empty => 204,
                    Reply::Accepted(_) => 202,
                    _ => 200,
                };
                (status, reply)
            }
            Err(err) => {
                self.rec.decision = if err.is_denial() {
                    Decision::Deny
                } else {
                    Decision::Error
                };
                self.rec.reason = Some(err.reason().to_owned());
                if !err.is_denial() {
                    self.rec.error = Some(err.to_string());
                }
                (err.status(), Reply::Json(error_body(&err, &self.id)))
            }
        };
        let body_len = match &reply {
            Reply::Json(b) | Reply::Text(b) | Reply::Accepted(b) => b.len(),
            Reply::Empty => 0,
        };
        self.rec.status = status;
        self.rec.bytes = Some(body_len as u64);
        self.rec.latency_us = self.started.elapsed().as_micros() as u64;
        let elevated = self.elevation.as_ref().map(|w| w.id.clone());
        if self.shared.audit.write(self.rec).await.is_err() {
            if let Some(id) = elevated {
                self.shared.elevations.unnote_read(&id, &self.id);
            }
            drop(reply);
            if let Some(lease) = self.issued {
                self.shared.revoke_held(&lease, "audit_unavailable").await;
            }
            let err = ApiError::AuditUnavailable;
            return Answer {
                status: err.status(),
                reply: Reply::Json(error_body(&err, &self.id)),
                request_id: self.id,
            };
        }
        Answer {
            status,
            reply,
            request_id: self.id,
        }
    }

    /// Lists a read made inside an elevation window with the window, and
    /// its lease with the leases the window's end revokes. A window that
    /// closed while the read was served refuses it: the lease issued for
    /// it is then revoked.
    fn note_elevated_read(&mut self, result: &mut Result<Reply, ApiError>) {
        let Some(w) = &self.elevation else {
            return;
        };
        let lease = self
            .issued
            .as_ref()
            .map(|h| h.id.clone())
            .or_else(|| self.renewed.clone());
        let read = crate::elevation::store::Read {
            ts: self.rec.ts.clone(),
            request_id: self.id.clone(),
            lease_hmac: lease.as_deref().map(|l| self.rt.lease_hmac(l)),
        };
        if !self.shared.elevations.note_read(&w.id, read, lease) {
            *result = Err(ApiError::Forbidden(Forbidden::ElevationRequired));
            self.rec.elevation = None;
        }
    }

    /// Authenticates the connection again under the current runtime, if a
    /// reload replaced the one the request was served under.
    fn authenticate_again(&mut self, result: &mut Result<Reply, ApiError>) {
        let now_rt = self.shared.runtime();
        if now_rt.generation == self.rt.generation {
            return;
        }
        match authenticate(self.conn, &now_rt, jiff::Timestamp::now()) {
            Ok(bot) if self.rec.bot.as_deref() == Some(bot.name.as_str()) => {}
            Ok(_) => *result = Err(ApiError::Unauthenticated(Unauthenticated::NoIdentity)),
            Err(e) => *result = Err(e),
        }
        if result.is_err() {
            self.rec.claimed_bot = self.rec.bot.take();
        }
    }
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
) -> Result<&'r BotDef, ApiError> {
    if conn.not_after.is_some_and(|t| t < now) {
        return Err(ApiError::Unauthenticated(
            Unauthenticated::CertificateExpired,
        ));
    }
    let name = conn.identify(rt, now).map_err(ApiError::Unauthenticated)?;
    if conn.process.as_ref().is_some_and(|p| !p.still_holds()) {
        return Err(ApiError::Forbidden(Forbidden::ProcessChanged));
    }
    match name {
        None => Err(ApiError::Unauthenticated(Unauthenticated::NoIdentity)),
        Some(name) => rt
            .config
            .bot(&name)
            .ok_or(ApiError::Unauthenticated(Unauthenticated::UnknownBot)),
    }
}

pub(super) fn denied_by_policy(reason: DenyReason) -> ApiError {
    match reason {
        DenyReason::UnknownBot => ApiError::Unauthenticated(Unauthenticated::UnknownBot),
        DenyReason::NotGranted => ApiError::Forbidden(Forbidden::NotGranted),
        DenyReason::OutsideSchedule => ApiError::Forbidden(Forbidden::OutsideSchedule),
        DenyReason::ProcessMismatch => ApiError::Forbidden(Forbidden::ProcessMismatch),
        DenyReason::ProcessUnverifiable => ApiError::Forbidden(Forbidden::ProcessUnverifiable),
        DenyReason::ElevationRequired => ApiError::Forbidden(Forbidden::ElevationRequired),
        DenyReason::Disabled => ApiError::Forbidden(Forbidden::Disabled),
        DenyReason::BotExpired => ApiError::Forbidden(Forbidden::BotExpired),
        DenyReason::ReviewOverdue => ApiError::Forbidden(Forbidden::ReviewOverdue),
        DenyReason::Dormant => ApiError::Forbidden(Forbidden::Dormant),
    }
}
