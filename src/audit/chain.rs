//! The record chain: hashes, forward-secure MAC keys and signed checkpoints.
//!
//! Each line is the record's JSON with two fields appended:
//!
//! ```text
//! {"v":1,"seq":7,...,"prev":"<hash of seq 6>","epoch":3,"hash":"<64 hex>","mac":"<64 hex>"}
//! ```
//!
//! - The *canonical bytes* of a record are its line up to (not including)
//!   `,"hash":`, followed by `}`. They include `prev`, so each hash covers the
//!   whole chain before it.
//! - `hash` is SHA-256 of the canonical bytes.
//! - `mac` is HMAC-SHA256 of the 32-byte hash, keyed with the key of the
//!   record's `epoch`. Epoch keys ratchet forward: k(0) = HMAC(seed, "botward
//!   audit k0"), k(e+1) = HMAC(k(e), "ratchet"). The old key is dropped (and
//!   its memory wiped) at each ratchet, so a key taken from the host later
//!   cannot re-MAC records of earlier epochs.
//! - `checkpoint` records carry an Ed25519 signature over
//!   `botward-audit-checkpoint\n<seq>\n<hash>\n<epoch>` of the record before
//!   them, so anyone with the public key can check the chain up to there.

use ring::hmac;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::identity::hex;

/// Length of the suffix `,"hash":"<64>","mac":"<64>"}`.
pub const SUFFIX_LEN: usize = 9 + 64 + 9 + 64 + 2;

/// One epoch's MAC key. The key lives in a heap block that the wiping
/// allocator clears when the key is dropped.
pub struct EpochKey {
    pub epoch: u64,
    key: Box<hmac::Key>,
    /// The raw key, for the key state file.
    raw: Zeroizing<[u8; 32]>,
}

// === impl EpochKey ===

impl EpochKey {
    /// The key of epoch 0, from the seed.
    pub fn genesis(seed: &[u8; 32]) -> EpochKey {
        let k0 = Zeroizing::new(tag_bytes(
            &hmac::Key::new(hmac::HMAC_SHA256, seed),
            b"botward audit k0",
        ));
        EpochKey::from_raw(0, &k0)
    }

    /// Restores a key from its raw bytes (the key state file).
    pub fn from_raw(epoch: u64, raw: &[u8; 32]) -> EpochKey {
        EpochKey {
            epoch,
            key: Box::new(hmac::Key::new(hmac::HMAC_SHA256, raw)),
            raw: Zeroizing::new(*raw),
        }
    }

    /// This epoch's raw key, to save as the key state.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// The next epoch's raw key bytes, k(e+1) = HMAC(k(e), "ratchet").
    pub fn next_raw(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(tag_bytes(&self.key, b"ratchet"))
    }

    /// Moves to the next epoch; this epoch's key is dropped and wiped.
    pub fn ratchet(&mut self) -> Zeroizing<[u8; 32]> {
        let raw = self.next_raw();
        *self = EpochKey::from_raw(self.epoch + 1, &raw);
        raw
    }

    pub fn mac(&self, hash: &[u8; 32]) -> [u8; 32] {
        tag_bytes(&self.key, hash)
    }

    pub fn verify(&self, hash: &[u8; 32], mac_hex: &str) -> bool {
        let want = hex(&self.mac(hash));
        crate::secret::constant_time_eq(want.as_bytes(), mac_hex.as_bytes())
    }
}

