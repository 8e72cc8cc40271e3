//! Durations in the config: `15m`, `90s`, `2h`, `1h30m`, `7d`.
//!
//! Every step of the arithmetic is checked: a number or a sum too large for
//! the seconds counter is refused as too long, never wrapped.

use std::time::Duration;

/// The longest duration accepted, in seconds: a century, since the server
/// adds these to the current time.
const MAX_SECS: u64 = 36_500 * 86_400;

/// Parses a duration like `15m`, `90s`, `2h` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like \"15m\", \"90s\" or \"1h30m\"");
    let too_long = || format!("{s:?} is longer than 36500d");
    let mut total = 0u64;
    let mut num: Option<u64> = None;
    let mut any = false;
    for c in s.trim().chars() {
        if let Some(digit) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(too_long)?,
            );
            continue;
        }
        let n = num.take().ok_or_else(bad)?;
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|t| t.checked_add(total))
            .ok_or_else(too_long)?;
        any = true;
    }
    if num.is_some() || !any || total == 0 {
        return Err(bad());
    }
    if total > MAX_SECS {
        return Err(too_long());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("45s").unwrap().as_secs(), 45);
        for bad in ["", "15", "m", "1x", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_unit_and_combination_parses() {
        for (text, secs) in [
            ("1s", 1),
            ("2m", 120),
            ("3h", 10_800),
            ("7d", 604_800),
            ("1d2h3m4s", 93_784),
            ("90s", 90),
            ("  15m  ", 900),
            ("007s", 7),
            ("1h1h", 7200),
            ("0m30s", 30),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_durations_name_the_expected_form() {
        for bad in [
            "", "   ", "15", "m", "1x", "0s", "0d0h", "1 h", "-5s", "+5s", "1.5h", "1m30",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(
                err,
                format!("{bad:?} is not a duration like \"15m\", \"90s\" or \"1h30m\""),
            );
        }
    }

    #[test]
    fn durations_past_a_century_are_refused_not_wrapped() {
        assert_eq!(parse_duration("36500d").unwrap().as_secs(), 36_500 * 86_400);
        // The first overflows u64 seconds; the second cannot be added to
        // the current time, which the server does with max_use and train.
        for bad in [
            "213503982334602d",
            "99999999999d",
            "36500d1s",
            "18446744073709551615s1s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn overflow_at_every_step_is_a_too_long_error() {
        for bad in [
            // The number alone does not fit in u64.
            "18446744073709551616s",
            "99999999999999999999999999d",
            // The number fits, its product with the unit does not.
            "18446744073709551615m",
            "307445734561825861h",
            // Each product fits, their sum does not.
            "18446744073709551615s18446744073709551615s",
            "213503982334601d86400s",
            // Fits in u64 but is past the century.
            "3153600001s",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(format!("{bad:?} is longer than 36500d")),
                "{bad}"
            );
        }
    }
}
