//! Error types, and the one place where errors become HTTP statuses and
//! machine-readable codes.
//!
//! No error here carries a secret value: Vault errors are reduced to a status
//! code and Vault's own error strings, never a response body.

use std::fmt;

/// Declares a reason enum: each variant has the code written to the audit
/// log (`as_str`) and the sentence the bot is told (`message`).
macro_rules! reasons {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $code:literal, $message:literal;)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every reason, e.g. for documentation and tests.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The code written to the audit record's `reason`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// What the bot is told.
            pub fn message(self) -> &'static str {
                match self {
                    $($name::$variant => $message,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.message())
            }
        }
    };
}

reasons! {
    /// Why a client certificate does not authenticate a bot.
    pub enum Unauthenticated {
        UnknownBot = "unknown_bot", "the client certificate does not name a registered bot";
        NoIdentity = "no_identity", "the client certificate carries no bot identity for this trust domain";
        NoClientCertificate = "no_client_certificate", "no client certificate was presented";
        CertificateExpired = "certificate_expired", "the client certificate has expired";
        CertificateNotYetValid = "certificate_not_yet_valid", "the client certificate is not valid yet";
        CertificateRevoked = "certificate_revoked", "the client certificate has been revoked";
        UnknownIssuer = "unknown_issuer", "the client certificate was not issued by the bot CA";
        BadSignature = "bad_signature", "the client certificate's signature does not verify";
        WrongKeyUsage = "wrong_key_usage", "the client certificate is not for client authentication";
        UnknownRevocationStatus = "unknown_revocation_status", "the client certificate's revocation status is unknown";
        CrlExpired = "crl_expired", "the revocation list for the client certificate has expired; ask the operator to refresh it";
        InvalidCertificate = "invalid_certificate", "the client certificate is not valid";
        BadCrl = "bad_crl", "the revocation list for the client certificate cannot be used";
        NoAlpnMatch = "no_alpn_match", "no common application protocol";
        PeerIncompatible = "peer_incompatible", "the client's TLS settings are incompatible";
        TlsProtocolError = "tls_protocol_error", "TLS protocol error";
        TlsHandshakeFailed = "tls_handshake_failed", "client authentication failed";
        BadEnrollToken = "bad_enroll_token", "the enrollment token is unknown, already used or expired; ask the operator for a new one";
    }
}

reasons! {
    /// Why an authenticated bot may not do what it asked.
    pub enum Forbidden {
        NotGranted = "not_granted", "this bot is not granted that secret";
        OutsideSchedule = "outside_schedule", "this bot's schedule does not allow requests at this time";
        ProcessMismatch = "process_mismatch", "the calling process is not one this bot may run as";
        ProcessUnverifiable = "process_unverifiable", "this bot is bound to processes; connect over the unix socket so the process can be verified";
        ProcessChanged = "process_changed", "the calling process changed since it connected";
        Anomaly = "anomaly", "this request is far outside this bot's usual behaviour and was refused";
        RenewNotAllowed = "renew_not_allowed", "this lease may not be renewed; read the secret again for a new one";
        MaxUseReached = "max_use_reached", "this lease has reached its max_use; release it and read the secret again";
        ElevationRequired = "elevation_required", "this secret is privileged: it is readable only inside an approved elevation window; ask for one at POST /v1/elevations";
        Disabled = "disabled", "this bot is disabled";
        BotExpired = "bot_expired", "this bot is past its expires date and is treated as disabled";
        ReviewOverdue = "review_overdue", "this bot is past its review_by date; its owner must review it before it is served again";
        Dormant = "dormant", "this bot made no request for longer than its dormancy limit; a config change with a change ticket must reactivate it";
        NotOperator = "not_operator", "only root or botward's own account may make enrollment tokens";
        WrongAccount = "wrong_account", "this account may not enroll as that bot";
        NotEnrollable = "not_enrollable", "that bot has no enroll account in the config";
        AlreadyRenewed = "already_renewed", "this certificate was renewed already; use the one that renewal gave";
    }
}

reasons! {
    /// What a request named that does not exist.
    pub enum NotFound {
        NoRoute = "no_route", "no such endpoint";
        NoField = "no_field", "the secret has no such field";
        NoSecret = "no_secret", "the secret does not exist in Vault";
        NoLease = "no_lease", "no such lease";
        /// Told to the bot exactly like [`NotFound::NoLease`], so that lease
        /// IDs cannot be probed; the audit record keeps the difference.
        LeaseNotOwned = "lease_not_owned", "no such lease";
        NoElevation = "no_elevation", "no such elevation request";
    }
}

reasons! {
    /// Which limit a request ran into.
    pub enum RateLimited {
        MaxLeases = "max_leases", "this bot holds as many leases as it may; release one first";
        MaxElevations = "max_elevations", "this bot has as many elevation requests pending as it may; wait for a decision first";
    }
}

