//! Bot certificates from Vault PKI (`[identity]`).
//!
//! - The operator (root, or botward's own account, on the host) asks for a
//!   one-time enrollment token for a bot, over the unix socket without a
//!   certificate.
//! - The bot's account enrolls with it over the same socket: the kernel
//!   names the account, which must be the bot's `enroll.uid`; the token is
//!   spent by any attempt that presents it, right or wrong.
//! - A bot renews with its current, valid certificate (`POST
//!   /v1/identity/renew`, an ordinary authenticated request).
//!
//! In every case botward has Vault PKI sign the bot's CSR with the subject
//! and SPIFFE SAN botward sets, then checks the certificate Vault returned
//! before it is handed out: the bot's identity and no other, the CSR's key,
//! no longer than `identity.ttl`, and a chain botward itself accepts.
//! Tokens live in memory only: a restart voids those not yet used.

use jiff::Timestamp;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use x509_parser::prelude::FromDer;

use super::tokens::Outcome;
use super::{Answer, Reply, Runtime, Shared};
use crate::audit::{Decision, Peer, Record};
use crate::config::IdentitySettings;
use crate::error::{ApiError, Forbidden, Unauthenticated, VaultError};
use crate::policy::{self, BotDef, PeerFacts};
use crate::secret::WipedBuf;

/// Slack allowed between the lifetime asked of Vault and the one given
/// (Vault backdates `not_before` by 30 s).
const TTL_SLACK_S: i64 = 90;

/// A unix-socket connection that presented no certificate.
pub struct Local {
    pub peer: Peer,
    pub facts: PeerFacts,
}

/// A certificate Vault PKI issued and botward checked.
pub struct Issued {
    pub certificate: String,
    pub chain: Vec<String>,
    pub serial: String,
    pub not_after: Timestamp,
    pub cert: crate::identity::CertInfo,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    bot: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    token: String,
    csr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    csr: String,
}

/// What the local endpoints are, by the record kind they write.
pub const ENROLL_TOKEN: &str = "identity.enroll_token";
pub const ENROLL: &str = "identity.enroll";

impl Shared {
    /// Serves one request on a connection without a certificate and
    /// records it before it is answered. `kind` is [`ENROLL_TOKEN`],
    /// [`ENROLL`], or `auth.failure` for anything else.
    pub async fn serve_local(
        &self,
        local: &Local,
        kind: &'static str,
        method: &str,
        path: &str,
        body: Result<Vec<u8>, ApiError>,
        error_body: impl Fn(&ApiError, &str) -> WipedBuf,
    ) -> Answer {
        let started = std::time::Instant::now();
        let rt = self.runtime();
        let id = crate::audit::request_id();
        let mut rec = Record::new(kind, id.clone(), self.audit.host());
        rec.method = Some(crate::audit::truncate(method, 16));
        rec.path = Some(crate::audit::truncate(path, 256));
        rec.peer = Some(local.peer.clone());
        let mut detail = Map::new();
        detail.insert("uid".into(), json!(local.facts.uid));
        let mut token_id = None;
        let result = match (kind, body) {
            (_, Err(e)) => Err(e),
            (ENROLL_TOKEN, Ok(body)) => self
                .make_token(&rt, local, &body, &mut detail)
                .inspect(|(tid, _)| token_id = Some(tid.clone()))
                .map(|(_, reply)| reply),
            (ENROLL, Ok(body)) => self.enroll(&rt, local, &body, &mut rec, &mut detail).await,
            _ => Err(ApiError::Unauthenticated(
                Unauthenticated::NoClientCertificate,
            )),
        };
        let refusal = result.as_ref().err().map(ApiError::reason);
        let (status, reply) = match result {
            Ok(reply) => {
                rec.decision = Decision::Allow;
                (200, reply)
            }
            Err(err) => {
                rec.decision = if err.is_denial() {
                    Decision::Deny
                } else {
                    Decision::Error
                };
                rec.reason = Some(err.reason().to_owned());
                if !err.is_denial() {
                    rec.error = Some(err.to_string());
                }
                (err.status(), Reply::Json(error_body(&err, &id)))
            }
        };
        rec.status = status;
        rec.latency_us = started.elapsed().as_micros() as u64;
        let summed = refusal.is_some_and(|r| !self.worth_a_record(local, r, &rec.ts, &detail));
        rec.detail = Some(json!({ "identity": detail }));
        if summed {
            return Answer {
                status,
                reply,
                request_id: id,
            };
        }
        if self.audit.write(rec).await.is_err() {
            // A token nobody can account for must not work.
            if let Some(tid) = token_id {
                self.tokens.remove(&tid);
            }
            drop(reply);
            let err = ApiError::AuditUnavailable;
            return Answer {
                status: err.status(),
                reply: Reply::Json(error_body(&err, &id)),
                request_id: id,
            };
        }
        Answer {
            status,
            reply,
            request_id: id,
        }
    }

