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
//! - `checkpoint` records carry an Ed25519 signature of the record before
//!   them, by the signing key of their epoch, over
//!   `botward-audit-checkpoint-next\n<seq>\n<hash>\n<epoch>\n<next public key>`:
//!   each checkpoint names (and signs) the public key of the next epoch.
//!
//! ## The signing key ratchets too
//!
//! The signing key of epoch e+1 comes from a hash ratchet of the previous
//! key's 32-byte Ed25519 seed: s(e+1) = HMAC(s(e), "botward audit sign
//! ratchet"). The first seed s(0) is random and independent of the MAC seed,
//! so the MAC seed (an auditor's) cannot sign. A derived key, rather than a
//! fresh one per epoch, lets every checkpoint of an epoch name the same next
//! key without the key state holding two keys; the ratchet is one-way, so
//! s(e+1) does not give s(e). The writer seals each epoch with a checkpoint
//! (which names the next public key) before it moves on, then wipes the old
//! seed from memory and from the key state.
//!
//! The first public key goes off the host with the MAC seed. A verifier that
//! holds only it walks the keys through the checkpoints: a checkpoint of
//! epoch e must verify with the key the last checkpoint of epoch e-1 named.
//! Whoever steals the key state at epoch N can sign for epoch N and later,
//! never for an earlier one.
//!
//! Logs written before signing keys ratcheted hold checkpoints signed by one
//! fixed key (a PKCS#8 file) over
//! `botward-audit-checkpoint\n<seq>\n<hash>\n<epoch>`, naming no next key.
//! Their first ratcheted checkpoint is signed by that fixed key and names a
//! fresh random key; from there on the ratchet above applies.

use ring::hmac;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::text::hex;

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

/// The message a checkpoint signed by a fixed (not ratcheting) key signs.
pub fn checkpoint_message(seq: u64, hash_hex: &str, epoch: u64) -> Vec<u8> {
    format!("botward-audit-checkpoint\n{seq}\n{hash_hex}\n{epoch}").into_bytes()
}

/// The message a checkpoint signs: the record before it, its epoch, and the
/// public key of the next epoch.
pub fn checkpoint_message_next(
    seq: u64,
    hash_hex: &str,
    epoch: u64,
    next_public_hex: &str,
) -> Vec<u8> {
    format!("botward-audit-checkpoint-next\n{seq}\n{hash_hex}\n{epoch}\n{next_public_hex}")
        .into_bytes()
}

/// One epoch's checkpoint signing key, and the public key of the next. The
/// key pair lives in a heap block that the wiping allocator clears when it
/// is dropped; the seeds are wiped on drop. No `Debug`: nothing here may be
/// printed.
pub struct EpochSigner {
    pub epoch: u64,
    pair: Box<Ed25519KeyPair>,
    /// This epoch's seed; `None` for a fixed key from before signing keys
    /// ratcheted, which exists only as PKCS#8.
    seed: Option<Zeroizing<[u8; 32]>>,
    /// The next epoch's seed: derived from `seed`, or random after a fixed
    /// key.
    next_seed: Zeroizing<[u8; 32]>,
    next_public: String,
}

// === impl EpochSigner ===

impl EpochSigner {
    /// A new chain's first signing key, from a random seed.
    pub fn generate() -> Result<EpochSigner, String> {
        EpochSigner::from_seed(0, &*random_seed()?)
    }

    /// Restores epoch `epoch`'s key from its seed (the key state).
    pub fn from_seed(epoch: u64, seed: &[u8; 32]) -> Result<EpochSigner, String> {
        let next_seed = Zeroizing::new(tag_bytes(
            &hmac::Key::new(hmac::HMAC_SHA256, seed),
            b"botward audit sign ratchet",
        ));
        Ok(EpochSigner {
            epoch,
            pair: pair_from_seed(seed)?,
            seed: Some(Zeroizing::new(*seed)),
            next_public: public_hex_of(&*pair_from_seed(&next_seed)?),
            next_seed,
        })
    }

