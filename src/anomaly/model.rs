//! The per-bot behavioural model: what is learned, and how each request and
//! run is scored. One model serves both `botward analyze` (offline) and
//! online scoring in `serve`; its size is fixed whatever the traffic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{fmt_ts, Detector, Finding};

/// Requests of one bot closer together than this form one run.
pub const RUN_GAP: SignedDuration = SignedDuration::from_mins(5);
/// Window for `denied_burst`.
const DENIAL_WINDOW: SignedDuration = SignedDuration::from_mins(10);
/// Caps that keep a model's memory fixed.
const MAX_SECRETS: usize = 1024;
const MAX_BIGRAMS: usize = 8192;
const MAX_SOURCES: usize = 256;
const MAX_SIZES: usize = 256;
const MAX_EVIDENCE: usize = 20;
const MAX_SEQ: usize = 256;

/// One request, as the detectors see it.
pub struct Event<'a> {
    pub ts: Timestamp,
    pub kind: &'a str,
    pub secret: Option<&'a str>,
    pub denied: bool,
    pub source: Source<'a>,
    pub id: &'a str,
}

/// Where a request came from: the bot host, the transport and, for a unix
/// socket, the peer's uid and executable. An empty part (or no uid) is
/// unknown. Its text form is `host|transport|uid|exe`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source<'a> {
    pub host: &'a str,
    pub transport: &'a str,
    pub uid: Option<u32>,
    pub exe: &'a str,
}

/// The names of a source's parts, in the order of [`Source::parts`].
const SOURCE_PARTS: [&str; 4] = ["host", "transport", "uid", "exe"];

impl<'a> Source<'a> {
    /// Reads `host|transport|uid|exe`; the executable may hold `|`.
    pub fn parse(s: &'a str) -> Option<Source<'a>> {
        let mut parts = s.splitn(4, '|');
        let (host, transport, uid, exe) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Source {
            host,
            transport,
            uid: uid.parse().ok(),
            exe,
        })
    }

    /// The parts as text: host, transport, uid and exe.
    fn parts(&self) -> [std::borrow::Cow<'a, str>; 4] {
        [
            self.host.into(),
            self.transport.into(),
            self.uid.map(|u| u.to_string()).unwrap_or_default().into(),
            self.exe.into(),
        ]
    }
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|", self.host, self.transport)?;
        if let Some(uid) = self.uid {
            write!(f, "{uid}")?;
        }
        write!(f, "|{}", self.exe)
    }
}

/// The source of a request, from its parts.
pub fn source_key<'a>(
    host: &'a str,
    transport: &'a str,
    uid: Option<u32>,
    exe: Option<&'a str>,
) -> Source<'a> {
    Source {
        host,
        transport,
        uid,
        exe: exe.unwrap_or(""),
    }
}

/// The learned behaviour of one bot, and its run in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BotModel {
    pub name: String,
    first_seen: Timestamp,
    train_until: Timestamp,
    /// Run starts per hour of the week (Monday 00:00 = 0), local time.
    starts: Vec<u32>,
    /// Run sizes in the same class of day (month end or not).
    sizes: BTreeMap<bool, VecDeque<u32>>,
    secrets: BTreeSet<String>,
    /// Secret order within runs: "a>b", with "^" for a run's start and "$"
    /// for its end.
    bigrams: BTreeSet<String>,
    /// Known values per source part: host, transport, uid, exe.
    sources: [BTreeSet<String>; 4],
    max_denials: u32,
    run: Option<Run>,
    scored_from: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Run {
    start: Timestamp,
    last: Timestamp,
    count: u32,
    month_end: bool,
    seq: Vec<String>,
    evidence: Vec<String>,
    denials: VecDeque<Timestamp>,
    /// Detectors already fired for this run, with their scores; saved
    /// baselines key them by name.
    fired: BTreeMap<Detector, u8>,
    scoring: bool,
}

