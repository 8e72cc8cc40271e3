//! Micro-benchmarks of the per-request hot paths: the policy decision, the
//! request ID and timestamp, the audit record (serialize, chain and MAC;
//! then the whole write), online anomaly scoring, and the KV cache lookup.
//!
//!   cargo bench --bench hot_paths [FILTER]
//!
//! A small harness in the style of Criterion, without its compile cost: each
//! benchmark is warmed up for 200 ms, then timed in 15 samples of about
//! 100 ms; it prints the median time per iteration with the fastest and
//! slowest sample.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use botward::anomaly::model::{source_key, BotModel, Event};
use botward::audit::chain::{seal_line, EpochKey};
use botward::audit::{AuditLog, Backend, Decision, Peer, Record, Transport};
use botward::config;
use botward::identity::CertInfo;
use botward::policy::{self, AnomalyPolicy, BotDef, Context, PeerFacts, ProcessRule, Schedule};
use jiff::{SignedDuration, Timestamp};

struct Bench {
    filter: Option<String>,
}

impl Bench {
    fn run(&self, name: &str, mut f: impl FnMut()) {
        if self.filter.as_deref().is_some_and(|p| !name.contains(p)) {
            return;
        }
        // Warm up, and find how many iterations fill about 100 ms.
        let mut iters = 1u64;
        let warm = Instant::now();
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let took = t.elapsed();
            if warm.elapsed() > Duration::from_millis(200) {
                let per = took.as_secs_f64() / iters as f64;
                iters = ((0.1 / per) as u64).max(1);
                break;
            }
            iters = iters.saturating_mul(2);
        }
        let mut samples: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                t.elapsed().as_nanos() as f64 / iters as f64
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        println!(
            "{name:44} {:>10} per iter  [{} .. {}]  ({iters} iters x 15)",
            fmt(samples[7]),
            fmt(samples[0]),
            fmt(samples[14])
        );
    }
}

