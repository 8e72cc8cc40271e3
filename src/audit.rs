//! The audit log: one JSON line per request, allowed or not, written before
//! the response leaves. If a record cannot be written the request fails
//! closed.
//!
//! Records form a hash chain with forward-secure MACs and signed checkpoints
//! ([`chain`]); one lock guards the file ([`writer`]), so sequence numbers
//! follow file order, and concurrent requests share a write and a sync.
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
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::thread;

use serde::Serialize;

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
    /// A verified, registered bot: the certificate chained to the client
    /// CA, was not revoked, and names a bot of the config. Nothing else is
    /// ever written here.
    pub bot: Option<String>,
    /// The bot name an unverified or unregistered certificate claimed, for
    /// the investigator; never counted as that bot's activity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_bot: Option<String>,
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
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
///
/// A request chains and writes its record itself, under a mutex, on its own
/// thread: handing each record to another thread costs two cross-thread
/// wake-ups, which on a virtual machine cost more than the write. A request
/// that finds the writer busy does not block its thread on the mutex: it
/// hands its record to the request holding the writer, which writes it with
/// its own in one write, and awaits the outcome. With
/// `fsync = "batch"` a sync thread then calls `fdatasync` for everything
/// written since its last sync (group commit), and the request waits for it
/// before it answers. The same thread writes the checkpoints and ratchets
/// that are due by time. If `fdatasync` ever fails, what the file holds is
/// unknown, so the log stops taking records: every later request fails
/// closed until botward restarts.
pub struct AuditLog {
    inner: Arc<Inner>,
    host: Arc<str>,
    path: PathBuf,
    fsync: crate::config::Fsync,
    thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

struct Inner {
    /// `None` once the log is sealed.
    writer: Mutex<Option<writer::Writer>>,
    /// Records from requests that found the writer busy, for whoever holds
    /// it to write next.
    handoff: Mutex<Vec<(Record, Outcome)>>,
    sync: Mutex<SyncState>,
    /// Wakes the sync thread.
    wake: Condvar,
    /// Wakes blocking waiters after a sync.
    synced_cv: Condvar,
    /// Wakes async waiters after a sync.
    synced: tokio::sync::Notify,
}

#[derive(Default)]
struct SyncState {
    /// Batches written that need a sync.
    requested: u64,
    /// Batches known to be on disk.
    synced: u64,
    failed: bool,
    stop: bool,
    /// The sync thread is waiting for work: only then does a request need
    /// to wake it (a wake-up is a system call, even with nobody waiting).
    idle: bool,
    /// Threads in `write_blocking` waiting for a sync.
    blocking_waiters: usize,
}

/// Where a handed-off record's sequence number and sync ticket go. Dropped
/// unsent (a panic while writing), it reads as a failed write.
type Outcome = tokio::sync::oneshot::Sender<Result<(u64, u64), AuditUnavailable>>;

/// How often the sync thread checks for checkpoints and ratchets due.
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer after a panic while it was held: the chain state may be
/// ahead of the file, so it takes no more records.
fn poisoned(
    e: std::sync::PoisonError<std::sync::MutexGuard<'_, Option<writer::Writer>>>,
) -> std::sync::MutexGuard<'_, Option<writer::Writer>> {
    let mut guard = e.into_inner();
    if let Some(w) = guard.as_mut() {
        w.sync_failed = true;
    }
    guard
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens (or creates) the log, recovers a torn last line, continues the
    /// chain and starts the sync thread.
    pub fn open(cfg: &crate::config::Audit) -> io::Result<AuditLog> {
        let host: Arc<str> = hostname().into();
        let mut w = writer::Writer::open(cfg, host.clone())?;
        w.flush_pending()?;
        let done = w.appended();
        let inner = Arc::new(Inner {
            writer: Mutex::new(Some(w)),
            handoff: Mutex::new(Vec::new()),
            sync: Mutex::new(SyncState {
                requested: done,
                synced: done,
                ..Default::default()
            }),
            wake: Condvar::new(),
            synced_cv: Condvar::new(),
            synced: tokio::sync::Notify::new(),
        });
        let thread = {
            let inner = inner.clone();
            thread::Builder::new()
                .name("botward-audit".into())
                .spawn(move || inner.run())?
        };
        Ok(AuditLog {
            inner,
            host,
            path: cfg.path.clone(),
            fsync: cfg.fsync,
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
        let (seq, ticket) = match self.fsync {
            // A sync per record blocks this thread for a while: let the
            // runtime move its other tasks elsewhere.
            crate::config::Fsync::Always if multi_thread_runtime() => {
                tokio::task::block_in_place(|| self.inner.append(record, self.fsync))?
            }
            _ => self.inner.append_or_hand_off(record, self.fsync).await?,
        };
        if let Some(ticket) = ticket {
            self.inner.wait_synced(ticket).await?;
        }
        Ok(seq)
    }

    /// Like [`write`](Self::write), for code outside the runtime.
    pub fn write_blocking(&self, record: Record) -> Result<u64, AuditUnavailable> {
        let (seq, ticket) = self.inner.append(record, self.fsync)?;
        if let Some(ticket) = ticket {
            let mut s = lock(&self.inner.sync);
            s.blocking_waiters += 1;
            while s.synced < ticket && !s.failed && !s.stop {
                s = self
                    .inner
                    .synced_cv
                    .wait(s)
                    .unwrap_or_else(|e| e.into_inner());
            }
            s.blocking_waiters -= 1;
            // A failure answers no, even for a record a sync may have
            // covered: when in doubt, fail closed.
            if s.failed || s.synced < ticket {
                return Err(AuditUnavailable);
            }
        }
        Ok(seq)
    }

    /// Writes the final seal and stops the sync thread. Later writes fail.
    pub fn close(&self) {
        let sealed = self
            .inner
            .with_writer(|w| w.take().map(|mut w| w.seal().map(|()| w.appended())));
        {
            let mut s = lock(&self.inner.sync);
            match sealed {
                // `seal` synced the whole file, unless an earlier failure
                // already consumed the error it would have reported.
                Some(Ok(done)) if !s.failed => s.synced = s.synced.max(done),
                Some(Ok(_)) => {}
                Some(Err(_)) => s.failed = true,
                None => {}
            }
            s.stop = true;
        }
        self.inner.notify_synced();
        self.inner.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

fn multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

// === impl Inner ===

impl Inner {
    /// Chains and writes a record on the caller's thread, waiting for the
    /// writer if it is busy. Returns its sequence number and, with
    /// `fsync = "batch"`, the sync to wait for.
    fn append(
        &self,
        record: Record,
        fsync: crate::config::Fsync,
    ) -> Result<(u64, Option<u64>), AuditUnavailable> {
        let written = self.write_locked(self.lock_writer(), Some(record));
        self.drain_handoff();
        self.after_write(written.unwrap_or(Err(AuditUnavailable)), fsync)
    }

    /// Like [`append`](Self::append), but if the writer is busy the record
    /// is handed to its holder and this task waits without blocking its
    /// thread.
    async fn append_or_hand_off(
        &self,
        record: Record,
        fsync: crate::config::Fsync,
    ) -> Result<(u64, Option<u64>), AuditUnavailable> {
        if let Some(guard) = self.try_writer() {
            let written = self.write_locked(guard, Some(record));
            // Records handed over after this holder took the hand-offs.
            self.drain_handoff();
            return self.after_write(written.unwrap_or(Err(AuditUnavailable)), fsync);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.handoff).push((record, tx));
        // The holder may have taken the hand-offs just before ours.
        self.drain_handoff();
        self.after_write(rx.await.unwrap_or(Err(AuditUnavailable)), fsync)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Option<writer::Writer>> {
        self.writer.lock().unwrap_or_else(poisoned)
    }

    fn try_writer(&self) -> Option<std::sync::MutexGuard<'_, Option<writer::Writer>>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(poisoned(e)),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Writes the handed-off records and `own` in one write, answers the
    /// hand-offs and releases the writer. Returns `own`'s sequence number
    /// and sync ticket.
    fn write_locked(
        &self,
        mut guard: std::sync::MutexGuard<'_, Option<writer::Writer>>,
        own: Option<Record>,
    ) -> Option<Result<(u64, u64), AuditUnavailable>> {
        let handed = std::mem::take(&mut *lock(&self.handoff));
        if handed.is_empty() && own.is_none() {
            return None;
        }
        let (mut records, outcomes): (Vec<_>, Vec<_>) = handed.into_iter().unzip();
        let has_own = own.is_some();
        records.extend(own);
        let n = records.len();
        let (mut results, ticket, sync_failed) = match guard.as_mut() {
            // Sealed: nothing more is written.
            None => (vec![Err(AuditUnavailable); n], 0, false),
            // Refuses the records if any sync has failed.
            Some(w) => (w.write_many(records), w.appended(), w.sync_failed),
        };
        drop(guard);
        if sync_failed {
            self.fail();
        }
        let mine = has_own.then(|| results.pop().unwrap_or(Err(AuditUnavailable)));
        for (outcome, result) in outcomes.into_iter().zip(results) {
            // A request that stopped waiting does not mind.
            let _ = outcome.send(result.map(|seq| (seq, ticket)));
        }
        mine.map(|r| r.map(|seq| (seq, ticket)))
    }

    /// Runs `f` on the writer, then writes what was handed over meanwhile:
    /// every holder of the writer does, or a hand-off could wait forever.
    fn with_writer<R>(&self, f: impl FnOnce(&mut Option<writer::Writer>) -> R) -> R {
        let r = f(&mut self.lock_writer());
        self.drain_handoff();
        r
    }

    /// Writes whatever was handed over, while nobody else holds the writer.
    fn drain_handoff(&self) {
        while !lock(&self.handoff).is_empty() {
            // If the writer is busy, its holder drains them when it is done.
            let Some(guard) = self.try_writer() else {
                return;
            };
            self.write_locked(guard, None);
        }
    }

    fn after_write(
        &self,
        written: Result<(u64, u64), AuditUnavailable>,
        fsync: crate::config::Fsync,
    ) -> Result<(u64, Option<u64>), AuditUnavailable> {
        let (seq, ticket) = written?;
        if fsync != crate::config::Fsync::Batch {
            return Ok((seq, None));
        }
        self.request_sync(ticket);
        Ok((seq, Some(ticket)))
    }

    fn request_sync(&self, ticket: u64) {
        let mut s = lock(&self.sync);
        if ticket > s.requested {
            s.requested = ticket;
            let idle = s.idle;
            drop(s);
            if idle {
                self.wake.notify_one();
            }
        }
    }

    async fn wait_synced(&self, ticket: u64) -> Result<(), AuditUnavailable> {
        loop {
            let notified = self.synced.notified();
            tokio::pin!(notified);
            // Registered before the check, so a sync in between wakes us.
            notified.as_mut().enable();
            {
                let s = lock(&self.sync);
                // A failure answers no, even for a record a sync may have
                // covered: when in doubt, fail closed.
                if s.failed {
                    return Err(AuditUnavailable);
                }
                if s.synced >= ticket {
                    return Ok(());
                }
                if s.stop {
                    return Err(AuditUnavailable);
                }
            }
            notified.await;
        }
    }

    /// Stops the log after a failed sync: waiters and later requests fail.
    ///
    /// It does not write hand-offs (it is called by the code that does, and
    /// would recurse): every caller drains them afterwards.
    fn fail(&self) {
        lock(&self.sync).failed = true;
        if let Some(w) = self.lock_writer().as_mut() {
            w.sync_failed = true;
        }
        self.notify_synced();
    }

    fn notify_synced(&self) {
        self.synced.notify_waiters();
        if lock(&self.sync).blocking_waiters > 0 {
            self.synced_cv.notify_all();
        }
    }

    /// The sync thread: group commit, plus the checkpoints and ratchets due
    /// by time.
    fn run(&self) {
        /// If this thread dies, nobody would wake the waiters: fail them.
        struct FailOnPanic<'a>(&'a Inner);
        impl Drop for FailOnPanic<'_> {
            fn drop(&mut self) {
                if thread::panicking() {
                    self.0.fail();
                    self.0.drain_handoff();
                }
            }
        }
        let _guard = FailOnPanic(self);
        let mut last_tick = std::time::Instant::now();
        loop {
            let due = {
                let mut s = lock(&self.sync);
                if !s.stop && (s.requested <= s.synced || s.failed) {
                    s.idle = true;
                    s = self
                        .wake
                        .wait_timeout(s, TICK)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    s.idle = false;
                }
                if s.stop {
                    return;
                }
                s.requested > s.synced && !s.failed
            };
            if due {
                // Records handed over while the writer was busy go into
                // this sync. Then the file and what it holds so far, read
                // together: every batch up to `appended` is in this file or
                // in one that rotation synced.
                self.drain_handoff();
                let current = self
                    .lock_writer()
                    .as_ref()
                    .map(|w| (w.file.clone(), w.appended()));
                let Some((file, target)) = current else {
                    // Sealed: `close` syncs the file, answers the waiters and
                    // stops this thread in a moment.
                    thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                };
                // Handed over while this thread held the writer just now.
                self.drain_handoff();
                let result = file.sync_data();
                // Linux reports a writeback error once per open file: a
                // rotation that synced the same file concurrently may have
                // received it instead, and set `sync_failed` under the
                // writer lock.
                // Once sealed, `close` decides what was synced.
                let failed_elsewhere = self.lock_writer().as_ref().map(|w| w.sync_failed);
                match (result, failed_elsewhere) {
                    (Ok(()), Some(false)) => {
                        let mut s = lock(&self.sync);
                        if !s.failed {
                            s.synced = s.synced.max(target);
                        }
                        drop(s);
                        self.notify_synced();
                    }
                    (Ok(()), Some(true)) => self.fail(),
                    (Ok(()), None) => {}
                    (Err(e), _) => {
                        tracing::error!(error = %e, "Cannot sync the audit log; refusing requests until restart");
                        self.fail();
                    }
                }
            }
            if last_tick.elapsed() >= TICK && !lock(&self.sync).failed {
                last_tick = std::time::Instant::now();
                let ticked = self.with_writer(|w| {
                    w.as_mut().map(|w| {
                        w.tick();
                        (w.appended(), w.sync_failed, w.fsync())
                    })
                });
                match ticked {
                    Some((_, true, _)) => self.fail(),
                    // With `always` every write syncs itself; a second sync
                    // of the same file here could take its error.
                    Some((_, false, crate::config::Fsync::Always)) => {}
                    Some((appended, false, _)) => self.request_sync(appended),
                    None => {}
                }
            }
            // Records handed over while this thread held the writer; after
            // a failure, they are refused here rather than left waiting.
            self.drain_handoff();
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
            claimed_bot: None,
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

/// A random request ID: 24 hex digits.
///
/// IDs are cut from a per-thread pool that is refilled from the operating
/// system's random source 32 IDs at a time: a `getrandom` call for each
/// request cost more than everything else in the ID. IDs label requests;
/// they grant nothing.
pub fn request_id() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    use std::cell::RefCell;
    const ID: usize = 12;
    const POOL: usize = 32 * ID;
    thread_local! {
        static IDS: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    let mut b = [0u8; ID];
    let drawn = IDS.with_borrow_mut(|(pool, used)| {
        if *used == POOL {
            if SystemRandom::new().fill(pool).is_err() {
                return false;
            }
            *used = 0;
        }
        b.copy_from_slice(&pool[*used..*used + ID]);
        *used += ID;
        true
    });
    if !drawn {
        // Never seen on Linux; fall back to the clock rather than fail.
        let t = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
        b.copy_from_slice(&t[..ID]);
    }
    crate::identity::hex(&b)
}

/// `s` cut to at most `max` bytes, on a character boundary: for fields
/// of the record that someone outside botward chose.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The source a TCP peer's refusals are summed under: every loopback
/// address is one source (a local process may bind any of 127.0.0.0/8), an
/// IPv6 address counts by its /64, and an IPv4 address by itself.
pub fn source_of_ip(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    match ip {
        ip if ip.is_loopback() => "loopback".into(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => "loopback".into(),
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The current time as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    rfc3339_micros(jiff::Timestamp::now())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written digit by digit: a record's
/// timestamp is formatted on every request.
fn rfc3339_micros(ts: jiff::Timestamp) -> String {
    let dt = jiff::tz::Offset::UTC.to_datetime(ts);
    let Ok(year) = u32::try_from(dt.year()) else {
        return ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    };
    let mut out = [0u8; 27];
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, dt.month() as u32);
    put(8, 2, dt.day() as u32);
    put(11, 2, dt.hour() as u32);
    put(14, 2, dt.minute() as u32);
    put(17, 2, dt.second() as u32);
    put(20, 6, dt.subsec_nanosecond() as u32 / 1000);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = c;
    }
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::config::{Audit, Fsync};

    fn cfg(dir: &Path, fsync: Fsync) -> Audit {
        Audit {
            path: dir.join("audit.jsonl"),
            state_dir: dir.to_owned(),
            fsync,
            rotate_bytes: 0,
            rotate_daily: false,
            checkpoint_every: 5,
            checkpoint_interval: Duration::from_secs(60),
            ratchet_interval: Duration::from_secs(60),
            syslog: None,
        }
    }

    /// Concurrent writers under each fsync policy get distinct sequence
    /// numbers, every record reaches the file, and the log closes sealed.
    #[test]
    fn timestamps_match_the_rfc3339_format_of_the_contract() {
        let fmt = |ts: jiff::Timestamp| ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let mut samples = vec![
            jiff::Timestamp::UNIX_EPOCH,
            "2026-02-28T23:59:59.999999999Z".parse().unwrap(),
            "2028-02-29T12:00:00.000001Z".parse().unwrap(),
            "0999-01-01T00:00:00Z".parse().unwrap(),
            "9999-12-30T12:00:00.5Z".parse().unwrap(),
            jiff::Timestamp::now(),
        ];
        // A spread of seconds and nanoseconds from 1970 to 2100.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 4_102_444_800) as i64;
            samples.push(jiff::Timestamp::new(secs, (x >> 33) as i32 % 1_000_000_000).unwrap());
        }
        for ts in samples {
            assert_eq!(rfc3339_micros(ts), fmt(ts), "{ts}");
        }
        assert_eq!(now_rfc3339().len(), 27);
    }

    fn empty_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("botward-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A runtime like the server's on a 2-core host.
    fn two_workers() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_record_handed_off_while_the_writer_is_busy_is_written_when_it_is_free() {
        let dir = empty_dir("handoff");
        let log = Arc::new(AuditLog::open(&cfg(&dir, Fsync::Batch)).unwrap());
        let rt = two_workers();
        // Hold the writer as the sync thread does; the request must hand
        // its record over, and the holder writes it on release.
        let task = log.inner.with_writer(|_| {
            let l = log.clone();
            let task = rt.spawn(async move {
                l.write(Record::new("whoami", "handed".into(), l.host()))
                    .await
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while lock(&log.inner.handoff).is_empty() {
                assert!(std::time::Instant::now() < deadline, "no hand-off");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(!task.is_finished(), "answered before it was written");
            task
        });
        let seq = rt
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), task).await
            })
            .expect("the hand-off was written")
            .unwrap()
            .expect("written and synced");
        log.close();
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        let rec = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["id"] == "handed")
            .expect("the handed-off record is in the file");
        assert_eq!(rec["seq"], seq);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn after_a_failed_sync_every_concurrent_write_is_refused_promptly() {
        let dir = empty_dir("failed");
        let log = Arc::new(AuditLog::open(&cfg(&dir, Fsync::Batch)).unwrap());
        let before = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        // As when `fdatasync` (the sync thread's, or a rotation's) fails.
        log.inner.fail();
        let rt = two_workers();
        let results = rt.block_on(async {
            let tasks: Vec<_> = (0..400)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let r = Record::new("whoami", format!("late-{i}"), log.host());
                        log.write(r).await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                let r = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
                out.push(r.expect("answered").unwrap());
            }
            out
        });
        assert!(results.iter().all(|r| r.is_err()), "every write refused");
        let after = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert_eq!(before, after, "nothing written after the failure");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_written_before_a_failure_is_not_answered_as_synced_by_close() {
        let dir = empty_dir("fail-close");
        let log = AuditLog::open(&cfg(&dir, Fsync::Batch)).unwrap();
        let record = Record::new("whoami", "before".into(), log.host());
        let (_, ticket) = log.inner.append(record, Fsync::Batch).unwrap();
        log.inner.fail();
        log.close();
        let waited = two_workers().block_on(log.inner.wait_synced(ticket.unwrap()));
        assert!(waited.is_err(), "answered after a failed sync");
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_ne!(
            last["detail"]["final"], true,
            "no seal vouches for the file"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_writes_under_every_fsync_policy_reach_the_file() {
        for fsync in [Fsync::Always, Fsync::Batch, Fsync::Never] {
            let dir = empty_dir(&format!("auditlog-{fsync:?}"));
            let log = Arc::new(AuditLog::open(&cfg(&dir, fsync)).unwrap());
            let rt = two_workers();
            let seqs: Vec<u64> = rt.block_on(async {
                let tasks: Vec<_> = (0..40)
                    .map(|i| {
                        let log = log.clone();
                        tokio::spawn(async move {
                            let r = Record::new("whoami", format!("req-{i}"), log.host());
                            log.write(r).await.unwrap()
                        })
                    })
                    .collect();
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out
            });
            let blocking = log
                .write_blocking(Record::new("whoami", "req-b".into(), log.host()))
                .unwrap();
            log.close();
            assert!(
                log.write_blocking(Record::new("whoami", "late".into(), log.host()))
                    .is_err(),
                "{fsync:?}: a sealed log takes no more records"
            );
            let unique: BTreeSet<u64> = seqs.iter().copied().chain([blocking]).collect();
            assert_eq!(unique.len(), 41, "{fsync:?}: sequence numbers are distinct");
            let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
            let records: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let requests = records.iter().filter(|r| r["kind"] == "whoami").count();
            assert_eq!(requests, 41, "{fsync:?}");
            let last = records.last().unwrap();
            assert_eq!(last["kind"], "checkpoint", "{fsync:?}: sealed at close");
            assert_eq!(last["detail"]["final"], true);
            assert!(
                records.iter().filter(|r| r["kind"] == "checkpoint").count() >= 8,
                "{fsync:?}: a checkpoint every 5 records"
            );
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r["seq"], i as u64, "{fsync:?}: seq runs without gaps");
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
