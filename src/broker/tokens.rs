//! One-time enrollment tokens, in memory only: a restart voids those not
//! yet used. A token is `bwe1_<id>_<secret>`; only the SHA-256 of the
//! secret is kept, and only the ID is ever recorded.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::secret::WipedBuf;

/// Enrollment tokens outstanding at once; the one closest to expiring
/// goes first.
const MAX_TOKENS: usize = 256;
const PREFIX: &str = "bwe1_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 32;

/// Outstanding enrollment tokens, by ID.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, Token>>);

struct Token {
    bot: String,
    digest: [u8; 32],
    expires: Timestamp,
    /// Spent: kept until it expires so that a second use is recorded as
    /// such.
    used: bool,
}

/// What presenting a token came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Valid, and now used up.
    Spent,
    Used,
    Expired,
    Unknown,
    /// The ID is known, the secret is not its own.
    Mismatch,
    Malformed,
}

pub struct Spent {
    pub outcome: Outcome,
    /// The token's ID, when it was well formed.
    pub id: Option<String>,
    /// The bot it was made for, when the secret was right.
    pub bot: Option<String>,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Spent => "spent",
            Outcome::Used => "used",
            Outcome::Expired => "expired",
            Outcome::Unknown => "unknown",
            Outcome::Mismatch => "mismatch",
            Outcome::Malformed => "malformed",
        }
    }
}

impl Tokens {
    /// A new token for `bot`, valid for `ttl` from `now`: its ID, the token
    /// itself (in a wiped buffer) and when it expires. `None` without
    /// system randomness.
    pub fn issue(
        &self,
        bot: &str,
        now: Timestamp,
        ttl: SignedDuration,
    ) -> Option<(String, WipedBuf, Timestamp)> {
        let rng = ring::rand::SystemRandom::new();
        let id: [u8; ID_HEX / 2] = ring::rand::generate(&rng).ok()?.expose();
        let mut secret: [u8; SECRET_HEX / 2] = ring::rand::generate(&rng).ok()?.expose();
        let id = crate::text::hex(&id);
        let mut token = WipedBuf::with_capacity(PREFIX.len() + ID_HEX + 1 + SECRET_HEX);
        token.extend_from_slice(PREFIX.as_bytes());
        token.extend_from_slice(id.as_bytes());
        token.extend_from_slice(b"_");
        let mut hex = crate::text::hex(&secret);
        token.extend_from_slice(hex.as_bytes());
        let digest = digest(hex.as_bytes());
        zeroize::Zeroize::zeroize(&mut hex);
        zeroize::Zeroize::zeroize(&mut secret);
        let expires = now + ttl;
        let mut tokens = crate::lock(&self.0);
        tokens.retain(|_, t| t.expires > now);
        while tokens.len() >= MAX_TOKENS {
            let first = tokens
                .iter()
                .min_by_key(|(_, t)| t.expires)
                .map(|(k, _)| k.clone());
            first.map(|k| tokens.remove(&k));
        }
        let entry = Token {
            bot: bot.to_owned(),
            digest,
            expires,
            used: false,
        };
        tokens.insert(id.clone(), entry);
        Some((id, token, expires))
    }

    /// Presents `token` at `now`: a valid one is spent.
    pub fn spend(&self, token: &str, now: Timestamp) -> Spent {
        let parsed = token
            .strip_prefix(PREFIX)
            .and_then(|t| t.split_once('_'))
            .filter(|(id, s)| {
                id.len() == ID_HEX
                    && s.len() == SECRET_HEX
                    && id
                        .bytes()
                        .chain(s.bytes())
                        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            });
        let Some((id, secret)) = parsed else {
            return Spent {
                outcome: Outcome::Malformed,
                id: None,
                bot: None,
            };
        };
        let mut tokens = crate::lock(&self.0);
        let (outcome, bot) = match tokens.get_mut(id) {
            None => (Outcome::Unknown, None),
            Some(t) if digest(secret.as_bytes()) != t.digest => (Outcome::Mismatch, None),
            Some(t) if t.expires <= now => (Outcome::Expired, Some(t.bot.clone())),
            Some(t) if t.used => (Outcome::Used, Some(t.bot.clone())),
            Some(t) => {
                t.used = true;
                (Outcome::Spent, Some(t.bot.clone()))
            }
        };
        Spent {
            outcome,
            id: Some(id.to_owned()),
            bot,
        }
    }

