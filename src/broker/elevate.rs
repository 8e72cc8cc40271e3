//! Elevation on the broker: a bot's request for a window, its status, the
//! decisions that reach botward (from the Vault mailbox or a local POST),
//! and the end of each window, which revokes every lease issued inside it
//! and records every read made in it.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::standing::{eligible, window_holds};
use super::{Exchange, Shared};
use crate::audit::{Decision, Record};
use crate::elevation::check::{self, Asked, Rejected};
use crate::elevation::store::{Applied, Closed, Full, Request, Status, View};
use crate::elevation::{Signed, Statement};
use crate::error::{ApiError, Forbidden, NotFound, RateLimited};
use crate::policy::{self, BotDef};

/// Longest `reason` a bot may give.
pub const MAX_REASON: usize = 512;
/// Longest `ticket`.
pub const MAX_TICKET: usize = 64;
/// Longest `wait` of a status request.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What a bot asks for in `POST /v1/elevations`.
pub struct Ask {
    pub secret: String,
    pub duration: Duration,
    pub reason: String,
    pub ticket: String,
}

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Mailbox,
    Local,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Mailbox => "mailbox",
            Via::Local => "local",
        }
    }
}

impl Exchange<'_> {
    /// Takes a bot's request for a window on a privileged secret it is
    /// granted, posts it to the mailbox and notifies the webhook.
    pub async fn request_elevation(&mut self, bot: &BotDef, ask: Ask) -> Result<View, ApiError> {
        self.rec.secret = Some(ask.secret.clone());
        self.decide(bot, policy::Request::Metadata)?;
        let rt = self.rt;
        let def = rt
            .config
            .secret(&ask.secret)
            .filter(|_| bot.secrets.contains(&ask.secret))
            .ok_or(ApiError::Forbidden(Forbidden::NotGranted))?;
        let settings = match (&rt.config.elevation, def.privileged) {
            (Some(e), true) => e,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "secret {:?} is not privileged: read it directly, without elevation",
                    ask.secret
                )))
            }
        };
        if ask.duration > settings.max_window {
            return Err(ApiError::BadRequest(format!(
                "duration is longer than elevation.max_window ({}s)",
                settings.max_window.as_secs()
            )));
        }
        let now = Timestamp::now();
        let ttl = jiff::SignedDuration::try_from(settings.request_ttl).unwrap_or_default();
        let request = Request {
            id: elevation_id(),
            bot: bot.name.clone(),
            owner: bot.owner.clone(),
            team: bot.team.clone(),
            secret: ask.secret,
            host: self.shared.audit.host().to_string(),
            ticket: ask.ticket,
            reason: ask.reason,
            duration: ask.duration,
            created: now,
            expires: now + ttl,
        };
        let mut detail = json!({
            "id": request.id, "duration_s": request.duration.as_secs(),
            "ticket": request.ticket, "reason": request.reason,
        });
        self.shared
            .elevations
            .create(request.clone())
            .map_err(|f| match f {
                Full::Bot | Full::Store => ApiError::RateLimited(RateLimited::MaxElevations),
            })?;
        let doc = mailbox_doc(&request, Status::Pending, &[], None, def.approvals);
        let path = format!("{}/requests/{}", settings.prefix, request.id);
        if let Err(e) = rt.vault.kv_put(&settings.mount, &path, &doc).await {
            // The request grants nothing by itself: it stays pending, and a
            // decision can still come as a file.
            warn!(error = %e, "Cannot post the elevation request to the Vault mailbox");
            detail["mailbox"] = "unreachable".into();
        }
        if let Some(url) = &settings.webhook {
            notify(url.clone(), webhook_body(&request, &doc));
        }
        self.rec.detail = Some(json!({ "elevation": detail }));
        info!(bot = %request.bot, secret = %request.secret, id = %request.id, "Elevation requested");
        self.shared
            .elevations
            .view(&request.id)
            .ok_or(ApiError::NotFound(NotFound::NoElevation))
    }

    /// The status of one of the bot's own requests. With `wait`, holds
    /// until the status changes or the wait ends.
    pub async fn elevation_status(
        &mut self,
        bot: &BotDef,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<View, ApiError> {
        self.decide(bot, policy::Request::Metadata)?;
        let store = &self.shared.elevations;
        let mut changes = store.subscribe();
        let own = |v: Option<View>| {
            v.filter(|v| v.request.bot == bot.name)
                .ok_or(ApiError::NotFound(NotFound::NoElevation))
        };
        let first = own(store.view(id))?;
        self.rec.secret = Some(first.request.secret.clone());
        let Some(wait) = wait else {
            return Ok(first);
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {
                    let now = own(store.view(id))?;
                    if now.status != first.status || now.approvers != first.approvers {
                        return Ok(now);
                    }
                }
                _ => return own(store.view(id)),
            }
        }
    }

    /// A signed decision handed to botward locally: the signature counts,
    /// not the channel, so any authenticated caller may bring it.
    pub async fn submit_decision(
        &mut self,
        bot: &BotDef,
        id: &str,
        signed: Signed,
    ) -> Result<View, ApiError> {
        self.decide(bot, policy::Request::Metadata)?;
        let view = self
            .shared
            .elevations
            .view(id)
            .ok_or(ApiError::NotFound(NotFound::NoElevation))?;
        self.rec.secret = Some(view.request.secret.clone());
        match self
            .shared
            .take_decision(&view.request, &signed, Via::Local)
            .await
        {
            Ok((s, status)) => {
                self.rec.kind = "elevation.decision";
                self.rec.detail =
                    Some(json!({"elevation": decision_detail(&s, Via::Local, status)}));
            }
            Err(r) => {
                self.rec.kind = "elevation.rejected";
                self.rec.detail = Some(json!({"elevation": rejected_detail(id, &signed, r)}));
                return Err(ApiError::DecisionRejected(r.as_str()));
            }
        }
        self.shared
            .elevations
            .view(id)
            .ok_or(ApiError::NotFound(NotFound::NoElevation))
    }
}

