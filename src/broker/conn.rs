//! A connection whose TLS handshake verified a client certificate, and its
//! identity checked again as the configuration changes.

use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;

use super::Runtime;
use crate::audit::Peer;
use crate::error::Unauthenticated;
use crate::identity;
use crate::lock;
use crate::policy::PeerFacts;
use crate::tls;

/// One accepted, authenticated-by-TLS connection.
pub struct Conn {
    pub peer: Peer,
    pub facts: PeerFacts,
    pub cert: crate::identity::CertInfo,
    /// The client's certificate chain, verified again when the TLS
    /// configuration changes while the connection is open, and when a CRL
    /// it was checked against expires.
    pub chain: Arc<[CertificateDer<'static>]>,
    pub not_after: Option<jiff::Timestamp>,
    /// The calling process as it was at accept, on the unix socket.
    pub process: Option<crate::process::Binding>,
    verified: Mutex<Verified>,
}

/// The outcome of the chain's last verification.
#[derive(Clone, Debug)]
struct Verified {
    /// The runtime generation it was verified under.
    generation: u64,
    /// The bot name the certificate gives under that generation's config.
    bot: Option<String>,
    /// When the earliest CRL it was checked against expires.
    until: Option<jiff::Timestamp>,
}

// === impl Conn ===

impl Conn {
    /// A connection whose handshake verified `identity`'s certificate under
    /// `rt`, which it is stamped with.
    pub fn new(
        rt: &Runtime,
        peer: Peer,
        facts: PeerFacts,
        identity: identity::PeerIdentity,
        chain: Arc<[CertificateDer<'static>]>,
        process: Option<crate::process::Binding>,
    ) -> Conn {
        let not_after = identity
            .cert
            .not_after
            .as_deref()
            .and_then(|t| t.parse().ok());
        let verified = Verified {
            generation: rt.generation,
            bot: identity.bot,
            until: rt.crl_next_update(jiff::Timestamp::now()),
        };
        Conn {
            peer,
            facts,
            cert: identity.cert,
            chain,
            not_after,
            process,
            verified: Mutex::new(verified),
        }
    }

    /// The bot name the certificate gives under `rt`'s config. The chain is
    /// verified again first when the configuration changed since it was
    /// last verified (a new CA or CRL, a reload during the handshake) or
    /// when a CRL it was checked against has expired since; the name is
    /// derived again under the current trust domain and CN rule.
    pub fn identify(
        &self,
        rt: &Runtime,
        now: jiff::Timestamp,
    ) -> Result<Option<String>, Unauthenticated> {
        let mut v = lock(&self.verified);
        let stale = v.generation != rt.generation || v.until.is_some_and(|u| u <= now);
        if stale {
            let unix = rustls::pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(now.as_second().max(0) as u64),
            );
            verify_chain(rt, &self.chain, unix)?;
            *v = Verified {
                generation: rt.generation,
                bot: identity_of(rt, &self.chain),
                until: rt.crl_next_update(now),
            };
        }
        Ok(v.bot.clone())
    }

    /// The name the certificate gave when it was last verified, for the
    /// audit record of a refused request (`claimed_bot`).
    pub fn claimed(&self) -> Option<String> {
        lock(&self.verified).bot.clone()
    }
}

/// Verifies a client chain against `rt`'s CA and CRLs.
pub(super) fn verify_chain(
    rt: &Runtime,
    chain: &[CertificateDer<'static>],
    now: rustls::pki_types::UnixTime,
) -> Result<(), Unauthenticated> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(Unauthenticated::NoClientCertificate);
    };
    rt.client_verifier
        .verify_client_cert(end_entity, intermediates, now)
        .map(|_| ())
        .map_err(|e| tls::failure_reason(Some(&e)))
}

/// The bot name a chain's certificate gives under `rt`'s identity rules.
pub(super) fn identity_of(rt: &Runtime, chain: &[CertificateDer<'static>]) -> Option<String> {
    let der = chain.first()?;
    identity::from_der(
        der,
        &rt.config.tls.trust_domain,
        rt.config.tls.allow_cn_fallback,
    )
    .bot
}