    /// Voids the token with this ID.
    pub fn remove(&self, id: &str) {
        crate::lock(&self.0).remove(id);
    }
}

/// Certificates renewed, by serial, until they expire: each renews once,
/// so a stolen key cannot fork a bot's identity unnoticed (whichever of the
/// two renews second is refused, and that is recorded).
#[derive(Default)]
pub struct Renewals(Mutex<HashMap<String, Timestamp>>);

/// Serials remembered at once; past this the ones expiring first go.
const MAX_RENEWED: usize = 65_536;

impl Renewals {
    /// Marks `serial` (valid until `not_after`) renewed at `now`; false if
    /// it already was.
    pub fn first(&self, serial: &str, not_after: Timestamp, now: Timestamp) -> bool {
        let mut seen = crate::lock(&self.0);
        if seen.contains_key(serial) {
            return false;
        }
        if seen.len() >= MAX_RENEWED {
            seen.retain(|_, until| *until > now);
        }
        while seen.len() >= MAX_RENEWED {
            let first = seen.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone());
            first.map(|k| seen.remove(&k));
        }
        seen.insert(serial.to_owned(), not_after);
        true
    }

    /// Forgets `serial`, for a renewal that did not go through.
    pub fn undo(&self, serial: &str) {
        crate::lock(&self.0).remove(serial);
    }
}

fn digest(secret: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_spent_once_and_only_before_it_expires() {
        let tokens = Tokens::default();
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let ttl = SignedDuration::from_mins(15);
        let (id, token, expires) = tokens.issue("invoice-bot", now, ttl).unwrap();
        assert_eq!(expires, now + ttl);
        let text = std::str::from_utf8(token.expose_secret())
            .unwrap()
            .to_owned();
        assert!(text.starts_with("bwe1_") && text.contains(&id));
        let first = tokens.spend(&text, now);
        assert_eq!(first.outcome, Outcome::Spent);
        assert_eq!(first.bot.as_deref(), Some("invoice-bot"));
        assert_eq!(tokens.spend(&text, now).outcome, Outcome::Used);

        let (_, late, _) = tokens.issue("invoice-bot", now, ttl).unwrap();
        let late = std::str::from_utf8(late.expose_secret())
            .unwrap()
            .to_owned();
        assert_eq!(tokens.spend(&late, now + ttl).outcome, Outcome::Expired);

        // The right ID with another secret does not name the bot.
        let (id, _, _) = tokens.issue("invoice-bot", now, ttl).unwrap();
        let forged = format!("bwe1_{id}_{}", "0".repeat(32));
        let s = tokens.spend(&forged, now);
        assert_eq!((s.outcome, s.bot), (Outcome::Mismatch, None));
        let unknown = format!("bwe1_{}_{}", "a".repeat(16), "0".repeat(32));
        assert_eq!(tokens.spend(&unknown, now).outcome, Outcome::Unknown);
        for bad in [
            "",
            "bwe1_",
            "bwe1_zz_yy",
            &format!("bwe1_{id}_{}", "g".repeat(32)),
        ] {
            assert_eq!(tokens.spend(bad, now).outcome, Outcome::Malformed, "{bad}");
        }
        tokens.remove(&id);
    }

    #[test]
    fn a_certificate_renews_once() {
        let r = Renewals::default();
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let until = now + SignedDuration::from_hours(24);
        assert!(r.first("0a1b", until, now));
        assert!(!r.first("0a1b", until, now));
        assert!(r.first("0a1c", until, now));
        r.undo("0a1c");
        assert!(r.first("0a1c", until, now));
    }

    #[test]
    fn outstanding_tokens_are_capped() {
        let tokens = Tokens::default();
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let (_, first, _) = tokens
            .issue("invoice-bot", now, SignedDuration::from_mins(1))
            .unwrap();
        let first = std::str::from_utf8(first.expose_secret())
            .unwrap()
            .to_owned();
        for _ in 0..MAX_TOKENS {
            tokens.issue("invoice-bot", now, SignedDuration::from_mins(15));
        }
        assert_eq!(crate::lock(&tokens.0).len(), MAX_TOKENS);
        // The one closest to expiring made room.
        assert_eq!(tokens.spend(&first, now).outcome, Outcome::Unknown);
    }
}
