//! The lease ledger's cost per change: the journal (one appended, synced
//! line) against the ledger it replaced (the whole table rewritten to a
//! temporary file, synced and renamed on every change, as 909baa2 wrote
//! it), at 1, 32 and 500 live leases.
//!
//!   cargo bench --bench ledger [-- --dir DIR] [--cycles N]
//!
//! Each run holds the table at its size with cycles of one insert and one
//! remove. It prints the median and p99 time of an insert, the bytes an
//! insert writes (compactions it triggers included), and the bytes per
//! change over the whole run (removes and every compaction included).
//! Bytes come from `wchar` in `/proc/self/io`. The figures are bound by
//! the disk's sync latency: put `--dir` on the disk the ledger lives on
//! (the default is the temp directory).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use botward::leases::{Held, Leases};
use jiff::{SignedDuration, Timestamp};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = value("--dir")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("botward-ledger-bench-{}", std::process::id()));
    let cycles: usize = value("--cycles").map_or(200, |c| c.parse().expect("--cycles N"));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "{cycles} insert/remove cycles per run, ledger in {}",
        dir.display()
    );
    println!(
        "{:>5}  {:<8} {:>12} {:>12} {:>14} {:>16}",
        "live", "ledger", "insert p50", "insert p99", "bytes/insert", "bytes/change"
    );
    for live in [1, 32, 500] {
        for kind in [Kind::Rewrite, Kind::Journal] {
            let path = dir.join(format!("{kind:?}-{live}.json"));
            let r = run(kind, &path, live, cycles);
            println!(
                "{live:>5}  {:<8} {:>12} {:>12} {:>14.0} {:>16.0}",
                format!("{kind:?}").to_lowercase(),
                fmt(r.p50),
                fmt(r.p99),
                r.bytes_per_insert,
                r.bytes_per_change,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Rewrite,
    Journal,
}

struct Figures {
    p50: Duration,
    p99: Duration,
    bytes_per_insert: f64,
    bytes_per_change: f64,
}

enum Ledger {
    Journal(Leases),
    /// The ledger as it was: the whole table replaced on every change.
    Rewrite {
        path: PathBuf,
        held: Vec<Held>,
    },
}

impl Ledger {
    fn open(kind: Kind, path: &Path) -> Ledger {
        let _ = std::fs::remove_file(path);
        match kind {
            Kind::Journal => Ledger::Journal(Leases::open(Some(path)).unwrap().0),
            Kind::Rewrite => Ledger::Rewrite {
                path: path.to_owned(),
                held: Vec::new(),
            },
        }
    }

    fn insert(&mut self, h: Held) {
        match self {
            Ledger::Journal(l) => l.insert(h).unwrap(),
            Ledger::Rewrite { held, .. } => {
                held.push(h);
                self.persist();
            }
        }
    }

    fn remove(&mut self, id: &str) {
        match self {
            Ledger::Journal(l) => {
                l.remove(id).unwrap();
            }
            Ledger::Rewrite { held, .. } => {
                held.retain(|h| h.id != id);
                self.persist();
            }
        }
    }

    /// 909baa2's `Leases::persist`.
    fn persist(&self) {
        let Ledger::Rewrite { path, held } = self else {
            return;
        };
        let mut leases: Vec<&Held> = held.iter().collect();
        leases.sort_by(|a, b| a.issued.cmp(&b.issued).then_with(|| a.id.cmp(&b.id)));
        let body = serde_json::to_vec(&serde_json::json!({ "leases": leases })).unwrap();
        botward::state_file::replace(path, &body, 0o600).unwrap();
    }
}

fn run(kind: Kind, path: &Path, live: usize, cycles: usize) -> Figures {
    let mut ledger = Ledger::open(kind, path);
    let mut order: VecDeque<String> = VecDeque::new();
    let mut next = 0;
    for _ in 0..live {
        next += 1;
        order.push_back(held(next).id);
        ledger.insert(held(next));
    }
    let mut times = Vec::with_capacity(cycles);
    let (mut insert_bytes, start_bytes) = (0u64, written());
    for _ in 0..cycles {
        next += 1;
        let h = held(next);
        order.push_back(h.id.clone());
        let (b, t) = (written(), Instant::now());
        ledger.insert(h);
        times.push(t.elapsed());
        insert_bytes += written() - b;
        ledger.remove(&order.pop_front().unwrap());
    }
    let all_bytes = written() - start_bytes;
    times.sort();
    Figures {
        p50: times[times.len() / 2],
        p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
        bytes_per_insert: insert_bytes as f64 / cycles as f64,
        bytes_per_change: all_bytes as f64 / (2 * cycles) as f64,
    }
}

/// A lease as a database secret engine hands it out.
fn held(n: usize) -> Held {
    let now = Timestamp::now();
    Held {
        id: format!("database/creds/erp-readonly/{n:024}"),
        bot: "invoice-bot".into(),
        secret: "erp-db-login".into(),
        issued: now,
        expires: now + SignedDuration::from_secs(3600),
        max_until: Some(now + SignedDuration::from_secs(900)),
        renewable: true,
        ttl_seconds: 3600,
        revoke_attempts: 0,
        retry_at: None,
    }
}

/// Bytes this process has passed to `write` so far.
fn written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io (Linux)");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar in /proc/self/io")
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}
