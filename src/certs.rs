//! A small CA for development and tests: a CA, a server certificate for the
//! loopback names, bot certificates with the SPIFFE URI SAN and client-auth
//! EKU, and CRLs. Production certificates come from the organisation's CA or
//! Vault PKI.

pub mod pfx;

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};

/// A CA that can issue certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
    /// The DER of `cert_pem` (for a loaded CA, the file's certificate, not
    /// the re-signed one that rcgen issues from).
    cert_der: Vec<u8>,
}

/// A certificate and its private key, PEM and DER.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
    /// The serial number, big-endian.
    pub serial: Vec<u8>,
}

/// Validity of an issued certificate, counted from now.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// Days before now the certificate starts (so clock skew does not matter).
    pub starts_days_ago: u64,
    /// Days after now it ends; negative for an already expired certificate.
    pub ends_in_days: i64,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            starts_days_ago: 1,
            ends_in_days: 365,
        }
    }
}

#[derive(Debug)]
pub struct CertError(pub String);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertError {}

fn err(e: impl std::fmt::Display) -> CertError {
    CertError(e.to_string())
}

// === impl Ca ===

impl Ca {
    pub fn generate(common_name: &str) -> Result<Ca, CertError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(common_name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.serial_number = Some(random_serial());
        set_validity(
            &mut p,
            Validity {
                starts_days_ago: 1,
                ends_in_days: 3650,
            },
        );
        let cert = p.self_signed(&key).map_err(err)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().to_vec();
        Ok(Ca {
            cert,
            key,
            cert_pem,
            cert_der,
        })
    }

    /// Loads a CA written by [`Ca::write`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, CertError> {
        let cert_pem = std::fs::read_to_string(cert_path)
            .map_err(|e| CertError(format!("{}: {e}", cert_path.display())))?;
        let key_pem = zeroize::Zeroizing::new(
            std::fs::read_to_string(key_path)
                .map_err(|e| CertError(format!("{}: {e}", key_path.display())))?,
        );
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| CertError(format!("{}: {e}", key_path.display())))?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(|e| CertError(format!("{}: {e}", cert_path.display())))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CertError(format!("{}: {e}", cert_path.display())))?
            .to_vec();
        // Re-signing yields an issuer with the same name and key.
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Ca {
            cert,
            key,
            cert_pem,
            cert_der,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Writes `ca.pem` and `ca-key.pem` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        write_file(&dir.join("ca.pem"), &self.cert_pem, 0o644)?;
        write_file(&dir.join("ca-key.pem"), &self.key.serialize_pem(), 0o600)
    }

    /// A server certificate for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued, CertError> {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(names.first().copied().unwrap_or("localhost"));
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*n).try_into().map_err(err)?)),
            })
            .collect::<Result<_, CertError>>()?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(p, Validity::default())
    }

    /// A bot certificate: URI SAN `spiffe://<trust_domain>/bot/<name>`, CN
    /// the bot name, EKU client auth.
    pub fn issue_bot(
        &self,
        trust_domain: &str,
        name: &str,
        validity: Validity,
    ) -> Result<Issued, CertError> {
        let uri = format!("spiffe://{trust_domain}/bot/{name}");
        self.issue_client(&[uri.as_str()], name, validity)
    }

    /// A client certificate with arbitrary URI SANs, for edge cases.
    pub fn issue_client(
        &self,
        uris: &[&str],
        common_name: &str,
        validity: Validity,
    ) -> Result<Issued, CertError> {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(common_name);
        p.subject_alt_names = uris
            .iter()
            .map(|u| Ok(SanType::URI((*u).try_into().map_err(err)?)))
            .collect::<Result<_, CertError>>()?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(p, validity)
    }

    /// A CRL revoking the given serial numbers, valid for a week.
    pub fn crl(&self, revoked: &[&[u8]]) -> Result<String, CertError> {
        self.crl_until(revoked, 7 * 86400)
    }

    /// A CRL whose `nextUpdate` is `next_update_s` seconds from now; a
    /// negative value makes one that has already expired.
    pub fn crl_until(&self, revoked: &[&[u8]], next_update_s: i64) -> Result<String, CertError> {
        let unix = |t: jiff::Timestamp| {
            time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(err)
        };
        let now_ts = jiff::Timestamp::now();
        let next = now_ts
            .checked_add(jiff::SignedDuration::from_secs(next_update_s))
            .map_err(err)?;
        let this = now_ts
            .min(next)
            .checked_sub(jiff::SignedDuration::from_secs(3600))
            .map_err(err)?;
        let now = unix(this)?;
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: unix(next)?,
            crl_number: random_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .map_err(err)?
            .pem()
            .map_err(err)
    }

    fn sign(&self, mut p: CertificateParams, validity: Validity) -> Result<Issued, CertError> {
        let serial = random_serial();
        let serial_bytes = serial.to_bytes();
        p.serial_number = Some(serial);
        set_validity(&mut p, validity);
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &self.cert, &self.key).map_err(err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial: serial_bytes,
        })
    }
}

// === impl Issued ===

impl Issued {
    /// Writes `<stem>.pem` and `<stem>-key.pem` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), CertError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        write_file(&cert, &self.cert_pem, 0o644)?;
        write_file(&key, &self.key_pem, 0o600)?;
        Ok((cert, key))
    }
}

impl Drop for Issued {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key_pem.zeroize();
        self.key_der.zeroize();
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "botward");
    dn
}

fn random_serial() -> SerialNumber {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    let _ = SystemRandom::new().fill(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

/// Midnight UTC `days` days from today (negative for the past), as rcgen's
/// date type.
fn rcgen_now(days: i64) -> time::OffsetDateTime {
    let date = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let date = date
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(date);
    rcgen::date_time_ymd(date.year() as i32, date.month() as u8, date.day() as u8)
}

fn set_validity(p: &mut CertificateParams, v: Validity) {
    p.not_before = rcgen_now(-(v.starts_days_ago as i64));
    p.not_after = rcgen_now(v.ends_in_days);
}

/// Writes a file with the given mode, replacing any old one.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    write_bytes(path, contents.as_bytes(), mode)
}

/// [`write_file`] for bytes.
pub fn write_bytes(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = crate::platform::create_new(path, mode)
        .map_err(|e| CertError(format!("{}: {e}", path.display())))?;
    f.write_all(contents)
        .map_err(|e| CertError(format!("{}: {e}", path.display())))
}
