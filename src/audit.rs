//! The audit log: one JSON line per request, allowed or not, written before
//! the response leaves. If a record cannot be written the request fails
//! closed.
//!
//! Records form a hash chain with forward-secure MACs and signed checkpoints
//! ([`chain`]); one thread owns the file ([`writer`]), so sequence numbers
//! follow file order and concurrent requests share a write and a sync.
//! [`verify`], [`query`], [`report`] and [`ocsf`] are the auditor's tools;
//! [`syslog`] ships records off the host.

pub mod chain;
pub mod ocsf;
pub mod query;
pub mod report;
pub mod syslog;
pub mod verify;
pub mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use serde::Serialize;
use tokio::sync::oneshot;

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
    /// The previous record's hash; set by the writer.
    pub prev: Option<String>,
    /// The MAC key epoch; set by the writer. `hash` and `mac` follow.
    pub epoch: Option<u64>,
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
    tx: mpsc::Sender<writer::Msg>,
    host: Arc<str>,
    path: PathBuf,
    thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens (or creates) the log, recovers a torn last line, continues the
    /// chain and starts the writer thread.
    pub fn open(cfg: &crate::config::Audit) -> io::Result<AuditLog> {
        let host: Arc<str> = hostname().into();
        let w = writer::Writer::open(cfg, host.clone())?;
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("botward-audit".into())
            .spawn(move || w.run(rx))?;
        Ok(AuditLog {
            tx,
            host,
            path: cfg.path.clone(),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    pub fn host(&self) -> Arc<str> {
        self.host.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record and waits until it is in the file (and synced, as
    /// the policy says). Returns its sequence number.
    pub async fn write(&self, record: Record) -> Result<u64, AuditUnavailable> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(writer::Msg::Record(record, writer::Reply::Async(done)))
            .map_err(|_| AuditUnavailable)?;
        rx.await.unwrap_or(Err(AuditUnavailable))
    }

    /// Like [`write`](Self::write), for code outside the runtime.
    pub fn write_blocking(&self, record: Record) -> Result<u64, AuditUnavailable> {
        let (done, rx) = mpsc::channel();
        self.tx
            .send(writer::Msg::Record(record, writer::Reply::Sync(done)))
            .map_err(|_| AuditUnavailable)?;
        rx.recv().unwrap_or(Err(AuditUnavailable))
    }

    /// Writes the final seal and stops the writer. Later writes fail.
    pub fn close(&self) {
        let (done, rx) = mpsc::channel();
        if self.tx.send(writer::Msg::Close(done)).is_ok() {
            let _ = rx.recv();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
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
            epoch: None,
        }
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Where the seed, key state, signing key and public key of a log live.
pub fn writer_key_files(cfg: &crate::config::Audit) -> writer::KeyFiles {
    writer::KeyFiles::for_log(cfg)
}

/// Every file of a log, current and rotated, in chain order.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = writer::rotated_files(path);
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

/// Reads every record of the given files, in chain order of the files,
/// skipping lines that are not JSON objects.
pub fn read_records(files: &[PathBuf]) -> io::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for f in verify::order_files(files)? {
        let text = std::fs::read(&f)?;
        for line in text.split(|b| *b == b'\n') {
            if let Ok(v @ serde_json::Value::Object(_)) =
                serde_json::from_slice::<serde_json::Value>(line)
            {
                out.push(v);
            }
        }
    }
    Ok(out)
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
