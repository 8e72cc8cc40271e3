//! Behavioural anomaly analysis per bot, and least-privilege findings.
//!
//! Bots should be boring. For each bot botward learns, over a training
//! window, when its runs start (hour of week, in the bot host's local time),
//! how many requests a run makes (median and MAD), which secrets it reads,
//! from which sources, and in which order (secret bigrams). After the window
//! every run and request is scored by six detectors with fixed names:
//! `off_schedule`, `volume_spike`, `new_secret`, `new_source`,
//! `sequence_change` and `denied_burst`.
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
//! [`model`] holds the per-bot model, shared by `botward analyze` and online
//! scoring in `serve`; [`scenario`] generates labelled test logs.

pub mod html;
pub mod model;
pub mod online;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use model::{BotModel, Event, RUN_GAP};

/// The behavioural detectors; reports and SIEM rules key on these names.
pub const DETECTORS: [&str; 6] = [
    "off_schedule",
    "volume_spike",
    "new_secret",
    "new_source",
    "sequence_change",
    "denied_burst",
];

/// One finding, in the contract's JSON shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub bot: String,
    pub detector: String,
    pub score: u8,
    pub start: String,
    pub end: String,
    pub actual: serde_json::Value,
    pub typical: serde_json::Value,
    pub explanation: String,
    pub evidence: Vec<String>,
}

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
    pub records: u64,
    pub bots: usize,
    /// Refused handshakes and unauthenticated requests: the host's, never a
    /// bot's.
    pub unauthenticated: u64,
    pub warnings: Vec<String>,
    /// Bot-days scored after training, for rates.
    pub scored_bot_days: f64,
}

/// Grants over time, rebuilt from `server.start` and `config.reload`
/// records, and last use per grant.
#[derive(Default)]
struct Grants {
    current: BTreeMap<String, BTreeSet<String>>,
    /// When each (bot, secret) grant was first seen.
    since: HashMap<(String, String), Timestamp>,
    last_use: HashMap<(String, String), Timestamp>,
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
        let allowed = r.decision.as_deref() == Some("allow");
        if r.kind == "secret.read" && allowed {
            if let Some(s) = r.secret.as_deref() {
                self.grants
                    .last_use
                    .insert((bot.to_owned(), s.to_owned()), ts);
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
            if let Some(g) = d.get("grants").and_then(|g| g.as_object()) {
                self.grants.current.clear();
                for (bot, secrets) in g {
                    let set: BTreeSet<String> = secrets
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect();
                    for s in &set {
                        self.grants
                            .since
                            .entry((bot.clone(), s.clone()))
                            .or_insert(ts);
                    }
                    self.grants.current.insert(bot.clone(), set);
                }
            }
            return;
        }
        if r.decision.as_deref() != Some("allow") {
            return;
        }
        let ticket = d
            .get("change_ticket")
            .and_then(|t| t.as_str())
            .filter(|t| !t.trim().is_empty());
        for g in d
            .get("added_grants")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            let (Some(bot), Some(secret)) = (
                g.get("bot").and_then(|b| b.as_str()),
                g.get("secret").and_then(|s| s.as_str()),
            ) else {
                continue;
            };
            self.grants
                .current
                .entry(bot.to_owned())
                .or_default()
                .insert(secret.to_owned());
            self.grants
                .since
                .insert((bot.to_owned(), secret.to_owned()), ts);
            if ticket.is_none() {
                self.out.findings.push(Finding {
                    bot: bot.to_owned(),
                    detector: "privilege_creep".into(),
                    score: 70,
                    start: fmt_ts(ts),
                    end: fmt_ts(ts),
                    actual: serde_json::json!({"added_grant": secret, "change_ticket": null}),
                    typical: serde_json::json!("grants are added with a change ticket"),
                    explanation: format!(
                        "a config reload granted {secret:?} to {bot} without a change ticket"
                    ),
                    evidence: r
                        .id
                        .as_deref()
                        .map(|i| vec![i.to_owned()])
                        .unwrap_or_default(),
                });
            }
        }
        for g in d
            .get("removed_grants")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(bot), Some(secret)) = (
                g.get("bot").and_then(|b| b.as_str()),
                g.get("secret").and_then(|s| s.as_str()),
            ) {
                if let Some(set) = self.grants.current.get_mut(bot) {
                    set.remove(secret);
                }
            }
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
        // Unused grants over 30, 60 and 90 days, judged at the end of the log.
        let day = jiff::SignedDuration::from_hours(24);
        for (bot, secrets) in &self.grants.current {
            let used: Vec<String> = secrets
                .iter()
                .filter(|s| {
                    self.grants
                        .last_use
                        .get(&(bot.clone(), (*s).clone()))
                        .is_some_and(|l| end.duration_since(*l) < day * 90)
                })
                .cloned()
                .collect();
            for s in secrets {
                let key = (bot.clone(), s.clone());
                let last = self.grants.last_use.get(&key).copied();
                let since = self
                    .grants
                    .since
                    .get(&key)
                    .copied()
                    .or(self.first_ts)
                    .unwrap_or(end);
                let idle_from = last.unwrap_or(since);
                let idle_days = end.duration_since(idle_from).as_secs() / 86_400;
                let Some(&threshold) = [90i64, 60, 30].iter().find(|t| idle_days >= **t) else {
                    continue;
                };
                self.out.findings.push(Finding {
                    bot: bot.clone(),
                    detector: "unused_grant".into(),
                    score: match threshold {
                        90 => 80,
                        60 => 60,
                        _ => 40,
                    },
                    start: fmt_ts(idle_from),
                    end: fmt_ts(end),
                    actual: serde_json::json!({"secret": s, "idle_days": idle_days, "last_used": last.map(fmt_ts)}),
                    typical: serde_json::json!({"used_within_days": threshold, "suggested_grant": used}),
                    explanation: format!(
                        "{bot} is granted {s:?} but has not read it in {idle_days} days ({}); suggested grant: [{}]",
                        last.map_or("never read in this log".into(), |l| format!("last read {}", fmt_ts(l))),
                        used.join(", ")
                    ),
                    evidence: Vec::new(),
                });
            }
            self.out.suggested_grants.insert(bot.clone(), used);
        }
        self.out
            .findings
            .sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.bot.cmp(&b.bot)));
        let _ = self.first_ts;
        self.out
    }
}

pub fn fmt_ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
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
            escape(&f.detector),
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
    s
}