/// Why a decision is not applied, beyond the checks of [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotApplied {
    Rejected(Rejected),
    /// This approver was already counted.
    Duplicate,
    /// The request is no longer pending (or open, for a revocation).
    NotPending,
    /// The bot or secret is gone from the config.
    Gone,
    /// The approval's window shares no time ahead with those counted.
    NoCommonWindow,
    /// The window's `elevation.open` record could not be written, so it
    /// was closed at once.
    AuditUnavailable,
}

impl NotApplied {
    pub fn as_str(self) -> &'static str {
        match self {
            NotApplied::Rejected(r) => r.as_str(),
            NotApplied::Duplicate => "duplicate_approver",
            NotApplied::NotPending => "not_pending",
            NotApplied::Gone => "no_longer_configured",
            NotApplied::NoCommonWindow => "no_common_window",
            NotApplied::AuditUnavailable => "audit_unavailable",
        }
    }
}

impl Shared {
    /// Checks and applies one decision about `request`, and writes what it
    /// caused: an opened window, a closed one. The decision's own record is
    /// the caller's to write.
    async fn take_decision(
        &self,
        request: &Request,
        signed: &Signed,
        via: Via,
    ) -> Result<(Statement, Status), NotApplied> {
        let rt = self.runtime();
        let cfg = &rt.config;
        let (Some(settings), Some(bot), Some(def)) = (
            cfg.elevation.as_ref(),
            cfg.bot(&request.bot),
            cfg.secret(&request.secret),
        ) else {
            return Err(NotApplied::Gone);
        };
        let asked = Asked {
            id: &request.id,
            bot: &request.bot,
            owner: &bot.owner,
            team: &bot.team,
            secret: &request.secret,
            host: &request.host,
            ticket: &request.ticket,
            duration: request.duration,
            expires: request.expires,
        };
        let now = Timestamp::now();
        let s = check::check(signed, &asked, &cfg.approvers, settings.max_window, now)
            .map_err(NotApplied::Rejected)?;
        let applied = self.elevations.apply(&request.id, &s, def.approvals, now);
        let status = match applied {
            Applied::Counted { status, opened } => {
                if let Some(w) = opened {
                    info!(id = %w.id, bot = %w.bot, secret = %w.secret, "Elevation window approved");
                    let detail = json!({"id": w.id, "approvers": w.approvers,
                        "not_before": w.not_before.to_string(), "not_after": w.not_after.to_string()});
                    let recorded = self
                        .elevation_event("elevation.open", Decision::Allow, None, request, detail)
                        .await;
                    if !recorded {
                        // No window opens without its evidence: close it
                        // before any read can use it.
                        let id = request.id.as_str();
                        let (closed, _) = self.elevations.close_where(
                            "audit_unavailable",
                            Timestamp::now(),
                            |r, _| r.id == id,
                        );
                        self.close_windows(closed).await;
                        self.update_mailbox(&request.id).await;
                        return Err(NotApplied::AuditUnavailable);
                    }
                }
                status
            }
            Applied::Closed(c) => {
                self.close_windows(vec![*c]).await;
                Status::Revoked
            }
            Applied::Duplicate => return Err(NotApplied::Duplicate),
            Applied::NoCommonWindow => return Err(NotApplied::NoCommonWindow),
            Applied::NotPending(_) => return Err(NotApplied::NotPending),
            Applied::Unknown => return Err(NotApplied::Gone),
        };
        info!(id = %request.id, decision = s.decision.as_str(), approver = %s.approver, via = via.as_str(), "Elevation decision");
        self.update_mailbox(&request.id).await;
        Ok((s, status))
    }

