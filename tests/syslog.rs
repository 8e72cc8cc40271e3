//! The syslog sink against a real rsyslogd listening on loopback TCP.
//!
//! Each test runs its own rsyslogd in the foreground with a private config
//! and work directory; no system config, socket or journal is touched. Under
//! CI (`CI=true`) a missing rsyslogd is a failure; elsewhere the test skips
//! itself with a note.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use botward::audit::syslog::{SyslogConfig, SyslogSink};
use serde_json::json;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const HOSTNAME: &str = "bot-host-01";

/// One rsyslogd child with its config, output file and temp directory.
/// Dropping it kills the child and removes the directory.
struct Rsyslog {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// One line of rsyslog's output, as the test template writes it.
#[derive(Debug)]
struct Received {
    app_name: String,
    msgid: String,
    severity: u8,
    /// The syslog message exactly as it arrived, framing removed.
    raw: String,
}

// === impl Rsyslog ===

impl Rsyslog {
    /// Starts rsyslogd on a free loopback port, or returns `None` to skip.
    fn start(test: &str) -> Option<Rsyslog> {
        let bin = rsyslogd_or_skip(test)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "botward-syslog-{test}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let port = free_port();
        let mut r = Rsyslog {
            bin,
            dir,
            port,
            child: None,
        };
        std::fs::write(r.conf_path(), r.config()).unwrap();
        r.restart();
        Some(r)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join("rsyslog.conf")
    }

    fn output(&self) -> PathBuf {
        self.dir.join("botward.log")
    }