/// Why a request was refused or failed, as the bot sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    Unauthenticated(Unauthenticated),
    Forbidden(Forbidden),
    NotFound(NotFound),
    MethodNotAllowed,
    /// Too many requests, or too many leases held (`max_leases`).
    RateLimited(RateLimited),
    BadRequest(String),
    Vault(VaultError),
    AuditUnavailable,
    /// An approver's decision that failed a check; the code says which.
    DecisionRejected(&'static str),
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
            ApiError::Forbidden(_) | ApiError::DecisionRejected(_) => Code::Forbidden,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::MethodNotAllowed => Code::MethodNotAllowed,
            ApiError::RateLimited(_) => Code::RateLimited,
            ApiError::BadRequest(_) => Code::BadRequest,
            ApiError::Vault(VaultError::Unavailable(_)) => Code::VaultUnavailable,
            ApiError::Vault(_) => Code::VaultError,
            ApiError::AuditUnavailable => Code::AuditUnavailable,
        }
    }

    /// The HTTP status of the error's code.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// The short reason code written to the audit record.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(r) => r.as_str(),
            ApiError::Forbidden(r) => r.as_str(),
            ApiError::DecisionRejected(r) => r,
            ApiError::NotFound(r) => r.as_str(),
            ApiError::RateLimited(r) => r.as_str(),
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
                | ApiError::DecisionRejected(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed
                | ApiError::RateLimited(_)
                | ApiError::BadRequest(_)
        )
    }

    /// The message the bot gets. It says what went wrong without naming
    /// Vault addresses, credential files or anything else about the
    /// operator's setup; those details go to the audit record and the log.
    pub fn message_for_bot(&self) -> String {
        match self {
            ApiError::Vault(VaultError::Unavailable(_)) => "vault is unavailable".into(),
            ApiError::Vault(VaultError::Status { code, .. }) => {
                format!("vault returned status {code}")
            }
            ApiError::Vault(VaultError::BadResponse(_)) => "unexpected vault response".into(),
            ApiError::Vault(VaultError::Login(_)) => "botward could not log in to vault".into(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthenticated(r) => r.fmt(f),
            ApiError::Forbidden(r) => r.fmt(f),
            ApiError::NotFound(r) => r.fmt(f),
            ApiError::RateLimited(r) => r.fmt(f),
            ApiError::MethodNotAllowed => f.write_str("method not allowed on this endpoint"),
            ApiError::BadRequest(m) => write!(f, "bad request: {m}"),
            ApiError::Vault(e) => e.fmt(f),
            ApiError::AuditUnavailable => {
                f.write_str("the audit record could not be written; request refused")
            }
            ApiError::DecisionRejected(r) => write!(f, "the decision does not count: {r}"),
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            // A secret that is defined in config but absent in Vault is the
            // operator's problem, but the bot sees a clean 404.
            VaultError::Status { code: 404, .. } => ApiError::NotFound(NotFound::NoSecret),
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

    /// The HTTP status the code goes with.
    pub fn status(self) -> u16 {
        match self {
            Code::Unauthenticated => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::RateLimited => 429,
            Code::VaultUnavailable => 503,
            Code::VaultError => 502,
            Code::AuditUnavailable => 503,
            Code::BadRequest => 400,
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
                ApiError::Unauthenticated(Unauthenticated::UnknownBot),
                401,
                "unauthenticated",
            ),
            (ApiError::Forbidden(Forbidden::NotGranted), 403, "forbidden"),
            (ApiError::NotFound(NotFound::NoRoute), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (
                ApiError::RateLimited(RateLimited::MaxLeases),
                429,
                "rate_limited",
            ),
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
            assert_eq!(err.status(), status, "{err:?}");
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
        let other = ApiError::NotFound(NotFound::LeaseNotOwned);
        let none = ApiError::NotFound(NotFound::NoLease);
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
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn every_reason_has_its_own_code_and_a_message_for_the_bot() {
        let mut codes = std::collections::HashSet::new();
        let all = Unauthenticated::ALL
            .iter()
            .map(|r| (r.as_str(), r.message()))
            .chain(Forbidden::ALL.iter().map(|r| (r.as_str(), r.message())))
            .chain(NotFound::ALL.iter().map(|r| (r.as_str(), r.message())))
            .chain(RateLimited::ALL.iter().map(|r| (r.as_str(), r.message())));
        for (code, message) in all {
            assert!(codes.insert(code), "{code} is used twice");
            assert!(
                code.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                "{code}"
            );
            assert!(!message.is_empty() && message != "forbidden", "{code}");
        }
    }

    #[test]
    fn lease_refusals_tell_the_bot_why() {
        for r in [Forbidden::RenewNotAllowed, Forbidden::MaxUseReached] {
            let e = ApiError::Forbidden(r);
            assert_eq!(e.status(), 403);
            assert_eq!(e.reason(), r.as_str());
            assert!(e.message_for_bot().contains("lease"), "{r:?}");
        }
    }
}
