//! TLS configuration: the server side with mandatory client certificates,
//! CRLs and session resumption, the client side for `botward get`, and the
//! pinned client side for Vault.
//!
//! Failed handshakes must still leave an audit record that names the
//! certificate. rustls calls the client verifier from inside the handshake
//! future, so a wrapping verifier notes what it saw in a task-local slot that
//! the accept loop reads afterwards.

use crate::error::Unauthenticated;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::identity::{self, PeerIdentity};

/// The server's TLS settings, as validated from the config's `[tls]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub crl: Vec<PathBuf>,
    pub trust_domain: String,
    pub allow_cn_fallback: bool,
    /// How long before a CRL's `nextUpdate` the log warns.
    pub crl_warn_before: Duration,
}

/// Problems building a TLS configuration. Key material never appears here.
#[derive(Debug)]
pub struct TlsError(String);

/// What the client verifier saw during one handshake.
#[derive(Debug, Default)]
pub struct HandshakeNote {
    pub peer: Option<PeerIdentity>,
    pub error: Option<rustls::Error>,
}

tokio::task_local! {
    /// The note for the handshake running in this task.
    pub static HANDSHAKE_NOTE: Arc<Mutex<HandshakeNote>>;
}

/// Installs ring as the process-wide rustls provider. reqwest, inside
/// vaultrs, needs one.
pub fn install_provider() {
    let _ = provider::default_provider().install_default();
}

/// The server configuration: TLS 1.3 and 1.2, a mandatory client certificate
/// from `client_ca` checked against the CRLs, HTTP/1.1 and resumption by
/// tickets and session IDs. With `local`, also one for the unix socket
/// where a client may come without a certificate (to enroll): one it does
/// present is verified just the same.
pub fn server_config(tls: &Settings, local: bool) -> Result<ServerTls, TlsError> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&tls.client_ca)? {
        roots.add(ca).map_err(|e| {
            TlsError(format!(
                "{}: bad CA certificate: {e}",
                tls.client_ca.display()
            ))
        })?;
    }
    let mut crls = Vec::new();
    for path in &tls.crl {
        let found: Vec<_> = CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| TlsError(format!("{}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
        if found.is_empty() {
            return Err(TlsError(format!("{}: no CRL found", path.display())));
        }
        crls.extend(found.into_iter().map(|der| (path.clone(), der)));
    }
    let mut infos = Vec::new();
    for (path, der) in &crls {
        infos.push(CrlInfo {
            path: path.clone(),
            next_update: crl_next_update(der)
                .map_err(|e| TlsError(format!("{}: {e}", path.display())))?,
        });
    }
    let provider = Arc::new(provider::default_provider());
    // A CRL past its nextUpdate refuses every certificate it covers: a
    // broken CRL feed must not silently stop revocation.
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls.into_iter().map(|(_, der)| der))
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError(format!("client verifier: {e}")))?;
    let client_verifier = inner.clone();
    let verifier: Arc<NotingVerifier> = Arc::new(NotingVerifier {
        inner,
        trust_domain: tls.trust_domain.clone(),
        cn_fallback: tls.allow_cn_fallback,
    });
    let build = |verifier: Arc<dyn ClientCertVerifier>| -> Result<ServerConfig, TlsError> {
        let mut cfg = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| TlsError(format!("{}: {e}", tls.cert.display())))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg.session_storage = ServerSessionMemoryCache::new(4096);
        cfg.ticketer = provider::Ticketer::new().map_err(|e| TlsError(e.to_string()))?;
        Ok(cfg)
    };
    let local = match local {
        true => Some(Arc::new(build(Arc::new(Optional(verifier.clone())))?)),
        false => None,
    };
    Ok(ServerTls {
        config: Arc::new(build(verifier)?),
        local,
        client_verifier,
        crls: infos,
    })
}

/// The server's TLS configuration, and the client verifier inside it, so
/// that connections made under an older configuration (or resumed from a
/// ticket) can be checked again against the current CA and CRLs.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// For the unix socket when bots may enroll: a certificate is optional.
    pub local: Option<Arc<ServerConfig>>,
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    pub crls: Vec<CrlInfo>,
}

