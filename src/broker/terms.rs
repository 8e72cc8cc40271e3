//! Lease arithmetic: what a bot is told when a lease is issued or renewed,
//! and what botward asks Vault for. Pure functions of the lease, the
//! secret's `max_use` and `renew`, and the time.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// TTLs from Vault are capped at ten years, so that no value can overflow
/// a timestamp.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

/// A TTL from Vault as a duration, capped at [`MAX_TTL_SECONDS`].
pub fn ttl_duration(secs: u64) -> SignedDuration {
    SignedDuration::from_secs(secs.min(MAX_TTL_SECONDS) as i64)
}

/// The part of a lease ID before its random suffix: the Vault path it came
/// from, which may be logged.
pub fn lease_prefix(lease: &str) -> &str {
    match lease.rsplit_once('/') {
        Some((prefix, _)) => prefix,
        None => "",
    }
}

/// A lease as Vault issued or renewed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    pub ttl_seconds: u64,
    pub renewable: bool,
}

/// What botward records and tells the bot about a lease it issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtIssue {
    /// When Vault will expire it.
    pub expires: Timestamp,
    /// The hard end that `max_use` sets.
    pub max_until: Option<Timestamp>,
    /// The TTL the bot is told: Vault's, never past `max_use`.
    pub ttl_seconds: u64,
    /// Whether the bot may renew it: Vault allows it and so does `renew`.
    pub renewable: bool,
}

/// The terms of a lease Vault just issued.
pub fn at_issue(now: Timestamp, vault: Granted, max_use: Option<Duration>, renew: bool) -> AtIssue {
    let ttl_seconds = match max_use {
        Some(m) => vault.ttl_seconds.min(m.as_secs()),
        None => vault.ttl_seconds,
    };
    AtIssue {
        expires: now + ttl_duration(vault.ttl_seconds),
        max_until: max_use.map(|m| now + SignedDuration::from_secs(m.as_secs() as i64)),
        ttl_seconds,
        renewable: vault.renewable && renew,
    }
}

/// The terms of a lease issued inside an elevation window that ends at
/// `end`: its hard end is the window's at the latest, and the bot is told
/// no TTL beyond it.
pub fn within(terms: AtIssue, now: Timestamp, end: Timestamp) -> AtIssue {
    let max_until = Some(terms.max_until.map_or(end, |m| m.min(end)));
    let left = remaining(now, max_until).unwrap_or(0);
    AtIssue {
        max_until,
        ttl_seconds: terms.ttl_seconds.min(left),
        ..terms
    }
}

/// Seconds left before `max_until`, none when there is no `max_use`.
pub fn remaining(now: Timestamp, max_until: Option<Timestamp>) -> Option<u64> {
    max_until.map(|m| (m.as_second() - now.as_second()).max(0) as u64)
}

/// The increment to ask Vault for at renewal: the lease's original TTL,
/// never past `max_use`, and at least one second. `None` once `max_use`
/// is reached: the lease may not be renewed.
pub fn renew_increment(remaining: Option<u64>, original_ttl: u64) -> Option<u64> {
    if remaining == Some(0) {
        return None;
    }
    Some(
        remaining
            .map_or(original_ttl, |r| r.min(original_ttl))
            .max(1),
    )
}

/// What botward records and tells the bot about a renewed lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtRenewal {
    pub expires: Timestamp,
    pub ttl_seconds: u64,
    /// Whether it may be renewed again: Vault allows it, so does `renew`,
    /// and `max_use` leaves time beyond this TTL.
    pub renewable: bool,
}