fn tag_bytes(key: &hmac::Key, msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(key, msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SHA-256 of canonical bytes.
pub fn hash(canonical: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Appends `,"hash":..,"mac":..}` and a newline to a record serialized
/// without them. `body` must end with `}`.
pub fn seal_line(body: &mut Vec<u8>, key: &EpochKey) -> [u8; 32] {
    debug_assert_eq!(body.last(), Some(&b'}'));
    let h = hash(body);
    let mac = key.mac(&h);
    body.pop();
    body.extend_from_slice(b",\"hash\":\"");
    body.extend_from_slice(hex(&h).as_bytes());
    body.extend_from_slice(b"\",\"mac\":\"");
    body.extend_from_slice(hex(&mac).as_bytes());
    body.extend_from_slice(b"\"}\n");
    h
}

/// Splits a line (without its newline) into canonical bytes, hash and MAC.
pub fn split_line(line: &[u8]) -> Option<(Vec<u8>, &str, &str)> {
    if line.len() < SUFFIX_LEN + 2 {
        return None;
    }
    let (body, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    // The suffix is ASCII by construction; anything else is not a sealed
    // line (and must not make the byte offsets below split a character).
    if !suffix.is_ascii() {
        return None;
    }
    let suffix = std::str::from_utf8(suffix).ok()?;
    let rest = suffix.strip_prefix(",\"hash\":\"")?;
    let (h, rest) = rest.split_at(64);
    let rest = rest.strip_prefix("\",\"mac\":\"")?;
    let (m, rest) = rest.split_at(64);
    if rest != "\"}" || !is_hex(h) || !is_hex(m) {
        return None;
    }
    let mut canonical = Vec::with_capacity(body.len() + 1);
    canonical.extend_from_slice(body);
    canonical.push(b'}');
    Some((canonical, h, m))
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The message a checkpoint signs.
pub fn checkpoint_message(seq: u64, hash_hex: &str, epoch: u64) -> Vec<u8> {
    format!("botward-audit-checkpoint\n{seq}\n{hash_hex}\n{epoch}").into_bytes()
}

/// Signs checkpoints.
pub struct Signer {
    pair: Box<Ed25519KeyPair>,
}

impl Signer {
    /// Generates a key pair; returns the signer and its PKCS#8 bytes.
    pub fn generate() -> Result<(Signer, Zeroizing<Vec<u8>>), String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "cannot generate an Ed25519 key".to_string())?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        Ok((Signer::from_pkcs8(&pkcs8)?, pkcs8))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Signer, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| "not an Ed25519 PKCS#8 key".to_string())?;
        Ok(Signer {
            pair: Box::new(pair),
        })
    }

    pub fn public_hex(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    pub fn sign(&self, msg: &[u8]) -> String {
        hex(self.pair.sign(msg).as_ref())
    }
}

/// Checks a checkpoint signature with a public key.
pub fn verify_signature(public_key: &[u8], msg: &[u8], sig_hex: &str) -> bool {
    let Some(sig) = unhex(sig_hex) else {
        return false;
    };
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(msg, &sig)
        .is_ok()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    unhex(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_lines_split_back_into_their_parts() {
        let key = EpochKey::genesis(&[7; 32]);
        let mut line = br#"{"v":1,"seq":0,"prev":null,"epoch":0}"#.to_vec();
        let h = seal_line(&mut line, &key);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["hash"], hex(&h));
        let (canonical, hh, mm) = split_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(canonical, br#"{"v":1,"seq":0,"prev":null,"epoch":0}"#);
        assert_eq!(hh, hex(&h));
        assert!(key.verify(&h, mm));
    }

    #[test]
    fn ratchet_is_deterministic_from_the_seed_and_one_way() {
        let mut a = EpochKey::genesis(&[1; 32]);
        let mut b = EpochKey::genesis(&[1; 32]);
        for _ in 0..5 {
            a.ratchet();
        }
        for _ in 0..5 {
            b.ratchet();
        }
        let h = [9u8; 32];
        assert_eq!(a.mac(&h), b.mac(&h));
        assert_eq!(a.epoch, 5);
        let earlier = EpochKey::genesis(&[1; 32]);
        assert_ne!(earlier.mac(&h), a.mac(&h));
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let (s, pkcs8) = Signer::generate().unwrap();
        let again = Signer::from_pkcs8(&pkcs8).unwrap();
        let msg = checkpoint_message(10, &"ab".repeat(32), 2);
        let sig = s.sign(&msg);
        let pk = unhex(&again.public_hex()).unwrap();
        assert!(verify_signature(&pk, &msg, &sig));
        assert!(!verify_signature(
            &pk,
            &checkpoint_message(11, &"ab".repeat(32), 2),
            &sig
        ));
    }

    #[test]
    fn malformed_suffixes_are_refused() {
        assert!(split_line(b"{}").is_none());
        let multibyte = format!(
            "{{\"a\":1,\"hash\":\"{}é{}\",\"mac\":\"{}\"}}",
            "0".repeat(63),
            "",
            "0".repeat(63)
        );
        assert!(split_line(multibyte.as_bytes()).is_none());
        let bad = format!(
            "{{\"a\":1,\"hash\":\"{}\",\"mac\":\"{}\"}}",
            "g".repeat(64),
            "0".repeat(64)
        );
        assert!(split_line(bad.as_bytes()).is_none());
    }
}
