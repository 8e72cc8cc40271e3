//! `POST /v1/elevations`, `GET /v1/elevations/{id}[?wait=]` and
//! `POST /v1/elevations/{id}/decisions`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::broker::elevate::{Ask, MAX_REASON, MAX_TICKET};
use crate::broker::{Exchange, Reply};
use crate::elevation::store::View;
use crate::elevation::Signed;
use crate::error::ApiError;
use crate::policy::BotDef;

use super::response::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    secret: String,
    duration: String,
    reason: Option<String>,
    ticket: Option<String>,
}

/// Takes a request for a window; 202 with its ID and `pending`.
pub async fn request(ex: &mut Exchange<'_>, bot: &BotDef, body: &[u8]) -> Result<Reply, ApiError> {
    let ask = parse_ask(body)?;
    let view = ex.request_elevation(bot, ask).await?;
    let body = json!({"id": view.request.id, "status": view.status.as_str(), "request_id": ex.id});
    Ok(Reply::Accepted(json(&body, 256)))
}

/// The status of one of the bot's requests, after waiting if asked to.
pub async fn status(
    ex: &mut Exchange<'_>,
    bot: &BotDef,
    id: &str,
    wait: Option<Duration>,
) -> Result<Reply, ApiError> {
    let view = ex.elevation_status(bot, id, wait).await?;
    let body = view_body(&view, &ex.id);
    Ok(Reply::Json(json(&body, 1024)))
}

/// Applies a signed decision brought by a local caller.
pub async fn decision(
    ex: &mut Exchange<'_>,
    bot: &BotDef,
    id: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let signed: Signed = serde_json::from_slice(body).map_err(|_| {
        ApiError::BadRequest(
            "the body must be a signed decision as `botward elevation approve --out` writes it"
                .into(),
        )
    })?;
    let view = ex.submit_decision(bot, id, signed).await?;
    let body = view_body(&view, &ex.id);
    Ok(Reply::Json(json(&body, 1024)))
}

fn parse_ask(body: &[u8]) -> Result<Ask, ApiError> {
    let bad = |m: &str| ApiError::BadRequest(m.to_owned());
    let raw: AskBody = serde_json::from_slice(body).map_err(|_| {
        bad("the body must be JSON: {\"secret\", \"duration\", \"reason\", \"ticket\"}")
    })?;
    if !crate::policy::is_valid_name(&raw.secret) {
        return Err(bad("secret must be a secret's logical name"));
    }
    let duration = crate::config::parse_duration(&raw.duration)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| bad("duration must be a duration such as \"15m\""))?;
    let reason = raw.reason.unwrap_or_default();
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON || !crate::text::is_plain(reason) {
        return Err(bad(
            "reason must be 1-512 characters of text, without control, bidirectional or invisible characters",
        ));
    }
    let ticket = raw.ticket.unwrap_or_default();
    let ticket_ok = !ticket.is_empty()
        && ticket.len() <= MAX_TICKET
        && ticket.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':' | b'/' | b'#')
        });
    if !ticket_ok {
        return Err(bad(
            "ticket must be 1-64 letters, digits, '-', '_', '.', ':', '/' or '#'",
        ));
    }
    Ok(Ask {
        secret: raw.secret,
        duration,
        reason: reason.to_owned(),
        ticket,
    })
}

fn view_body(v: &View, request_id: &str) -> Value {
    let r = &v.request;
    let mut body = json!({
        "id": r.id, "status": v.status.as_str(), "bot": r.bot, "secret": r.secret, "host": r.host,
        "ticket": r.ticket, "reason": r.reason, "duration_s": r.duration.as_secs(),
        "created": r.created.to_string(), "expires": r.expires.to_string(),
        "approvers": v.approvers, "request_id": request_id,
    });
    if let Some(w) = &v.window {
        body["not_before"] = w.not_before.to_string().into();
        body["not_after"] = w.not_after.to_string().into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_are_parsed_strictly() {
        let ok = parse_ask(
            br#"{"secret":"sap-admin","duration":"15m","reason":"month end","ticket":"CHG-1234"}"#,
        )
        .unwrap();
        assert_eq!(ok.duration, Duration::from_secs(900));
        assert_eq!(ok.ticket, "CHG-1234");
        for bad in [
            &br#"{"secret":"sap-admin","duration":"15m","ticket":"CHG-1"}"#[..],
            br#"{"secret":"sap-admin","duration":"15m","reason":"x","ticket":""}"#,
            br#"{"secret":"sap-admin","duration":"15m","reason":"  ","ticket":"CHG-1"}"#,
            br#"{"secret":"sap-admin","duration":"0s","reason":"x","ticket":"CHG-1"}"#,
            br#"{"secret":"sap-admin","duration":"soon","reason":"x","ticket":"CHG-1"}"#,
            br#"{"secret":"../x","duration":"15m","reason":"x","ticket":"CHG-1"}"#,
            br#"{"secret":"sap-admin","duration":"15m","reason":"a\nb","ticket":"CHG-1"}"#,
            "{\"secret\":\"sap-admin\",\"duration\":\"15m\",\"reason\":\"pay \u{202e}kcab\",\"ticket\":\"CHG-1\"}".as_bytes(),
            "{\"secret\":\"sap-admin\",\"duration\":\"15m\",\"reason\":\"ok\u{200b}\",\"ticket\":\"CHG-1\"}".as_bytes(),
            br#"{"secret":"sap-admin","duration":"15m","reason":"x","ticket":"CHG 1"}"#,
            br#"{"secret":"sap-admin","duration":"15m","reason":"x","ticket":"CHG-1","extra":1}"#,
            b"not json",
        ] {
            assert!(
                matches!(parse_ask(bad), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(
            r#"{{"secret":"sap-admin","duration":"15m","reason":"{}","ticket":"CHG-1"}}"#,
            "r".repeat(513)
        );
        assert!(parse_ask(long.as_bytes()).is_err());
    }
}
