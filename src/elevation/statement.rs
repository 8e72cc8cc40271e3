//! An approver's decision: a statement, signed with the key of the
//! approver's certificate. The signature covers the statement's exact
//! bytes, so nothing is canonicalised: what was signed is what is parsed.

use std::sync::Arc;

use jiff::Timestamp;
use rustls::pki_types::PrivateKeyDer;
use rustls::SignatureScheme;
use serde::{Deserialize, Serialize};

/// The statement's `type`: it names what is signed, so that a signature
/// made for something else never passes for a decision.
pub const STATEMENT_TYPE: &str = "botward.elevation.decision.v1";

/// The longest statement accepted, in bytes.
pub const MAX_STATEMENT: usize = 4096;

/// The longest signed decision accepted, as JSON.
pub const MAX_SIGNED: usize = 16 * 1024;

/// What an approver decides about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
    Revoke,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Revoke => "revoke",
        }
    }
}

/// What the approver signs: the request it answers, everything that
/// request asked for, the window granted (for an approval) and who signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "type")]
    pub kind: String,
    pub decision: Verdict,
    pub request: String,
    pub bot: String,
    pub secret: String,
    pub host: String,
    pub ticket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    pub approver: String,
    pub signed_at: Timestamp,
}

/// A signed decision as it travels: through the Vault mailbox, in a file,
/// or in `POST /v1/elevations/{id}/decisions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The statement, as the JSON text that was signed.
    pub statement: String,
    /// `ed25519`, `ecdsa-p256-sha256`, `ecdsa-p384-sha384` or
    /// `rsa-pss-sha256`.
    pub scheme: String,
    /// The signature, hex.
    pub signature: String,
}

/// Why a signed decision does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unverified {
    /// Too long, not JSON, or not a decision statement.
    Malformed,
    /// The signature scheme is not one botward accepts.
    UnknownScheme,
    /// The certificate's key did not make this signature over these bytes.
    BadSignature,
}

impl Unverified {
    pub fn as_str(self) -> &'static str {
        match self {
            Unverified::Malformed => "malformed_decision",
            Unverified::UnknownScheme => "unknown_scheme",
            Unverified::BadSignature => "bad_signature",
        }
    }
}

/// The schemes an approver's key may sign with, in the order offered.
const SCHEMES: &[(SignatureScheme, &str)] = &[
    (SignatureScheme::ED25519, "ed25519"),
    (SignatureScheme::ECDSA_NISTP256_SHA256, "ecdsa-p256-sha256"),
    (SignatureScheme::ECDSA_NISTP384_SHA384, "ecdsa-p384-sha384"),
    (SignatureScheme::RSA_PSS_SHA256, "rsa-pss-sha256"),
];

/// Signs `statement` with `key` (PKCS#8, SEC1 or PKCS#1, as PEM files hold
/// them).
pub fn sign(statement: &Statement, key: &PrivateKeyDer<'_>) -> Result<Signed, String> {
    let text = serde_json::to_string(statement).map_err(|e| e.to_string())?;
    let key: Arc<dyn rustls::sign::SigningKey> =
        rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|_| "the key is not an Ed25519, ECDSA P-256/P-384 or RSA key".to_owned())?;
    let offered: Vec<SignatureScheme> = SCHEMES.iter().map(|(s, _)| *s).collect();
    let signer = key
        .choose_scheme(&offered)
        .ok_or("the key cannot sign with any accepted scheme")?;
    let name = SCHEMES
        .iter()
        .find(|(s, _)| *s == signer.scheme())
        .map(|(_, n)| *n)
        .ok_or("the key chose a scheme botward does not accept")?;
    let sig = signer
        .sign(text.as_bytes())
        .map_err(|_| "signing failed".to_owned())?;
    Ok(Signed {
        statement: text,
        scheme: name.to_owned(),
        signature: crate::text::hex(&sig),
    })
}

