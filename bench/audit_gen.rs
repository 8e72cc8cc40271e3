//! Writes N audit records through the real writer (chain, MACs,
//! checkpoints), for verify and analysis benchmarks.
//!
//! ```text
//! cargo run --release --example audit_gen -- DIR N
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use botward::audit::{AuditLog, Decision, Record};
use botward::config::{Audit, Fsync};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: audit_gen DIR N"));
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: audit_gen DIR N");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Audit {
        path: dir.join("audit.jsonl"),
        state_dir: dir.clone(),
        fsync: Fsync::Never,
        rotate_bytes: 256 * 1024 * 1024,
        rotate_daily: false,
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        ratchet_interval: Duration::from_secs(60),
        syslog: None,
    };
    let log = AuditLog::open(&cfg).expect("open audit log");
    let host: Arc<str> = Arc::from("bench-host");
    let started = Instant::now();
    for i in 0..n {
        let mut r = Record::new("secret.read", format!("{i:024x}"), host.clone());
        r.decision = if i % 50 == 0 {
            Decision::Deny
        } else {
            Decision::Allow
        };
        r.status = if i % 50 == 0 { 403 } else { 200 };
        r.bot = Some(format!("bot-{}", i % 40));
        r.secret = Some(format!("secret-{}", i % 7));
        r.latency_us = 800 + i % 300;
        r.bytes = Some(140);
        log.write_blocking(r).expect("write");
    }
    log.close();
    eprintln!(
        "wrote {n} records in {:.2}s",
        started.elapsed().as_secs_f64()
    );
}