/// What one request triggered, for online scoring.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    pub score: u8,
    pub detectors: Vec<Detector>,
}

/// How a request is taken: scored (after training) or learned from, and
/// whether what it flags is learned too.
#[derive(Clone, Copy)]
struct Mode {
    scoring: bool,
    learn: bool,
}

// === impl BotModel ===

impl BotModel {
    pub fn new(name: &str, first_seen: Timestamp, train: SignedDuration) -> BotModel {
        BotModel {
            name: name.to_owned(),
            first_seen,
            // A record near the end of time, or a huge window, trains to
            // the end of time rather than overflowing.
            train_until: first_seen.checked_add(train).unwrap_or(Timestamp::MAX),
            starts: vec![0; 168],
            sizes: BTreeMap::new(),
            secrets: BTreeSet::new(),
            bigrams: BTreeSet::new(),
            sources: Default::default(),
            max_denials: 0,
            run: None,
            scored_from: None,
        }
    }

    pub fn training(&self, ts: Timestamp) -> bool {
        ts < self.train_until
    }

    /// Bot-days scored up to `end`.
    pub fn scored_days(&self, end: Timestamp) -> f64 {
        match self.scored_from {
            Some(from) if end > from => end.duration_since(from).as_secs_f64() / 86_400.0,
            _ => 0.0,
        }
    }

    /// Takes one request: learns during training, scores after. Findings of
    /// closed runs and of single requests go to `findings`; the return value
    /// is this request's verdict for online scoring. With `learn_flagged`, a
    /// new secret, source or order is flagged once and then accepted;
    /// without it (a bot whose anomalies are denied) it stays anomalous.
    pub fn observe(
        &mut self,
        ev: &Event<'_>,
        tz: &TimeZone,
        findings: &mut Vec<Finding>,
        learn_flagged: bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        // A refused handshake proves no identity: whatever name it carried,
        // it is neither learned nor scored as this bot's.
        if ev.kind == "auth.failure" {
            return verdict;
        }
        if self
            .run
            .as_ref()
            .is_some_and(|r| ev.ts.duration_since(r.last) > RUN_GAP)
        {
            self.close_run(findings);
        }
        let scoring = !self.training(ev.ts);
        if scoring && self.scored_from.is_none() {
            self.scored_from = Some(self.train_until.max(self.first_seen));
        }
        let mode = Mode {
            scoring,
            learn: !scoring || learn_flagged,
        };
        if self.run.is_none() {
            self.start_run(ev, tz, scoring, &mut verdict);
        }
        self.extend_run(ev);
        if ev.kind == "secret.read" {
            if let Some(s) = ev.secret {
                let known = self.new_secret(ev, s, mode, findings, &mut verdict);
                self.sequence_change(ev, s, known, mode, &mut verdict);
            }
        }
        self.new_source(ev, mode, findings, &mut verdict);
        self.denied_burst(ev, scoring, &mut verdict);
        self.volume_spike(scoring, &mut verdict);
        verdict
    }

    /// Starts a run at `ev`, scoring its start with `off_schedule`.
    fn start_run(&mut self, ev: &Event<'_>, tz: &TimeZone, scoring: bool, verdict: &mut Verdict) {
        let local = ev.ts.to_zoned(tz.clone());
        let how = local.weekday().to_monday_zero_offset() as usize * 24 + local.hour() as usize;
        let month_end = local.date().last_of_month().day() - local.day() < 3;
        let mut run = Run {
            start: ev.ts,
            last: ev.ts,
            count: 0,
            month_end,
            seq: Vec::new(),
            evidence: Vec::new(),
            denials: VecDeque::new(),
            fired: BTreeMap::new(),
            scoring,
        };
        self.off_schedule(how, scoring, &mut run, verdict);
        self.run = Some(run);
    }