fn fmt(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn bot() -> BotDef {
    BotDef {
        name: "invoice-bot".into(),
        owner: "alice@corp.example".into(),
        team: "finance-ops".into(),
        purpose: "posts supplier invoices".into(),
        secrets: (0..20)
            .map(|i| format!("secret-{i:02}"))
            .chain(["erp-db".to_owned()])
            .collect::<BTreeSet<_>>(),
        schedule: Some(Schedule::parse("Mon-Sun 00:00-24:00 Europe/Berlin").unwrap()),
        processes: vec![ProcessRule {
            uid: Some(1001),
            exe: Some("/opt/rpa/bin/python3".into()),
            ..ProcessRule::default()
        }],
        anomaly: AnomalyPolicy::default(),
        max_leases: botward::policy::DEFAULT_MAX_LEASES,
        lifecycle: botward::policy::Lifecycle::default(),
    }
}

fn record() -> Record {
    let mut r = Record::new(
        "secret.read",
        "7f3c9a0e1b2d4c5e8f9a0b1c2d3e4f5a".into(),
        Arc::from("bot-host-01"),
    );
    r.decision = Decision::Allow;
    r.status = 200;
    r.latency_us = 412;
    r.bot = Some("invoice-bot".into());
    r.cert = Some(CertInfo {
        sha256: "ab".repeat(32),
        serial: "3f9a0c1d2e".into(),
        not_after: Some("2027-01-01T00:00:00Z".into()),
    });
    r.peer = Some(Peer {
        transport: Transport::Unix,
        addr: None,
        pid: Some(4242),
        uid: Some(1001),
        exe: Some("/opt/rpa/bin/python3".into()),
        ..Peer::default()
    });
    r.secret = Some("erp-db".into());
    r.backend = Some(Backend {
        path: "secret/data/rpa/erp-db".into(),
        version: Some(7),
        lease_hmac: None,
    });
    r.bytes = Some(163);
    r.method = Some("GET".into());
    r.path = Some("/v1/secrets/erp-db".into());
    r.prev = Some("cd".repeat(32));
    r.epoch = Some(12);
    r
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let b = Bench { filter };

    // Policy: a granted read in schedule from the right process, and a
    // refusal of a secret the bot was not granted.
    let bot = bot();
    let facts = PeerFacts {
        uid: Some(1001),
        exe: Some("/opt/rpa/bin/python3".into()),
        verified: true,
        ..PeerFacts::default()
    };
    let cx = Context {
        now: Timestamp::now(),
        peer: &facts,
        quiet_since: None,
    };
    let allowed = policy::decide(Some(&bot), policy::Request::Secret("erp-db"), &cx);
    assert!(matches!(allowed, policy::Decision::Allow), "{allowed:?}");
    b.run("policy: allow (schedule, process, 21 grants)", || {
        black_box(policy::decide(
            black_box(Some(&bot)),
            policy::Request::Secret(black_box("erp-db")),
            &cx,
        ));
    });
    b.run("policy: deny (not granted)", || {
        black_box(policy::decide(
            black_box(Some(&bot)),
            policy::Request::Secret(black_box("payroll")),
            &cx,
        ));
    });

    // Per-request labels: the request ID and the record's timestamp.
    b.run("request: new request ID", || {
        black_box(botward::audit::request_id());
    });
    b.run(
        "audit: record timestamp (RFC 3339, UTC, microseconds)",
        || {
            black_box(botward::audit::now_rfc3339());
        },
    );

    // Audit: one record serialized, chained and MACed, as the writer does.
    let key = EpochKey::from_raw(12, &[7u8; 32]);
    let rec = record();
    let mut line = Vec::with_capacity(1024);
    b.run("audit: serialize + seal one record", || {
        line.clear();
        serde_json::to_writer(&mut line, black_box(&rec)).unwrap();
        black_box(seal_line(&mut line, &key));
    });
    // The whole write through the writer thread, for each fsync policy,
    // to a file in the target directory (a real disk, not tmpfs).
    let dir = std::env::current_dir()
        .unwrap()
        .join("target")
        .join(format!("bench-audit-{}", std::process::id()));
    for (label, fsync) in [
        ("never", config::Fsync::Never),
        ("batch", config::Fsync::Batch),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = config::Audit {
            path: dir.join("audit.jsonl"),
            state_dir: dir.clone(),
            fsync,
            rotate_bytes: 0,
            rotate_daily: false,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(60),
            ratchet_interval: Duration::from_secs(60),
            syslog: None,
        };
        let log = Arc::new(AuditLog::open(&cfg).unwrap());
        b.run(&format!("audit: one writer alone, fsync {label}"), || {
            black_box(log.write_blocking(record()).unwrap());
        });
        // As the server writes: 16 requests at once on 2 worker threads.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        b.run(
            &format!("audit: 16 concurrent writes, 2 threads, fsync {label}"),
            || {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..16)
                        .map(|_| {
                            let log = log.clone();
                            tokio::spawn(async move { log.write(record()).await.unwrap() })
                        })
                        .collect();
                    for t in tasks {
                        black_box(t.await.unwrap());
                    }
                });
            },
        );
        log.close();
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Online anomaly scoring on a model trained for a week of runs.
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let t0 = Timestamp::now();
    let mut model = BotModel::new("bench-bot", t0, SignedDuration::from_hours(24 * 7));
    let source = source_key("host-1", "unix", Some(1001), Some("/opt/rpa/bin/python3"));
    let secrets = ["erp-db", "erp-db-login", "sftp"];
    let mut findings = Vec::new();
    // Runs of three reads every 10 minutes.
    let mut i = 0u64;
    let mut next = || {
        let ts = t0 + SignedDuration::from_secs((i / 3) as i64 * 600 + (i % 3) as i64);
        let secret = secrets[(i % 3) as usize];
        i += 1;
        Event {
            ts,
            kind: "secret.read",
            secret: Some(secret),
            denied: false,
            source: source.clone(),
            id: "",
        }
    };
    for _ in 0..3 * 6 * 24 * 8 {
        model.observe(&next(), &tz, &mut findings, true);
    }
    b.run("anomaly: online score (trained model)", || {
        let ev = next();
        findings.clear();
        black_box(model.observe(&ev, &tz, &mut findings, true));
    });

    // The KV cache: a hit, as served for a secret with cache_ttl.
    let cache = botward::cache::KvCache::default();
    let mut fields = serde_json::Map::new();
    fields.insert("password".into(), "not-a-real-secret".into());
    let value = Arc::new(botward::vault::Fetched {
        data: botward::secret::SecretFields::from_value(serde_json::Value::Object(fields)).unwrap(),
        version: Some(3),
        lease: None,
    });
    cache.insert("erp-db", value, Instant::now(), Duration::from_secs(3600));
    b.run("cache: hit", || {
        black_box(cache.get(black_box("erp-db"), Instant::now()));
    });
}
