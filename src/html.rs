//! The HTML toolkit of botward's self-contained pages (`botward audit
//! report --html` and `botward analyze --format html`): escaping, the page
//! head with its Content-Security-Policy, the style rules both pages share,
//! and the time axis of their inline-SVG timelines.
//!
//! A page built with it opens offline: no scripts, nothing loaded from the
//! network, and every string taken from a log goes through [`esc`].

use std::fmt::Write as _;

use jiff::Timestamp;

/// Rules for the box model, body, main column and headings.
pub const BASE_CSS: &str = r#"* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: #1f2328; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 28px 0 6px; }
"#;

/// Rules for links and the header's list of facts.
pub const FACTS_CSS: &str = r#"a { color: #0969da; text-decoration: none; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
"#;

/// Rules for tables and their cells.
pub const TABLE_CSS: &str = r#"table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; white-space: nowrap; }
"#;

/// Rules for a timeline: its picture, labels, lanes and axis.
pub const TIMELINE_CSS: &str = r#"svg.timeline { display: block; width: 100%; height: auto; margin: 4px 0 10px; }
svg.timeline text { font-size: 11px; fill: var(--muted); }
svg.timeline .lane { fill: #f3f4f6; }
svg.timeline .axis { stroke: #8c959f; stroke-width: 1; }
"#;

/// Writes the start of a page titled `title` up to the opening of its
/// `<main>`: the Content-Security-Policy that forbids loading anything,
/// and a style sheet of `css`, in order, followed by the print rule.
pub fn head(page: &mut String, title: &str, css: &[&str]) {
    page.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"botward\">\n",
    );
    let _ = writeln!(page, "<title>{}</title>", esc(title));
    page.push_str("<style>\n");
    for rules in css {
        page.push_str(rules);
    }
    page.push_str(
        "@media print { body { background: #fff; } main { padding: 0; } }\n\
         </style>\n</head>\n<body>\n<main>\n",
    );
}

/// HTML-escapes text for element content and quoted attribute values,
/// control characters shown as escapes ([`crate::text::escape`]).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in crate::text::escape(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first `n` characters of `s`, with an ellipsis if cut.
pub fn prefix(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The plural ending for `n` things.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A timeline's x-axis: the period from `first` to `last` drawn across
/// `plot` units from `left`, `pad` inside both ends, as a line at `y` with
/// a few round date ticks.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    pub first: Timestamp,
    pub last: Timestamp,
    pub y: f64,
    pub left: f64,
    pub plot: f64,
    pub pad: f64,
}

impl Axis {
    /// Writes the axis line and its ticks; returns how many ticks it drew.
    pub fn render(&self, page: &mut String) -> usize {
        let Axis {
            first,
            last,
            y,
            left,
            plot,
            pad,
        } = *self;
        let _ = writeln!(
            page,
            "<line class=\"axis\" x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
            left + plot
        );
        let first_us = first.as_microsecond();
        let span_us = (last.as_microsecond() - first_us).max(1) as f64;
        let (step, fmt) = tick_step(first, last);
        let mut tick = first.as_second().div_euclid(step) * step;
        if tick < first.as_second() {
            tick += step;
        }
        let mut drawn = 0;
        while tick <= last.as_second() {
            let Ok(t) = Timestamp::from_second(tick) else {
                break;
            };
            let x =
                left + pad + (t.as_microsecond() - first_us) as f64 / span_us * (plot - 2.0 * pad);
            axis_tick(page, x, y, left, plot, t.strftime(fmt));
            drawn += 1;
            tick += step;
        }
        drawn
    }
}

/// A round tick interval, in seconds, giving at most seven ticks from
/// `first` to `last`, and the label format that suits it. Ticks fall on
/// multiples of the interval since the epoch, so daily ticks sit on UTC
/// midnight.
pub fn tick_step(first: Timestamp, last: Timestamp) -> (i64, &'static str) {
    const STEPS: [i64; 22] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200,
        86_400, 172_800, 604_800, 2_592_000, 31_536_000,
    ];
    let span = (last.as_second() - first.as_second()).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s < 7)
        .unwrap_or(31_536_000);
    let fmt = if step >= 86_400 {
        "%Y-%m-%d"
    } else if span >= 86_400 {
        "%m-%d %H:%M"
    } else if step >= 60 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    (step, fmt)
}

/// One labelled tick of a timeline axis at `x`; labels near the ends are
/// anchored inwards so they stay inside the picture.
pub fn axis_tick(
    page: &mut String,
    x: f64,
    axis_y: f64,
    left: f64,
    plot: f64,
    label: impl std::fmt::Display,
) {
    let anchor = if x < left + 40.0 {
        "start"
    } else if x > left + plot - 40.0 {
        "end"
    } else {
        "middle"
    };
    let _ = writeln!(
        page,
        "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{axis_y}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
         <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{label}</text>",
        axis_y + 4.0,
        axis_y + 17.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(at(0), at(3 * 86_400)), (43_200, "%m-%d %H:%M"));
        assert_eq!(tick_step(at(0), at(30 * 86_400)), (604_800, "%Y-%m-%d"));
        assert_eq!(tick_step(at(0), at(3_000)), (600, "%H:%M"));
        assert_eq!(tick_step(at(5), at(5)), (1, "%H:%M:%S"));
    }

    #[test]
    fn esc_covers_the_five_characters() {
        assert_eq!(esc("&<>\"'x"), "&amp;&lt;&gt;&quot;&#39;x");
    }

    #[test]
    fn esc_shows_control_characters_as_escapes() {
        assert_eq!(
            esc("/opt/x\n\u{1b}[31m<b>\u{9b}"),
            "/opt/x\\n\\x1b[31m&lt;b&gt;\\u{9b}"
        );
    }

    #[test]
    fn head_forbids_loading_anything() {
        let mut page = String::new();
        head(&mut page, "t<", &["x { }\n"]);
        assert!(page.starts_with("<!DOCTYPE html>\n"));
        assert!(page.contains(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        ));
        assert!(page.contains("<title>t&lt;</title>\n<style>\nx { }\n@media print"));
        assert!(page.ends_with("</style>\n</head>\n<body>\n<main>\n"));
    }

    #[test]
    fn axis_ticks_stay_inside_the_plot() {
        let mut page = String::new();
        let axis = Axis {
            first: at(0),
            last: at(3_000),
            y: 50.0,
            left: 10.0,
            plot: 600.0,
            pad: 0.0,
        };
        assert_eq!(axis.render(&mut page), 6);
        assert!(
            page.starts_with("<line class=\"axis\" x1=\"10\" y1=\"50\" x2=\"610\" y2=\"50\"/>\n")
        );
        assert!(page.contains("text-anchor=\"start\">00:00</text>"));
        let padded = Axis {
            last: at(3 * 86_400),
            pad: 10.0,
            ..axis
        };
        let mut page = String::new();
        assert_eq!(padded.render(&mut page), 7);
        assert!(
            page.contains("<text x=\"20.0\" y=\"67.0\" text-anchor=\"start\">01-01 00:00</text>")
        );
    }
}