    /// `off_schedule`: a run that starts at hour-of-week `how`, when the
    /// bot never runs then; otherwise the start is learned.
    fn off_schedule(&mut self, how: usize, scoring: bool, run: &mut Run, verdict: &mut Verdict) {
        if scoring && !self.schedule_allows(how) {
            run.fired.insert(Detector::OffSchedule, 80);
            verdict.add(Detector::OffSchedule, 80);
        } else {
            self.starts[how] += 1;
        }
    }

    /// Adds `ev` to the run in progress.
    fn extend_run(&mut self, ev: &Event<'_>) {
        let run = self.run.as_mut().expect("a run is in progress");
        run.last = ev.ts;
        // A run's size and order are the work it did: denied requests count
        // only towards denied_burst.
        if !ev.denied {
            run.count += 1;
        }
        if run.evidence.len() < MAX_EVIDENCE && !ev.id.is_empty() {
            run.evidence.push(ev.id.to_owned());
        }
    }

    /// `new_secret`: a read of secret `s` the bot never read before.
    /// Returns whether `s` was known before this request.
    fn new_secret(
        &mut self,
        ev: &Event<'_>,
        s: &str,
        mode: Mode,
        findings: &mut Vec<Finding>,
        verdict: &mut Verdict,
    ) -> bool {
        let known = self.secrets.contains(s);
        if !known && mode.scoring {
            let score = if ev.denied { 85 } else { 75 };
            verdict.add(Detector::NewSecret, score);
            findings.push(self.finding(
                Detector::NewSecret,
                score,
                ev.ts,
                ev.ts,
                serde_json::json!({"secret": s, "denied": ev.denied}),
                serde_json::json!(self.secrets.iter().take(10).collect::<Vec<_>>()),
                format!(
                    "{} asked for {s:?}, a secret it never used before",
                    self.name
                ),
                vec![ev.id.to_owned()],
            ));
        }
        if !known && self.secrets.len() < MAX_SECRETS && mode.learn {
            self.secrets.insert(s.to_owned());
        }
        known
    }

    /// `sequence_change`: the run reads known secrets in an order never
    /// seen, once per run. `known` is whether `s` was known before.
    fn sequence_change(
        &mut self,
        ev: &Event<'_>,
        s: &str,
        known: bool,
        mode: Mode,
        verdict: &mut Verdict,
    ) {
        let run = self.run.as_mut().expect("a run is in progress");
        if ev.denied || run.seq.last().map(String::as_str) == Some(s) || run.seq.len() >= MAX_SEQ {
            return;
        }
        let prev = run.seq.last().cloned().unwrap_or_else(|| "^".into());
        run.seq.push(s.to_owned());
        let bigram = format!("{prev}>{s}");
        // Bigrams with a new secret are new_secret's business.
        if known
            && (prev == "^" || self.secrets.contains(&prev))
            && !self.bigrams.contains(&bigram)
            && mode.scoring
            && !run.fired.contains_key(&Detector::SequenceChange)
        {
            run.fired.insert(Detector::SequenceChange, 65);
            verdict.add(Detector::SequenceChange, 65);
        }
        if self.bigrams.len() < MAX_BIGRAMS && mode.learn {
            self.bigrams.insert(bigram);
        }
    }

    /// `new_source`: a request from a host, transport, uid or executable
    /// the bot never used.
    fn new_source(
        &mut self,
        ev: &Event<'_>,
        mode: Mode,
        findings: &mut Vec<Finding>,
        verdict: &mut Verdict,
    ) {
        let mut new_parts = Vec::new();
        for (i, p) in ev.source.parts().iter().enumerate() {
            let p = p.as_ref();
            if p.is_empty() || self.sources[i].contains(p) {
                continue;
            }
            if mode.scoring {
                new_parts.push(format!("{}={p}", SOURCE_PARTS[i]));
            }
            if self.sources[i].len() < MAX_SOURCES && mode.learn {
                self.sources[i].insert(p.to_owned());
            }
        }
        if new_parts.is_empty() {
            return;
        }
        verdict.add(Detector::NewSource, 70);
        let typical = serde_json::json!({
            "host": self.sources[0], "transport": self.sources[1],
            "uid": self.sources[2], "exe": self.sources[3],
        });
        findings.push(self.finding(
            Detector::NewSource,
            70,
            ev.ts,
            ev.ts,
            serde_json::json!(new_parts),
            typical,
            format!(
                "{} called from a new source: {}",
                self.name,
                new_parts.join(", ")
            ),
            vec![ev.id.to_owned()],
        ));
    }

