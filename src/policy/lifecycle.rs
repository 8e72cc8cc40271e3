//! Where a bot is in its life: enabled and reviewed on time, overdue for
//! its review, quiet for too long (dormant), past its end date, or
//! disabled. Dates are calendar days in UTC: a state that applies "after" a
//! date applies from the next day's 00:00 UTC.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// What a bot's definition says of its lifecycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// Every request is refused, and its leases are revoked.
    pub disabled: bool,
    /// After this day the bot is overdue for its owner's review.
    pub review_by: Option<Date>,
    /// After this day the bot is treated as disabled.
    pub expires: Option<Date>,
    /// What an overdue review does (`[lifecycle] review_overdue`).
    pub overdue: Enforcement,
    /// A bot with no request for this long is dormant
    /// (`[lifecycle] dormant_after`).
    pub dormant_after: Option<SignedDuration>,
    /// What dormancy does (`[lifecycle] dormant`).
    pub dormant: Enforcement,
    /// The change ticket that may bring this bot back from dormancy
    /// (`[[bot]] reactivate`), when the config carries the same
    /// `[meta] change_ticket`.
    pub reactivate: Option<String>,
    /// The local account that may enroll as this bot (`[[bot]] enroll`).
    pub enroll_uid: Option<u32>,
}

/// What a lifecycle state does to requests: a warning on the record, or
/// a refusal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enforcement {
    #[default]
    Warn,
    Deny,
}

/// A bot's lifecycle state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Active,
    ReviewOverdue,
    Dormant,
    Expired,
    Disabled,
}

impl Lifecycle {
    /// The state at `now` by the config's dates alone. Disabled outranks
    /// expired, which outranks an overdue review.
    pub fn state(&self, now: Timestamp) -> State {
        self.state_at(now, None)
    }

    /// The state at `now` of a bot quiet since `quiet_since` (its last
    /// request, or when botward first knew it or last reactivated it;
    /// `None` when unknown, which is never dormant). Dormancy ranks
    /// between an end date and an overdue review.
    pub fn state_at(&self, now: Timestamp, quiet_since: Option<Timestamp>) -> State {
        let today = now.to_zoned(TimeZone::UTC).date();
        if self.disabled {
            State::Disabled
        } else if self.expires.is_some_and(|d| today > d) {
            State::Expired
        } else if self.is_dormant(now, quiet_since) {
            State::Dormant
        } else if self.review_by.is_some_and(|d| today > d) {
            State::ReviewOverdue
        } else {
            State::Active
        }
    }

    /// Whether a bot quiet since `quiet_since` has been quiet for at least
    /// `dormant_after` at `now`.
    pub fn is_dormant(&self, now: Timestamp, quiet_since: Option<Timestamp>) -> bool {
        match (self.dormant_after, quiet_since) {
            (Some(after), Some(since)) => now.duration_since(since) >= after,
            _ => false,
        }
    }

    /// Whether `state` refuses everything and takes away what the bot
    /// holds: disabled and expired always, dormant under `dormant = "deny"`.
    pub fn is_off(&self, state: State) -> bool {
        match state {
            State::Disabled | State::Expired => true,
            State::Dormant => self.dormant == Enforcement::Deny,
            State::Active | State::ReviewOverdue => false,
        }
    }
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::ReviewOverdue => "review_overdue",
            State::Dormant => "dormant",
            State::Expired => "expired",
            State::Disabled => "disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_utc_calendar_and_rank() {
        let day = |s: &str| Some(s.parse::<Date>().unwrap());
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let l = Lifecycle {
            review_by: day("2027-03-01"),
            expires: day("2027-06-30"),
            ..Lifecycle::default()
        };
        assert_eq!(l.state(at("2027-03-01T23:59:59Z")), State::Active);
        assert_eq!(l.state(at("2027-03-02T00:00:00Z")), State::ReviewOverdue);
        // A time zone does not move the day: 2027-03-02T00:30+01:00 is
        // still 2027-03-01 in UTC.
        assert_eq!(l.state(at("2027-03-02T00:30:00+01:00")), State::Active);
        assert_eq!(l.state(at("2027-07-01T00:00:00Z")), State::Expired);
        let off = Lifecycle {
            disabled: true,
            ..l.clone()
        };
        assert_eq!(off.state(at("2027-01-01T00:00:00Z")), State::Disabled);
        assert!(l.is_off(State::Disabled) && l.is_off(State::Expired));
        assert!(!l.is_off(State::ReviewOverdue) && !l.is_off(State::Dormant));
        assert_eq!(
            Lifecycle::default().state(at("9999-12-30T00:00:00Z")),
            State::Active
        );
    }

    #[test]
    fn dormancy_counts_from_the_last_request_and_ranks_below_an_end_date() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let l = Lifecycle {
            dormant_after: Some(SignedDuration::from_hours(24 * 30)),
            dormant: Enforcement::Deny,
            review_by: Some("2027-01-01".parse().unwrap()),
            ..Lifecycle::default()
        };
        let seen = Some(at("2026-12-01T12:00:00Z"));
        assert_eq!(l.state_at(at("2026-12-31T11:59:59Z"), seen), State::Active);
        assert_eq!(l.state_at(at("2026-12-31T12:00:00Z"), seen), State::Dormant);
        // Dormant outranks an overdue review; unknown activity is never
        // dormant; the config-only state ignores activity.
        assert_eq!(l.state_at(at("2027-02-01T00:00:00Z"), seen), State::Dormant);
        assert_eq!(
            l.state_at(at("2027-02-01T00:00:00Z"), None),
            State::ReviewOverdue
        );
        assert_eq!(l.state(at("2026-12-31T12:00:00Z")), State::Active);
        assert!(l.is_off(State::Dormant));
        let warn = Lifecycle {
            dormant: Enforcement::Warn,
            ..l.clone()
        };
        assert!(!warn.is_off(State::Dormant));
        let expired = Lifecycle {
            expires: Some("2026-12-15".parse().unwrap()),
            ..l
        };
        assert_eq!(
            expired.state_at(at("2027-02-01T00:00:00Z"), seen),
            State::Expired
        );
        assert!(!Lifecycle::default().is_dormant(at("9999-01-01T00:00:00Z"), seen));
    }
}
