//! A labelled scenario generator: realistic bot schedules and hard
//! negatives, with injected anomalies of each detector's kind. The tests use
//! it to measure recall per detector and false findings per 100 bot-days;
//! the benchmarks use it to make large logs.
//!
//! Hard negatives: jitter, benign retries, skipped holidays, a
//! daylight-saving change inside the window, event-driven bots, variable
//! batches, a month-end peak and slow growth.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::Detector;

/// An injected anomaly.
#[derive(Clone, Debug)]
pub struct Label {
    pub bot: String,
    pub detector: Detector,
    pub start: Timestamp,
    pub end: Timestamp,
}

pub struct Scenario {
    /// Audit records, one JSON object per line, in time order.
    pub lines: Vec<String>,
    pub labels: Vec<Label>,
    pub first_day: Date,
    pub days: u32,
    pub train_days: u32,
}

/// splitmix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Daily,
    Hourly,
    Nightly,
    Weekly,
    Every15,
    Events,
    Batch,
    MonthEnd,
    Growing,
    Dst,
}

struct Bot {
    name: String,
    profile: Profile,
    seq: Vec<&'static str>,
    host: String,
    uid: u32,
    exe: String,
}

/// Good Friday and Easter Monday 2026: the daily bots skip them.
fn holiday(d: Date) -> bool {
    d == Date::constant(2026, 4, 3) || d == Date::constant(2026, 4, 6)
}

fn workday(d: Date) -> bool {
    d.weekday().to_monday_zero_offset() < 5 && !holiday(d)
}

struct Writer<'a> {
    tz: &'a TimeZone,
    out: Vec<(Timestamp, String)>,
    n: u64,
}

impl Writer<'_> {
    fn at(&self, d: Date, h: i8, m: i8) -> Timestamp {
        let dt = DateTime::from_parts(d, Time::new(h, m, 0, 0).unwrap_or(Time::midnight()));
        dt.to_zoned(self.tz.clone())
            .map(|z| z.timestamp())
            .unwrap_or_else(|_| Timestamp::UNIX_EPOCH)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        bot: &Bot,
        ts: Timestamp,
        secret: &str,
        denied: bool,
        uid: u32,
        exe: &str,
        kind: &str,
    ) -> String {
        self.n += 1;
        let id = format!("{:024x}", self.n);
        let line = json!({
            "v": 1, "seq": 0, "ts": fmt_ts(ts), "id": id, "host": bot.host,
            "kind": kind, "decision": if denied { "deny" } else { "allow" }, "status": if denied { 403 } else { 200 },
            "latency_us": 900, "bot": bot.name, "cert": null,
            "peer": {"transport": "unix", "addr": null, "pid": 4000, "uid": uid, "exe": exe},
            "secret": secret, "backend": null, "reason": if denied { "not_granted" } else { "" }, "bytes": 140, "anomaly": null,
        })
        .to_string();
        self.out.push((ts, line));
        id
    }

    /// A run: `secrets` read one after another, a few seconds apart.
    fn run(&mut self, bot: &Bot, start: Timestamp, secrets: &[&str], rng: &mut Rng) -> Timestamp {
        let mut t = start;
        for s in secrets {
            self.record(bot, t, s, false, bot.uid, &bot.exe, "secret.read");
            t += SignedDuration::from_millis(rng.range(200, 4000));
        }
        t
    }
}

/// Secrets of one run of `bot` on `day`, with benign retries.
fn run_secrets(bot: &Bot, day_index: u32, day: Date, rng: &mut Rng) -> Vec<&'static str> {
    let mut v = Vec::new();
    let items = match bot.profile {
        Profile::Batch => rng.range(10, 200) as usize,
        Profile::MonthEnd => {
            let base = rng.range(18, 22) as usize;
            if day.last_of_month().day() - day.day() < 3 {
                base * 3
            } else {
                base
            }
        }
        Profile::Growing => (30.0 * 1.015f64.powi(day_index as i32)) as usize,
        Profile::Weekly => rng.range(2, 3) as usize,
        _ => 1,
    };
    for _ in 0..items {
        for s in &bot.seq {
            v.push(*s);
            // A benign retry: the same secret again at once.
            if rng.chance(0.05) {
                v.push(*s);
            }
        }
    }
    v
}

/// The ten bot profiles: name and the secrets one run reads, in order.
const PROFILES: [(Profile, &str, &[&str]); 10] = [
    (
        Profile::Daily,
        "invoice",
        &["erp-db", "erp-db-login", "sftp"],
    ),
    (Profile::Hourly, "report", &["reporting-db"]),
    (Profile::Nightly, "backup", &["backup-key", "s3-creds"]),
    (Profile::Weekly, "payroll", &["payroll-db", "hr-api"]),
    (Profile::Every15, "monitor", &["health-token"]),
    (Profile::Events, "queue", &["queue-db", "erp-db"]),
    (Profile::Batch, "batch", &["erp-db-login", "erp-db"]),
    (Profile::MonthEnd, "close", &["ledger-db", "erp-db"]),
    (Profile::Growing, "sync", &["crm-api", "erp-db"]),
    (Profile::Dst, "ldap", &["ldap-bind"]),
];

