//! `botward audit report --html`: one self-contained HTML page for auditors.
//!
//! The page must open offline and be safe to open: no scripts, no external
//! fonts, images or style sheets, a Content-Security-Policy that forbids
//! loading anything, and every string taken from a record HTML-escaped.
//!
//! Sections: period, hosts and counts; chain status; a summary per bot;
//! just-in-time elevations per bot; denials; unauthenticated attempts;
//! anomalies; then per bot a timeline (inline SVG) and its latest accesses.
//! Output size is bounded whatever the log size: tables keep only their
//! latest rows or first groups, and the timeline aggregates requests into at
//! most 600 columns per bot. The server's and approvers' elevation events
//! (decisions, windows opening and closing) are counted in the elevations
//! section, not as requests of the bot they name.
//!
//! Only verified identities are bots. Refused handshakes and unauthenticated
//! requests ([`host_level`]) are the host's events: they are counted by
//! source and reason in their own section, the bot name their certificate
//! named is shown as a claim, and they never enter a bot's figures, even in
//! logs whose `auth.failure` records still carry that name in `bot`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use jiff::Timestamp;
use serde_json::Value;

use super::elevations::{self, Elevations};
use super::fields::{claimed_bot, host_level, peer_label, record_time, scalar, str_field};
use crate::html::{self, esc, plural, prefix};

/// Rows kept per bot in its access table (the latest ones).
const ACCESS_ROWS_PER_BOT: usize = 200;
/// Rows kept in the denial and anomaly tables (the latest ones).
const LIST_ROWS: usize = 500;
/// Time buckets per timeline.
const BUCKETS: usize = 600;
/// Groups of unauthenticated attempts shown (source and reason).
const ATTEMPT_GROUPS: usize = 500;
/// Claimed names and certificates listed per group of attempts.
const CLAIMS_PER_GROUP: usize = 10;

/// Record kinds that are the server's own events rather than a peer's
/// request; they do not count as requests of an unidentified peer.
const SERVER_KINDS: [&str; 5] = [
    "checkpoint",
    "server.start",
    "server.stop",
    "config.reload",
    "audit.recovered",
];

/// The outcome of chain verification, as shown in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainStatus {
    /// Short headline, e.g. "intact and sealed".
    pub verdict: String,
    /// Free text: which record failed and how, or what was checked.
    pub detail: String,
    /// Whether the chain verified.
    pub ok: bool,
}

/// Writes the report for `records` (in log order) to `out`.
pub fn html(records: &[Value], chain: &ChainStatus, out: &mut dyn Write) -> io::Result<()> {
    let view = View::collect(records);
    let mut page = String::with_capacity(64 * 1024);
    view.render(chain, &mut page);
    let mut out = BufWriter::new(out);
    out.write_all(page.as_bytes())?;
    out.flush()
}

/// The time range the report covers; every timeline shares it.
#[derive(Clone, Copy)]
struct Period<'a> {
    first: (Timestamp, &'a str),
    last: (Timestamp, &'a str),
}

/// Requests of one decision in one time bucket: allow, deny, error.
type Bucket = [u32; 3];

#[derive(Default)]
struct BotView<'a> {
    requests: u64,
    allowed: u64,
    denied: u64,
    errors: u64,
    secrets: BTreeSet<&'a str>,
    first: Option<&'a str>,
    last: Option<&'a str>,
    recent: VecDeque<&'a Value>,
    omitted: u64,
    buckets: Vec<Bucket>,
    elevations: Elevations,
}

/// Everything the page shows, gathered in two passes over the records.
struct View<'a> {
    total: usize,
    by_decision: [u64; 4],
    unreadable_ts: u64,
    hosts: BTreeSet<&'a str>,
    period: Option<Period<'a>>,
    bots: BTreeMap<&'a str, BotView<'a>>,
    unidentified: BotView<'a>,
    denials: Capped<'a>,
    attempts: Attempts<'a>,
    anomalies: Capped<'a>,
}

/// Host-level events: refused handshakes and unauthenticated requests, by
/// source and reason.
#[derive(Default)]
struct Attempts<'a> {
    groups: BTreeMap<(String, &'a str), AttemptGroup<'a>>,
    total: u64,
    /// Attempts of groups beyond [`ATTEMPT_GROUPS`], not shown one by one.
    ungrouped: u64,
}

#[derive(Default)]
struct AttemptGroup<'a> {
    count: u64,
    first: Option<&'a str>,
    last: Option<&'a str>,
    claims: BTreeSet<&'a str>,
    more_claims: bool,
    certs: BTreeSet<&'a str>,
    more_certs: bool,
}

/// The latest `LIST_ROWS` records of a kind, and how many there were.
#[derive(Default)]
struct Capped<'a> {
    rows: VecDeque<&'a Value>,
    total: u64,
}

// === impl View ===