    /// Only botward's messages go to the output; rsyslogd's own go elsewhere
    /// so they can be shown when something fails. DNS is off: on a host
    /// without a resolver, rsyslogd's name lookups can stall it for seconds.
    fn config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k" net.enableDNS="off")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="botward" type="string" string="%app-name% %msgid% %syslogseverity% %rawmsg%\n")
if $app-name == "botward" then {{
    action(type="omfile" file="{d}/botward.log" template="botward")
    stop
}}
action(type="omfile" file="{d}/other.log")
"#,
            port = self.port
        )
    }

    /// Starts (or starts again) rsyslogd on the same port and output file,
    /// and waits until the port accepts connections.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslogd already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(self.conf_path())
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect(self.address()).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("rsyslogd exited with {status}\n{}", self.diagnostics());
            }
            if Instant::now() > deadline {
                panic!(
                    "rsyslogd did not listen on {} within 5 s\n{}",
                    self.address(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills rsyslogd the hard way, as a crash would, and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the output holds at least `n` messages, and returns them.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = received(&self.output());
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "rsyslogd wrote {} of {n} messages within {timeout:?}\n{}",
                    got.len(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn diagnostics(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- rsyslogd stderr\n{}--- other.log\n{}",
            read("rsyslogd.stderr"),
            read("other.log")
        )
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finds rsyslogd, or decides to skip (outside CI) or fail (under CI).
fn rsyslogd_or_skip(test: &str) -> Option<PathBuf> {
    let bin = PathBuf::from(RSYSLOGD);
    if bin.is_file() {
        return Some(bin);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: rsyslogd ({RSYSLOGD}) is required under CI; run scripts/install-deps.sh");
    }
    eprintln!("{test}: skipped, {RSYSLOGD} not found (run scripts/install-deps.sh)");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses rsyslog's output; a missing file is no messages yet. A last line
/// without its newline is still being written and is left for later.
fn received(path: &Path) -> Vec<Received> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some(complete) = text.rfind('\n') else {
        return Vec::new();
    };
    text[..complete]
        .lines()
        .map(|line| {
            let mut f = line.splitn(4, ' ');
            let mut next = || f.next().unwrap_or_else(|| panic!("short line: {line}"));
            Received {
                app_name: next().to_owned(),
                msgid: next().to_owned(),
                severity: next().parse().unwrap(),
                raw: next().to_owned(),
            }
        })
        .collect()
}

fn sink_for(r: &Rsyslog) -> SyslogSink {
    SyslogSink::start(SyslogConfig {
        address: r.address(),
        app_name: "botward".into(),
        hostname: HOSTNAME.into(),
        facility: 13,
        queue: 10_000,
    })
}

/// The record with sequence number `seq`: every tenth is a checkpoint, the
/// rest alternate allowed and denied secret reads.
fn record(seq: u64) -> (String, &'static str, &'static str) {
    let (kind, decision) = match seq % 10 {
        9 => ("checkpoint", "allow"),
        s if s % 2 == 0 => ("secret.read", "allow"),
        _ => ("secret.read", "deny"),
    };
    let line = json!({
        "v": 1,
        "seq": seq,
        "ts": "2025-01-02T03:04:05.678901Z",
        "kind": kind,
        "decision": decision,
        "bot": "Rechnungsprüfung-Bot",
        "secret": "erp-db",
        "reason": "grant \"erp\" matched",
    })
    .to_string();
    (line, kind, decision)
}

fn send(sink: &SyslogSink, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        let (line, kind, decision) = record(seq);
        sink.send(&line, kind, decision);
    }
}

/// Checks every message against the record it carries and returns the
/// sequence numbers seen, in arrival order.
fn check(messages: &[Received]) -> Vec<u64> {
    let pid = std::process::id().to_string();
    messages
        .iter()
        .map(|m| {
            // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG
            let f: Vec<&str> = m.raw.splitn(8, ' ').collect();
            assert_eq!(f.len(), 8, "{m:?}");
            let json: serde_json::Value = serde_json::from_str(f[7])
                .unwrap_or_else(|e| panic!("MSG is not the JSON record ({e}): {m:?}"));
            let seq = json["seq"].as_u64().unwrap();
            let (line, kind, decision) = record(seq);
            assert_eq!(f[7], line, "record changed in transit");
            let severity = match (kind, decision) {
                ("checkpoint", _) => 5,
                (_, "allow") => 6,
                _ => 4,
            };
            assert_eq!(f[0], format!("<{}>1", 13 * 8 + severity), "{m:?}");
            assert!(
                f[1].len() == 27 && f[1].ends_with('Z'),
                "timestamp not RFC 3339 UTC with microseconds: {m:?}"
            );
            assert_eq!(f[2], HOSTNAME);
            assert_eq!(f[3], "botward");
            assert_eq!(f[4], pid);
            assert_eq!(f[5], kind);
            assert_eq!(f[6], "-");
            // rsyslog parsed it as RFC 5424 with the same fields.
            assert_eq!(m.app_name, "botward");
            assert_eq!(m.msgid, kind);
            assert_eq!(m.severity, severity);
            seq
        })
        .collect()
}

#[test]
fn hundred_records_arrive_intact_and_in_order() {
    let Some(r) = Rsyslog::start("intact") else {
        return;
    };
    let sink = sink_for(&r);
    send(&sink, 0..100);
    assert!(
        sink.flush(Duration::from_secs(5)),
        "flush timed out: {sink:?}"
    );
    let got = r.wait_for(100, Duration::from_secs(20));
    assert_eq!(check(&got), (0..100).collect::<Vec<_>>());
    assert_eq!(sink.sent(), 100);
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn records_queued_while_the_collector_is_down_arrive_after_it_returns() {
    let Some(mut r) = Rsyslog::start("reconnect") else {
        return;
    };
    let sink = sink_for(&r);
    send(&sink, 0..30);
    assert!(
        sink.flush(Duration::from_secs(5)),
        "flush timed out: {sink:?}"
    );
    r.wait_for(30, Duration::from_secs(20));

    // The sink's connection is open and idle when rsyslogd dies.
    r.kill();
    send(&sink, 30..70);
    assert!(
        !sink.flush(Duration::from_millis(300)),
        "records cannot have been delivered with rsyslogd down: {sink:?}"
    );
    assert_eq!(sink.sent(), 30);

    r.restart();
    send(&sink, 70..80);
    assert!(sink.flush(Duration::from_secs(8)), "no reconnect: {sink:?}");
    let got = r.wait_for(80, Duration::from_secs(20));
    let seqs = check(&got);
    assert_eq!(seqs.len(), 80, "duplicates: {seqs:?}");
    assert_eq!(
        seqs.iter().copied().collect::<BTreeSet<_>>(),
        (0..80).collect::<BTreeSet<_>>()
    );
    assert_eq!(seqs, (0..80).collect::<Vec<_>>(), "out of order");
    assert_eq!(sink.sent(), 80);
    assert_eq!(sink.dropped(), 0);
}

#[test]
fn the_audit_writer_ships_its_checkpoints_off_the_host() {
    use botward::audit::{AuditLog, Decision, Record};
    use botward::config::{Audit, Fsync, Syslog};

    let Some(r) = Rsyslog::start("audit-checkpoints") else {
        return;
    };
    let cfg = Audit {
        path: r.dir.join("audit.jsonl"),
        state_dir: r.dir.join("state"),
        fsync: Fsync::Batch,
        rotate_bytes: 0,
        rotate_daily: false,
        checkpoint_every: 25,
        checkpoint_interval: Duration::from_secs(3600),
        ratchet_interval: Duration::from_secs(3600),
        syslog: Some(Syslog {
            address: r.address(),
            all_records: false,
        }),
    };
    let log = AuditLog::open(&cfg).unwrap();
    for i in 0..100 {
        let mut rec = Record::new("secret.read", format!("r{i}"), std::sync::Arc::from("host"));
        rec.decision = Decision::Allow;
        rec.bot = Some("invoice-bot".into());
        log.write_blocking(rec).unwrap();
    }
    log.close();
    let local: Vec<String> = std::fs::read_to_string(&cfg.path)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"checkpoint\""))
        .map(str::to_owned)
        .collect();
    assert_eq!(local.len(), 5, "four by count and the final seal");
    let out = r.dir.join("botward.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let remote = loop {
        let got = received(&out);
        if got.len() >= local.len() || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Exactly the checkpoint lines, byte for byte, as notices.
    assert_eq!(
        remote
            .iter()
            .map(|m| m
                .raw
                .split_once(" - ")
                .map(|(_, msg)| msg.to_owned())
                .unwrap_or_default())
            .collect::<Vec<_>>(),
        local
    );
    assert!(remote
        .iter()
        .all(|m| m.msgid == "checkpoint" && m.severity == 5));
}
