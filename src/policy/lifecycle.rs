//! Where a bot is in its life: enabled and reviewed on time, overdue for
//! its review, past its end date, or disabled. Dates are calendar days in
//! UTC: a state that applies "after" a date applies from the next day's
//! 00:00 UTC.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

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
    Expired,
    Disabled,
}

impl Lifecycle {
    /// The state at `now`. Disabled outranks expired, which outranks an
    /// overdue review.
    pub fn state(&self, now: Timestamp) -> State {
        let today = now.to_zoned(TimeZone::UTC).date();
        if self.disabled {
            State::Disabled
        } else if self.expires.is_some_and(|d| today > d) {
            State::Expired
        } else if self.review_by.is_some_and(|d| today > d) {
            State::ReviewOverdue
        } else {
            State::Active
        }
    }
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::ReviewOverdue => "review_overdue",
            State::Expired => "expired",
            State::Disabled => "disabled",
        }
    }

    /// Whether nothing at all is served in this state.
    pub fn is_off(self) -> bool {
        matches!(self, State::Expired | State::Disabled)
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
        assert!(State::Disabled.is_off() && State::Expired.is_off());
        assert!(!State::ReviewOverdue.is_off());
        assert_eq!(
            Lifecycle::default().state(at("9999-12-30T00:00:00Z")),
            State::Active
        );
    }
}
