//! The group commit: requests chain and write their own records under one
//! lock, hand them to the holder when it is busy, and a sync thread syncs
//! what was written and writes the checkpoints and ratchets due by time.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::thread;

use super::record::{hostname, Record};
use super::settings::{Fsync, Settings};
use super::writer::{self, AuditUnavailable};
use crate::lock;

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
    fsync: Fsync,
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
    pub fn open(cfg: &Settings) -> io::Result<AuditLog> {
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
            Fsync::Always if multi_thread_runtime() => {
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
                s = crate::wait(&self.inner.synced_cv, s);
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
    fn append(&self, record: Record, fsync: Fsync) -> Result<(u64, Option<u64>), AuditUnavailable> {
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
        fsync: Fsync,
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
        fsync: Fsync,
    ) -> Result<(u64, Option<u64>), AuditUnavailable> {
        let (seq, ticket) = written?;
        if fsync != Fsync::Batch {
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
                    s = crate::wait_timeout(&self.wake, s, TICK).0;
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
                    Some((_, false, Fsync::Always)) => {}
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

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    fn cfg(dir: &Path, fsync: Fsync) -> Settings {
        Settings {
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

    /// Concurrent writers under each fsync policy get distinct sequence
    /// numbers, every record reaches the file, and the log closes sealed.
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
