//! The `--format html` page of `botward analyze`.
//!
//! One self-contained page, safe to open offline: no scripts, nothing
//! loaded from the network, a Content-Security-Policy that forbids loading
//! anything, and every string taken from the analysis HTML-escaped.
//!
//! Sections: the header (counts and warnings); a summary per bot with the
//! findings per detector; per bot a timeline (inline SVG) with one lane per
//! detector that fired; the findings table; the least-privilege section
//! (unused grants, privilege creep and the suggested minimal grants); and
//! the just-in-time elevations per bot. Output size is bounded: tables keep
//! their latest rows and timelines their highest-scored marks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use jiff::Timestamp;

use super::{Analysis, Detector, Finding};
use crate::html::{self, esc, plural, prefix};

/// Rows kept in the findings and least-privilege tables (the latest ones).
const TABLE_ROWS: usize = 1000;
/// Marks drawn per bot timeline (the highest-scored ones).
const MARKS_PER_BOT: usize = 500;
/// Room kept inside both ends of a timeline so edge marks stay whole.
const PAD: f64 = 10.0;
/// Characters of `actual` and `typical` shown per row.
const JSON_CHARS: usize = 200;
/// Evidence ids shown per row.
const EVIDENCE_IDS: usize = 3;

/// Writes the page for `a` to `out`.
pub fn html(a: &Analysis, out: &mut dyn Write) -> io::Result<()> {
    let mut page = String::with_capacity(64 * 1024);
    render(a, &mut page);
    let mut out = BufWriter::new(out);
    out.write_all(page.as_bytes())?;
    out.flush()
}

/// The time range every timeline shares.
#[derive(Clone, Copy)]
struct Period {
    first: Timestamp,
    last: Timestamp,
}

/// One bot's findings, for the summary and its timeline.
struct BotRow<'a> {
    name: &'a str,
    /// Findings per entry of [`Detector::ALL`], the order of the summary
    /// columns and timeline lanes.
    counts: [u64; Detector::ALL.len()],
    max: u8,
    findings: Vec<&'a Finding>,
}

fn render(a: &Analysis, page: &mut String) {
    html::head(page, "botward analysis", &CSS);
    render_header(a, page);
    if a.findings.is_empty() {
        page.push_str(
            "<section>\n<h2>Findings</h2>\n<p class=\"none\">No findings: every bot stayed \
             within its baseline.</p>\n</section>\n",
        );
    } else {
        let bots = bot_rows(a);
        render_summary(&bots, page);
        render_timelines(a, &bots, page);
        render_findings(a, page);
    }
    render_least_privilege(a, page);
    render_elevations(a, page);
    page.push_str("</main>\n</body>\n</html>\n");
}