    /// Whether a refusal gets its own record. Any local account can make
    /// refusals here before proving anything (no certificate, not the
    /// operator, no valid token, a bad body), so those are summed per uid
    /// and reason like refused handshakes ([`crate::refusals`]): the first
    /// of a window in full, the rest counted into one summary. What
    /// follows a valid token, and everything allowed, is recorded in full.
    fn worth_a_record(
        &self,
        local: &Local,
        reason: &'static str,
        ts: &str,
        detail: &Map<String, Value>,
    ) -> bool {
        // The operator proved itself once the bot it asks for is noted; an
        // enrollment, once its token was spent.
        let operator = detail.contains_key("bot") && !detail.contains_key("token");
        if operator || detail.get("token") == Some(&json!("spent")) {
            return true;
        }
        let key = crate::refusals::Key {
            transport: local.peer.transport,
            source: super::refused::source_of(&local.peer),
            reason,
        };
        self.refusals.note(key, std::time::Instant::now(), ts, None)
    }

    /// A one-time token for the bot named in `body`, for the operator only.
    fn make_token(
        &self,
        rt: &Runtime,
        local: &Local,
        body: &[u8],
        detail: &mut Map<String, Value>,
    ) -> Result<(String, Reply), ApiError> {
        let settings = identity_settings(rt)?;
        let operator = local.facts.verified
            && local
                .facts
                .uid
                .is_some_and(|uid| uid == 0 || Some(uid) == own_uid());
        if !operator {
            return Err(ApiError::Forbidden(Forbidden::NotOperator));
        }
        let req: TokenRequest = parse(body)?;
        let bot = crate::audit::truncate(&req.bot, policy::MAX_NAME_LEN);
        detail.insert("bot".into(), json!(bot));
        let bot = rt
            .config
            .bot(&req.bot)
            .filter(|b| b.lifecycle.enroll_uid.is_some())
            .ok_or(ApiError::Forbidden(Forbidden::NotEnrollable))?;
        self.lifecycle_allows(bot, local)?;
        let ttl = jiff::SignedDuration::try_from(settings.enroll_token_ttl).unwrap_or_default();
        let (id, token, expires) = self
            .tokens
            .issue(&req.bot, Timestamp::now(), ttl)
            .ok_or_else(|| ApiError::BadRequest("no system randomness".into()))?;
        detail.insert("token_id".into(), json!(id));
        detail.insert("expires".into(), json!(expires.to_string()));
        // The token goes straight into the wiped reply: its characters
        // need no JSON escaping.
        let mut out = WipedBuf::with_capacity(256);
        out.extend_from_slice(b"{\"token\":\"");
        out.extend_from_slice(token.expose_secret());
        drop(token);
        let rest = json!({"bot": req.bot, "expires": expires.to_string()}).to_string();
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&rest.as_bytes()[1..]);
        Ok((id, Reply::Json(out)))
    }

    /// Spends the token, checks the account and the bot, and issues.
    async fn enroll(
        &self,
        rt: &Runtime,
        local: &Local,
        body: &[u8],
        rec: &mut Record,
        detail: &mut Map<String, Value>,
    ) -> Result<Reply, ApiError> {
        let settings = identity_settings(rt)?;
        let req: EnrollRequest = parse(body)?;
        // A CSR that does not parse spends no token.
        csr_key(&req.csr)?;
        let name = self.spend_token(&req.token, detail)?;
        rec.claimed_bot = Some(name.clone());
        let bot = self.may_enroll(rt, &name, local)?;
        let issued = issue(rt, settings, bot, &req.csr, None).await?;
        // A reload while Vault signed may have taken the ground away.
        self.may_enroll(&self.runtime(), &name, local)?;
        rec.claimed_bot = None;
        rec.bot = Some(bot.name.clone());
        rec.cert = Some(issued.cert.clone());
        note_issued(detail, &issued, settings);
        Ok(Reply::Json(issued_body(&bot.name, &issued)))
    }

    /// The bot `name`, if the local account may enroll as it now.
    fn may_enroll<'r>(
        &self,
        rt: &'r Runtime,
        name: &str,
        local: &Local,
    ) -> Result<&'r BotDef, ApiError> {
        let bot = rt
            .config
            .bot(name)
            .ok_or(ApiError::Forbidden(Forbidden::NotEnrollable))?;
        let account = bot.lifecycle.enroll_uid;
        if !local.facts.verified || account.is_none() || local.facts.uid != account {
            return Err(ApiError::Forbidden(Forbidden::WrongAccount));
        }
        self.lifecycle_allows(bot, local)?;
        Ok(bot)
    }

    /// Refuses a bot whose lifecycle state refuses a new certificate.
    fn lifecycle_allows(&self, bot: &BotDef, local: &Local) -> Result<(), ApiError> {
        let cx = policy::Context {
            now: Timestamp::now(),
            peer: &local.facts,
            quiet_since: self.activity.quiet_since(&bot.name),
        };
        match policy::lifecycle_refusal(bot, policy::Request::Renew, &cx) {
            Some(reason) => Err(super::exchange::denied_by_policy(reason)),
            None => Ok(()),
        }
    }

    /// The bot a token was made for; the token is spent.
    fn spend_token(
        &self,
        token: &str,
        detail: &mut Map<String, Value>,
    ) -> Result<String, ApiError> {
        let spent = self.tokens.spend(token, Timestamp::now());
        if let Some(id) = &spent.id {
            detail.insert("token_id".into(), json!(id));
        }
        detail.insert("token".into(), json!(spent.outcome.as_str()));
        match (spent.outcome, spent.bot) {
            (Outcome::Spent, Some(bot)) => Ok(bot),
            _ => Err(ApiError::Unauthenticated(Unauthenticated::BadEnrollToken)),
        }
    }
}

