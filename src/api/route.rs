//! Routes: method, path and query parsed strictly, before anything else.

use std::borrow::Cow;
use std::time::Duration;

use hyper::Method;

use crate::error::{ApiError, NotFound};
use crate::policy::is_valid_name;

/// Longest field name accepted in `?field=`.
const MAX_FIELD_LEN: usize = 256;
/// Longest lease ID accepted.
const MAX_LEASE_LEN: usize = 512;

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Secret {
        name: String,
        field: Option<String>,
    },
    Release {
        lease: String,
    },
    Renew {
        lease: String,
    },
    Whoami,
    Health,
    /// `POST /v1/elevations`: a body with the request.
    ElevationRequest,
    /// `GET /v1/elevations/{id}[?wait=60s]`.
    ElevationStatus {
        id: String,
        wait: Option<Duration>,
    },
    /// `POST /v1/elevations/{id}/decisions`: a body with a signed decision.
    ElevationDecision {
        id: String,
    },
    /// `POST /v1/identity/renew`: a body with a CSR.
    IdentityRenew,
}

impl Route {
    /// The audit record's `kind` for a request that parsed as `route`.
    pub fn kind(route: &Result<Route, ApiError>) -> &'static str {
        match route {
            Ok(Route::Secret { .. }) => "secret.read",
            Ok(Route::Release { .. }) => "lease.release",
            Ok(Route::Renew { .. }) => "lease.renew",
            Ok(Route::Whoami) => "whoami",
            Ok(Route::Health) => "health",
            Ok(Route::ElevationRequest) => "elevation.request",
            Ok(Route::ElevationStatus { .. }) => "elevation.status",
            Ok(Route::ElevationDecision { .. }) => "elevation.decision",
            Ok(Route::IdentityRenew) => "identity.renew",
            Err(_) => "request",
        }
    }

    /// Whether the route reads a request body.
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::ElevationRequest | Route::ElevationDecision { .. } | Route::IdentityRenew
        )
    }
}

/// The methods a path takes, for the Allow header of a 405.
pub fn allowed_methods(path: &str) -> &'static str {
    if path == "/v1/elevations"
        || path.starts_with("/v1/identity/")
        || (path.starts_with("/v1/elevations/") && path.ends_with("/decisions"))
    {
        "POST"
    } else if path.starts_with("/v1/leases/") {
        if path.ends_with("/renew") {
            "POST"
        } else {
            "DELETE"
        }
    } else {
        "GET"
    }
}

/// The path as the audit log may show it: lease IDs appear there only as
/// HMACs, made by `lease_hmac`.
pub fn logged_path<'p>(
    route: &Result<Route, ApiError>,
    path: &'p str,
    lease_hmac: impl Fn(&str) -> String,
) -> Cow<'p, str> {
    match route {
        Ok(Route::Release { lease }) => format!("/v1/leases/{}", lease_hmac(lease)).into(),
        Ok(Route::Renew { lease }) => format!("/v1/leases/{}/renew", lease_hmac(lease)).into(),
        _ if path.starts_with("/v1/leases/") => "/v1/leases/…".into(),
        _ => path.into(),
    }
}

/// Parses method, path and query strictly: exact routes, names from a small
/// alphabet, no percent-encoding, only the `field` query parameter.
pub fn parse(method: &Method, uri: &hyper::Uri) -> Result<Route, ApiError> {
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
        "/v1/identity/renew" if query.is_some() => Err(ApiError::BadRequest(
            "this endpoint takes no query parameters".into(),
        )),
        "/v1/identity/renew" if method == Method::POST => Ok(Route::IdentityRenew),
        "/v1/identity/renew" => Err(ApiError::MethodNotAllowed),
        _ if path == "/v1/elevations" || path.starts_with("/v1/elevations/") => {
            elevation_route(method, path, query)
        }
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
                return Err(ApiError::NotFound(NotFound::NoRoute));
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

/// The elevation routes.
fn elevation_route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, ApiError> {
    let rest = &path["/v1/elevations".len()..];
    if rest.is_empty() {
        if query.is_some() {
            return Err(ApiError::BadRequest(
                "this endpoint takes no query parameters".into(),
            ));
        }
        return match *method {
            Method::POST => Ok(Route::ElevationRequest),
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    let rest = &rest[1..];
    let (id, decisions) = match rest.strip_suffix("/decisions") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    if !is_elevation_id(id) {
        return Err(ApiError::BadRequest(
            "elevation IDs are 32 lowercase hex digits".into(),
        ));
    }
    let id = id.to_owned();
    if decisions {
        if query.is_some() {
            return Err(ApiError::BadRequest(
                "this endpoint takes no query parameters".into(),
            ));
        }
        return match *method {
            Method::POST => Ok(Route::ElevationDecision { id }),
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let wait = match query {
        None => None,
        Some(q) => {
            let v = q
                .strip_prefix("wait=")
                .ok_or_else(|| ApiError::BadRequest("the only query parameter is wait".into()))?;
            let d = crate::config::parse_duration(v)
                .ok()
                .filter(|d| *d <= MAX_WAIT)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "wait must be a duration such as \"60s\", at most \"5m\"".into(),
                    )
                })?;
            Some(d)
        }
    };
    Ok(Route::ElevationStatus { id, wait })
}

/// Longest `wait` of an elevation status request.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Whether `s` is an elevation ID: 32 lowercase hex digits.
pub fn is_elevation_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
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
        Route::ElevationRequest => ("elevation.request", String::new(), None),
        Route::ElevationStatus { id, wait } => (
            "elevation.status",
            id,
            wait.map(|w| w.as_secs().to_string()),
        ),
        Route::ElevationDecision { id } => ("elevation.decision", id, None),
        Route::IdentityRenew => ("identity.renew", String::new(), None),
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
        assert_eq!(
            p("GET", "/v1/nothing"),
            Err(ApiError::NotFound(NotFound::NoRoute))
        );
        assert_eq!(
            p("GET", "/v1/secrets"),
            Err(ApiError::NotFound(NotFound::NoRoute))
        );
        assert_eq!(p("POST", "/v1/whoami"), Err(ApiError::MethodNotAllowed));
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(p("POST", "/v1/elevations"), Ok(Route::ElevationRequest));
        assert_eq!(p("GET", "/v1/elevations"), Err(ApiError::MethodNotAllowed));
        assert_eq!(
            p("GET", &format!("/v1/elevations/{id}?wait=60s")),
            Ok(Route::ElevationStatus {
                id: id.into(),
                wait: Some(Duration::from_secs(60))
            })
        );
        assert_eq!(
            p("POST", &format!("/v1/elevations/{id}/decisions")),
            Ok(Route::ElevationDecision { id: id.into() })
        );
        for bad in [
            format!("/v1/elevations/{id}?wait=6m"),
            format!("/v1/elevations/{id}?wait=soon"),
            format!("/v1/elevations/{id}?x=1"),
            "/v1/elevations/0123456789ABCDEF0123456789ABCDEF".to_owned(),
            "/v1/elevations/../secrets/erp-db".to_owned(),
            format!("/v1/elevations/{id}/decisions/x"),
        ] {
            assert!(
                matches!(p("GET", &bad), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
        assert_eq!(
            p("DELETE", &format!("/v1/elevations/{id}")),
            Err(ApiError::MethodNotAllowed)
        );
        assert_eq!(
            p("PUT", "/v1/secrets/erp-db"),
            Err(ApiError::MethodNotAllowed)
        );
    }
}