fn render_header(a: &Analysis, page: &mut String) {
    page.push_str("<header>\n<h1>botward analysis</h1>\n<dl class=\"facts\">\n");
    let _ = writeln!(page, "<dt>Records</dt><dd>{}</dd>", a.records);
    let _ = writeln!(page, "<dt>Bots</dt><dd>{}</dd>", a.bots);
    let _ = writeln!(
        page,
        "<dt>Scored bot-days</dt><dd>{:.1}</dd>",
        a.scored_bot_days
    );
    let _ = write!(page, "<dt>Findings</dt><dd>{}", a.findings.len());
    if !a.findings.is_empty() {
        let high = a.findings.iter().filter(|f| f.score >= 80).count();
        let _ = write!(page, " ({high} scored 80 or more)");
    }
    page.push_str("</dd>\n");
    if let Some(p) = period(a) {
        let _ = writeln!(
            page,
            "<dt>Period of findings (UTC)</dt><dd class=\"mono\">{} &ndash; {}</dd>",
            p.first.strftime("%Y-%m-%d %H:%M"),
            p.last.strftime("%Y-%m-%d %H:%M"),
        );
    }
    let _ = writeln!(
        page,
        "<dt>Generated</dt><dd class=\"mono\">{} by botward {}</dd>",
        Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        env!("CARGO_PKG_VERSION")
    );
    page.push_str("</dl>\n");
    if !a.warnings.is_empty() {
        page.push_str("<div class=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
        for w in &a.warnings {
            let _ = writeln!(page, "<li>{}</li>", esc(w));
        }
        page.push_str("</ul>\n</div>\n");
    }
    page.push_str("</header>\n");
}

/// Bots with findings, highest maximum score first, then by name.
fn bot_rows(a: &Analysis) -> Vec<BotRow<'_>> {
    let mut by: BTreeMap<&str, BotRow<'_>> = BTreeMap::new();
    for f in &a.findings {
        let row = by.entry(f.bot.as_str()).or_insert_with(|| BotRow {
            name: f.bot.as_str(),
            counts: [0; Detector::ALL.len()],
            max: 0,
            findings: Vec::new(),
        });
        if let Some(i) = Detector::ALL.iter().position(|d| *d == f.detector) {
            row.counts[i] += 1;
        }
        row.max = row.max.max(f.score);
        row.findings.push(f);
    }
    let mut rows: Vec<_> = by.into_values().collect();
    rows.sort_by(|x, y| y.max.cmp(&x.max).then_with(|| x.name.cmp(y.name)));
    rows
}