impl<'a> View<'a> {
    fn collect(records: &'a [Value]) -> View<'a> {
        let mut view = View {
            total: records.len(),
            by_decision: [0; 4],
            unreadable_ts: 0,
            hosts: BTreeSet::new(),
            period: None,
            bots: BTreeMap::new(),
            unidentified: BotView::default(),
            denials: Capped::default(),
            attempts: Attempts::default(),
            anomalies: Capped::default(),
        };

        for rec in records {
            if let Some(host) = str_field(rec, "host") {
                view.hosts.insert(host);
            }
            let (Some(t), Some(s)) = (record_time(rec), str_field(rec, "ts")) else {
                view.unreadable_ts += 1;
                continue;
            };
            let p = view.period.get_or_insert(Period {
                first: (t, s),
                last: (t, s),
            });
            if t < p.first.0 {
                p.first = (t, s);
            }
            if t > p.last.0 {
                p.last = (t, s);
            }
        }

        for rec in records {
            let decision = str_field(rec, "decision");
            view.by_decision[decision_index(decision)] += 1;
            let kind = str_field(rec, "kind").unwrap_or("");
            if host_level(rec) {
                view.attempts.add(rec);
                continue;
            }

            let bot = match str_field(rec, "bot") {
                Some(name) => Some(view.bots.entry(name).or_default()),
                None if SERVER_KINDS.contains(&kind) => None,
                None => Some(&mut view.unidentified),
            };
            if let Some(bot) = bot {
                bot.elevations.count(kind, decision, rec.get("detail"));
                if !elevations::is_event(kind) {
                    bot.add(rec, decision, view.period);
                }
            }

            if decision == Some("deny") {
                view.denials.push(rec);
            }
            if rec.get("anomaly").is_some_and(|a| !a.is_null()) {
                view.anomalies.push(rec);
            }
        }
        view
    }

    fn render(&self, chain: &ChainStatus, page: &mut String) {
        html::head(page, "botward audit report", &CSS);
        self.render_header(page);
        render_chain(chain, page);
        self.render_summary(page);
        self.render_elevations(page);
        self.render_denials(page);
        self.attempts.render(page);
        self.render_anomalies(page);
        self.render_bots(page);
        page.push_str("</main>\n</body>\n</html>\n");
    }

    fn render_header(&self, page: &mut String) {
        page.push_str("<header>\n<h1>botward audit report</h1>\n<dl class=\"facts\">\n");
        let period = match self.period {
            Some(p) if p.first.0 == p.last.0 => esc(p.first.1),
            Some(p) => format!("{} &ndash; {}", esc(p.first.1), esc(p.last.1)),
            None => "no timestamps".to_string(),
        };
        let _ = writeln!(
            page,
            "<dt>Period (UTC)</dt><dd class=\"mono\">{period}</dd>"
        );
        let hosts = if self.hosts.is_empty() {
            "unknown".to_string()
        } else {
            self.hosts
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            page,
            "<dt>Host{}</dt><dd>{hosts}</dd>",
            plural(self.hosts.len())
        );
        let [allow, deny, error, other] = self.by_decision;
        let _ = write!(
            page,
            "<dt>Records</dt><dd>{} ({allow} allowed, {deny} denied, {error} errors",
            self.total
        );
        if other > 0 {
            let _ = write!(page, ", {other} without a known decision");
        }
        page.push(')');
        if self.unreadable_ts > 0 {
            let _ = write!(
                page,
                "; {} with an unreadable timestamp, left out of timelines",
                self.unreadable_ts
            );
        }
        page.push_str("</dd>\n");
        let _ = writeln!(
            page,
            "<dt>Generated</dt><dd class=\"mono\">{} by botward {}</dd>",
            Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            env!("CARGO_PKG_VERSION")
        );
        page.push_str("</dl>\n</header>\n");
    }

    fn render_summary(&self, page: &mut String) {
        page.push_str("<section>\n<h2>Bots</h2>\n");
        if self.bots.is_empty() && self.unidentified.requests == 0 {
            page.push_str("<p class=\"note\">No bot activity recorded.</p>\n</section>\n");
            return;
        }
        page.push_str(
            "<table>\n<thead><tr><th>Bot</th><th class=\"num\">Requests</th>\
             <th class=\"num\">Allowed</th><th class=\"num\">Denied</th>\
             <th class=\"num\">Errors</th><th class=\"num\">Distinct secrets</th>\
             <th>First seen</th><th>Last seen</th></tr></thead>\n<tbody>\n",
        );
        for (i, (name, bot)) in self.bots.iter().enumerate() {
            let label = format!("<a href=\"#bot-{i}\">{}</a>", esc(name));
            bot.render_summary_row(&label, page);
        }
        if self.unidentified.requests > 0 {
            self.unidentified
                .render_summary_row("<em>unidentified peers</em>", page);
        }
        page.push_str("</tbody>\n</table>\n</section>\n");
    }

    /// Per bot with any: windows requested, approved and denied, and the
    /// closed ones used or not.
    fn render_elevations(&self, page: &mut String) {
        page.push_str("<section>\n<h2>Elevations</h2>\n");
        if self.bots.values().all(|b| b.elevations.is_empty()) {
            page.push_str(
                "<p class=\"note\">No just-in-time elevations recorded.</p>\n</section>\n",
            );
            return;
        }
        page.push_str(
            "<p class=\"legend\">Windows on privileged secrets: requested, approved (opened), \
             denied by an approver, and, once closed, used (read at least once) or unused.</p>\n\
             <table>\n<thead><tr><th>Bot</th><th class=\"num\">Requested</th>\
             <th class=\"num\">Approved</th><th class=\"num\">Denied</th>\
             <th class=\"num\">Used</th><th class=\"num\">Unused</th></tr></thead>\n<tbody>\n",
        );
        for (i, (name, bot)) in self.bots.iter().enumerate() {
            let e = bot.elevations;
            if e.is_empty() {
                continue;
            }
            let _ = writeln!(
                page,
                "<tr><td class=\"name\"><a href=\"#bot-{i}\">{}</a></td>{}</tr>",
                esc(name),
                e.cells()
            );
        }
        page.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn render_denials(&self, page: &mut String) {
        page.push_str("<section>\n<h2>Denials</h2>\n");
        if self.denials.total == 0 {
            page.push_str("<p class=\"note\">No denials recorded.</p>\n</section>\n");
            return;
        }
        self.denials.render_omitted(page);
        page.push_str(
            "<table>\n<thead><tr><th>Time (UTC)</th><th>Bot</th><th>Kind</th>\
             <th class=\"num\">Status</th><th>Certificate SHA-256</th><th>Reason</th>\
             <th>Peer</th></tr></thead>\n<tbody>\n",
        );
        for rec in &self.denials.rows {
            let bot = str_field(rec, "bot").map_or_else(|| "<em>unknown</em>".into(), esc);
            let cert = rec
                .get("cert")
                .and_then(|c| str_field(c, "sha256"))
                .map_or_else(String::new, |s| esc(&prefix(s, 16)));
            let _ = writeln!(
                page,
                "<tr><td class=\"mono\">{}</td><td class=\"name\">{bot}</td><td class=\"name\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"mono\">{cert}</td><td>{}</td><td class=\"mono wrap\">{}</td></tr>",
                esc(&scalar(rec.get("ts"))),
                esc(&scalar(rec.get("kind"))),
                esc(&scalar(rec.get("status"))),
                esc(&scalar(rec.get("reason"))),
                esc(&peer_label(rec)),
            );
        }
        page.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn render_anomalies(&self, page: &mut String) {
        page.push_str("<section>\n<h2>Anomalies</h2>\n");
        if self.anomalies.total == 0 {
            page.push_str("<p class=\"note\">No anomalies recorded.</p>\n</section>\n");
            return;
        }
        self.anomalies.render_omitted(page);
        page.push_str(
            "<table>\n<thead><tr><th>Time (UTC)</th><th>Bot</th><th class=\"num\">Score</th>\
             <th>Detectors</th><th>Kind</th><th>Secret</th><th>Decision</th></tr></thead>\n<tbody>\n",
        );
        for rec in &self.anomalies.rows {
            let anomaly = rec.get("anomaly").unwrap_or(&Value::Null);
            let detectors = match anomaly.get("detectors") {
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|d| esc(&scalar(Some(d))))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => esc(&scalar(other)),
            };
            let bot = str_field(rec, "bot").map_or_else(|| "<em>unknown</em>".into(), esc);
            let _ = writeln!(
                page,
                "<tr><td class=\"mono\">{}</td><td class=\"name\">{bot}</td><td class=\"num\">{}</td>\
                 <td>{detectors}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&scalar(rec.get("ts"))),
                esc(&scalar(anomaly.get("score"))),
                esc(&scalar(rec.get("kind"))),
                esc(&scalar(rec.get("secret"))),
                decision_badge(str_field(rec, "decision")),
            );
        }
        page.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn render_bots(&self, page: &mut String) {
        if self.bots.is_empty() {
            return;
        }
        page.push_str("<section>\n<h2>Access by bot</h2>\n");
        page.push_str(
            "<p class=\"legend\"><span class=\"d d-allow\">allow</span> \
             <span class=\"d d-deny\">deny</span> <span class=\"d d-error\">error</span> \
             Timelines share the report's period; darker marks mean more requests.</p>\n",
        );
        for (i, (name, bot)) in self.bots.iter().enumerate() {
            let _ = writeln!(page, "<h3 id=\"bot-{i}\">{}</h3>", esc(name));
            if let Some(period) = self.period {
                bot.render_timeline(period, page);
            }
            bot.render_access(page);
        }
        page.push_str("</section>\n");
    }
}

// === impl BotView ===

impl<'a> BotView<'a> {
    fn add(&mut self, rec: &'a Value, decision: Option<&str>, period: Option<Period<'_>>) {
        self.requests += 1;
        match decision {
            Some("allow") => self.allowed += 1,
            Some("deny") => self.denied += 1,
            Some("error") => self.errors += 1,
            _ => {}
        }
        if let Some(secret) = str_field(rec, "secret") {
            self.secrets.insert(secret);
        }
        if let Some(ts) = str_field(rec, "ts") {
            self.first.get_or_insert(ts);
            self.last = Some(ts);
        }
        self.recent.push_back(rec);
        if self.recent.len() > ACCESS_ROWS_PER_BOT {
            self.recent.pop_front();
            self.omitted += 1;
        }

        let lane = decision_index(decision);
        if let (Some(period), Some(t), true) = (period, record_time(rec), lane < 3) {
            if self.buckets.is_empty() {
                self.buckets = vec![[0; 3]; BUCKETS];
            }
            let i = bucket_of(period, t);
            self.buckets[i][lane] = self.buckets[i][lane].saturating_add(1);
        }
    }

    fn render_summary_row(&self, label: &str, page: &mut String) {
        let _ = writeln!(
            page,
            "<tr><td class=\"name\">{label}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            self.requests,
            self.allowed,
            self.denied,
            self.errors,
            self.secrets.len(),
            esc(self.first.unwrap_or("")),
            esc(self.last.unwrap_or("")),
        );
    }

    /// Three lanes (allow, deny, error) across the period; one mark per
    /// non-empty bucket, its opacity growing with the bucket's count.
    fn render_timeline(&self, period: Period<'_>, page: &mut String) {
        const WIDTH: f64 = 1180.0;
        const LEFT: f64 = 52.0;
        const RIGHT: f64 = 12.0;
        const LANE: f64 = 14.0;
        const GAP: f64 = 4.0;
        const AXIS: f64 = 26.0;
        let plot = WIDTH - LEFT - RIGHT;
        let lanes_h = 3.0 * LANE + 2.0 * GAP;
        let height = lanes_h + AXIS;
        let bw = plot / BUCKETS as f64;
        let max = self
            .buckets
            .iter()
            .flat_map(|b| b.iter())
            .copied()
            .max()
            .unwrap_or(0)
            .max(1) as f64;

        let _ = writeln!(
            page,
            "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
             role=\"img\" aria-label=\"Requests over time\">"
        );
        for (lane, name) in ["allow", "deny", "error"].iter().enumerate() {
            let y = lane as f64 * (LANE + GAP);
            let _ = writeln!(
                page,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{name}</text>\
                 <rect class=\"lane\" x=\"{LEFT}\" y=\"{y}\" width=\"{plot}\" height=\"{LANE}\"/>",
                LEFT - 6.0,
                y + LANE - 3.0,
            );
        }
        for (i, bucket) in self.buckets.iter().enumerate() {
            for (lane, &count) in bucket.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let x = LEFT + i as f64 * bw;
                let y = lane as f64 * (LANE + GAP);
                let opacity = 0.35 + 0.65 * (count as f64 / max).sqrt();
                let start = bucket_start(period, i).strftime("%Y-%m-%d %H:%M:%S");
                let _ = writeln!(
                    page,
                    "<rect class=\"m{lane}\" x=\"{x:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{LANE}\" \
                     fill-opacity=\"{opacity:.2}\"><title>{count} {} from {start}Z</title></rect>",
                    bw.max(2.0),
                    ["allow", "deny", "error"][lane],
                );
            }
        }
        let axis = html::Axis {
            first: period.first.0,
            last: period.last.0,
            y: lanes_h + 4.0,
            left: LEFT,
            plot,
            pad: 0.0,
        };
        if axis.render(page) == 0 {
            // A period shorter than a second: label its start only.
            let _ = writeln!(
                page,
                "<text x=\"{LEFT}\" y=\"{:.1}\">{}</text>",
                axis.y + 17.0,
                period.first.0.strftime("%Y-%m-%d %H:%M:%S"),
            );
        }
        page.push_str("</svg>\n");
    }

    fn render_access(&self, page: &mut String) {
        if self.omitted > 0 {
            let _ = writeln!(
                page,
                "<p class=\"note\">Showing the latest {} of {} records; {} earlier records omitted.</p>",
                self.recent.len(),
                self.requests,
                self.omitted
            );
        }
        page.push_str(
            "<table>\n<thead><tr><th>Time (UTC)</th><th>Kind</th><th>Secret</th>\
             <th>Decision</th><th class=\"num\">Status</th><th>Reason</th>\
             <th>Process</th></tr></thead>\n<tbody>\n",
        );
        for rec in &self.recent {
            let _ = writeln!(
                page,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{}</td><td class=\"mono wrap\">{}</td></tr>",
                esc(&scalar(rec.get("ts"))),
                esc(&scalar(rec.get("kind"))),
                esc(&scalar(rec.get("secret"))),
                decision_badge(str_field(rec, "decision")),
                esc(&scalar(rec.get("status"))),
                esc(&scalar(rec.get("reason"))),
                esc(&peer_label(rec)),
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
}

// === impl Attempts ===

impl<'a> Attempts<'a> {
    fn add(&mut self, rec: &'a Value) {
        // A summary of refusals botward summed stands for `count` of them,
        // between its `first` and `last`.
        let summed = rec.get("detail").and_then(|d| d.get("aggregated"));
        let n = summed
            .and_then(|a| a.get("count"))
            .and_then(Value::as_u64)
            .unwrap_or(1);
        self.total += n;
        let key = (attempt_source(rec), str_field(rec, "reason").unwrap_or(""));
        if !self.groups.contains_key(&key) && self.groups.len() >= ATTEMPT_GROUPS {
            self.ungrouped += n;
            return;
        }
        let g = self.groups.entry(key).or_default();
        g.count += n;
        let times = match summed {
            Some(a) => [str_field(a, "first"), str_field(a, "last")],
            None => [str_field(rec, "ts"), str_field(rec, "ts")],
        };
        for ts in times.into_iter().flatten() {
            if g.first.is_none_or(|f| ts < f) {
                g.first = Some(ts);
            }
            if g.last.is_none_or(|l| ts > l) {
                g.last = Some(ts);
            }
        }
        let capped_insert = |set: &mut BTreeSet<&'a str>, more: &mut bool, v: &'a str| {
            if set.len() < CLAIMS_PER_GROUP || set.contains(v) {
                set.insert(v);
            } else {
                *more = true;
            }
        };
        if let Some(claim) = claimed_bot(rec) {
            capped_insert(&mut g.claims, &mut g.more_claims, claim);
        }
        if let Some(sha) = rec.get("cert").and_then(|c| str_field(c, "sha256")) {
            capped_insert(&mut g.certs, &mut g.more_certs, sha);
        }
    }

    fn render(&self, page: &mut String) {
        page.push_str("<section>\n<h2>Unauthenticated attempts</h2>\n");
        if self.total == 0 {
            page.push_str(
                "<p class=\"note\">No refused handshakes or unauthenticated requests recorded.</p>\n</section>\n",
            );
            return;
        }
        let _ = writeln!(
            page,
            "<p class=\"note\">{} refused handshake{} and unauthenticated request{}, by source and reason. \
             A claimed name is what an unverified certificate said; these attempts are not counted as \
             any bot&#39;s activity.</p>",
            self.total,
            plural(self.total as usize),
            plural(self.total as usize),
        );
        if self.ungrouped > 0 {
            let _ = writeln!(
                page,
                "<p class=\"note\">Showing the first {} sources and reasons; {} more attempt{} from others are \
                 counted above but not listed.</p>",
                self.groups.len(),
                self.ungrouped,
                plural(self.ungrouped as usize),
            );
        }
        page.push_str(
            "<table>\n<thead><tr><th>Source</th><th>Reason</th><th class=\"num\">Attempts</th>\
             <th>First (UTC)</th><th>Last (UTC)</th><th>Claimed bot</th>\
             <th>Certificate SHA-256</th></tr></thead>\n<tbody>\n",
        );
        for ((source, reason), g) in &self.groups {
            let mut claims = g
                .claims
                .iter()
                .map(|c| format!("<span class=\"claim\">claimed: {}</span>", esc(c)))
                .collect::<Vec<_>>()
                .join("<br>");
            let mut certs = g
                .certs
                .iter()
                .map(|c| esc(&prefix(c, 16)))
                .collect::<Vec<_>>()
                .join("<br>");
            for (list, more) in [(&mut claims, g.more_claims), (&mut certs, g.more_certs)] {
                if more {
                    list.push_str("<br><em>and others</em>");
                }
            }
            let _ = writeln!(
                page,
                "<tr><td class=\"mono wrap\">{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"name\">{claims}</td>\
                 <td class=\"mono\">{certs}</td></tr>",
                esc(source),
                esc(reason),
                g.count,
                esc(g.first.unwrap_or("")),
                esc(g.last.unwrap_or("")),
            );
        }
        page.push_str("</tbody>\n</table>\n</section>\n");
    }
}

/// Where an unauthenticated attempt came from: the address without its
/// port for TCP (each connection has its own), the uid and executable for
/// a unix socket.
fn attempt_source(rec: &Value) -> String {
    let Some(peer) = rec.get("peer").filter(|p| p.is_object()) else {
        return "unknown".into();
    };
    match str_field(peer, "transport") {
        // Sources as botward sums its refusals: every loopback address is
        // one, IPv6 counts by its /64.
        Some("tcp") => match str_field(peer, "addr") {
            Some(addr) => match addr.parse::<std::net::SocketAddr>() {
                Ok(sa) => format!("tcp {}", super::record::source_of_ip(sa.ip())),
                Err(_) => match addr.parse::<std::net::IpAddr>() {
                    Ok(ip) => format!("tcp {}", super::record::source_of_ip(ip)),
                    Err(_) => format!("tcp {}", super::record::truncate(addr, 64)),
                },
            },
            None => "tcp".into(),
        },
        Some(transport) => {
            let mut label = transport.to_string();
            for key in ["uid", "exe"] {
                let v = scalar(peer.get(key));
                if !v.is_empty() {
                    label.push_str(&format!(" {key}={v}"));
                }
            }
            label
        }
        None => "unknown".into(),
    }
}

// === impl Capped ===

impl<'a> Capped<'a> {
    fn push(&mut self, rec: &'a Value) {
        self.total += 1;
        self.rows.push_back(rec);
        if self.rows.len() > LIST_ROWS {
            self.rows.pop_front();
        }
    }

    fn render_omitted(&self, page: &mut String) {
        let omitted = self.total - self.rows.len() as u64;
        if omitted > 0 {
            let _ = writeln!(
                page,
                "<p class=\"note\">Showing the latest {} of {}; {omitted} earlier omitted.</p>",
                self.rows.len(),
                self.total
            );
        }
    }
}

fn render_chain(chain: &ChainStatus, page: &mut String) {
    let (class, mark) = if chain.ok {
        ("ok", "&#10003;")
    } else {
        ("bad", "&#10007;")
    };
    let _ = writeln!(
        page,
        "<section class=\"chain {class}\">\n<h2>Chain integrity</h2>\n\
         <p class=\"verdict\">{mark} {}</p>\n<p class=\"detail\">{}</p>\n</section>",
        esc(&chain.verdict),
        esc(&chain.detail),
    );
}

/// Index of a decision: allow 0, deny 1, error 2, anything else 3.
fn decision_index(decision: Option<&str>) -> usize {
    match decision {
        Some("allow") => 0,
        Some("deny") => 1,
        Some("error") => 2,
        _ => 3,
    }
}

fn decision_badge(decision: Option<&str>) -> String {
    let class = ["allow", "deny", "error", "other"][decision_index(decision)];
    format!(
        "<span class=\"d d-{class}\">{}</span>",
        esc(decision.unwrap_or("?"))
    )
}

fn bucket_of(period: Period<'_>, t: Timestamp) -> usize {
    let start = period.first.0.as_microsecond() as i128;
    let span = period.last.0.as_microsecond() as i128 - start + 1;
    let offset = (t.as_microsecond() as i128 - start).clamp(0, span - 1);
    (offset * BUCKETS as i128 / span) as usize
}

fn bucket_start(period: Period<'_>, i: usize) -> Timestamp {
    tick_time(period, i as f64 / BUCKETS as f64)
}

fn tick_time(period: Period<'_>, frac: f64) -> Timestamp {
    let start = period.first.0.as_microsecond();
    let span = (period.last.0.as_microsecond() - start) as f64;
    Timestamp::from_microsecond(start + (span * frac) as i64).unwrap_or(period.first.0)
}

/// The page's style sheet: the shared rules and its own.
const CSS: [&str; 7] = [
    r#":root { --ok: #1a7f37; --deny: #d4720b; --err: #cf222e; --line: #d0d7de; --muted: #57606a; }
"#,
    html::BASE_CSS,
    html::FACTS_CSS,
    html::TABLE_CSS,
    r#"tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; white-space: nowrap; }
.wrap { white-space: normal; overflow-wrap: anywhere; }
.name { white-space: nowrap; }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
.legend { color: var(--muted); }
.d { display: inline-block; padding: 0 7px; border-radius: 9px; color: #fff; font-size: 12px; font-weight: 600; }
.d-allow { background: var(--ok); }
.d-deny { background: var(--deny); }
.d-error { background: var(--err); }
.d-other { background: #6e7781; }
.chain { margin: 24px 0; padding: 10px 18px 12px; border: 2px solid; border-radius: 6px; }
.chain h2 { margin: 0 0 6px; border: 0; padding: 0; font-size: 15px; color: var(--muted); }
.chain.ok { border-color: var(--ok); background: #dafbe1; }
.chain.bad { border-color: var(--err); background: #ffebe9; }
.chain .verdict { margin: 0 0 4px; font-size: 19px; font-weight: 700; }
.chain.ok .verdict { color: var(--ok); }
.chain.bad .verdict { color: var(--err); }
.chain .detail { margin: 0; white-space: pre-wrap; word-break: break-word; }
.claim { color: var(--muted); font-style: italic; }
"#,
    html::TIMELINE_CSS,
    r#"svg.timeline .m0 { fill: var(--ok); }
svg.timeline .m1 { fill: var(--deny); }
svg.timeline .m2 { fill: var(--err); }
"#,
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(seq: u64, ts: &str, bot: Option<&str>, decision: &str) -> Value {
        json!({
            "v": 1, "seq": seq, "ts": ts, "id": format!("r{seq}"), "host": "rpa-01",
            "kind": "secret.read", "decision": decision,
            "status": if decision == "allow" { 200 } else { 403 }, "latency_us": 900,
            "bot": bot,
            "cert": {"sha256": "ab".repeat(32), "serial": "01", "not_after": "2027-01-01T00:00:00Z"},
            "peer": {"transport": "unix", "addr": null, "pid": 42, "uid": 1001, "exe": "/opt/rpa/runner"},
            "secret": "erp-db", "backend": null,
            "reason": if decision == "deny" { json!("not_granted") } else { Value::Null },
            "bytes": null, "anomaly": null, "prev": null, "mac": null
        })
    }

    fn ok_chain() -> ChainStatus {
        ChainStatus {
            verdict: "intact and sealed".into(),
            detail: "1 file, 3 records, last checkpoint at seq 2".into(),
            ok: true,
        }
    }

    fn render(records: &[Value], chain: &ChainStatus) -> String {
        let mut out = Vec::new();
        html(records, chain, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sample() -> Vec<Value> {
        vec![
            record(
                0,
                "2026-11-27T08:00:00.000000Z",
                Some("invoice-bot"),
                "allow",
            ),
            record(1, "2026-11-27T09:00:00.000000Z", Some("<b>"), "deny"),
            record(2, "2026-11-27T10:00:00.000000Z", None, "deny"),
        ]
    }

    #[test]
    fn report_has_no_script_and_shows_the_verdict() {
        let page = render(&sample(), &ok_chain());
        assert!(!page.to_ascii_lowercase().contains("<script"));
        assert!(page.contains("intact and sealed"));
        assert!(page.contains("class=\"chain ok\""));
        assert!(page.contains("<svg"));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn report_escapes_strings_from_records() {
        let mut recs = sample();
        recs[0]["reason"] = json!("x' onmouseover='y");
        recs[0]["peer"]["exe"] = json!("/tmp/<script>alert(1)</script>");
        let page = render(&recs, &ok_chain());
        assert!(page.contains("&lt;b&gt;"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("x&#39; onmouseover=&#39;y"));
        assert!(!page.to_ascii_lowercase().contains("<script"));
    }

    #[test]
    fn broken_chain_is_shown_in_red_and_escaped() {
        let chain = ChainStatus {
            verdict: "tampered".into(),
            detail: "audit.log line 7 (seq 6): edit <mac mismatch>".into(),
            ok: false,
        };
        let page = render(&sample(), &chain);
        assert!(page.contains("class=\"chain bad\""));
        assert!(page.contains("tampered"));
        assert!(page.contains("edit &lt;mac mismatch&gt;"));
    }

    #[test]
    fn summary_counts_per_bot_and_unknown_denials() {
        let page = render(&sample(), &ok_chain());
        assert!(page.contains("unidentified peers"));
        assert!(page.contains("<em>unknown</em>"));
        assert!(page.contains("not_granted"));
        assert!(page.contains("abababababababab…"));
        assert!(page.contains("2026-11-27T08:00:00.000000Z &ndash; 2026-11-27T10:00:00.000000Z"));
    }

    #[test]
    fn anomalies_are_listed_or_said_to_be_absent() {
        let mut recs = sample();
        assert!(render(&recs, &ok_chain()).contains("No anomalies recorded."));
        recs[0]["anomaly"] = json!({"score": 87.5, "detectors": ["off_schedule", "new_source"]});
        let page = render(&recs, &ok_chain());
        assert!(!page.contains("No anomalies recorded."));
        assert!(page.contains("off_schedule, new_source"));
        assert!(page.contains("87.5"));
    }

    #[test]
    fn access_table_keeps_only_the_latest_rows() {
        let recs: Vec<Value> = (0..ACCESS_ROWS_PER_BOT as u64 + 50)
            .map(|i| {
                let ts = format!("2026-11-27T10:{:02}:{:02}.000000Z", i / 60, i % 60);
                record(i, &ts, Some("busy-bot"), "allow")
            })
            .collect();
        let page = render(&recs, &ok_chain());
        assert!(page.contains("50 earlier records omitted"));
        assert!(!page.contains("2026-11-27T10:00:49.000000Z"));
        assert!(page.contains("2026-11-27T10:00:50.000000Z"));
    }

    #[test]
    fn timeline_stays_small_for_many_records() {
        let recs: Vec<Value> = (0..20_000u64)
            .map(|i| {
                let t = Timestamp::from_second(1_795_000_000 + i as i64 * 7).unwrap();
                let ts = t.strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string();
                record(
                    i,
                    &ts,
                    Some("b"),
                    ["allow", "deny", "error"][(i % 3) as usize],
                )
            })
            .collect();
        let page = render(&recs, &ok_chain());
        let svg_marks = page.matches("<rect class=\"m").count();
        assert!(svg_marks <= 3 * BUCKETS, "{svg_marks} marks");
        assert!(page.len() < 2_000_000, "{} bytes", page.len());
    }

    #[test]
    fn empty_log_still_renders() {
        let page = render(&[], &ok_chain());
        assert!(page.contains("No bot activity recorded."));
        assert!(page.contains("No anomalies recorded."));
        assert!(page.contains("</html>"));
    }

    #[test]
    fn buckets_cover_the_period() {
        let first = Timestamp::from_second(1_000).unwrap();
        let last = Timestamp::from_second(2_000).unwrap();
        let p = Period {
            first: (first, ""),
            last: (last, ""),
        };
        assert_eq!(bucket_of(p, first), 0);
        assert_eq!(bucket_of(p, last), BUCKETS - 1);
        let single = Period {
            first: (first, ""),
            last: (first, ""),
        };
        assert_eq!(bucket_of(single, first), 0);
    }

    /// Refused handshakes from one address: as 909baa2 wrote them (the
    /// claimed name in `bot`) and as they are written now.
    fn attempts() -> Vec<Value> {
        (0..4u64)
            .map(|i| {
                let mut r = record(
                    10 + i,
                    &format!("2026-11-27T09:3{i}:00.000000Z"),
                    None,
                    "deny",
                );
                r["kind"] = json!("auth.failure");
                r["status"] = json!(0);
                r["reason"] = json!("unknown_issuer");
                r["secret"] = Value::Null;
                r["cert"]["sha256"] = json!("ee".repeat(32));
                r["peer"] = json!({"transport": "tcp", "addr": format!("203.0.113.7:{}", 40000 + i),
                    "pid": null, "uid": null, "exe": null});
                if i % 2 == 0 {
                    r["bot"] = json!("invoice-bot");
                } else {
                    r["claimed_bot"] = json!("invoice-bot");
                }
                r
            })
            .collect()
    }

    #[test]
    fn a_summary_of_summed_refusals_counts_as_all_of_them() {
        let mut recs = sample();
        let mut summary = attempts()[0].clone();
        summary["detail"] = json!({"aggregated": {"count": 499, "first": "2026-11-27T09:30:01.000000Z", "last": "2026-11-27T09:30:09.000000Z", "window_s": 10, "source": "127.0.0.1"}});
        recs.push(attempts()[0].clone());
        recs.push(summary);
        let page = render(&recs, &ok_chain());
        let section = page
            .split("<h2>Unauthenticated attempts</h2>")
            .nth(1)
            .unwrap();
        assert!(section.contains(">500<"), "{section}");
        assert!(section.contains("2026-11-27T09:30:09"), "{section}");
    }

    #[test]
    fn unauthenticated_attempts_are_the_hosts_not_the_claimed_bots() {
        let mut recs = sample();
        recs.extend(attempts());
        let page = render(&recs, &ok_chain());
        // invoice-bot made one request, allowed; the claims are not its.
        assert!(
            page.contains(
                "<a href=\"#bot-1\">invoice-bot</a></td><td class=\"num\">1</td>\
                 <td class=\"num\">1</td><td class=\"num\">0</td>"
            ),
            "{page}"
        );
        let section = page
            .split("<h2>Unauthenticated attempts</h2>")
            .nth(1)
            .and_then(|s| s.split("</section>").next())
            .expect("a section of its own");
        assert!(section.contains("4 refused handshakes"), "{section}");
        assert!(
            section.contains(
                "<td class=\"mono wrap\">tcp 203.0.113.7</td><td>unknown_issuer</td>\
             <td class=\"num\">4</td>"
            ),
            "{section}"
        );
        assert!(section.contains("claimed: invoice-bot"), "{section}");
        assert!(section.contains("2026-11-27T09:30:00.000000Z"));
        assert!(section.contains("2026-11-27T09:33:00.000000Z"));
        let denials = page.split("<h2>Denials</h2>").nth(1).unwrap();
        let denials = denials.split("</section>").next().unwrap();
        assert!(!denials.contains("unknown_issuer"), "{denials}");
        let access = page
            .split("<h3 id=\"bot-1\">invoice-bot</h3>")
            .nth(1)
            .unwrap();
        assert!(
            !access.contains("203.0.113.7"),
            "invoice-bot's accesses hold no attempt"
        );
    }

    #[test]
    fn attempts_are_grouped_within_bounds() {
        let recs: Vec<Value> = (0..(ATTEMPT_GROUPS as u64 + 20))
            .map(|i| {
                let mut r = attempts()[0].clone();
                r["peer"]["addr"] = json!(format!("10.0.{}.{}:5000", i / 250, i % 250));
                r
            })
            .collect();
        let page = render(&recs, &ok_chain());
        assert!(page.contains("20 more attempts from others"), "bounded");
        assert_eq!(
            page.matches("<td class=\"mono wrap\">tcp 10.0.").count(),
            ATTEMPT_GROUPS
        );
    }

    /// One elevation record of `bot` on `payroll-db`.
    fn elevation(seq: u64, bot: &str, kind: &str, decision: &str, elevation: Value) -> Value {
        let mut r = record(
            seq,
            &format!("2026-11-27T11:{seq:02}:00.000000Z"),
            Some(bot),
            decision,
        );
        r["kind"] = json!(kind);
        r["secret"] = json!("payroll-db");
        r["detail"] = json!({ "elevation": elevation });
        r
    }

    /// Two windows of report-bot (one read in, one not) and a denied one of
    /// a bot whose name is markup.
    fn elevations() -> Vec<Value> {
        let id = |n: u8| format!("{n:032x}");
        let open = |n| {
            json!({"id": id(n), "approvers": ["finance-lead@corp.example", "cfo@corp.example"],
            "not_before": "2026-11-27T11:00:00Z", "not_after": "2026-11-27T11:15:00Z"})
        };
        let closed = |n, reads: Value| {
            let mut e = open(n);
            e["closed"] = json!("expired");
            e["reads"] = reads;
            e["leases_revoked"] = json!(0);
            e
        };
        let mut recs = sample();
        for n in [1, 2] {
            recs.push(elevation(
                10 * u64::from(n),
                "report-bot",
                "elevation.request",
                "allow",
                json!({"id": id(n), "duration_s": 900, "ticket": "CHG-1234", "reason": "<b>quarter end</b>"}),
            ));
            recs.push(elevation(
                10 * u64::from(n) + 1,
                "report-bot",
                "elevation.open",
                "allow",
                open(n),
            ));
        }
        recs.push(elevation(
            12,
            "report-bot",
            "elevation.close",
            "allow",
            closed(
                1,
                json!([{"ts": "2026-11-27T11:05:00Z", "request_id": "r9"}]),
            ),
        ));
        recs.push(elevation(
            22,
            "report-bot",
            "elevation.close",
            "allow",
            closed(2, json!([])),
        ));
        recs.push(elevation(
            30,
            "<i>x</i>",
            "elevation.request",
            "allow",
            json!({"id": id(3)}),
        ));
        recs.push(elevation(
            31,
            "<i>x</i>",
            "elevation.decision",
            "allow",
            json!({"id": id(3), "decision": "deny", "approver": "finance-lead@corp.example",
                "via": "mailbox", "status": "denied"}),
        ));
        recs
    }

    fn section<'p>(page: &'p str, title: &str) -> &'p str {
        page.split(&format!("<h2>{title}</h2>"))
            .nth(1)
            .and_then(|s| s.split("</section>").next())
            .expect("the section")
    }

    #[test]
    fn elevations_are_counted_per_bot() {
        let page = render(&elevations(), &ok_chain());
        let section = section(&page, "Elevations");
        assert!(
            section.contains(
                "<a href=\"#bot-3\">report-bot</a></td><td class=\"num\">2</td>\
                 <td class=\"num\">2</td><td class=\"num\">0</td><td class=\"num\">1</td>\
                 <td class=\"num\">1</td></tr>"
            ),
            "{section}"
        );
        assert!(
            section.contains(
                "<a href=\"#bot-1\">&lt;i&gt;x&lt;/i&gt;</a></td><td class=\"num\">1</td>\
                 <td class=\"num\">0</td><td class=\"num\">1</td><td class=\"num\">0</td>\
                 <td class=\"num\">0</td></tr>"
            ),
            "{section}"
        );
        assert!(!section.contains("invoice-bot"), "no elevations, no row");
        assert!(!page.contains("<i>") && !page.contains("<b>quarter"));
    }

    #[test]
    fn the_servers_elevation_events_are_not_the_bots_requests() {
        let page = render(&elevations(), &ok_chain());
        // report-bot made its two requests; opening and closing the windows
        // were the server's doing.
        assert!(
            page.contains(
                "<a href=\"#bot-3\">report-bot</a></td><td class=\"num\">2</td>\
                 <td class=\"num\">2</td><td class=\"num\">0</td><td class=\"num\">0</td>"
            ),
            "{page}"
        );
        let access = page
            .split("<h3 id=\"bot-3\">report-bot</h3>")
            .nth(1)
            .unwrap();
        assert!(!access.contains("elevation.open") && !access.contains("elevation.close"));
        assert!(access.contains("elevation.request"));
    }

    #[test]
    fn a_log_without_elevations_says_so() {
        let page = render(&sample(), &ok_chain());
        assert!(section(&page, "Elevations").contains("No just-in-time elevations recorded."));
    }
}