    /// Windows whose time is up close, and requests nobody decided in time
    /// expire. Runs on its own timer, so a slow mailbox never holds a
    /// window open.
    pub async fn elevation_due(&self) {
        let (closed, expired) = self.elevations.due(Timestamp::now());
        self.close_windows(closed).await;
        for r in expired {
            info!(id = %r.id, bot = %r.bot, "Elevation request expired undecided");
            self.elevation_event(
                "elevation.expired",
                Decision::Deny,
                Some("request_expired"),
                &r,
                json!({"id": r.id}),
            )
            .await;
            self.update_mailbox(&r.id).await;
        }
    }

    /// One pass over the mailbox: the decisions of every live request.
    /// Under each request, the entries named after a configured approver
    /// are read first, then at most [`MAX_OTHER_ENTRIES`] others (recorded
    /// as rejections), so entries nobody should have written cannot hide
    /// a real decision. A request whose entries cannot be read is retried
    /// on the next pass; the others go on.
    pub async fn poll_mailbox(&self) {
        let rt = self.runtime();
        let Some(settings) = rt.config.elevation.clone() else {
            return;
        };
        for id in self.elevations.live() {
            let dir = format!("{}/decisions/{id}", settings.prefix);
            let keys = match rt.vault.kv_list(&settings.mount, &dir).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::debug!(error = %e, id, "Cannot list the elevation mailbox");
                    continue;
                }
            };
            for key in mailbox_entries(&keys, &rt.config.approvers) {
                let doc = match rt
                    .vault
                    .kv_get(&settings.mount, &format!("{dir}/{key}"))
                    .await
                {
                    Ok(Some(d)) => d,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, id, "Cannot read an elevation decision");
                        continue;
                    }
                };
                self.mailbox_decision(&id, key, doc).await;
            }
        }
    }

    /// A decision document found in the mailbox under request `id`.
    async fn mailbox_decision(&self, id: &str, key: &str, doc: Value) {
        let Some(view) = self.elevations.view(id) else {
            return;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, doc.to_string().as_bytes());
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.as_ref());
        if !self.elevations.first_sight(id, key, d) {
            return;
        }
        let signed: Option<Signed> = serde_json::from_value(doc).ok();
        let Some(signed) = signed.filter(|s| s.signature.len() <= 2048) else {
            warn!(id, "Elevation mailbox entry is not a signed decision");
            let detail = json!({"id": id, "approver": crate::audit::truncate(key, 128)});
            self.elevation_event(
                "elevation.rejected",
                Decision::Deny,
                Some(crate::elevation::statement::Unverified::Malformed.as_str()),
                &view.request,
                detail,
            )
            .await;
            return;
        };
        match self
            .take_decision(&view.request, &signed, Via::Mailbox)
            .await
        {
            Ok((s, status)) => {
                let detail = decision_detail(&s, Via::Mailbox, status);
                self.elevation_event(
                    "elevation.decision",
                    Decision::Allow,
                    None,
                    &view.request,
                    detail,
                )
                .await;
            }
            Err(r) => {
                warn!(id, reason = r.as_str(), "Elevation decision rejected");
                let detail = rejected_detail(id, &signed, r);
                self.elevation_event(
                    "elevation.rejected",
                    Decision::Deny,
                    Some(r.as_str()),
                    &view.request,
                    detail,
                )
                .await;
            }
        }
    }

    /// Ends windows: revokes every lease issued inside each, and records
    /// each read of the window in its `elevation.close` record.
    pub async fn close_windows(&self, closed: Vec<Closed>) {
        for c in closed {
            let mut revoked = 0;
            for id in &c.leases {
                if let Some(h) = self.leases.get(id) {
                    if self.revoke_held(&h, "elevation_closed").await {
                        revoked += 1;
                    }
                }
            }
            info!(id = %c.window.id, bot = %c.window.bot, why = c.why, revoked, "Elevation window closed");
            let detail = json!({
                "id": c.window.id, "approvers": c.window.approvers,
                "not_before": c.window.not_before.to_string(), "not_after": c.window.not_after.to_string(),
                "closed": c.why, "reads": c.reads, "reads_unlisted": c.reads_unlisted,
                "leases_revoked": revoked,
            });
            self.elevation_event(
                "elevation.close",
                Decision::Allow,
                Some(c.why),
                &c.request,
                detail,
            )
            .await;
            self.update_mailbox(&c.request.id).await;
        }
    }

    /// Closes every open window, as `why` (`shutdown`).
    pub async fn close_all_elevations(&self, why: &'static str) {
        let (closed, cancelled) = self
            .elevations
            .close_where(why, Timestamp::now(), |_, _| true);
        self.close_windows(closed).await;
        self.cancel_requests(cancelled, why).await;
    }

    /// Records pending requests that `why` ended before anyone decided.
    pub(super) async fn cancel_requests(&self, cancelled: Vec<Request>, why: &'static str) {
        for r in cancelled {
            info!(id = %r.id, bot = %r.bot, why, "Elevation request cancelled");
            self.elevation_event(
                "elevation.cancelled",
                Decision::Deny,
                Some(why),
                &r,
                json!({"id": r.id}),
            )
            .await;
            self.update_mailbox(&r.id).await;
        }
    }

    /// Closes the windows that a reload from `old` to the current config
    /// took the ground from: the bot, its grant, the secret's privileged
    /// flag or `[elevation]` is gone, an approver it counted is gone, has a
    /// new certificate or no longer covers the bot, the secret needs more
    /// approvals, or the window is longer than `max_window` now. Pending
    /// requests lose the approvals that no longer count.
    pub async fn close_elevations_after_reload(&self, old: &crate::config::Config) {
        let rt = self.runtime();
        let new = &rt.config;
        let same_cert = |name: &str| match (new.approvers.get(name), old.approvers.get(name)) {
            (Some(a), Some(o)) => a.cert_der == o.cert_der,
            _ => false,
        };
        let counts = |r: &Request, name: &str| {
            same_cert(name)
                && new.bot(&r.bot).is_some_and(|b| {
                    new.approvers
                        .get(name)
                        .is_some_and(|a| a.covers(&b.team) && !a.owns(&b.owner))
                })
        };
        self.elevations.forget_approvers(counts);
        let now = Timestamp::now();
        let (closed, cancelled) =
            self.elevations
                .close_where("config_changed", now, |r, w| match w {
                    Some(w) => !window_holds(new, w) || !w.approvers.iter().all(|a| same_cert(a)),
                    None => !eligible(new, &r.bot, &r.secret),
                });
        self.close_windows(closed).await;
        self.cancel_requests(cancelled, "config_changed").await;
        // Leases of a secret that just became privileged lose their
        // standing access too.
        let attached = self.elevations.window_leases();
        for h in self.leases.all() {
            let now_privileged = new.secret(&h.secret).is_some_and(|s| s.privileged)
                && !old.secret(&h.secret).is_some_and(|s| s.privileged);
            if now_privileged && !attached.contains(&h.id) {
                self.revoke_held(&h, "now_privileged").await;
            }
        }
    }

    /// Writes the request's current state to the mailbox, so approvers
    /// listing it see what botward sees.
    async fn update_mailbox(&self, id: &str) {
        let rt = self.runtime();
        let (Some(settings), Some(v)) = (&rt.config.elevation, self.elevations.view(id)) else {
            return;
        };
        let approvals = rt
            .config
            .secret(&v.request.secret)
            .map_or(1, |s| s.approvals);
        let doc = mailbox_doc(
            &v.request,
            v.status,
            &v.approvers,
            v.window.as_ref(),
            approvals,
        );
        let path = format!("{}/requests/{id}", settings.prefix);
        if let Err(e) = rt.vault.kv_put(&settings.mount, &path, &doc).await {
            tracing::debug!(error = %e, "Cannot update the elevation mailbox");
        }
    }

    /// A record of an elevation event outside any request; false when it
    /// could not be written.
    async fn elevation_event(
        &self,
        kind: &'static str,
        decision: Decision,
        reason: Option<&str>,
        request: &Request,
        detail: Value,
    ) -> bool {
        let mut rec = Record::new(kind, crate::audit::request_id(), self.audit.host());
        rec.decision = decision;
        // No HTTP exchange carried it.
        rec.status = 0;
        rec.reason = reason.map(str::to_owned);
        rec.bot = Some(request.bot.clone());
        rec.secret = Some(request.secret.clone());
        rec.detail = Some(json!({ "elevation": detail }));
        if self.audit.write(rec).await.is_err() {
            warn!(kind, "Cannot write audit record");
            return false;
        }
        true
    }
}