impl super::Exchange<'_> {
    /// `POST /v1/identity/renew`: a new certificate, with a new key, for
    /// the bot this connection's certificate names.
    pub async fn renew_identity(&mut self, bot: &BotDef, body: &[u8]) -> Result<Reply, ApiError> {
        let rt = self.rt;
        let mut detail = Map::new();
        detail.insert("previous_serial".into(), json!(self.conn.cert.serial));
        self.rec.detail = Some(json!({ "identity": detail }));
        let settings = identity_settings(rt)?;
        self.decide(bot, policy::Request::Renew)?;
        let req: RenewRequest = parse(body)?;
        csr_key(&req.csr)?;
        let serial = self.conn.cert.serial.clone();
        let until = self.conn.not_after.unwrap_or_else(Timestamp::now);
        if !self.shared.renewals.first(&serial, until, Timestamp::now()) {
            tracing::warn!(bot = %bot.name, serial = %serial, "A certificate renewed a second time: two holders of one key?");
            return Err(ApiError::Forbidden(Forbidden::AlreadyRenewed));
        }
        let old = self.conn.chain.first();
        let issued = match issue(rt, settings, bot, &req.csr, old).await {
            Ok(i) => i,
            Err(e) => {
                self.shared.renewals.undo(&serial);
                return Err(e);
            }
        };
        // A reload while Vault signed may have switched the bot off.
        let now_rt = self.shared.runtime();
        let still = now_rt
            .config
            .bot(&bot.name)
            .ok_or(ApiError::Forbidden(Forbidden::Disabled))?;
        let cx = policy::Context {
            now: Timestamp::now(),
            peer: &self.conn.facts,
            quiet_since: self.shared.activity.quiet_since(&bot.name),
        };
        if let Some(reason) = policy::lifecycle_refusal(still, policy::Request::Renew, &cx) {
            return Err(super::exchange::denied_by_policy(reason));
        }
        note_issued(&mut detail, &issued, settings);
        self.rec.detail = Some(json!({ "identity": detail }));
        Ok(Reply::Json(issued_body(&bot.name, &issued)))
    }
}