/// A configured CRL and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    pub path: std::path::PathBuf,
    /// `nextUpdate`; a CRL without one never expires.
    pub next_update: Option<jiff::Timestamp>,
}

/// How close the configured CRLs are to expiring, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrlState {
    /// No CRL is configured.
    None,
    Ok,
    /// Within `tls.crl_warn_before` of its `nextUpdate`.
    Expiring,
    /// Past its `nextUpdate`: certificates it covers are refused.
    Expired,
}

// === impl CrlInfo ===

impl CrlInfo {
    pub fn state(&self, now: jiff::Timestamp, warn_before: std::time::Duration) -> CrlState {
        let Some(next) = self.next_update else {
            return CrlState::Ok;
        };
        let warn = jiff::SignedDuration::try_from(warn_before).unwrap_or(jiff::SignedDuration::MAX);
        if next <= now {
            CrlState::Expired
        } else if next.checked_sub(warn).is_ok_and(|w| w <= now) {
            CrlState::Expiring
        } else {
            CrlState::Ok
        }
    }
}

// === impl CrlState ===

impl CrlState {
    pub fn as_str(self) -> &'static str {
        match self {
            CrlState::None => "none",
            CrlState::Ok => "ok",
            CrlState::Expiring => "expiring",
            CrlState::Expired => "expired",
        }
    }
}

/// The `nextUpdate` of a DER CRL.
fn crl_next_update(der: &[u8]) -> Result<Option<jiff::Timestamp>, String> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| format!("bad CRL: {e}"))?;
    crl.next_update()
        .map(|t| {
            jiff::Timestamp::from_second(t.timestamp())
                .map_err(|e| format!("bad CRL nextUpdate: {e}"))
        })
        .transpose()
}

/// Client configuration for a bot: trusts only `ca` and presents `cert`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    let roots = root_store(ca)?;
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Client configuration for Vault that trusts only `ca`, presenting a
/// client certificate for cert auth when one is given.
pub fn pinned_client_config(
    ca: &Path,
    client_cert: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = root_store(ca)?;
    let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError(format!("{}: {e}", cert.display())))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError(format!("{}: bad CA certificate: {e}", ca.display())))?;
    }
    Ok(roots)
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error text of the PEM reader names the file, never the key bytes.
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError(format!("{}: no usable private key: {e}", path.display())))
}

/// A short reason code for a failed handshake.
pub fn failure_reason(error: Option<&rustls::Error>) -> Unauthenticated {
    use rustls::{CertificateError as C, Error as E};
    use Unauthenticated as U;
    match error {
        Some(E::NoCertificatesPresented) => U::NoClientCertificate,
        Some(E::InvalidCertificate(c)) => match c {
            C::Expired | C::ExpiredContext { .. } => U::CertificateExpired,
            C::NotValidYet | C::NotValidYetContext { .. } => U::CertificateNotYetValid,
            C::Revoked => U::CertificateRevoked,
            C::UnknownIssuer => U::UnknownIssuer,
            C::BadSignature => U::BadSignature,
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => U::WrongKeyUsage,
            C::UnknownRevocationStatus => U::UnknownRevocationStatus,
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => U::CrlExpired,
            _ => U::InvalidCertificate,
        },
        Some(E::InvalidCertRevocationList(_)) => U::BadCrl,
        Some(E::NoApplicationProtocol) => U::NoAlpnMatch,
        Some(E::PeerIncompatible(_)) => U::PeerIncompatible,
        Some(E::InvalidMessage(_)) => U::TlsProtocolError,
        Some(_) | None => U::TlsHandshakeFailed,
    }
}

// === impl TlsError ===

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// Delegates to the WebPKI verifier and notes the certificate and outcome.
#[derive(Debug)]
struct NotingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    cn_fallback: bool,
}

/// A verifier that lets a client come without a certificate.
#[derive(Debug)]
struct Optional(Arc<NotingVerifier>);

impl ClientCertVerifier for Optional {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

// === impl NotingVerifier ===

impl ClientCertVerifier for NotingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        let _ = HANDSHAKE_NOTE.try_with(|note| {
            let mut note = crate::lock(note);
            note.peer = Some(identity::from_der(
                end_entity,
                &self.trust_domain,
                self.cn_fallback,
            ));
            note.error = result.as_ref().err().cloned();
        });
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
