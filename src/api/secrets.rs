//! `GET /v1/secrets/{name}[?field=]`: a secret by its logical name.

use serde::Serialize;
use serde_json::Value;

use crate::broker::{Exchange, Reply};
use crate::error::{ApiError, NotFound};
use crate::policy;
use crate::policy::BotDef;

use super::response::{approx_json_len_map, json, json_str_len};

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

/// The secret as JSON (`name`, `data`, `version`, `lease`), or one field of
/// it as plain text.
pub async fn read(
    ex: &mut Exchange<'_>,
    bot: &BotDef,
    name: &str,
    field: Option<&str>,
) -> Result<Reply, ApiError> {
    ex.decide(bot, policy::Request::Secret(name))?;
    let fetched = ex.fetch(bot, name).await?;
    if let Some(field) = field {
        return fetched
            .data
            .field_text(field)
            .map(Reply::Text)
            .ok_or(ApiError::NotFound(NotFound::NoField));
    }
    let data = fetched.data.expose_secret();
    let body = SecretBody {
        name,
        data,
        version: fetched.version,
        lease: fetched.lease.as_ref().map(|l| Lease {
            id: &l.id,
            ttl_seconds: l.ttl_seconds,
            renewable: l.renewable,
        }),
        request_id: &ex.id,
    };
    let estimate = 256
        + name.len()
        + approx_json_len_map(data)
        + fetched.lease.as_ref().map_or(0, |l| json_str_len(&l.id));
    Ok(Reply::Json(json(&body, estimate)))
}