/// Has Vault PKI sign `csr` for `bot` and checks what it issued. `old` is
/// the certificate being renewed, whose key the CSR must not reuse.
pub(super) async fn issue(
    rt: &Runtime,
    settings: &IdentitySettings,
    bot: &BotDef,
    csr: &str,
    old: Option<&CertificateDer<'_>>,
) -> Result<Issued, ApiError> {
    let key = csr_key(csr)?;
    if let Some(old) = old {
        if spki(old.as_ref()).is_some_and(|k| k == key) {
            return Err(ApiError::BadRequest(
                "the CSR must carry a new key, not the current certificate's".into(),
            ));
        }
    }
    let uri = format!("spiffe://{}/bot/{}", rt.config.tls.trust_domain, bot.name);
    let data = rt
        .vault
        .pki_sign(
            &settings.mount,
            &settings.role,
            csr,
            &bot.name,
            &uri,
            settings.ttl,
        )
        .await
        .map_err(ApiError::Vault)?;
    check_issued(rt, settings, bot, &key, &data)
}

/// The certificate in Vault's answer, if it is the one asked for.
fn check_issued(
    rt: &Runtime,
    settings: &IdentitySettings,
    bot: &BotDef,
    key: &[u8],
    data: &Value,
) -> Result<Issued, ApiError> {
    let wrong = |what: &'static str| ApiError::Vault(VaultError::BadResponse(what));
    let certificate = data["certificate"]
        .as_str()
        .ok_or(wrong("the PKI engine returned no certificate"))?
        .to_owned();
    let chain: Vec<String> = match &data["ca_chain"] {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => data["issuing_ca"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect(),
    };
    let leaf = pem_der(&certificate).ok_or(wrong("the PKI engine returned no PEM certificate"))?;
    let identity = crate::identity::from_der(&leaf, &rt.config.tls.trust_domain, false);
    if identity.bot.as_deref() != Some(bot.name.as_str()) || !only_uri_san(&leaf) {
        return Err(wrong("the issued certificate names another identity"));
    }
    if spki(&leaf).as_deref() != Some(key) {
        return Err(wrong("the issued certificate carries another key"));
    }
    let shape = leaf_shape(&leaf).ok_or(wrong("the issued certificate does not parse"))?;
    if shape.common_names != [bot.name.as_str()] {
        return Err(wrong("the issued certificate's subject is not the bot"));
    }
    if !shape.client_auth || shape.server_auth || shape.ca {
        return Err(wrong(
            "the issued certificate is not a client certificate only",
        ));
    }
    let ttl = settings.ttl.as_secs() as i64;
    let longest = Timestamp::now() + jiff::SignedDuration::from_secs(ttl + TTL_SLACK_S);
    let life = shape.not_after.duration_since(shape.not_before);
    if shape.not_after > longest || life > jiff::SignedDuration::from_secs(ttl + 2 * TTL_SLACK_S) {
        return Err(wrong("the issued certificate outlives identity.ttl"));
    }
    let not_after = shape.not_after;
    let intermediates: Vec<CertificateDer<'static>> = chain
        .iter()
        .filter_map(|p| pem_der(p))
        .map(CertificateDer::from)
        .collect();
    rt.client_verifier
        .verify_client_cert(
            &CertificateDer::from(leaf.clone()),
            &intermediates,
            UnixTime::now(),
        )
        .map_err(|_| {
            wrong("botward does not accept the issued certificate (tls.client_ca, CRLs)")
        })?;
    Ok(Issued {
        certificate,
        chain,
        serial: identity.cert.serial.clone(),
        not_after,
        cert: identity.cert,
    })
}

pub(super) fn note_issued(detail: &mut Map<String, Value>, issued: &Issued, s: &IdentitySettings) {
    detail.insert("serial".into(), json!(issued.serial));
    detail.insert("not_after".into(), json!(issued.not_after.to_string()));
    detail.insert("ttl_s".into(), json!(s.ttl.as_secs()));
}

/// `{"bot","certificate","chain","serial","not_after"}`.
pub(super) fn issued_body(bot: &str, issued: &Issued) -> WipedBuf {
    let body = json!({
        "bot": bot, "certificate": issued.certificate, "chain": issued.chain,
        "serial": issued.serial, "not_after": issued.not_after.to_string(),
    });
    let mut out = WipedBuf::with_capacity(4096);
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(out.as_mut_vec(), &body);
    out
}

pub(super) fn identity_settings(rt: &Runtime) -> Result<&IdentitySettings, ApiError> {
    rt.config
        .identity
        .as_ref()
        .ok_or(ApiError::NotFound(crate::error::NotFound::NoRoute))
}

pub(super) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("bad request body: {e}")))
}

