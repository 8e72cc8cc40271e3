//! A bot's identity, read from the client certificate that rustls has already
//! verified: the URI SAN `spiffe://<trust-domain>/bot/<name>`, or the subject
//! CN when the config allows that fallback.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use crate::audit::CertInfo;
use crate::policy::is_valid_name;
pub use crate::text::hex;

/// Who is calling, as far as the certificate tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The bot name the certificate claims; whether that bot is registered is
    /// for the policy to decide, per request.
    pub bot: Option<String>,
    pub cert: CertInfo,
}

/// Longest serial number recorded, in bytes.
const MAX_SERIAL_BYTES: usize = 32;

/// Hex SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Reads the identity from a DER certificate. A certificate that does not
/// parse yields only its fingerprint.
pub fn from_der(der: &[u8], trust_domain: &str, allow_cn_fallback: bool) -> PeerIdentity {
    let sha256 = fingerprint(der);
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return PeerIdentity {
            bot: None,
            cert: CertInfo {
                sha256,
                serial: String::new(),
                not_after: None,
            },
        };
    };
    // RFC 5280 serials are at most 20 octets; a refused certificate may
    // carry any length, and its serial is written to the audit log.
    let serial = cert.raw_serial();
    let info = CertInfo {
        sha256,
        serial: hex(&serial[..serial.len().min(MAX_SERIAL_BYTES)]),
        not_after: jiff::Timestamp::from_second(cert.validity().not_after.timestamp())
            .ok()
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    };
    PeerIdentity {
        bot: bot_name(&cert, trust_domain, allow_cn_fallback),
        cert: info,
    }
}

fn bot_name(
    cert: &X509Certificate<'_>,
    trust_domain: &str,
    allow_cn_fallback: bool,
) -> Option<String> {
    let prefix = format!("spiffe://{trust_domain}/bot/");
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push(*uri);
            }
        }
    }
    let spiffe: Vec<&str> = uris
        .iter()
        .filter(|u| u.starts_with("spiffe://"))
        .copied()
        .collect();
    // A certificate with several SPIFFE IDs is ambiguous: refuse it.
    match spiffe.as_slice() {
        [one] => {
            let name = one.strip_prefix(&prefix)?;
            return is_valid_name(name).then(|| name.to_owned());
        }
        [] => {}
        _ => return None,
    }
    if !allow_cn_fallback {
        return None;
    }
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    is_valid_name(cn).then(|| cn.to_owned())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    fn cert_with(sans: &[&str], cn: &str) -> Vec<u8> {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans
            .iter()
            .map(|s| SanType::URI(s.to_string().try_into().unwrap()))
            .collect();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn spiffe_uri_names_the_bot() {
        let der = cert_with(&["spiffe://corp.example/bot/invoice-bot"], "ignored");
        let id = from_der(&der, "corp.example", false);
        assert_eq!(id.bot.as_deref(), Some("invoice-bot"));
        assert_eq!(id.cert.sha256.len(), 64);
        assert!(id.cert.not_after.is_some());
    }

    #[test]
    fn identities_that_must_not_name_a_bot() {
        let cases = [
            (
                cert_with(&["spiffe://other.example/bot/invoice-bot"], "invoice-bot"),
                false,
            ),
            (
                cert_with(&["spiffe://corp.example/workload/invoice-bot"], "x"),
                false,
            ),
            (
                cert_with(&["spiffe://corp.example/bot/../admin"], "x"),
                false,
            ),
            (cert_with(&["spiffe://corp.example/bot/a/b"], "x"), false),
            (
                cert_with(
                    &["spiffe://corp.example/bot/a", "spiffe://corp.example/bot/b"],
                    "a",
                ),
                true,
            ),
            (cert_with(&[], "invoice-bot"), false),
        ];
        for (i, (der, cn_fallback)) in cases.iter().enumerate() {
            assert_eq!(
                from_der(der, "corp.example", *cn_fallback).bot,
                None,
                "case {i}"
            );
        }
    }

    #[test]
    fn cn_fallback_only_when_allowed() {
        let der = cert_with(&[], "legacy-bot");
        assert_eq!(
            from_der(&der, "corp.example", true).bot.as_deref(),
            Some("legacy-bot")
        );
        assert_eq!(from_der(&der, "corp.example", false).bot, None);
    }

    #[test]
    fn garbage_yields_only_a_fingerprint() {
        let id = from_der(b"not a certificate", "corp.example", true);
        assert_eq!(id.bot, None);
        assert_eq!(id.cert.sha256, fingerprint(b"not a certificate"));
    }
}