/// `copies` bots of each profile, spread over seven hosts.
fn bots(copies: usize) -> Vec<Bot> {
    let mut bots = Vec::new();
    for c in 0..copies {
        for (i, (p, name, seq)) in PROFILES.iter().enumerate() {
            let n = c * PROFILES.len() + i;
            bots.push(Bot {
                name: if copies == 1 {
                    format!("{name}-bot")
                } else {
                    format!("{name}-bot-{c}")
                },
                profile: *p,
                seq: seq.to_vec(),
                host: format!("rpa-host-{}", n % 7),
                uid: 1000 + n as u32,
                exe: format!("/opt/rpa/bin/{name}"),
            });
        }
    }
    bots
}

fn fmt_ts(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The grants in force: each bot's secrets, and for the first bot one it
/// never uses (an unused grant). Halfway, a reload grants a secret
/// without a change ticket (privilege creep).
fn grant_records(w: &mut Writer<'_>, bots: &[Bot], first_day: Date, days: u32) {
    let start_ts = w.at(first_day, 0, 1);
    let mut grants = serde_json::Map::new();
    for (i, b) in bots.iter().enumerate() {
        let mut g: Vec<&str> = b.seq.clone();
        if i == 0 {
            g.push("legacy-ftp");
        }
        grants.insert(b.name.clone(), json!(g));
    }
    w.out.push((start_ts, json!({"v": 1, "seq": 0, "ts": fmt_ts(start_ts), "id": "start",
        "host": "rpa-host-0", "kind": "server.start", "decision": "allow", "status": 0, "latency_us": 0, "bot": null,
        "detail": {"grants": grants}}).to_string()));
    let reload_ts = w.at(
        first_day
            .checked_add(jiff::Span::new().days(i64::from(days / 2)))
            .unwrap(),
        12,
        0,
    );
    w.out.push((reload_ts, json!({"v": 1, "seq": 0, "ts": fmt_ts(reload_ts), "id": "reload",
        "host": "rpa-host-0", "kind": "config.reload", "decision": "allow", "status": 0, "latency_us": 0, "bot": null,
        "detail": {"added_grants": [{"bot": bots[1].name, "secret": "payroll-db"}], "removed_grants": [], "change_ticket": null}}).to_string()));
}

/// Which scored day of bot number `bi` gets which injection: one per
/// detector that fits its profile, never two on one day.
fn injection_plan(bot: &Bot, bi: usize, days: u32, train_days: u32) -> Vec<(u32, Detector)> {
    use Detector::*;
    let scored = days - train_days;
    let inject_day =
        |k: u64| train_days + 2 + ((bi as u64 * 7 + k * 5) % (scored as u64 - 4)) as u32;
    let detectors: &[Detector] = match bot.profile {
        Profile::Every15 => &[NewSecret, NewSource, DeniedBurst],
        Profile::Hourly | Profile::Dst => {
            &[OffSchedule, NewSecret, NewSource, VolumeSpike, DeniedBurst]
        }
        Profile::Events => &[
            OffSchedule,
            NewSecret,
            NewSource,
            SequenceChange,
            DeniedBurst,
        ],
        _ => &Detector::BEHAVIOURAL,
    };
    let mut plan: Vec<(u32, Detector)> = detectors
        .iter()
        .enumerate()
        .map(|(k, d)| (inject_day(k as u64), *d))
        .collect();
    plan.sort_by_key(|(day, d)| (*day, d.as_str()));
    for k in 1..plan.len() {
        if plan[k].0 <= plan[k - 1].0 {
            plan[k].0 = plan[k - 1].0 + 1;
        }
    }
    plan.retain(|(d, _)| *d < days - 1);
    plan
}

/// When `bot`'s runs start on `day`, local hour and minute.
fn run_starts(bot: &Bot, day: Date, rng: &mut Rng) -> Vec<(i8, i8)> {
    match bot.profile {
        Profile::Daily if workday(day) => vec![(7, rng.range(0, 10) as i8)],
        Profile::Hourly if workday(day) => {
            (8..=18).map(|h| (h, 5 + rng.range(-2, 2) as i8)).collect()
        }
        Profile::Nightly => vec![(2, rng.range(0, 8) as i8)],
        Profile::Weekly if day.weekday().to_monday_zero_offset() == 0 && !holiday(day) => {
            vec![(9, rng.range(0, 5) as i8)]
        }
        Profile::Every15 => (0..96)
            .map(|q| ((q / 4) as i8, ((q % 4) * 15) as i8))
            .collect(),
        Profile::Events if workday(day) => {
            let mut v: Vec<(i8, i8)> = (0..rng.range(10, 30))
                .map(|_| (rng.range(8, 17) as i8, rng.range(0, 59) as i8))
                .collect();
            v.sort();
            v
        }
        Profile::Batch if workday(day) => vec![(6, rng.range(0, 10) as i8)],
        Profile::MonthEnd if workday(day) => vec![(5, rng.range(0, 10) as i8)],
        Profile::Growing => vec![(23, rng.range(0, 10) as i8)],
        Profile::Dst => vec![(6, 30)],
        _ => vec![],
    }
}

impl Writer<'_> {
    /// A run of `secrets` from `start` with `injected`'s anomaly in it, if
    /// it is one a run carries; returns the anomaly's label.
    fn injected_run(
        &mut self,
        bot: &Bot,
        start: Timestamp,
        secrets: &[&str],
        injected: Option<Detector>,
        rng: &mut Rng,
    ) -> Option<Label> {
        let (detector, start, end) = match injected {
            Some(Detector::VolumeSpike) => {
                let big: Vec<&str> = secrets
                    .iter()
                    .cycle()
                    .take(secrets.len() * 10)
                    .copied()
                    .collect();
                (
                    Detector::VolumeSpike,
                    start,
                    self.run(bot, start, &big, rng),
                )
            }
            Some(Detector::NewSecret) => {
                let end = self.run(bot, start, secrets, rng);
                let (uid, exe) = (bot.uid, bot.exe.as_str());
                self.record(bot, end, "vault-admin-token", true, uid, exe, "secret.read");
                (Detector::NewSecret, end, end)
            }
            Some(Detector::NewSource) => {
                let mut t = start;
                for s in secrets {
                    self.record(bot, t, s, false, 0, "/tmp/.x/python3", "secret.read");
                    t += SignedDuration::from_millis(500);
                }
                (Detector::NewSource, start, t)
            }
            Some(Detector::SequenceChange) => {
                let mut rev = bot.seq.clone();
                rev.reverse();
                let end = self.run(bot, start, &rev, rng);
                (Detector::SequenceChange, start, end)
            }
            Some(Detector::DeniedBurst) => {
                let mut t = self.run(bot, start, secrets, rng);
                let s0 = t;
                for _ in 0..12 {
                    let (uid, exe) = (bot.uid, bot.exe.as_str());
                    self.record(bot, t, bot.seq[0], true, uid, exe, "secret.read");
                    t += SignedDuration::from_secs(rng.range(5, 15));
                }
                (Detector::DeniedBurst, s0, t)
            }
            _ => {
                self.run(bot, start, secrets, rng);
                return None;
            }
        };
        Some(Label {
            bot: bot.name.clone(),
            detector,
            start,
            end,
        })
    }

    /// A normal run at an hour `bot` never runs: Sunday night for workday
    /// bots, mid-afternoon for nightly ones.
    fn off_schedule_run(&mut self, bot: &Bot, day: Date, rng: &mut Rng) -> Label {
        let odd_day = day
            .checked_add(jiff::Span::new().days((6 - day.weekday().to_monday_zero_offset()) as i64))
            .unwrap();
        let (d, h) = match bot.profile {
            Profile::Nightly | Profile::Growing | Profile::Dst => (day, 14),
            _ => (odd_day, 3),
        };
        let start = self.at(d, h, 17);
        let secrets = bot.seq.clone();
        let end = self.run(bot, start, &secrets, rng);
        Label {
            bot: bot.name.clone(),
            detector: Detector::OffSchedule,
            start,
            end,
        }
    }
}

