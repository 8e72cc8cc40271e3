//! `DELETE /v1/leases/{id}` and `POST /v1/leases/{id}/renew`. A lease is
//! found before the decision: renewing it is judged like reading its secret
//! again.

use crate::broker::{Exchange, Reply};
use crate::error::ApiError;
use crate::policy;
use crate::policy::BotDef;

use super::response::json;

/// Revokes the lease now; 204.
pub async fn release(ex: &mut Exchange<'_>, bot: &BotDef, lease: &str) -> Result<Reply, ApiError> {
    let held = ex.find_lease(bot, lease)?;
    ex.decide(bot, policy::Request::Metadata)?;
    ex.release(held).await?;
    Ok(Reply::Empty)
}

/// Renews the lease; `{"lease": {id, ttl_seconds, renewable}}`.
pub async fn renew(ex: &mut Exchange<'_>, bot: &BotDef, lease: &str) -> Result<Reply, ApiError> {
    let held = ex.find_lease(bot, lease)?;
    ex.decide(bot, policy::Request::Secret(&held.secret))?;
    let renewed = ex.renew(held).await?;
    let body = serde_json::json!({
        "lease": {"id": renewed.id, "ttl_seconds": renewed.ttl_seconds, "renewable": renewed.renewable},
        "request_id": ex.id,
    });
    Ok(Reply::Json(json(&body, 256 + renewed.id.len())))
}