fn render_summary(bots: &[BotRow<'_>], page: &mut String) {
    page.push_str("<section>\n<h2>Findings per bot</h2>\n");
    page.push_str("<table class=\"summary\">\n<thead><tr><th>Bot</th>");
    for d in Detector::ALL {
        let _ = write!(
            page,
            "<th class=\"num\">{}</th>",
            d.as_str().replace('_', "_<wbr>")
        );
    }
    page.push_str(
        "<th class=\"num\">Total</th><th class=\"num\">Max score</th></tr></thead>\n<tbody>\n",
    );
    for (i, b) in bots.iter().enumerate() {
        let _ = write!(
            page,
            "<tr><td class=\"name\"><a href=\"#bot-{i}\">{}</a></td>",
            esc(b.name)
        );
        for n in b.counts {
            if n == 0 {
                page.push_str("<td class=\"num zero\">0</td>");
            } else {
                let _ = write!(page, "<td class=\"num\">{n}</td>");
            }
        }
        let _ = writeln!(
            page,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            b.findings.len(),
            score_badge(b.max)
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

fn render_timelines(a: &Analysis, bots: &[BotRow<'_>], page: &mut String) {
    page.push_str("<section>\n<h2>Timelines</h2>\n");
    let Some(period) = period(a) else {
        page.push_str("<p class=\"note\">No finding has a readable start time.</p>\n</section>\n");
        return;
    };
    page.push_str(
        "<p class=\"legend\"><span class=\"s s-hi\">80+</span> <span class=\"s s-mid\">60&ndash;79</span> \
         <span class=\"s s-lo\">below 60</span> One mark per finding at its start; a bar runs to its end. \
         Larger marks score higher; hover a mark for its explanation. Every timeline shares the \
         period of all findings (UTC).</p>\n",
    );
    for (i, b) in bots.iter().enumerate() {
        let _ = writeln!(
            page,
            "<h3 id=\"bot-{i}\">{} <span class=\"count\">{} finding{}, max score {}</span></h3>",
            esc(b.name),
            b.findings.len(),
            plural(b.findings.len()),
            b.max
        );
        render_timeline(b, period, page);
    }
    page.push_str("</section>\n");
}

/// The width of a timeline and, inside it, the room for lane labels on the
/// left and a margin on the right.
const WIDTH: f64 = 1180.0;
const LEFT: f64 = 124.0;
const RIGHT: f64 = 14.0;
/// The height of a lane, the gap between lanes and the room for the axis.
const LANE: f64 = 22.0;
const GAP: f64 = 4.0;
const AXIS: f64 = 26.0;

/// The marks of a bot's timeline: the highest-scored findings with a
/// readable start, lowest score first so the worst are drawn on top.
struct Marks<'a> {
    drawn: Vec<(&'a Finding, Timestamp)>,
    /// Findings left out beyond [`MARKS_PER_BOT`].
    dropped: usize,
    /// Findings whose start is unreadable.
    unreadable: usize,
}

impl<'a> Marks<'a> {
    fn of(bot: &BotRow<'a>) -> Marks<'a> {
        let mut drawn: Vec<(&Finding, Timestamp)> = bot
            .findings
            .iter()
            .filter_map(|f| f.start.parse::<Timestamp>().ok().map(|t| (*f, t)))
            .collect();
        let unreadable = bot.findings.len() - drawn.len();
        drawn.sort_by(|x, y| y.0.score.cmp(&x.0.score).then_with(|| x.1.cmp(&y.1)));
        let dropped = drawn.len().saturating_sub(MARKS_PER_BOT);
        drawn.truncate(MARKS_PER_BOT);
        drawn.reverse();
        Marks {
            drawn,
            dropped,
            unreadable,
        }
    }

    /// The notes below the timeline on what it leaves out.
    fn render_notes(&self, page: &mut String) {
        if self.dropped > 0 {
            let _ = writeln!(
                page,
                "<p class=\"note\">Showing the {MARKS_PER_BOT} highest-scored of {} findings; \
                 {} lower-scored findings are not drawn.</p>",
                self.dropped + MARKS_PER_BOT,
                self.dropped,
            );
        }
        if self.unreadable > 0 {
            let _ = writeln!(
                page,
                "<p class=\"note\">{} finding{} with an unreadable start time not drawn.</p>",
                self.unreadable,
                plural(self.unreadable)
            );
        }
    }
}

/// One lane per detector that fired for the bot; one circle per finding at
/// its start, sized and coloured by score.
fn render_timeline(bot: &BotRow<'_>, period: Period, page: &mut String) {
    let plot = WIDTH - LEFT - RIGHT;
    let lanes: Vec<Detector> = Detector::ALL
        .into_iter()
        .filter(|d| bot.findings.iter().any(|f| f.detector == *d))
        .collect();
    let marks = Marks::of(bot);
    let lanes_h = lanes.len() as f64 * (LANE + GAP) - GAP;
    let height = lanes_h + AXIS;

    let _ = writeln!(
        page,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"Findings of {} over time\">",
        esc(bot.name)
    );
    for (lane, name) in lanes.iter().enumerate() {
        let y = lane as f64 * (LANE + GAP);
        let _ = writeln!(
            page,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"lane\" x=\"{LEFT}\" y=\"{y}\" width=\"{plot}\" height=\"{LANE}\"/>",
            LEFT - 8.0,
            y + LANE / 2.0 + 4.0,
            esc(name.as_str()),
        );
    }
    for (f, start) in &marks.drawn {
        let lane = lanes
            .iter()
            .position(|d| *d == f.detector)
            .unwrap_or_default();
        render_mark(f, *start, lane, period, page);
    }
    // PAD inside both ends of the plot are the ends of the period.
    html::Axis {
        first: period.first,
        last: period.last,
        y: lanes_h + 4.0,
        left: LEFT,
        plot,
        pad: PAD,
    }
    .render(page);
    page.push_str("</svg>\n");
    marks.render_notes(page);
}

/// Where `t` falls on a timeline of `period`; marks at either end of the
/// period stay whole inside the lanes.
fn x_of(period: Period, t: Timestamp) -> f64 {
    let plot = WIDTH - LEFT - RIGHT;
    let inner = plot - 2.0 * PAD;
    let first_us = period.first.as_microsecond();
    let span_us = (period.last.as_microsecond() - first_us).max(1) as f64;
    let frac = ((t.as_microsecond() - first_us) as f64 / span_us).clamp(0.0, 1.0);
    LEFT + PAD + frac * inner
}

/// One finding's mark in `lane`: a circle at its start and, when it lasts,
/// a bar to its end.
fn render_mark(f: &Finding, start: Timestamp, lane: usize, period: Period, page: &mut String) {
    let cy = lane as f64 * (LANE + GAP) + LANE / 2.0;
    let x = x_of(period, start);
    let class = score_class(f.score);
    let r = 3.5 + f.score.min(100) as f64 / 100.0 * 5.5;
    if let Ok(end) = f.end.parse::<Timestamp>() {
        let x2 = x_of(period, end);
        if x2 - x >= 2.0 {
            let _ = writeln!(
                page,
                "<rect class=\"bar {class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"4\"/>",
                cy - 2.0,
                x2 - x,
            );
        }
    }
    let _ = writeln!(
        page,
        "<circle class=\"mark {class}\" cx=\"{x:.1}\" cy=\"{cy:.1}\" r=\"{r:.1}\">\
         <title>{} {} score {}\n{}</title></circle>",
        esc(&f.start),
        esc(f.detector.as_str()),
        f.score,
        esc(&f.explanation),
    );
}

fn render_findings(a: &Analysis, page: &mut String) {
    page.push_str("<section>\n<h2>Findings</h2>\n");
    let rows = latest_by_score(a.findings.iter());
    render_omitted(rows.len(), a.findings.len(), page);
    page.push_str(
        "<div class=\"scroll\">\n<table class=\"findings\">\n<thead><tr><th>Time (UTC)</th><th>Bot</th>\
         <th>Detector</th><th class=\"num\">Score</th><th>Explanation</th><th>Actual</th>\
         <th>Typical</th><th>Evidence</th></tr></thead>\n<tbody>\n",
    );
    for f in rows {
        let _ = writeln!(
            page,
            "<tr><td class=\"mono\">{}</td><td class=\"name\">{}</td>\
             <td class=\"name\">{}</td><td class=\"num\">{}</td><td class=\"expl\">{}</td>\
             <td class=\"mono wrap json\">{}</td><td class=\"mono wrap json\">{}</td>\
             <td class=\"mono ev\">{}</td></tr>",
            time_range(f),
            esc(&f.bot),
            esc(f.detector.as_str()),
            score_badge(f.score),
            esc(&f.explanation),
            esc(&compact(&f.actual)),
            esc(&compact(&f.typical)),
            evidence(f),
        );
    }
    page.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

fn render_least_privilege(a: &Analysis, page: &mut String) {
    page.push_str("<section>\n<h2>Least privilege</h2>\n");
    let lp: Vec<&Finding> = a
        .findings
        .iter()
        .filter(|f| Detector::LEAST_PRIVILEGE.contains(&f.detector))
        .collect();
    if lp.is_empty() {
        page.push_str(
            "<p class=\"note\">No unused grants and no grants added without a change ticket.</p>\n",
        );
    } else {
        let total = lp.len();
        let rows = latest_by_score(lp.into_iter());
        render_omitted(rows.len(), total, page);
        page.push_str(
            "<div class=\"scroll\">\n<table class=\"lp\">\n<thead><tr><th>Bot</th><th>Detector</th>\
             <th>Secret</th><th class=\"num\">Score</th><th>Time (UTC)</th><th>Explanation</th>\
             <th>Evidence</th></tr></thead>\n<tbody>\n",
        );
        for f in rows {
            let _ = writeln!(
                page,
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"mono\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"mono\">{}</td>\
                 <td class=\"expl\">{}</td><td class=\"mono ev\">{}</td></tr>",
                esc(&f.bot),
                esc(f.detector.as_str()),
                esc(grant_secret(f).unwrap_or("")),
                score_badge(f.score),
                time_range(f),
                esc(&f.explanation),
                evidence(f),
            );
        }
        page.push_str("</tbody>\n</table>\n</div>\n");
    }

    page.push_str("<h3>Suggested minimal grants</h3>\n");
    if a.suggested_grants.is_empty() {
        page.push_str("<p class=\"note\">No grants were seen in the log.</p>\n</section>\n");
        return;
    }
    page.push_str(
        "<p class=\"legend\">Per bot, the secrets it read in the last 90 days of the log: \
         the grant it needs. Flagged unused grants are candidates for removal.</p>\n\
         <table class=\"grants\">\n<thead><tr><th>Bot</th><th>Secrets used (suggested grant)</th>\
         <th>Unused grants flagged</th></tr></thead>\n<tbody>\n",
    );
    for (bot, secrets) in &a.suggested_grants {
        let used = if secrets.is_empty() {
            "<em class=\"muted\">none used in 90 days</em>".to_string()
        } else {
            secret_list(secrets.iter().map(String::as_str))
        };
        let mut unused: Vec<&str> = a
            .findings
            .iter()
            .filter(|f| f.detector == Detector::UnusedGrant && f.bot == *bot)
            .filter_map(grant_secret)
            .collect();
        unused.sort_unstable();
        unused.dedup();
        let _ = writeln!(
            page,
            "<tr><td class=\"name\">{}</td><td>{used}</td><td>{}</td></tr>",
            esc(bot),
            secret_list(unused.into_iter()),
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

/// Per bot with any: windows requested, approved and denied, and the closed
/// ones used or not.
fn render_elevations(a: &Analysis, page: &mut String) {
    page.push_str("<section>\n<h2>Elevations</h2>\n");
    let bots: Vec<_> = a
        .per_bot
        .iter()
        .filter(|(_, b)| !b.elevations.is_empty())
        .collect();
    if bots.is_empty() {
        page.push_str("<p class=\"note\">No just-in-time elevations in the log.</p>\n</section>\n");
        return;
    }
    page.push_str(
        "<p class=\"legend\">Windows on privileged secrets: requested, approved (opened), \
         denied by an approver, and, once closed, used (read at least once) or unused.</p>\n\
         <table class=\"elevations\">\n<thead><tr><th>Bot</th><th class=\"num\">Requested</th>\
         <th class=\"num\">Approved</th><th class=\"num\">Denied</th>\
         <th class=\"num\">Used</th><th class=\"num\">Unused</th></tr></thead>\n<tbody>\n",
    );
    for (bot, b) in bots {
        let _ = writeln!(
            page,
            "<tr><td class=\"name\">{}</td>{}</tr>",
            esc(bot),
            b.elevations.cells()
        );
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

/// The latest [`TABLE_ROWS`] findings by start, then ordered by score
/// (highest first) and start.
fn latest_by_score<'a>(findings: impl Iterator<Item = &'a Finding>) -> Vec<&'a Finding> {
    let mut rows: Vec<&Finding> = findings.collect();
    rows.sort_by(|x, y| y.start.cmp(&x.start));
    rows.truncate(TABLE_ROWS);
    rows.sort_by(|x, y| {
        y.score
            .cmp(&x.score)
            .then_with(|| x.start.cmp(&y.start))
            .then_with(|| x.bot.cmp(&y.bot))
    });
    rows
}

fn render_omitted(shown: usize, total: usize, page: &mut String) {
    if shown < total {
        let _ = writeln!(
            page,
            "<p class=\"note\">Showing the latest {shown} of {total}; {} earlier omitted.</p>",
            total - shown
        );
    }
}

/// The secret a least-privilege finding is about.
fn grant_secret(f: &Finding) -> Option<&str> {
    f.actual
        .get("secret")
        .or_else(|| f.actual.get("added_grant"))
        .and_then(|s| s.as_str())
}

fn secret_list<'a>(secrets: impl Iterator<Item = &'a str>) -> String {
    secrets
        .map(|s| format!("<code>{}</code>", esc(s)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A finding's start and, below it when different, its end; escaped.
fn time_range(f: &Finding) -> String {
    if f.end == f.start || f.end.is_empty() {
        esc(&f.start)
    } else {
        format!(
            "{}<br><span class=\"muted\">to {}</span>",
            esc(&f.start),
            esc(&f.end)
        )
    }
}

/// The first evidence ids of a finding, escaped, and how many more.
fn evidence(f: &Finding) -> String {
    let mut s = f
        .evidence
        .iter()
        .take(EVIDENCE_IDS)
        .map(|e| esc(e))
        .collect::<Vec<_>>()
        .join("<br>");
    if f.evidence.len() > EVIDENCE_IDS {
        let _ = write!(
            s,
            "<br><span class=\"muted\">+{} more</span>",
            f.evidence.len() - EVIDENCE_IDS
        );
    }
    s
}

/// Compact JSON, cut to [`JSON_CHARS`] characters.
fn compact(v: &serde_json::Value) -> String {
    prefix(&v.to_string(), JSON_CHARS)
}

/// The range from the earliest start to the latest end of all findings,
/// padded by a day on each side when it is a single instant.
fn period(a: &Analysis) -> Option<Period> {
    let mut p: Option<Period> = None;
    for f in &a.findings {
        let Ok(start) = f.start.parse::<Timestamp>() else {
            continue;
        };
        let end = f
            .end
            .parse::<Timestamp>()
            .ok()
            .filter(|e| *e >= start)
            .unwrap_or(start);
        let p = p.get_or_insert(Period {
            first: start,
            last: end,
        });
        p.first = p.first.min(start);
        p.last = p.last.max(end);
    }
    let mut p = p?;
    if p.first == p.last {
        let day = jiff::SignedDuration::from_hours(24);
        p.first = p.first.checked_sub(day).unwrap_or(p.first);
        p.last = p.last.checked_add(day).unwrap_or(p.last);
    }
    Some(p)
}

fn score_class(score: u8) -> &'static str {
    if score >= 80 {
        "s-hi"
    } else if score >= 60 {
        "s-mid"
    } else {
        "s-lo"
    }
}

fn score_badge(score: u8) -> String {
    format!("<span class=\"s {}\">{score}</span>", score_class(score))
}

/// The page's style sheet: the shared rules and its own.
const CSS: [&str; 9] = [
    r#":root { --hi: #cf222e; --mid: #e16f24; --lo: #d4a72c; --line: #d0d7de; --muted: #57606a; }
"#,
    html::BASE_CSS,
    r#"h3 .count { font-weight: 400; font-size: 13px; color: var(--muted); margin-left: 8px; }
"#,
    html::FACTS_CSS,
    r#".warnings { margin: 18px 0 0; padding: 8px 16px; border: 2px solid var(--mid); border-radius: 6px; background: #fff8c5; }
.warnings h2 { margin: 0 0 4px; border: 0; padding: 0; font-size: 15px; }
.warnings ul { margin: 0; padding-left: 20px; }
"#,
    html::TABLE_CSS,
    r#"table.summary th { white-space: normal; font-size: 12.5px; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.zero { color: #afb8c1; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; white-space: nowrap; }
.wrap { white-space: normal; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.json { min-width: 12em; max-width: 22em; font-size: 11.5px; }
.ev { font-size: 11px; }
.expl { min-width: 16em; }
.name { white-space: nowrap; }
.muted { color: var(--muted); }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
.none { font-size: 16px; font-weight: 600; color: #1a7f37; }
.legend { color: var(--muted); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; background: #eff2f5; padding: 0 4px; border-radius: 4px; white-space: nowrap; }
.s { display: inline-block; min-width: 2.4em; padding: 0 7px; border-radius: 9px; color: #fff; font-size: 12px; font-weight: 600; text-align: center; }
.s-hi { background: var(--hi); }
.s-mid { background: var(--mid); }
.s-lo { background: var(--lo); color: #1f2328; }
"#,
    html::TIMELINE_CSS,
    r#"svg.timeline .mark { fill-opacity: 0.85; stroke: #fff; stroke-width: 1; }
svg.timeline .bar { fill-opacity: 0.35; }
svg.timeline .s-hi { fill: var(--hi); }
svg.timeline .s-mid { fill: var(--mid); }
svg.timeline .s-lo { fill: var(--lo); }
svg.timeline .mark.s-lo { stroke: #9a6700; }
"#,
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn finding(bot: &str, detector: Detector, score: u8, start: &str) -> Finding {
        Finding {
            bot: bot.into(),
            detector,
            score,
            start: start.into(),
            end: start.into(),
            actual: json!({"requests": 40}),
            typical: json!({"median": 10, "mad": 2}),
            explanation: format!("{bot} did something unusual"),
            evidence: vec!["e1".into(), "e2".into(), "e3".into(), "e4".into()],
        }
    }

    fn render(a: &Analysis) -> String {
        let mut out = Vec::new();
        html(a, &mut out).expect("writes to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    fn sample() -> Analysis {
        let mut a = Analysis {
            records: 1200,
            bots: 2,
            scored_bot_days: 42.5,
            ..Analysis::default()
        };
        a.findings.push(finding(
            "invoice-bot",
            Detector::VolumeSpike,
            75,
            "2024-03-01T10:00:00Z",
        ));
        a.findings.push(finding(
            "invoice-bot",
            Detector::OffSchedule,
            80,
            "2024-03-04T02:00:00Z",
        ));
        a.findings.push(Finding {
            actual: json!({"secret": "db/old", "idle_days": 95, "last_used": null}),
            typical: json!("used within 90 days"),
            ..finding(
                "payroll-bot",
                Detector::UnusedGrant,
                80,
                "2024-01-01T00:00:00Z",
            )
        });
        a.suggested_grants
            .insert("invoice-bot".into(), vec!["erp/api".into()]);
        a.suggested_grants.insert("payroll-bot".into(), Vec::new());
        a
    }

    #[test]
    fn page_has_csp_and_no_script() {
        let page = render(&sample());
        assert!(!page.to_ascii_lowercase().contains("<script"));
        assert!(page.contains(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        ));
        assert!(!page.contains("src=\""));
        assert!(!page.contains("href=\"http"));
    }

    #[test]
    fn strings_from_the_analysis_are_escaped() {
        let mut a = sample();
        let mut f = finding(
            "<img src=x>",
            Detector::NewSecret,
            85,
            "2024-03-02T08:00:00Z",
        );
        f.explanation = "asked for \"<b>x</b>\"".into();
        f.evidence = vec!["<i>id</i>".into()];
        a.findings.push(f);
        a.warnings.push("<script>alert(1)</script>".into());
        a.suggested_grants
            .insert("<img src=x>".into(), vec!["<s>".into()]);
        let page = render(&a);
        assert!(!page.contains("<img src=x>"));
        assert!(page.contains("&lt;img src=x&gt;"));
        assert!(!page.contains("<b>x</b>"));
        assert!(!page.contains("<i>id</i>"));
        assert!(!page.contains("<s>"));
        assert!(!page.to_ascii_lowercase().contains("<script"));
    }

    #[test]
    fn bots_with_findings_get_a_timeline() {
        let page = render(&sample());
        assert!(page.contains("<svg"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("<circle"));
        assert!(page.contains("<title>2024-03-04T02:00:00Z off_schedule score 80"));
    }

    #[test]
    fn empty_analysis_says_no_findings() {
        let page = render(&Analysis::default());
        assert!(page.contains("No findings: every bot stayed within its baseline."));
        assert!(!page.contains("<svg"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn summary_rows_are_sorted_by_max_score() {
        let mut a = sample();
        a.findings.push(finding(
            "aaa-bot",
            Detector::NewSource,
            70,
            "2024-03-03T00:00:00Z",
        ));
        let page = render(&a);
        let summary = &page[page.find("class=\"summary\"").unwrap()..];
        let summary = &summary[..summary.find("</table>").unwrap()];
        let inv = summary.find("invoice-bot").unwrap();
        let aaa = summary.find("aaa-bot").unwrap();
        assert!(inv < aaa, "max score 80 before 70");
        assert!(summary.contains("privilege_<wbr>creep"));
    }

    #[test]
    fn least_privilege_and_suggested_grants() {
        let page = render(&sample());
        let lp = &page[page.find("<h2>Least privilege</h2>").unwrap()..];
        assert!(lp.contains("<code>db/old</code>"));
        assert!(lp.contains("<code>erp/api</code>"));
        assert!(lp.contains("none used in 90 days"));
    }

    #[test]
    fn json_is_compact_and_truncated() {
        let long = json!({"seq": (0..200).map(|i| format!("s{i}")).collect::<Vec<_>>()});
        let c = compact(&long);
        assert_eq!(c.chars().count(), JSON_CHARS + 1);
        assert!(c.ends_with('…'));
        assert_eq!(compact(&json!({"a": 1})), "{\"a\":1}");
    }

    #[test]
    fn evidence_shows_three_ids() {
        let f = finding("b", Detector::NewSecret, 75, "2024-03-01T00:00:00Z");
        assert_eq!(
            evidence(&f),
            "e1<br>e2<br>e3<br><span class=\"muted\">+1 more</span>"
        );
    }

    #[test]
    fn output_is_bounded() {
        let mut a = Analysis::default();
        for i in 0..1500u32 {
            let t = Timestamp::from_second(1_700_000_000 + i as i64 * 600).unwrap();
            a.findings.push(finding(
                "busy-bot",
                Detector::ALL[i as usize % 6],
                (40 + i % 60) as u8,
                &super::super::fmt_ts(t),
            ));
        }
        let page = render(&a);
        assert_eq!(page.matches("<circle").count(), MARKS_PER_BOT);
        assert!(page.contains("1000 lower-scored findings are not drawn"));
        assert!(page.contains("Showing the latest 1000 of 1500"));
    }

    #[test]
    fn single_instant_is_padded_by_a_day() {
        let a = Analysis {
            findings: vec![finding(
                "b",
                Detector::OffSchedule,
                80,
                "2024-03-01T12:00:00Z",
            )],
            ..Analysis::default()
        };
        let p = period(&a).unwrap();
        assert_eq!(p.last.as_second() - p.first.as_second(), 2 * 86_400);
        let page = render(&a);
        assert!(page.contains("cx=\"645.0\""), "mark sits in the middle");
        assert!(page.contains(">03-01 00:00</text>"));
    }

    #[test]
    fn elevations_are_listed_per_bot_and_escaped() {
        let mut a = sample();
        assert!(render(&a).contains("No just-in-time elevations in the log."));
        let e = crate::audit::elevations::Elevations {
            requested: 3,
            approved: 2,
            denied: 1,
            used: 1,
            unused: 1,
        };
        a.per_bot.insert(
            "<img src=x>".into(),
            super::super::BotSummary { elevations: e },
        );
        a.per_bot
            .insert("quiet-bot".into(), super::super::BotSummary::default());
        let page = render(&a);
        let section = page
            .split("<h2>Elevations</h2>")
            .nth(1)
            .and_then(|s| s.split("</section>").next())
            .expect("its own section");
        assert!(
            section.contains(
                "<tr><td class=\"name\">&lt;img src=x&gt;</td><td class=\"num\">3</td>\
                 <td class=\"num\">2</td><td class=\"num\">1</td><td class=\"num\">1</td>\
                 <td class=\"num\">1</td></tr>"
            ),
            "{section}"
        );
        assert!(
            !section.contains("quiet-bot"),
            "a bot without elevations has no row"
        );
        assert!(!page.contains("<img"));
    }
}
