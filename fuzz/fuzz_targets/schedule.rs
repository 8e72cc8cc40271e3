//! The `schedule` parser of a bot definition.
//!
//! Invariants, for a schedule that parses:
//! - every window names at least one day and a non-empty time range within
//!   the day (an end at or before the start runs overnight);
//! - outside the time zone, the text holds only day names, digits and the
//!   separators `- : , ; *` (times are exactly HH:MM);
//! - rendered back from its windows, it parses to the same windows and zone;
//! - `contains` agrees with a reference reading of the windows, for
//!   instants taken from the input and at the ends of time;
//! - nothing panics.

#![no_main]

use botward::policy::Schedule;
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY: u16 = 24 * 60;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = Schedule::parse(text) else {
        return;
    };
    let windows = schedule.fuzz_windows();
    assert!(!windows.is_empty(), "{text:?}");
    for &(days, start, end) in &windows {
        assert!(days != 0 && days & !0x7f == 0, "{text:?}: days {days:#x}");
        assert!(
            start < DAY && end <= DAY && start != end,
            "{text:?}: {start}-{end}"
        );
    }
    let mut tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.last().is_some_and(|t| looks_like_zone(t)) {
        tokens.pop();
    }
    for t in &tokens {
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-:,;*".contains(&c)),
            "{text:?}: accepted token {t:?}"
        );
    }

    let canonical = render(&windows, schedule.time_zone_name());
    let again = Schedule::parse(&canonical)
        .unwrap_or_else(|e| panic!("{text:?} rendered as {canonical:?} does not parse: {e}"));
    assert_eq!(again.fuzz_windows(), windows, "{text:?} -> {canonical:?}");
    assert_eq!(again.time_zone_name(), schedule.time_zone_name());

    let tz = schedule.time_zone();
    let mut instants = vec![Timestamp::MIN, Timestamp::MAX, Timestamp::UNIX_EPOCH];
    for chunk in data.chunks(8).take(16) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        let span = Timestamp::MAX.as_second() - Timestamp::MIN.as_second();
        let s = Timestamp::MIN.as_second() + (u64::from_le_bytes(b) % span as u64) as i64;
        instants.push(Timestamp::from_second(s).expect("in range"));
    }
    for ts in instants {
        let local = ts.to_zoned(tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u16;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let want = reference(&windows, day * DAY + minute);
        assert_eq!(schedule.contains(ts), want, "{text:?} at {ts}");
        assert_eq!(again.contains(ts), want, "{canonical:?} at {ts}");
    }
});

fn looks_like_zone(token: &str) -> bool {
    token.contains('/') || token.eq_ignore_ascii_case("utc") || token.eq_ignore_ascii_case("local")
}

/// `Mon,Wed 06:00-20:00; Sat 22:00-02:00 Europe/Berlin`: one part per window.
fn render(windows: &[(u8, u16, u16)], zone: Option<&str>) -> String {
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let mut parts = Vec::new();
    for &(days, start, end) in windows {
        let names: Vec<&str> = (0..7)
            .filter(|d| days & (1 << d) != 0)
            .map(|d| DAYS[d])
            .collect();
        parts.push(format!("{} {}-{}", names.join(","), hm(start), hm(end)));
    }
    let mut s = parts.join("; ");
    if let Some(z) = zone {
        s.push(' ');
        s.push_str(z);
    }
    s
}

/// Whether minute `t` of the week (0 is Monday 00:00) falls in a window.
/// A window runs from its start on each of its days for `end - start`
/// minutes, or into the next day when `end <= start`; Sunday night runs on
/// into Monday.
fn reference(windows: &[(u8, u16, u16)], t: u16) -> bool {
    let week = 7 * u32::from(DAY);
    windows.iter().any(|&(days, start, end)| {
        let len = if end > start {
            end - start
        } else {
            DAY - start + end
        };
        (0..7u32).filter(|d| days & (1 << d) != 0).any(|d| {
            let from = d * u32::from(DAY) + u32::from(start);
            let to = from + u32::from(len);
            let t = u32::from(t);
            (from..to).contains(&t) || (from..to).contains(&(t + week))
        })
    })
}