    /// A fixed PKCS#8 key of a log from before signing keys ratcheted, at
    /// `epoch`. The key it hands over to is random.
    pub fn from_fixed_pkcs8(epoch: u64, pkcs8: &[u8]) -> Result<EpochSigner, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| "not an Ed25519 PKCS#8 key".to_string())?;
        let next_seed = random_seed()?;
        Ok(EpochSigner {
            epoch,
            pair: Box::new(pair),
            seed: None,
            next_public: public_hex_of(&*pair_from_seed(&next_seed)?),
            next_seed,
        })
    }

    /// Whether this is a fixed key from before signing keys ratcheted.
    pub fn is_fixed(&self) -> bool {
        self.seed.is_none()
    }

    /// This epoch's seed, to save as the key state; `None` for a fixed key.
    pub fn seed(&self) -> Option<&[u8; 32]> {
        self.seed.as_deref()
    }

    /// The next epoch's seed, to save as the key state before moving on.
    pub fn next_seed(&self) -> &[u8; 32] {
        &self.next_seed
    }

    /// The next epoch's key; this one is dropped (and wiped) when the caller
    /// replaces it.
    pub fn next(&self) -> Result<EpochSigner, String> {
        EpochSigner::from_seed(self.epoch + 1, &self.next_seed)
    }

    pub fn public_hex(&self) -> String {
        public_hex_of(&self.pair)
    }

    pub fn next_public_hex(&self) -> &str {
        &self.next_public
    }

    /// Signs a checkpoint of the record `seq` with hash `hash_hex`: with the
    /// next public key in the message.
    pub fn sign_checkpoint(&self, seq: u64, hash_hex: &str) -> String {
        let msg = checkpoint_message_next(seq, hash_hex, self.epoch, &self.next_public);
        hex(self.pair.sign(&msg).as_ref())
    }
}

fn pair_from_seed(seed: &[u8; 32]) -> Result<Box<Ed25519KeyPair>, String> {
    Ed25519KeyPair::from_seed_unchecked(seed)
        .map(Box::new)
        .map_err(|_| "cannot derive an Ed25519 key".to_string())
}

fn public_hex_of(pair: &Ed25519KeyPair) -> String {
    hex(pair.public_key().as_ref())
}

fn random_seed() -> Result<Zeroizing<[u8; 32]>, String> {
    use ring::rand::SecureRandom;
    let mut seed = Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(seed.as_mut())
        .map_err(|_| "no system randomness".to_string())?;
    Ok(seed)
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
        let s = EpochSigner::generate().unwrap();
        let sig = s.sign_checkpoint(10, &"ab".repeat(32));
        let pk = unhex(&s.public_hex()).unwrap();
        let msg = |seq| checkpoint_message_next(seq, &"ab".repeat(32), 0, s.next_public_hex());
        assert!(verify_signature(&pk, &msg(10), &sig));
        assert!(!verify_signature(&pk, &msg(11), &sig));
        assert!(!verify_signature(
            &pk,
            &checkpoint_message(10, &"ab".repeat(32), 0),
            &sig
        ));
    }

    #[test]
    fn the_signing_key_ratchets_deterministically_and_names_its_successor() {
        let a = EpochSigner::generate().unwrap();
        let again = EpochSigner::from_seed(0, a.seed().unwrap()).unwrap();
        assert_eq!(a.public_hex(), again.public_hex());
        let b = a.next().unwrap();
        assert_eq!(b.epoch, 1);
        assert_eq!(b.public_hex(), a.next_public_hex());
        assert_ne!(b.public_hex(), a.public_hex());
        assert_eq!(b.next().unwrap().public_hex(), b.next_public_hex());
        // A fixed key hands over to a random one, which then ratchets.
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let f = EpochSigner::from_fixed_pkcs8(4, pkcs8.as_ref()).unwrap();
        assert!(f.is_fixed() && f.seed().is_none());
        let g = f.next().unwrap();
        assert_eq!(
            (g.epoch, g.public_hex()),
            (5, f.next_public_hex().to_owned())
        );
        assert!(!g.is_fixed());
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
