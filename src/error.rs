//! Error types, and the one place where errors become HTTP statuses and
//! machine-readable codes.
//!
//! No error here carries a secret value: Vault errors are reduced to a status
//! code and Vault's own error strings, never a response body.

use std::fmt;

use hyper::StatusCode;

/// Why a request was refused or failed, as the bot sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    Unauthenticated(&'static str),
    Forbidden(&'static str),
    NotFound(&'static str),
    MethodNotAllowed,
    /// Too many requests, or too many leases held (`max_leases`).
    RateLimited(&'static str),
    BadRequest(String),
    Vault(VaultError),
    AuditUnavailable,
}

/// Failures talking to Vault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultError {
    /// No address answered in time, or all of them are sealed or standby.
    Unavailable(String),
    /// Vault answered with an error status.
    Status { code: u16, errors: Vec<String> },
    /// Vault's answer did not have the expected shape.
    BadResponse(&'static str),
    /// botward could not log in to Vault.
    Login(String),
}

/// The error codes of the HTTP API, fixed by the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RateLimited,
    VaultUnavailable,
    VaultError,
    AuditUnavailable,
    BadRequest,
}

// === impl ApiError ===

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Forbidden(_) => Code::Forbidden,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::MethodNotAllowed => Code::MethodNotAllowed,
            ApiError::RateLimited(_) => Code::RateLimited,
            ApiError::BadRequest(_) => Code::BadRequest,
            ApiError::Vault(VaultError::Unavailable(_)) => Code::VaultUnavailable,
            ApiError::Vault(_) => Code::VaultError,
            ApiError::AuditUnavailable => Code::AuditUnavailable,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The short reason code written to the audit record.
    pub fn reason(&self) -> &str {
        match self {
            ApiError::Unauthenticated(r)
            | ApiError::Forbidden(r)
            | ApiError::NotFound(r)
            | ApiError::RateLimited(r) => r,
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Vault(VaultError::Unavailable(_)) => "vault_unavailable",
            ApiError::Vault(VaultError::Status { code: 404, .. }) => "vault_not_found",
            ApiError::Vault(VaultError::Status { code: 403, .. }) => "vault_permission_denied",
            ApiError::Vault(VaultError::Status { .. }) => "vault_status",
            ApiError::Vault(VaultError::BadResponse(_)) => "vault_bad_response",
            ApiError::Vault(VaultError::Login(_)) => "vault_login_failed",
            ApiError::AuditUnavailable => "audit_unavailable",
        }
    }

    /// Whether the failure is the caller's (deny) or the system's (error).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthenticated(_)
                | ApiError::Forbidden(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed
                | ApiError::RateLimited(_)
                | ApiError::BadRequest(_)
        )
    }

    /// The message the bot gets. It says what went wrong without naming
    /// Vault addresses, credential files or anything else about the
    /// operator's setup; those details go to the audit record and the log.
    /// A lease that belongs to another bot reads exactly like one that does
    /// not exist, so that lease IDs cannot be probed.
    pub fn message_for_bot(&self) -> String {
        match self {
            ApiError::Vault(VaultError::Unavailable(_)) => "vault is unavailable".into(),
            ApiError::Vault(VaultError::Status { code, .. }) => {
                format!("vault returned status {code}")
            }
            ApiError::Vault(VaultError::BadResponse(_)) => "unexpected vault response".into(),
            ApiError::Vault(VaultError::Login(_)) => "botward could not log in to vault".into(),
            ApiError::NotFound("lease_not_owned") => ApiError::NotFound("no_lease").to_string(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthenticated("unknown_bot") => {
                f.write_str("the client certificate does not name a registered bot")
            }
            ApiError::Unauthenticated("no_identity") => {
                f.write_str("the client certificate carries no bot identity for this trust domain")
            }
            ApiError::Unauthenticated(_) => f.write_str("client authentication failed"),
            ApiError::Forbidden("not_granted") => {
                f.write_str("this bot is not granted that secret")
            }
            ApiError::Forbidden("outside_schedule") => {
                f.write_str("this bot's schedule does not allow requests at this time")
            }
            ApiError::Forbidden("process_mismatch") => {
                f.write_str("the calling process is not one this bot may run as")
            }
            ApiError::Forbidden("process_unverifiable") => f.write_str(
                "this bot is bound to processes; connect over the unix socket so the process can be verified",
            ),
            ApiError::Forbidden("anomaly") => {
                f.write_str("this request is far outside this bot's usual behaviour and was refused")
            }
            ApiError::Forbidden("process_changed") => {
                f.write_str("the calling process changed since it connected")
            }
            ApiError::NotFound("lease_not_owned") => {
                f.write_str("that lease was not issued to this bot")
            }
            ApiError::Forbidden(_) => f.write_str("forbidden"),
            ApiError::NotFound("no_route") => f.write_str("no such endpoint"),
            ApiError::NotFound("no_field") => f.write_str("the secret has no such field"),
            ApiError::NotFound("no_secret") => f.write_str("the secret does not exist in Vault"),
            ApiError::NotFound("no_lease") => f.write_str("no such lease"),
            ApiError::NotFound(_) => f.write_str("not found"),
            ApiError::MethodNotAllowed => f.write_str("method not allowed on this endpoint"),
            ApiError::RateLimited("max_leases") => {
                f.write_str("this bot holds as many leases as it may; release one first")
            }
            ApiError::RateLimited(_) => f.write_str("too many requests"),
            ApiError::BadRequest(m) => write!(f, "bad request: {m}"),
            ApiError::Vault(e) => e.fmt(f),
            ApiError::AuditUnavailable => {
                f.write_str("the audit record could not be written; request refused")
            }
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            // A secret that is defined in config but absent in Vault is the
            // operator's problem, but the bot sees a clean 404.
            VaultError::Status { code: 404, .. } => ApiError::NotFound("no_secret"),
            other => ApiError::Vault(other),
        }
    }
}