/// Generates `days` days of traffic for ten bot profiles (times `copies`),
/// and injects anomalies after `train_days`.
pub fn generate(seed: u64, copies: usize, days: u32, train_days: u32, tz: &TimeZone) -> Scenario {
    let mut rng = Rng(seed);
    let first_day = Date::constant(2026, 2, 23);
    let bots = bots(copies);
    let mut w = Writer {
        tz,
        out: Vec::new(),
        n: 0,
    };
    let mut labels = Vec::new();
    grant_records(&mut w, &bots, first_day, days);
    for (bi, bot) in bots.iter().enumerate() {
        let plan = injection_plan(bot, bi, days, train_days);
        for di in 0..days {
            let day = first_day
                .checked_add(jiff::Span::new().days(di as i64))
                .unwrap();
            let injected = plan.iter().find(|(d, _)| *d == di).map(|(_, det)| *det);
            for (ri, (h, m)) in run_starts(bot, day, &mut rng).iter().enumerate() {
                let start = w.at(day, *h, *m) + SignedDuration::from_secs(rng.range(0, 50));
                let secrets = run_secrets(bot, di, day, &mut rng);
                // Only a day's first run carries its injection.
                let injected = injected.filter(|_| ri == 0);
                labels.extend(w.injected_run(bot, start, &secrets, injected, &mut rng));
            }
            if injected == Some(Detector::OffSchedule) {
                labels.push(w.off_schedule_run(bot, day, &mut rng));
            }
        }
    }
    w.out.sort_by_key(|(t, _)| *t);
    Scenario {
        lines: w.out.into_iter().map(|(_, l)| l).collect(),
        labels,
        first_day,
        days,
        train_days,
    }
}