    /// `denied_burst`: more denials within [`DENIAL_WINDOW`] than the bot
    /// ever had in training (at least five), once per run.
    fn denied_burst(&mut self, ev: &Event<'_>, scoring: bool, verdict: &mut Verdict) {
        let run = self.run.as_mut().expect("a run is in progress");
        if !ev.denied {
            return;
        }
        run.denials.push_back(ev.ts);
        while run
            .denials
            .front()
            .is_some_and(|t| ev.ts.duration_since(*t) > DENIAL_WINDOW)
        {
            run.denials.pop_front();
        }
        let n = run.denials.len() as u32;
        if !scoring {
            self.max_denials = self.max_denials.max(n);
        } else if n >= (2 * self.max_denials + 1).max(5)
            && !run.fired.contains_key(&Detector::DeniedBurst)
        {
            run.fired.insert(Detector::DeniedBurst, 80);
            verdict.add(Detector::DeniedBurst, 80);
        }
    }

    /// `volume_spike`, as soon as the run outgrows its class.
    fn volume_spike(&mut self, scoring: bool, verdict: &mut Verdict) {
        let run = self.run.as_ref().expect("a run is in progress");
        if !scoring || run.fired.contains_key(&Detector::VolumeSpike) {
            return;
        }
        if let Some(limit) = self.size_limit(run.month_end) {
            if run.count > limit {
                let run = self.run.as_mut().expect("a run is in progress");
                run.fired.insert(Detector::VolumeSpike, 75);
                verdict.add(Detector::VolumeSpike, 75);
            }
        }
    }

    /// Closes the run in progress, e.g. at the end of a log.
    pub fn finish(&mut self, _tz: &TimeZone, findings: &mut Vec<Finding>) {
        if self.run.is_some() {
            self.close_run(findings);
        }
    }

    fn close_run(&mut self, findings: &mut Vec<Finding>) {
        let Some(run) = self.run.take() else { return };
        if !run.fired.contains_key(&Detector::VolumeSpike) {
            let sizes = self.sizes.entry(run.month_end).or_default();
            sizes.push_back(run.count);
            if sizes.len() > MAX_SIZES {
                sizes.pop_front();
            }
        }
        for (&detector, &score) in &run.fired {
            let Some((actual, typical, explanation)) = self.run_details(&run, detector) else {
                continue;
            };
            findings.push(self.finding(
                detector,
                score,
                run.start,
                run.last,
                actual,
                typical,
                explanation,
                run.evidence.clone(),
            ));
        }
    }

    /// What a run-level finding of `detector` shows: the actual and
    /// typical values and the explanation.
    fn run_details(
        &self,
        run: &Run,
        detector: Detector,
    ) -> Option<(serde_json::Value, serde_json::Value, String)> {
        Some(match detector {
            Detector::OffSchedule => (
                serde_json::json!(fmt_ts(run.start)),
                self.typical_schedule(),
                format!("{} started a run at an hour it never runs", self.name),
            ),
            Detector::VolumeSpike => {
                let (median, mad) = self.size_stats(run.month_end).unwrap_or((0, 0));
                (
                    serde_json::json!({"requests": run.count}),
                    serde_json::json!({"median": median, "mad": mad, "limit": self.size_limit(run.month_end)}),
                    format!(
                        "{} made {} requests in one run; typically {median}",
                        self.name, run.count
                    ),
                )
            }
            Detector::SequenceChange => (
                serde_json::json!(run.seq),
                serde_json::json!({"known_transitions": self.bigrams.len()}),
                format!(
                    "{} read its secrets in an order never seen: {}",
                    self.name,
                    run.seq.join(" > ")
                ),
            ),
            Detector::DeniedBurst => (
                serde_json::json!({"denials": run.denials.len()}),
                serde_json::json!({"max_denials_in_10_min": self.max_denials}),
                format!("{} was denied repeatedly", self.name),
            ),
            _ => return None,
        })
    }

