//! The audit log: one JSON line per request, allowed or not, written before
//! the response leaves. If a record cannot be written the request fails
//! closed.
//!
//! Records are written by one thread that owns the file, so sequence numbers
//! follow file order and concurrent requests share a single write.

pub mod ocsf;
pub mod query;
pub mod report;
pub mod syslog;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use serde::Serialize;
use tokio::sync::oneshot;
use tracing::error;

use crate::identity::CertInfo;

/// One audit record, in the field order of the contract. Unknown values are
/// written as `null`. Nothing here may hold a secret value.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub v: u8,
    pub seq: u64,
    pub ts: String,
    pub id: String,
    pub host: Arc<str>,
    pub kind: &'static str,
    pub decision: Decision,
    pub status: u16,
    pub latency_us: u64,
    pub bot: Option<String>,
    pub cert: Option<CertInfo>,
    pub peer: Option<Peer>,
    pub secret: Option<String>,
    pub backend: Option<Backend>,
    pub reason: Option<String>,
    pub bytes: Option<u64>,
    pub anomaly: Option<serde_json::Value>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub error: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub prev: Option<String>,
    pub mac: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

/// Where a request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub transport: Transport,
    pub addr: Option<String>,
    pub pid: Option<i32>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Unix,
}

/// Where in Vault a secret was read. Lease IDs appear only as HMACs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub path: String,
    pub version: Option<u64>,
    pub lease_hmac: Option<String>,
}

/// The audit record could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditUnavailable;

/// The writer side of the audit log, shared by all requests.
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    host: Arc<str>,
    path: PathBuf,
}

struct Job {
    record: Record,
    done: Option<oneshot::Sender<Result<u64, AuditUnavailable>>>,
    sync_done: Option<mpsc::Sender<Result<u64, AuditUnavailable>>>,
}

// === impl Record ===

impl Record {
    /// A record with every optional field unset.
    pub fn new(kind: &'static str, id: String, host: Arc<str>) -> Record {
        Record {
            v: 1,
            seq: 0,
            ts: now_rfc3339(),
            id,
            host,
            kind,
            decision: Decision::Error,
            status: 0,
            latency_us: 0,
            bot: None,
            cert: None,
            peer: None,
            secret: None,
            backend: None,
            reason: None,
            bytes: None,
            anomaly: None,
            method: None,
            path: None,
            error: None,
            detail: None,
            prev: None,
            mac: None,
        }
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens (or creates, mode 0640) the log and starts its writer thread.
    /// Sequence numbers continue from the last complete record in the file.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true).read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o640);
        }
        let mut file = opts.open(path)?;
        let next_seq = last_seq(&mut file)?.map_or(0, |s| s + 1);
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("botward-audit".into())
            .spawn(move || writer(file, rx, next_seq))?;
        Ok(AuditLog {
            tx,
            host: hostname().into(),
            path: path.to_owned(),
        })
    }

    pub fn host(&self) -> Arc<str> {
        self.host.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record and waits until it is in the file. Returns its
    /// sequence number.
    pub async fn write(&self, record: Record) -> Result<u64, AuditUnavailable> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job {
                record,
                done: Some(done),
                sync_done: None,
            })
            .map_err(|_| AuditUnavailable)?;
        rx.await.unwrap_or(Err(AuditUnavailable))
    }

    /// Like [`write`](Self::write), for code outside the runtime.
    pub fn write_blocking(&self, record: Record) -> Result<u64, AuditUnavailable> {
        let (done, rx) = mpsc::channel();
        self.tx
            .send(Job {
                record,
                done: None,
                sync_done: Some(done),
            })
            .map_err(|_| AuditUnavailable)?;
        rx.recv().unwrap_or(Err(AuditUnavailable))
    }
}

/// The writer thread: takes every job that is waiting, writes them in one
/// `write`, then answers each.
fn writer(mut file: File, rx: mpsc::Receiver<Job>, mut next_seq: u64) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        buf.clear();
        let start_seq = next_seq;
        let mut seqs = Vec::with_capacity(batch.len());
        for job in &mut batch {
            job.record.seq = next_seq;
            let before = buf.len();
            if serde_json::to_writer(&mut buf, &job.record).is_err() {
                buf.truncate(before);
                seqs.push(None);
                continue;
            }
            buf.push(b'\n');
            seqs.push(Some(next_seq));
            next_seq += 1;
        }
        let result = write_all_or_rollback(&mut file, &buf);
        if let Err(e) = &result {
            error!(error = %e, "Cannot write audit log; refusing requests until it can");
            next_seq = start_seq;
        }
        for (job, seq) in batch.drain(..).zip(seqs) {
            let answer = match (&result, seq) {
                (Ok(()), Some(s)) => Ok(s),
                _ => Err(AuditUnavailable),
            };
            if let Some(tx) = job.done {
                let _ = tx.send(answer);
            }
            if let Some(tx) = job.sync_done {
                let _ = tx.send(answer);
            }
        }
    }
}

/// Appends `buf`. On failure, cuts the file back to its old length so that no
/// partial record stays behind.
fn write_all_or_rollback(file: &mut File, buf: &[u8]) -> io::Result<()> {
    let len = file.metadata().map(|m| m.len()).ok();
    match file.write_all(buf).and_then(|_| file.flush()) {
        Ok(()) => Ok(()),
        Err(e) => {
            if let Some(len) = len {
                let _ = file.set_len(len);
            }
            Err(e)
        }
    }
}

/// The `seq` of the last complete line of an audit file.
fn last_seq(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut last = None;
    for line in BufReader::new(&mut *file).split(b'\n') {
        let line = line?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
            if let Some(s) = v.get("seq").and_then(|s| s.as_u64()) {
                last = Some(s);
            }
        }
    }
    file.seek(SeekFrom::End(0))?;
    Ok(last)
}

/// This host's name, for the `host` field.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_lines_with_increasing_seq_across_reopen() {
        let dir = std::env::temp_dir().join(format!("botward-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let log = AuditLog::open(&path).unwrap();
            for i in 0..3 {
                let seq = log
                    .write(Record::new("health", format!("r{i}"), log.host()))
                    .await
                    .unwrap();
                assert_eq!(seq, i);
            }
        }
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(
            log.write(Record::new("health", "r3".into(), log.host()))
                .await
                .unwrap(),
            3
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3]["seq"], 3);
        assert_eq!(lines[0]["bot"], serde_json::Value::Null);
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_refuses_the_record() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        let r = log
            .write(Record::new("health", "x".into(), log.host()))
            .await;
        assert_eq!(r, Err(AuditUnavailable));
    }
}
