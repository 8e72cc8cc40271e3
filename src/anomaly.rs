//! Behavioural anomaly analysis per bot, and least-privilege findings.
//!
//! Bots should be boring. For each bot botward learns, over a training
//! window, when its runs start (hour of week, in the bot host's local time),
//! how many requests a run makes (median and MAD), which secrets it reads,
//! from which sources, and in which order (secret bigrams). After the window
//! every run and request is scored by six detectors with fixed names
//! ([`Detector::BEHAVIOURAL`]): `off_schedule`, `volume_spike`,
//! `new_secret`, `new_source`, `sequence_change` and `denied_burst`.
//!
//! A *run* is one bot's requests separated by gaps shorter than
//! [`RUN_GAP`]. Memory is bounded by the number of bots, not records: each
//! bot keeps a fixed-size model and the run in progress.
//!
//! Only verified identities have a model. Refused handshakes and
//! unauthenticated requests are the host's events
//! ([`crate::audit::query::unverified`]): they are counted, never learned
//! or scored as a bot's, whatever name their record carries (logs written
//! before `claimed_bot` existed put the certificate's claim in `bot`).
//!
//! Least privilege is judged on grants rebuilt from the log ([`grants`]):
//! `unused_grant` and `privilege_creep`. Per bot the analysis also counts
//! its just-in-time elevations ([`crate::audit::elevations`]); the server's
//! and approvers' elevation events (decisions, windows opening and closing)
//! are counted, never scored as the bot's requests.
//!
//! [`model`] holds the per-bot model, shared by `botward analyze` and online
//! scoring in `serve`. With the `testkit` feature, `scenario` generates
//! labelled test logs; the shipped binary is built without it.

mod finding;
mod grants;
pub mod html;
pub mod model;
pub mod online;
#[cfg(feature = "testkit")]
pub mod scenario;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use finding::{fmt_ts, Detector, Finding};
pub use model::{BotModel, Event, RUN_GAP};

use crate::audit::elevations::{self, Elevations};
use grants::Grants;

/// Options of an analysis.
#[derive(Clone, Debug)]
pub struct Options {
    pub train: jiff::SignedDuration,
    pub tz: TimeZone,
}

/// The result of `botward analyze`.
#[derive(Debug, Default, Serialize)]
pub struct Analysis {
    pub findings: Vec<Finding>,
    /// Per bot: the secrets it used in the last 90 days, the grant it needs.
    pub suggested_grants: BTreeMap<String, Vec<String>>,
    /// Per verified bot of the log: what it shows of the bot beyond its
    /// findings.
    pub per_bot: BTreeMap<String, BotSummary>,
    pub records: u64,
    pub bots: usize,
    /// Refused handshakes and unauthenticated requests: the host's, never a
    /// bot's.
    pub unauthenticated: u64,
    pub warnings: Vec<String>,
    /// Bot-days scored after training, for rates.
    pub scored_bot_days: f64,
}

/// One bot's summary.
#[derive(Debug, Default, Serialize)]
pub struct BotSummary {
    pub elevations: Elevations,
}

#[derive(Deserialize)]
struct Light<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    decision: Option<std::borrow::Cow<'a, str>>,
    status: Option<u64>,
    #[serde(borrow)]
    bot: Option<std::borrow::Cow<'a, str>>,
    claimed_bot: Option<serde::de::IgnoredAny>,
    #[serde(borrow)]
    secret: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<std::borrow::Cow<'a, str>>,
    /// Set on a read inside an elevation window.
    elevation: Option<serde::de::IgnoredAny>,
    #[serde(borrow)]
    host: Option<std::borrow::Cow<'a, str>>,
    peer: Option<LightPeer<'a>>,
    hash: Option<&'a str>,
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LightPeer<'a> {
    #[serde(borrow)]
    transport: Option<std::borrow::Cow<'a, str>>,
    uid: Option<u32>,
    #[serde(borrow)]
    exe: Option<std::borrow::Cow<'a, str>>,
}

/// Streams audit lines through the per-bot models.
pub struct Analyzer {
    opts: Options,
    bots: HashMap<String, BotModel>,
    grants: Grants,
    out: Analysis,
    saw_chain: bool,
    last_ts: Option<Timestamp>,
    first_ts: Option<Timestamp>,
}

impl Analyzer {
    pub fn new(opts: Options) -> Analyzer {
        Analyzer {
            opts,
            bots: HashMap::new(),
            grants: Grants::default(),
            out: Analysis::default(),
            saw_chain: false,
            last_ts: None,
            first_ts: None,
        }
    }

    /// Treats `secrets` as privileged (readable only inside an elevation
    /// window), e.g. those of the config, whatever the log shows.
    pub fn privileged(mut self, secrets: impl IntoIterator<Item = String>) -> Analyzer {
        self.grants.add_privileged(secrets);
        self
    }