/// Mailbox entries read per request beyond those of configured approvers.
pub const MAX_OTHER_ENTRIES: usize = 8;

/// The entries of one request's mailbox directory to read, in order: those
/// named after a configured approver, then a few others.
fn mailbox_entries<'k>(
    keys: &'k [String],
    approvers: &'k std::collections::BTreeMap<String, policy::ApproverDef>,
) -> impl Iterator<Item = &'k str> {
    let files = keys.iter().filter(|k| !k.ends_with('/'));
    let named = files.clone().filter(|k| approvers.contains_key(k.as_str()));
    let others = files
        .filter(|k| !approvers.contains_key(k.as_str()))
        .take(MAX_OTHER_ENTRIES);
    named.chain(others).map(String::as_str)
}

/// The request as the mailbox, `elevation list` and the webhook show it.
pub fn mailbox_doc(
    r: &Request,
    status: Status,
    approvers: &[String],
    window: Option<&policy::Window>,
    approvals: usize,
) -> Value {
    let mut doc = json!({
        "id": r.id, "status": status.as_str(), "bot": r.bot, "owner": r.owner, "team": r.team,
        "secret": r.secret, "host": r.host, "reason": r.reason, "ticket": r.ticket,
        "duration_s": r.duration.as_secs(), "created": r.created.to_string(),
        "expires": r.expires.to_string(), "approvals": approvals, "approvers": approvers,
    });
    if let Some(w) = window {
        doc["not_before"] = w.not_before.to_string().into();
        doc["not_after"] = w.not_after.to_string().into();
    }
    doc
}

