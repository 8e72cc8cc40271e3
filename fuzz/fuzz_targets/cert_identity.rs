//! Bot identity from a client certificate (`identity::from_der`).
//!
//! Input: a mode byte, a flags byte, then
//! - mode even: the DER bytes of a certificate, as the peer sent them;
//! - mode odd: a subject CN and up to four URI SANs separated by NUL bytes,
//!   made into a real certificate with rcgen, so that the answer is known.
//!
//! Flags: bit 0 allows the CN fallback, bits 1-2 pick the trust domain.
//!
//! Invariants:
//! - a bot name is always in the name alphabet (`is_valid_name`), and comes
//!   from the one SPIFFE URI `spiffe://<trust domain>/bot/<name>` in the
//!   certificate, or, only with the fallback allowed, from its subject CN;
//! - for a built certificate, the name is exactly the one the rules give
//!   (one SPIFFE URI: its bot name if valid; several: none; none: the CN
//!   when allowed and valid);
//! - the fingerprint is the SHA-256 of the bytes, the serial lower-case
//!   hex, `not_after` an RFC 3339 UTC second;
//! - the same bytes give the same identity, and nothing panics.

#![no_main]

use std::sync::OnceLock;

use botward::policy::is_valid_name;
use botward::identity::{fingerprint, from_der, PeerIdentity};
use libfuzzer_sys::fuzz_target;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};

const TRUST_DOMAINS: [&str; 4] = ["corp.example", "example.org", "a", "x-y_z.0"];

fuzz_target!(|data: &[u8]| {
    let [mode, flags, rest @ ..] = data else {
        return;
    };
    let cn_fallback = flags & 1 != 0;
    let td = TRUST_DOMAINS[usize::from(flags >> 1) & 3];
    if mode & 1 == 0 {
        check(rest, td, cn_fallback);
        return;
    }
    let mut fields = rest.split(|b| *b == 0);
    let cn = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let uris: Vec<String> = fields
        .take(4)
        .filter_map(|f| std::str::from_utf8(f).ok())
        .filter(|u| u.is_ascii())
        .map(str::to_owned)
        .collect();
    // CN as UTF8String or, with flags bit 3, as BMPString.
    let bmp = flags & 8 != 0;
    let Some(der) = build(&cn, &uris, bmp) else {
        return;
    };
    let id = check(&der, td, cn_fallback);
    let spiffe: Vec<&String> = uris.iter().filter(|u| u.starts_with("spiffe://")).collect();
    let prefix = format!("spiffe://{td}/bot/");
    let want = match spiffe.as_slice() {
        [one] => one
            .strip_prefix(&prefix)
            .filter(|n| is_valid_name(n))
            .map(str::to_owned),
        [] if cn_fallback && !bmp && is_valid_name(&cn) => Some(cn.clone()),
        _ => None,
    };
    if bmp && spiffe.is_empty() {
        // A BMPString CN may or may not be read; either way it obeys the
        // rules checked above.
        assert!(id.bot.is_none() || id.bot.as_deref() == Some(cn.as_str()));
    } else {
        assert_eq!(
            id.bot, want,
            "cn {cn:?}, uris {uris:?}, td {td}, fallback {cn_fallback}"
        );
    }
});

/// The invariants that hold for any bytes; returns the identity.
fn check(der: &[u8], td: &str, cn_fallback: bool) -> PeerIdentity {
    let id = from_der(der, td, cn_fallback);
    assert_eq!(id.cert.sha256, fingerprint(der));
    assert!(is_lower_hex(&id.cert.sha256) && id.cert.sha256.len() == 64);
    assert!(is_lower_hex(&id.cert.serial) && id.cert.serial.len() % 2 == 0);
    if let Some(t) = &id.cert.not_after {
        assert_eq!(t.len(), 20, "{t}");
        assert!(
            t.ends_with('Z') && t.parse::<jiff::Timestamp>().is_ok(),
            "{t}"
        );
    }
    if let Some(name) = &id.bot {
        assert!(is_valid_name(name), "bot name {name:?}");
        let uri = format!("spiffe://{td}/bot/{name}");
        let from_uri = contains(der, uri.as_bytes());
        assert!(
            from_uri || (cn_fallback && contains(der, name.as_bytes())),
            "bot name {name:?} is in neither a SPIFFE URI nor an allowed CN"
        );
    }
    assert_eq!(from_der(der, td, cn_fallback), id);
    id
}

fn build(cn: &str, uris: &[String], bmp: bool) -> Option<Vec<u8>> {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    let key = KEY.get_or_init(|| KeyPair::generate().expect("key pair"));
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .filter_map(|u| Some(SanType::URI(u.clone().try_into().ok()?)))
        .collect();
    if params.subject_alt_names.len() != uris.len() {
        return None;
    }
    let mut dn = DistinguishedName::new();
    let value = if bmp {
        DnValue::BmpString(cn.try_into().ok()?)
    } else {
        DnValue::Utf8String(cn.to_owned())
    };
    dn.push(DnType::CommonName, value);
    params.distinguished_name = dn;
    Some(params.self_signed(key).ok()?.der().to_vec())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