    /// Feeds one audit line. Lines that are not records are skipped.
    pub fn line(&mut self, line: &[u8]) {
        let Ok(r) = serde_json::from_slice::<Light<'_>>(line) else {
            return;
        };
        let Ok(ts) = r.ts.parse::<Timestamp>() else {
            return;
        };
        self.out.records += 1;
        self.saw_chain |= r.hash.is_some();
        self.first_ts.get_or_insert(ts);
        self.last_ts = Some(ts);
        match r.kind.as_ref() {
            "server.start" | "config.reload" => {
                self.grant_changes(&r, ts);
                return;
            }
            _ => {}
        }
        if crate::audit::query::unverified(&r.kind, r.status, r.claimed_bot.is_some()) {
            // A summary of refusals botward summed stands for `count`.
            let n = r
                .detail
                .as_ref()
                .and_then(|d| d.pointer("/aggregated/count"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            self.out.unauthenticated += n;
            return;
        }
        let Some(bot) = r.bot.as_deref() else { return };
        self.grant_use(&r, bot, ts);
        if !self.out.per_bot.contains_key(bot) {
            self.out
                .per_bot
                .insert(bot.to_owned(), BotSummary::default());
        }
        if r.kind.starts_with("elevation.") {
            if let Some(summary) = self.out.per_bot.get_mut(bot) {
                summary
                    .elevations
                    .count(&r.kind, r.decision.as_deref(), r.detail.as_ref());
            }
            if elevations::is_event(&r.kind) {
                return;
            }
        }
        let peer = r.peer.as_ref();
        let ev = Event {
            ts,
            kind: r.kind.as_ref(),
            secret: r.secret.as_deref(),
            denied: r.decision.as_deref() == Some("deny"),
            source: model::source_key(
                r.host.as_deref().unwrap_or(""),
                peer.and_then(|p| p.transport.as_deref()).unwrap_or(""),
                peer.and_then(|p| p.uid),
                peer.and_then(|p| p.exe.as_deref()),
            ),
            id: r.id.as_deref().unwrap_or(""),
        };
        let tz = self.opts.tz.clone();
        let train = self.opts.train;
        let model = self
            .bots
            .entry(bot.to_owned())
            .or_insert_with(|| BotModel::new(bot, ts, train));
        model.observe(&ev, &tz, &mut self.out.findings, true);
    }

    fn grant_changes(&mut self, r: &Light<'_>, ts: Timestamp) {
        let Some(d) = &r.detail else { return };
        if r.kind == "server.start" {
            self.grants.at_start(d, r.id.as_deref(), ts);
        } else if r.decision.as_deref() == Some("allow") {
            self.grants.reloaded(d, r.id.as_deref(), ts);
        }
    }

    /// What a bot's record tells of its grants: a read, an elevation
    /// request, or that its secret is privileged.
    fn grant_use(&mut self, r: &Light<'_>, bot: &str, ts: Timestamp) {
        let Some(secret) = r.secret.as_deref() else {
            return;
        };
        let decision = r.decision.as_deref();
        if r.kind == "secret.read" && decision == Some("allow") {
            self.grants.used(bot, secret, ts);
        }
        if r.kind == "elevation.request" {
            self.grants.elevation_requested(bot, secret, ts);
        }
        if elevations::shows_privileged(
            &r.kind,
            decision,
            r.reason.as_deref(),
            r.elevation.is_some(),
        ) {
            self.grants.mark_privileged(secret);
        }
    }

    /// Closes open runs and adds the least-privilege findings.
    pub fn finish(mut self) -> Analysis {
        if !self.saw_chain && self.out.records > 0 {
            self.out.warnings.push("the records carry no chain fields; they were analysed unverified (use `botward audit verify`)".into());
        }
        let end = self.last_ts.unwrap_or_else(Timestamp::now);
        let tz = self.opts.tz.clone();
        let mut bots: Vec<_> = self.bots.into_values().collect();
        bots.sort_by(|a, b| a.name.cmp(&b.name));
        for m in &mut bots {
            m.finish(&tz, &mut self.out.findings);
            self.out.scored_bot_days += m.scored_days(end);
        }
        self.out.bots = bots.len();
        self.out.suggested_grants =
            self.grants
                .findings(self.first_ts, end, &mut self.out.findings);
        self.out
            .findings
            .sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.bot.cmp(&b.bot)));
        self.out
    }
}

/// A short text summary. Every string from the log is escaped
/// ([`crate::text::escape`]): one finding is one line.
pub fn text(a: &Analysis) -> String {
    use crate::text::escape;
    let mut s = String::new();
    let _ = write!(
        s,
        "{} records, {} bots, {:.0} bot-days scored; {} findings",
        a.records,
        a.bots,
        a.scored_bot_days,
        a.findings.len()
    );
    if a.unauthenticated > 0 {
        let _ = write!(
            s,
            "; {} unauthenticated attempts, the host's, not any bot's",
            a.unauthenticated
        );
    }
    s.push('\n');
    for w in &a.warnings {
        let _ = writeln!(s, "warning: {}", escape(w));
    }
    for f in &a.findings {
        let _ = writeln!(
            s,
            "{}  {:<16} {:<16} {:>3}  {}",
            escape(&f.start),
            escape(&f.bot),
            escape(f.detector.as_str()),
            f.score,
            escape(&f.explanation)
        );
    }
    if !a.suggested_grants.is_empty() {
        let _ = writeln!(
            s,
            "\nsuggested minimal grants (secrets read in the last 90 days):"
        );
        for (bot, secrets) in &a.suggested_grants {
            let _ = writeln!(
                s,
                "  {}: [{}]",
                escape(bot),
                secrets
                    .iter()
                    .map(|x| escape(&format!("{x:?}")).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    text_elevations(a, &mut s);
    s
}

/// The elevations of the bots with any, one line per bot.
fn text_elevations(a: &Analysis, s: &mut String) {
    use crate::text::escape;
    let mut bots = a.per_bot.iter().filter(|(_, b)| !b.elevations.is_empty());
    let Some(first) = bots.next() else { return };
    let _ = writeln!(s, "\njust-in-time elevations:");
    for (bot, b) in std::iter::once(first).chain(bots) {
        let e = b.elevations;
        let _ = writeln!(
            s,
            "  {}: {} requested, {} approved, {} denied, {} used, {} unused",
            escape(bot),
            e.requested,
            e.approved,
            e.denied,
            e.used,
            e.unused
        );
    }
}
