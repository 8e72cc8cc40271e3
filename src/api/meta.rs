//! `GET /v1/whoami` and `GET /v1/health`.

use serde::Serialize;

use crate::broker::{Exchange, Reply};
use crate::error::ApiError;
use crate::policy;
use crate::policy::BotDef;

use super::response::json;

#[derive(Serialize)]
struct Whoami<'a> {
    bot: &'a str,
    owner: &'a str,
    team: &'a str,
    purpose: &'a str,
    secrets: Vec<&'a str>,
    /// `active`, `review_overdue` or `dormant` (as the request found it): a
    /// disabled or expired bot is refused.
    state: &'static str,
    review_by: Option<String>,
    expires: Option<String>,
    request_id: &'a str,
}

/// The calling bot as botward knows it: owner, team, purpose, grants and
/// where it is in its lifecycle.
pub fn whoami(ex: &mut Exchange<'_>, bot: &BotDef) -> Result<Reply, ApiError> {
    let now = jiff::Timestamp::now();
    let state = bot
        .lifecycle
        .state_at(now, ex.shared.activity.quiet_since(&bot.name));
    ex.decide(bot, policy::Request::Metadata)?;
    let body = Whoami {
        bot: &bot.name,
        owner: &bot.owner,
        team: &bot.team,
        purpose: &bot.purpose,
        secrets: bot.secrets.iter().map(String::as_str).collect(),
        state: state.as_str(),
        review_by: bot.lifecycle.review_by.map(|d| d.to_string()),
        expires: bot.lifecycle.expires.map(|d| d.to_string()),
        request_id: &ex.id,
    };
    Ok(Reply::Json(json(&body, 256)))
}

/// Whether Vault can be used and the state of the CRLs; bots learn nothing
/// of the addresses behind it.
pub async fn health(ex: &mut Exchange<'_>, bot: &BotDef) -> Result<Reply, ApiError> {
    ex.decide(bot, policy::Request::Metadata)?;
    let h = ex.health().await;
    let vault = if h.vault_usable { "ok" } else { "unreachable" };
    let body =
        serde_json::json!({"status": "ok", "vault": vault, "crl": h.crl, "request_id": ex.id});
    Ok(Reply::Json(json(&body, 256)))
}
