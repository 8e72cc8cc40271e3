//! The HTTP API: routes parsed strictly ([`route`]), one module per group
//! of endpoints ([`secrets`], [`leases`], [`meta`]), and the bodies and
//! headers of responses ([`response`]). The broker serves each request and
//! writes its audit record; this layer knows HTTP and nothing else.
//!
//! Bodies that carry secrets are built in [`crate::secret::WipedBuf`]s,
//! which are wiped once hyper has sent them.

mod elevations;
mod leases;
mod meta;
pub mod response;
pub mod route;
mod secrets;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::broker::{Arrival, Conn, Exchange, Local, Reply, Shared, ENROLL, ENROLL_TOKEN};
use crate::error::ApiError;
use crate::policy::BotDef;

pub use crate::audit::request_id;
pub use route::fuzz_parse;
use route::Route;

pub use response::Body;

/// Serves one request.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let rt = shared.runtime();
    let route = route::parse(req.method(), req.uri());
    let allow = route::allowed_methods(req.uri().path());
    let path = route::logged_path(&route, req.uri().path(), |l| rt.lease_hmac(l));
    let secret = match &route {
        Ok(Route::Secret { name, .. }) => Some(name.as_str()),
        _ => None,
    };
    let arrival = Arrival {
        kind: Route::kind(&route),
        method: req.method().as_str(),
        path: &path,
        secret,
    };
    let mut ex = Exchange::begin(&shared, &conn, &rt, arrival, started);
    let wants_body = route.as_ref().is_ok_and(Route::takes_body);
    let auth = ex.authenticate();
    let body = match (&auth, wants_body) {
        (Ok(_), true) => read_body(req.into_body(), rt.config.limits.header_read_timeout).await,
        _ => {
            drop(req);
            Ok(Vec::new())
        }
    };
    let result = match (route, auth, body) {
        (_, Err(e), _) | (Err(e), _, _) | (_, _, Err(e)) => Err(e),
        (Ok(route), Ok(bot), Ok(body)) => serve(&mut ex, bot, route, &body).await,
    };
    let answer = ex.finish(result, response::error_body).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(response::respond(
        status,
        answer.reply,
        &answer.request_id,
        allow,
    ))
}

/// Longest request body taken.
const MAX_BODY: usize = 16 * 1024;

/// A request body of at most [`MAX_BODY`] bytes, which must arrive within
/// `limit`.
async fn read_body(body: Incoming, limit: std::time::Duration) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(limit, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
        Ok(Err(_)) => Err(ApiError::BadRequest(format!(
            "the request body is incomplete or longer than {MAX_BODY} bytes"
        ))),
        Err(_) => Err(ApiError::BadRequest(
            "the request body did not arrive in time".into(),
        )),
    }
}

async fn serve(
    ex: &mut Exchange<'_>,
    bot: &BotDef,
    route: Route,
    body: &[u8],
) -> Result<Reply, ApiError> {
    match route {
        Route::Secret { name, field } => secrets::read(ex, bot, &name, field.as_deref()).await,
        Route::Release { lease } => leases::release(ex, bot, &lease).await,
        Route::Renew { lease } => leases::renew(ex, bot, &lease).await,
        Route::Whoami => meta::whoami(ex, bot),
        Route::Health => meta::health(ex, bot).await,
        Route::ElevationRequest => elevations::request(ex, bot, body).await,
        Route::ElevationStatus { id, wait } => elevations::status(ex, bot, &id, wait).await,
        Route::ElevationDecision { id } => elevations::decision(ex, bot, &id, body).await,
        Route::IdentityRenew => ex.renew_identity(bot, body).await,
    }
}

/// Serves one request on a unix-socket connection without a certificate:
/// `POST /v1/identity/enroll-tokens` (the operator) and `POST
/// /v1/identity/enroll` (a bot's account); anything else is refused as
/// unauthenticated.
pub async fn handle_local(
    req: Request<Incoming>,
    local: Arc<Local>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let limit = shared.runtime().config.limits.header_read_timeout;
    let post = req.method() == hyper::Method::POST && req.uri().query().is_none();
    let kind = match req.uri().path() {
        "/v1/identity/enroll-tokens" if post => ENROLL_TOKEN,
        "/v1/identity/enroll" if post => ENROLL,
        _ => "auth.failure",
    };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let body = if kind == "auth.failure" {
        drop(req);
        Ok(Vec::new())
    } else {
        read_body(req.into_body(), limit).await
    };
    let answer = shared
        .serve_local(&local, kind, &method, &path, body, response::error_body)
        .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(response::respond(
        status,
        answer.reply,
        &answer.request_id,
        "POST",
    ))
}

#[cfg(test)]
mod tests {
    use crate::audit::request_id;

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
}