fn decision_detail(s: &Statement, via: Via, status: Status) -> Value {
    let mut d = json!({"id": s.request, "decision": s.decision.as_str(), "approver": s.approver,
        "via": via.as_str(), "status": status.as_str()});
    if let (Some(from), Some(until)) = (s.not_before, s.not_after) {
        d["not_before"] = from.to_string().into();
        d["not_after"] = until.to_string().into();
    }
    d
}

fn rejected_detail(id: &str, signed: &Signed, r: NotApplied) -> Value {
    let claimed = check::claimed_approver(signed).map(|a| crate::audit::truncate(&a, 128));
    let mut d = json!({"id": id, "approver": claimed});
    if let NotApplied::Rejected(r) = r {
        if let Some(f) = r.field() {
            d["field"] = f.into();
        }
    }
    d
}

/// A new elevation ID: 128 random bits, hex.
fn elevation_id() -> String {
    let mut b = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // request_id() draws from the same generator and panics the same
        // way; without randomness nothing here is safe.
        panic!("the system random generator failed");
    }
    crate::text::hex(&b)
}

/// The webhook's JSON: a `text` line chat tools show as is, with the
/// request beside it. Each field from the request is shown as inline code,
/// with `&`, `<` and `>` as entities: neither Slack's markup nor Markdown
/// makes a mention, a link or formatting inside it, so a reason cannot
/// ping a channel, forge a link or pass itself off as botward's own words.
fn webhook_body(r: &Request, doc: &Value) -> Value {
    let text = format!(
        "botward: {} (owner {}, team {}) on {} asks for {} for {} min, ticket {}: {}. Decide with: botward elevation approve {} (or deny)",
        chat(&r.bot),
        chat(&r.owner),
        chat(&r.team),
        chat(&r.host),
        chat(&r.secret),
        r.duration.as_secs().div_ceil(60),
        chat(&r.ticket),
        chat(&r.reason),
        r.id
    );
    json!({"text": text, "elevation": doc})
}

