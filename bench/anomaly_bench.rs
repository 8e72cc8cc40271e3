//! Anomaly benchmarks: writes a labelled scenario of about N records to a
//! file (for timing `botward analyze` as a whole), then times the analyzer
//! in-process and the per-request cost of online scoring.
//!
//! ```text
//! cargo run --release --example anomaly_bench -- OUT.jsonl [COPIES]
//! ```

use std::time::Instant;

use botward::anomaly::model::{source_key, BotModel, Event};
use botward::anomaly::scenario::generate;
use botward::anomaly::{Analyzer, Options};
use jiff::tz::TimeZone;
use jiff::SignedDuration;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .expect("usage: anomaly_bench OUT.jsonl [COPIES]");
    let copies: usize = args.next().and_then(|c| c.parse().ok()).unwrap_or(50);
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let sc = generate(42, copies, 56, 28, &tz);
    std::fs::write(&out, sc.lines.join("\n") + "\n").unwrap();
    println!(
        "scenario: {} records, {} bots, written to {out}",
        sc.lines.len(),
        copies * 10
    );

    let train = SignedDuration::from_hours(24 * 28);
    let started = Instant::now();
    let mut a = Analyzer::new(Options {
        train,
        tz: tz.clone(),
    });
    for l in &sc.lines {
        a.line(l.as_bytes());
    }
    let result = a.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "analyzer in-process: {:.2} s, {:.0} records/s, {} findings",
        secs,
        sc.lines.len() as f64 / secs,
        result.findings.len()
    );

    // Online scoring: the per-request cost of BotModel::observe, on a
    // trained model, as serve calls it.
    let t0 = jiff::Timestamp::now();
    let mut model = BotModel::new("bench-bot", t0, SignedDuration::from_hours(24 * 7));
    let source = source_key("host-1", "unix", Some(1001), Some("/opt/rpa/bin/python3"));
    let secrets = ["erp-db", "erp-db-login", "sftp"];
    let mut findings = Vec::new();
    let n = 1_000_000u32;
    let mut events = Vec::with_capacity(n as usize);
    for i in 0..n {
        // Runs of three reads every 10 minutes.
        let ts = t0 + SignedDuration::from_secs(i64::from(i / 3) * 600 + i64::from(i % 3));
        events.push((ts, secrets[(i % 3) as usize]));
    }
    let started = Instant::now();
    let mut flagged = 0u64;
    for (i, (ts, s)) in events.iter().enumerate() {
        let ev = Event {
            ts: *ts,
            kind: "secret.read",
            secret: Some(s),
            denied: false,
            source: source.clone(),
            id: if i % 1000 == 0 { "x" } else { "" },
        };
        let v = model.observe(&ev, &tz, &mut findings, true);
        flagged += u64::from(v.score > 0);
    }
    let per = started.elapsed().as_nanos() as f64 / f64::from(n);
    println!("online scoring: {per:.0} ns per request ({flagged} flagged of {n})");
}