/// The terms of a lease Vault just renewed.
pub fn at_renewal(
    now: Timestamp,
    vault: Granted,
    remaining: Option<u64>,
    renew: bool,
) -> AtRenewal {
    let ttl_seconds = remaining.map_or(vault.ttl_seconds, |r| r.min(vault.ttl_seconds));
    AtRenewal {
        expires: now + ttl_duration(vault.ttl_seconds),
        ttl_seconds,
        renewable: vault.renewable && renew && remaining.is_none_or(|r| r > ttl_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    const RENEWABLE_HOUR: Granted = Granted {
        ttl_seconds: 3600,
        renewable: true,
    };

    #[test]
    fn issue_caps_the_ttl_told_at_max_use_but_records_vaults_expiry() {
        let a = at_issue(t(0), RENEWABLE_HOUR, Some(Duration::from_secs(600)), true);
        assert_eq!(a.ttl_seconds, 600);
        assert_eq!(a.expires, t(3600));
        assert_eq!(a.max_until, Some(t(600)));
        assert!(a.renewable);
        let a = at_issue(t(0), RENEWABLE_HOUR, None, true);
        assert_eq!((a.ttl_seconds, a.max_until), (3600, None));
    }

    #[test]
    fn issue_is_renewable_only_when_vault_and_the_secret_allow_it() {
        assert!(!at_issue(t(0), RENEWABLE_HOUR, None, false).renewable);
        let fixed = Granted {
            ttl_seconds: 60,
            renewable: false,
        };
        assert!(!at_issue(t(0), fixed, None, true).renewable);
    }

    #[test]
    fn increment_is_the_original_ttl_up_to_max_use_and_none_at_it() {
        assert_eq!(renew_increment(None, 3600), Some(3600));
        assert_eq!(renew_increment(Some(100), 3600), Some(100));
        assert_eq!(renew_increment(Some(7200), 3600), Some(3600));
        assert_eq!(renew_increment(Some(0), 3600), None);
        // A lease Vault gave no TTL is still asked at least a second.
        assert_eq!(renew_increment(None, 0), Some(1));
    }

    #[test]
    fn remaining_counts_whole_seconds_to_max_use_and_never_below_zero() {
        assert_eq!(remaining(t(0), None), None);
        assert_eq!(remaining(t(0), Some(t(90))), Some(90));
        assert_eq!(remaining(t(100), Some(t(90))), Some(0));
    }

    #[test]
    fn renewal_is_renewable_again_only_with_time_left_beyond_its_ttl() {
        let r = at_renewal(t(0), RENEWABLE_HOUR, Some(100), true);
        assert_eq!(r.ttl_seconds, 100);
        assert!(!r.renewable, "max_use ends with this TTL");
        let r = at_renewal(t(0), RENEWABLE_HOUR, Some(7200), true);
        assert_eq!((r.ttl_seconds, r.renewable), (3600, true));
        assert_eq!(r.expires, t(3600));
        assert!(!at_renewal(t(0), RENEWABLE_HOUR, None, false).renewable);
    }

    #[test]
    fn ttls_are_capped_so_timestamps_cannot_overflow() {
        let a = at_issue(
            t(0),
            Granted {
                ttl_seconds: u64::MAX,
                renewable: true,
            },
            None,
            true,
        );
        assert_eq!(a.expires, t(MAX_TTL_SECONDS as i64));
    }

    #[test]
    fn the_prefix_is_the_path_before_the_random_suffix() {
        assert_eq!(
            lease_prefix("database/creds/erp/AbC123"),
            "database/creds/erp"
        );
        assert_eq!(lease_prefix("no-slash"), "");
    }

    #[test]
    fn a_lease_inside_a_window_ends_with_it() {
        let issued = at_issue(t(0), RENEWABLE_HOUR, None, true);
        let w = within(issued, t(0), t(600));
        assert_eq!(w.max_until, Some(t(600)));
        assert_eq!(w.ttl_seconds, 600);
        assert_eq!(w.expires, issued.expires);
        // max_use earlier than the window's end stays.
        let short = at_issue(t(0), RENEWABLE_HOUR, Some(Duration::from_secs(300)), true);
        assert_eq!(within(short, t(0), t(600)).max_until, Some(t(300)));
        // A window already over leaves nothing.
        assert_eq!(within(issued, t(700), t(600)).ttl_seconds, 0);
    }
}