    /// Whether a run may start at hour-of-week `how`: the bot started runs
    /// within an hour of it on the same weekday, or at that hour on at
    /// least two days of the same kind (workday or weekend).
    fn schedule_allows(&self, how: usize) -> bool {
        let (day, hour) = (how / 24, how % 24);
        let near = |d: usize| (0..3).map(move |k| d * 24 + (hour + 23 + k) % 24);
        if near(day).any(|i| self.starts[i] > 0) {
            return true;
        }
        let weekend = day >= 5;
        let same_kind: u32 = (0..7)
            .filter(|d| (*d >= 5) == weekend)
            .flat_map(near)
            .map(|i| self.starts[i])
            .sum();
        same_kind >= 2
    }

    fn typical_schedule(&self) -> serde_json::Value {
        let hours = |days: std::ops::Range<usize>| -> Vec<u32> {
            (0..24)
                .filter(|h| days.clone().any(|d| self.starts[d * 24 + *h as usize] > 0))
                .collect()
        };
        serde_json::json!({"workday_hours": hours(0..5), "weekend_hours": hours(5..7)})
    }

    fn size_stats(&self, month_end: bool) -> Option<(u32, u32)> {
        let sizes = self
            .sizes
            .get(&month_end)
            .filter(|s| s.len() >= 3)
            .or_else(|| self.sizes.get(&!month_end).filter(|s| s.len() >= 3))?;
        let mut v: Vec<u32> = sizes.iter().copied().collect();
        v.sort_unstable();
        let median = v[v.len() / 2];
        let mut dev: Vec<u32> = v.iter().map(|x| x.abs_diff(median)).collect();
        dev.sort_unstable();
        Some((median, dev[dev.len() / 2]))
    }

    /// The most requests a run of this class (month end or not) may make
    /// before it is a spike: robust (median + 6 MAD, at least 5 more than
    /// the median) and at least half again the largest run seen. A class
    /// with few runs so far borrows the other class's limit when that is
    /// higher, so a bot that grows is not flagged on its first month end.
    fn size_limit(&self, month_end: bool) -> Option<u32> {
        let class_limit = |class: bool| -> Option<f64> {
            let sizes = self.sizes.get(&class).filter(|s| s.len() >= 3)?;
            let mut v: Vec<u32> = sizes.iter().copied().collect();
            v.sort_unstable();
            let median = v[v.len() / 2] as f64;
            let mut dev: Vec<f64> = v.iter().map(|x| (*x as f64 - median).abs()).collect();
            dev.sort_by(|a, b| a.total_cmp(b));
            let mad = dev[dev.len() / 2];
            let max = *v.last().expect("not empty") as f64;
            Some((median + (6.0 * 1.4826 * mad).max(median * 0.5).max(5.0)).max(max * 1.5))
        };
        let own = class_limit(month_end);
        let other = class_limit(!month_end);
        let sparse = self.sizes.get(&month_end).is_none_or(|s| s.len() < 10);
        let limit = match (own, other) {
            (Some(a), Some(b)) if sparse => a.max(b),
            (Some(a), _) => a,
            (None, b) => b?,
        };
        Some(limit.ceil() as u32)
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        detector: Detector,
        score: u8,
        start: Timestamp,
        end: Timestamp,
        actual: serde_json::Value,
        typical: serde_json::Value,
        explanation: String,
        evidence: Vec<String>,
    ) -> Finding {
        Finding {
            bot: self.name.clone(),
            detector,
            score,
            start: fmt_ts(start),
            end: fmt_ts(end),
            actual,
            typical,
            explanation,
            evidence: evidence.into_iter().filter(|e| !e.is_empty()).collect(),
        }
    }
}

