//! Weekly time windows in which a bot may fetch secrets.

use std::fmt;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// When a bot may fetch secrets: one or more weekly windows in one time zone,
/// e.g. `Mon-Fri 06:00-20:00 Europe/Berlin` or
/// `Mon-Fri 06:00-12:00,13:00-20:00; Sat 08:00-12:00 UTC`.
///
/// A window whose end is not after its start runs overnight into the next
/// day; the day list names the day it starts on. Without a zone the host's
/// local zone is used.
#[derive(Clone, Debug)]
pub struct Schedule {
    windows: Vec<Window>,
    tz: TimeZone,
    source: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// Bit 0 is Monday, bit 6 Sunday.
    days: u8,
    start: u16,
    end: u16,
}

const ALL_DAYS: u8 = 0x7f;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// === impl Schedule ===

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let mut tokens: Vec<&str> = s.split_whitespace().collect();
        if tokens.is_empty() {
            return Err("empty schedule".into());
        }
        let last = tokens[tokens.len() - 1];
        let tz = if looks_like_zone(last) {
            tokens.pop();
            TimeZone::get(last)
                .ok()
                .filter(|tz| !tz.is_unknown())
                .ok_or_else(|| format!("unknown time zone {last:?}"))?
        } else {
            TimeZone::system()
        };
        let body = tokens.join(" ");
        let mut windows = Vec::new();
        for part in body.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (days, times) = match words.as_slice() {
                [] => return Err("empty window between ';'".into()),
                [one] if one.as_bytes()[0].is_ascii_digit() => (ALL_DAYS, Some(*one)),
                [one] => (parse_days(one)?, None),
                [d, t] => (parse_days(d)?, Some(*t)),
                _ => {
                    return Err(format!(
                        "cannot read window {:?}; expected DAYS HH:MM-HH:MM",
                        part.trim()
                    ))
                }
            };
            match times {
                None => windows.push(Window {
                    days,
                    start: 0,
                    end: 24 * 60,
                }),
                Some(t) => {
                    for range in t.split(',') {
                        let (a, b) = range.split_once('-').ok_or_else(|| {
                            format!("time range {range:?} must look like 06:00-20:00")
                        })?;
                        let (start, end) = (parse_time(a)?, parse_time(b)?);
                        if start == end || start >= 24 * 60 {
                            return Err(format!("time range {range:?} is empty"));
                        }
                        windows.push(Window { days, start, end });
                    }
                }
            }
        }
        Ok(Schedule {
            windows,
            tz,
            source: s.to_owned(),
        })
    }

    /// Whether `now` falls inside one of the windows, judged in the
    /// schedule's zone.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u8;
        let prev = (day + 6) % 7;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.windows.iter().any(|w| {
            let on = |d: u8| w.days & (1 << d) != 0;
            if w.start < w.end {
                on(day) && (w.start..w.end).contains(&minute)
            } else {
                (on(day) && minute >= w.start) || (on(prev) && minute < w.end)
            }
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn time_zone(&self) -> TimeZone {
        self.tz.clone()
    }

    pub fn time_zone_name(&self) -> Option<&str> {
        self.tz.iana_name()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn looks_like_zone(token: &str) -> bool {
    token.contains('/') || token.eq_ignore_ascii_case("utc") || token.eq_ignore_ascii_case("local")
}

fn parse_days(s: &str) -> Result<u8, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "daily" || lower == "*" {
        return Ok(ALL_DAYS);
    }
    let day = |d: &str| {
        DAY_NAMES
            .iter()
            .position(|n| *n == d)
            .map(|i| i as u8)
            .ok_or_else(|| format!("unknown day {d:?}; use Mon, Tue, Wed, Thu, Fri, Sat, Sun"))
    };
    let mut mask = 0u8;
    for item in lower.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(item)?,
        }
    }
    Ok(mask)
}

fn parse_time(s: &str) -> Result<u16, String> {
    let bad = || format!("time {s:?} must look like 06:30");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|c| c.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Schedule {
    /// The windows as (day mask, bit 0 Monday; start minute; end minute),
    /// for the fuzz targets in `fuzz/`.
    #[doc(hidden)]
    pub fn fuzz_windows(&self) -> Vec<(u8, u16, u16)> {
        self.windows
            .iter()
            .map(|w| (w.days, w.start, w.end))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedule_windows() {
        let s = Schedule::parse("Mon-Fri 06:00-12:00,13:00-20:00; Sat 22:00-02:00 UTC").unwrap();
        // 2026-11-23 is a Monday.
        assert!(s.contains(ts("2026-11-23T06:00:00Z")));
        assert!(!s.contains(ts("2026-11-23T05:59:59Z")));
        assert!(!s.contains(ts("2026-11-23T12:30:00Z")));
        assert!(s.contains(ts("2026-11-23T19:59:00Z")));
        assert!(!s.contains(ts("2026-11-23T20:00:00Z")));
        // Saturday night into Sunday morning.
        assert!(s.contains(ts("2026-11-28T23:00:00Z")));
        assert!(s.contains(ts("2026-11-29T01:59:00Z")));
        assert!(!s.contains(ts("2026-11-29T02:00:00Z")));
        assert!(!s.contains(ts("2026-11-29T22:00:00Z")));
    }

    #[test]
    fn schedule_follows_daylight_saving_in_its_zone() {
        let s = Schedule::parse("daily 06:00-07:00 Europe/Berlin").unwrap();
        // Winter: 06:30 Berlin = 05:30 UTC; summer: 06:30 Berlin = 04:30 UTC.
        assert!(s.contains(ts("2026-01-15T05:30:00Z")));
        assert!(!s.contains(ts("2026-01-15T04:30:00Z")));
        assert!(s.contains(ts("2026-07-15T04:30:00Z")));
        assert!(!s.contains(ts("2026-07-15T05:30:00Z")));
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("Mon-Fry 06:00-20:00", "unknown day"),
            ("Mon 6:00-20:00", "must look like"),
            ("Mon 06:00-25:00", "must look like"),
            ("Mon 06:00-06:00", "empty"),
            ("Mon 06:00-20:00 Mars/Olympus", "unknown time zone"),
            ("Mon 06:00 20:00 x", "cannot read window"),
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn times_with_a_sign_are_refused() {
        // `u16::from_str` takes a leading '+'; a time is two digits and a
        // colon, nothing else.
        for bad in ["06:+0-00:+0", "Mon +6:00-20:00", "Mon 06:00-+8:00"] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains("must look like"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_unknown_zone_marker_is_not_a_zone() {
        // jiff resolves `Etc/Unknown`, in any case, to its marker for a zone
        // it could not find, which behaves as UTC.
        for bad in ["Mon 06:00-20:00 Etc/Unknown", "* \u{85} Etc/unknOwN\u{b}"] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains("unknown time zone"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn day_ranges_wrap_around_the_week() {
        assert_eq!(parse_days("Fri-Mon").unwrap(), 0b111_0001);
        assert_eq!(parse_days("Mon,Wed").unwrap(), 0b000_0101);
        assert_eq!(parse_days("daily").unwrap(), ALL_DAYS);
    }
}