/// The statement, if `signed` verifies under the public key of `cert_der`.
pub fn verify(signed: &Signed, cert_der: &[u8]) -> Result<Statement, Unverified> {
    use ring::signature;
    use x509_parser::prelude::{FromDer, X509Certificate};
    if signed.statement.len() > MAX_STATEMENT {
        return Err(Unverified::Malformed);
    }
    let alg: &dyn signature::VerificationAlgorithm = match signed.scheme.as_str() {
        "ed25519" => &signature::ED25519,
        "ecdsa-p256-sha256" => &signature::ECDSA_P256_SHA256_ASN1,
        "ecdsa-p384-sha384" => &signature::ECDSA_P384_SHA384_ASN1,
        "rsa-pss-sha256" => &signature::RSA_PSS_2048_8192_SHA256,
        _ => return Err(Unverified::UnknownScheme),
    };
    let sig = unhex(&signed.signature).ok_or(Unverified::Malformed)?;
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| Unverified::BadSignature)?;
    let key = &cert.public_key().subject_public_key.data;
    signature::UnparsedPublicKey::new(alg, key.as_ref())
        .verify(signed.statement.as_bytes(), &sig)
        .map_err(|_| Unverified::BadSignature)?;
    let statement: Statement =
        serde_json::from_str(&signed.statement).map_err(|_| Unverified::Malformed)?;
    if statement.kind != STATEMENT_TYPE {
        return Err(Unverified::Malformed);
    }
    Ok(statement)
}

/// Whether the certificate `cert_der` is within its validity dates at
/// `now`. An unreadable certificate is not.
pub fn cert_valid_at(cert_der: &[u8], now: Timestamp) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(cert_der).is_ok_and(|(_, c)| {
        let v = c.validity();
        (v.not_before.timestamp()..=v.not_after.timestamp()).contains(&now.as_second())
    })
}

/// Whether a certificate's key is one approvals can be verified with.
pub fn supported_key(cert_der: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|_| "not an X.509 certificate".to_owned())?;
    let oid = cert.public_key().algorithm.algorithm.to_id_string();
    match oid.as_str() {
        // Ed25519, EC public key, RSA.
        "1.3.101.112" | "1.2.840.10045.2.1" | "1.2.840.113549.1.1.1" => Ok(()),
        _ => Err(format!("its key type ({oid}) is not Ed25519, ECDSA or RSA")),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 2 * 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn statement() -> Statement {
        Statement {
            kind: STATEMENT_TYPE.into(),
            decision: Verdict::Approve,
            request: "0123456789abcdef0123456789abcdef".into(),
            bot: "invoice-bot".into(),
            secret: "sap-admin".into(),
            host: "rpa-01".into(),
            ticket: "CHG-1234".into(),
            not_before: Some("2026-12-01T10:00:00Z".parse().unwrap()),
            not_after: Some("2026-12-01T10:15:00Z".parse().unwrap()),
            approver: "finance-lead@corp.example".into(),
            signed_at: "2026-12-01T10:00:00Z".parse().unwrap(),
        }
    }

    fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["approver".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        (cert.der().to_vec(), der)
    }

    #[test]
    fn each_key_type_signs_and_verifies() {
        for alg in [
            &rcgen::PKCS_ED25519,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let (cert, key) = keypair(alg);
            let signed = sign(&statement(), &key).unwrap();
            assert_eq!(verify(&signed, &cert), Ok(statement()), "{alg:?}");
            supported_key(&cert).unwrap();
        }
    }

    #[test]
    fn a_changed_byte_another_key_or_scheme_does_not_verify() {
        let (cert, key) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (other_cert, _) = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let signed = sign(&statement(), &key).unwrap();
        let tampered = Signed {
            statement: signed.statement.replace("10:15:00", "11:15:00"),
            ..signed.clone()
        };
        assert_eq!(verify(&tampered, &cert), Err(Unverified::BadSignature));
        assert_eq!(verify(&signed, &other_cert), Err(Unverified::BadSignature));
        let scheme = Signed {
            scheme: "ecdsa-p384-sha384".into(),
            ..signed.clone()
        };
        assert_eq!(verify(&scheme, &cert), Err(Unverified::BadSignature));
        let unknown = Signed {
            scheme: "rsa-pkcs1-sha1".into(),
            ..signed.clone()
        };
        assert_eq!(verify(&unknown, &cert), Err(Unverified::UnknownScheme));
        let garbled = Signed {
            signature: "zz".into(),
            ..signed
        };
        assert_eq!(verify(&garbled, &cert), Err(Unverified::Malformed));
    }

    #[test]
    fn a_signature_over_anything_but_a_decision_is_not_one() {
        let (cert, key) = keypair(&rcgen::PKCS_ED25519);
        let mut s = statement();
        s.kind = "something.else".into();
        let signed = sign(&s, &key).unwrap();
        assert_eq!(verify(&signed, &cert), Err(Unverified::Malformed));
    }
}