// === impl Verdict ===

impl Verdict {
    fn add(&mut self, detector: Detector, score: u8) {
        self.score = self.score.max(score);
        if !self.detectors.contains(&detector) {
            self.detectors.push(detector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_772_000_000 + secs).unwrap()
    }

    #[test]
    fn a_refused_handshake_is_neither_learned_nor_scored() {
        let tz = TimeZone::UTC;
        let mut m = BotModel::new("invoice-bot", at(0), SignedDuration::from_hours(1));
        let mut findings = Vec::new();
        let ev = |secs, kind| Event {
            ts: at(secs),
            kind,
            secret: None,
            denied: true,
            source: source_key("rpa-01", "tcp", None, None),
            id: "a",
        };
        for i in 0..8 {
            m.observe(&ev(i * 10, "auth.failure"), &tz, &mut findings, true);
        }
        assert_eq!(m.max_denials, 0, "the ceiling learned nothing");
        assert!(
            m.sources.iter().all(BTreeSet::is_empty),
            "no source learned"
        );
        assert!(m.run.is_none() && m.starts.iter().all(|n| *n == 0));
        let v = m.observe(&ev(7200, "auth.failure"), &tz, &mut findings, true);
        assert_eq!(v, Verdict::default());
        assert!(findings.is_empty());
    }

    #[test]
    fn a_source_reads_back_from_its_text() {
        let s = source_key("rpa-01", "unix", Some(1001), Some("/opt/a|b"));
        assert_eq!(s.to_string(), "rpa-01|unix|1001|/opt/a|b");
        assert_eq!(Source::parse("rpa-01|unix|1001|/opt/a|b"), Some(s));
        let tcp = source_key("rpa-01", "tcp", None, None);
        assert_eq!(tcp.to_string(), "rpa-01|tcp||");
        assert_eq!(Source::parse("rpa-01|tcp||"), Some(tcp));
        assert_eq!(Source::parse("rpa-01|tcp"), None);
    }

    /// Saved baselines name the detectors a run fired by their names, and
    /// load back as they were written.
    #[test]
    fn a_saved_baseline_keeps_its_format() {
        let tz = TimeZone::UTC;
        let mut m = BotModel::new("invoice-bot", at(0), SignedDuration::from_hours(1));
        let mut findings = Vec::new();
        let ev = |secs, secret| Event {
            ts: at(secs),
            kind: "secret.read",
            secret: Some(secret),
            denied: false,
            source: source_key("rpa-01", "unix", Some(1001), Some("/opt/rpa/runner")),
            id: "a",
        };
        m.observe(&ev(0, "erp-db"), &tz, &mut findings, true);
        m.observe(&ev(10, "sftp"), &tz, &mut findings, true);
        let v = m.observe(
            &ev(4 * 86_400 + 3_600 * 3, "sftp"),
            &tz,
            &mut findings,
            true,
        );
        assert_eq!(
            v.detectors,
            [Detector::OffSchedule, Detector::SequenceChange]
        );
        let mut saved = serde_json::to_value(&m).unwrap();
        assert_eq!(
            saved["run"]["fired"],
            serde_json::json!({"off_schedule": 80, "sequence_change": 65})
        );
        assert_eq!(saved["sources"][2], serde_json::json!(["1001"]));
        saved["run"]["fired"] = serde_json::json!({"denied_burst": 80, "volume_spike": 75});
        let loaded: BotModel = serde_json::from_str(&saved.to_string()).unwrap();
        assert_eq!(serde_json::to_value(&loaded).unwrap(), saved);
    }
}