#[cfg(unix)]
fn own_uid() -> Option<u32> {
    Some(crate::platform::euid())
}

#[cfg(not(unix))]
fn own_uid() -> Option<u32> {
    None
}

/// The DER of the first PEM block in `pem`.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(block.contents)
}

/// The subject public key of a PEM CSR.
fn csr_key(csr: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::BadRequest("csr must be a PEM certificate request".into());
    let (_, block) = x509_parser::pem::parse_x509_pem(csr.as_bytes()).map_err(|_| bad())?;
    if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
        return Err(bad());
    }
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|_| bad())?;
    Ok(req.certification_request_info.subject_pki.raw.to_vec())
}

/// Whether the certificate's only subject alternative name is one URI
/// (the SPIFFE ID [`crate::identity::from_der`] read): a role that copies
/// the CSR's names must not slip host names or addresses in.
fn only_uri_san(der: &[u8]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return false;
    };
    match cert.subject_alternative_name() {
        Ok(Some(san)) => matches!(san.value.general_names.as_slice(), [GeneralName::URI(_)]),
        _ => false,
    }
}

/// What [`check_issued`] looks at in a certificate besides its SANs.
struct Shape {
    common_names: Vec<String>,
    client_auth: bool,
    server_auth: bool,
    ca: bool,
    not_before: Timestamp,
    not_after: Timestamp,
}

fn leaf_shape(der: &[u8]) -> Option<Shape> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let common_names = cert
        .subject()
        .iter_common_name()
        .map(|cn| cn.as_str().map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let (client_auth, server_auth) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (
            eku.value.client_auth,
            eku.value.server_auth || eku.value.any,
        ),
        _ => (false, false),
    };
    let ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let v = cert.validity();
    Some(Shape {
        common_names,
        client_auth,
        server_auth,
        ca,
        not_before: Timestamp::from_second(v.not_before.timestamp()).ok()?,
        not_after: Timestamp::from_second(v.not_after.timestamp()).ok()?,
    })
}

/// The subject public key of a DER certificate.
fn spki(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_keys_are_read_and_other_pem_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let spki = csr_key(&csr).unwrap();
        assert_eq!(spki, key.public_key_der());
        let cert = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(csr_key(&cert.pem()).is_err(), "a certificate is not a CSR");
        assert!(csr_key("not pem").is_err());
        assert_eq!(super::spki(cert.der()).unwrap(), key.public_key_der());
    }

    #[test]
    fn an_issued_certificate_may_carry_only_its_spiffe_id() {
        use rcgen::{Ia5String, SanType};
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let uri =
            SanType::URI(Ia5String::try_from("spiffe://corp.example/bot/invoice-bot").unwrap());
        let dns = SanType::DnsName(Ia5String::try_from("erp.corp.example").unwrap());
        let with = |sans: Vec<SanType>| {
            let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
            p.subject_alt_names = sans;
            p.self_signed(&key).unwrap().der().to_vec()
        };
        assert!(only_uri_san(&with(vec![uri.clone()])));
        assert!(!only_uri_san(&with(vec![uri.clone(), dns])));
        assert!(!only_uri_san(&with(vec![uri.clone(), uri])));
        assert!(!only_uri_san(&with(vec![])));
    }
}