/// `s` as an inline code span for chat: at most 256 characters, on one
/// line, no backtick of its own.
fn chat(s: &str) -> String {
    let s = crate::audit::truncate(s, 256)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "'")
        .replace(['\r', '\n'], " ");
    if s.trim().is_empty() {
        return "-".to_owned();
    }
    format!("`{s}`")
}

/// Posts `body` to the webhook without waiting.
fn notify(url: String, body: Value) {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http = HTTP
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default()
        })
        .clone();
    tokio::spawn(async move {
        let sent = http
            .post(&url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await;
        match sent {
            Ok(r) if !r.status().is_success() => {
                warn!(
                    status = r.status().as_u16(),
                    "Elevation webhook refused the notification"
                );
            }
            // The URL may carry a token: leave it out.
            Err(e) => warn!(error = %e.without_url(), "Elevation webhook failed"),
            Ok(_) => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_shows_what_the_bot_wrote_as_code() {
        let r = Request {
            id: "0123456789abcdef0123456789abcdef".into(),
            bot: "invoice-bot".into(),
            owner: "alice@corp.example".into(),
            team: "finance-ops".into(),
            secret: "sap-admin".into(),
            host: "rpa-01".into(),
            ticket: "CHG-1".into(),
            reason: "<!channel> see [the runbook](https://evil.example) `rm` *now*".into(),
            duration: Duration::from_secs(900),
            created: Timestamp::UNIX_EPOCH,
            expires: Timestamp::UNIX_EPOCH,
        };
        let body = webhook_body(&r, &json!({}));
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("`&lt;!channel&gt; see [the runbook](https://evil.example) 'rm' *now*`"),
            "{text}"
        );
        assert!(!text.contains("<!channel>"));
        assert!(text.contains("ticket `CHG-1`"), "{text}");
        assert!(text.contains("for 15 min"), "{text}");
        // The reason's code span is closed where botward closed it: the one
        // backtick pair per field, and nothing of the reason after it.
        let reason_at = text.find("`&lt;!channel").unwrap();
        let close = text[reason_at + 1..].find('`').unwrap() + reason_at + 1;
        assert!(text[close..].starts_with("`. Decide with:"), "{text}");
        assert_eq!(chat("  "), "-");
    }

    #[test]
    fn approvers_entries_are_read_first_and_others_only_a_few() {
        let def = |name: &str| policy::ApproverDef {
            name: name.into(),
            cert: "a.pem".into(),
            cert_der: Vec::new(),
            teams: ["*".to_owned()].into(),
        };
        let approvers: std::collections::BTreeMap<_, _> = ["lead@corp.example", "cfo@corp.example"]
            .into_iter()
            .map(|n| (n.to_owned(), def(n)))
            .collect();
        // Junk sorted before the real entries, and a folder.
        let mut keys: Vec<String> = (0..100).map(|i| format!("aaa-{i:03}")).collect();
        keys.push("sub/".into());
        keys.push("cfo@corp.example".into());
        keys.push("lead@corp.example".into());
        let read: Vec<&str> = mailbox_entries(&keys, &approvers).collect();
        assert_eq!(&read[..2], ["cfo@corp.example", "lead@corp.example"]);
        assert_eq!(read.len(), 2 + MAX_OTHER_ENTRIES);
        assert!(!read.contains(&"sub/"));
    }
}