// === impl VaultError ===

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::Unavailable(why) => write!(f, "vault unavailable: {why}"),
            // Vault's own error strings can quote backend errors (statements,
            // user names): they reach debug logs only, never a bot or the
            // audit log.
            VaultError::Status { code, .. } => write!(f, "vault returned status {code}"),
            VaultError::BadResponse(what) => write!(f, "unexpected vault response: {what}"),
            VaultError::Login(why) => write!(f, "vault login failed: {why}"),
        }
    }
}

impl std::error::Error for VaultError {}

// === impl Code ===

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::RateLimited => "rate_limited",
            Code::VaultUnavailable => "vault_unavailable",
            Code::VaultError => "vault_error",
            Code::AuditUnavailable => "audit_unavailable",
            Code::BadRequest => "bad_request",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::VaultUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::VaultError => StatusCode::BAD_GATEWAY,
            Code::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::BadRequest => StatusCode::BAD_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_the_contract_status() {
        let table = [
            (
                ApiError::Unauthenticated("unknown_bot"),
                401,
                "unauthenticated",
            ),
            (ApiError::Forbidden("not_granted"), 403, "forbidden"),
            (ApiError::NotFound("no_route"), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::RateLimited("max_leases"), 429, "rate_limited"),
            (
                ApiError::Vault(VaultError::Unavailable("x".into())),
                503,
                "vault_unavailable",
            ),
            (
                ApiError::Vault(VaultError::Status {
                    code: 500,
                    errors: vec![],
                }),
                502,
                "vault_error",
            ),
            (
                ApiError::Vault(VaultError::Login("x".into())),
                502,
                "vault_error",
            ),
            (ApiError::AuditUnavailable, 503, "audit_unavailable"),
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
        ];
        for (err, status, code) in table {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code().as_str(), code, "{err:?}");
        }
    }

    #[test]
    fn bots_learn_no_vault_address_or_file_and_no_lease_owner() {
        let cases = [
            ApiError::Vault(VaultError::Unavailable(
                "cannot reach https://vault-2.corp.example:8200".into(),
            )),
            ApiError::Vault(VaultError::Login(
                "cannot read /etc/botward/secret-id: permission denied".into(),
            )),
        ];
        for e in cases {
            let m = e.message_for_bot();
            assert!(!m.contains("vault-2") && !m.contains("/etc/"), "{m}");
            assert_ne!(m, e.to_string());
        }
        let other = ApiError::NotFound("lease_not_owned");
        let none = ApiError::NotFound("no_lease");
        assert_eq!(other.message_for_bot(), none.message_for_bot());
        assert_eq!(other.status(), none.status());
        assert_eq!(other.code(), none.code());
        assert_ne!(
            other.reason(),
            none.reason(),
            "the audit record keeps the difference"
        );
    }

    #[test]
    fn vault_404_becomes_not_found() {
        let e: ApiError = VaultError::Status {
            code: 404,
            errors: vec![],
        }
        .into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
