//! The writer thread: owns the current file, the chain state and the keys.
//!
//! It takes every record that is waiting, chains and writes them in one
//! write, syncs per the fsync policy, and only then answers each request.
//! It also writes checkpoints (every N records, every T seconds, at rotation
//! and a final seal at shutdown), ratchets the MAC and signing keys, rotates
//! files and recovers a torn last line at start.
//!
//! Before the keys move from epoch e to e+1 (by time, or at a start), the
//! writer seals epoch e: unless the last record already is a checkpoint of
//! epoch e, it writes one (reason `ratchet`), signed with e's key and naming
//! e+1's public key, and syncs the file. Only then does the key state move
//! on, so a crash never leaves a key the log has not named. An epoch that
//! holds no records is not ratcheted out of: its keys have nothing to
//! protect yet.
//!
//! The key state file (`<log>.key`, mode 0600) holds the current epoch, its
//! MAC key, its signing seed (`sign`), the chain's first public key
//! (`first`) and the last record written:
//!
//! ```text
//! {"epoch":3,"first":"<64 hex>","hash":"<64 hex>","key":"<64 hex>","seq":1234,"sign":"<64 hex>"}
//! ```
//!
//! A key state from before signing keys ratcheted has no `sign`; its fixed
//! signing key is the PKCS#8 file `<log>.sign`. The first start that finds
//! one seals the epoch with that key, hands over to a random ratcheting key,
//! and overwrites and removes `<log>.sign`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

use super::chain::{self, EpochKey, EpochSigner};
use super::record::{hostname, request_id, Decision, Record};
use super::settings::{Fsync, Settings, Syslog};
use super::syslog::{SyslogConfig, SyslogSink};
use super::verify;
use crate::text::hex;

/// The audit record could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditUnavailable;

/// File names of the key material, beside the log by default.
pub struct KeyFiles {
    /// The MAC seed, written once: for the operator to move off the host.
    pub seed: PathBuf,
    /// The current epoch's keys and the last record written.
    pub state: PathBuf,
    /// The fixed signing key of a log from before signing keys ratcheted;
    /// removed at the first start of a ratcheting writer.
    pub sign: PathBuf,
    /// The chain's first public key, written once: it goes off the host with
    /// the seed.
    pub public: PathBuf,
}

impl KeyFiles {
    pub fn for_log(cfg: &Settings) -> KeyFiles {
        let name = cfg
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        let at = |ext: &str| cfg.state_dir.join(format!("{name}.{ext}"));
        KeyFiles {
            seed: at("seed"),
            state: at("key"),
            sign: at("sign"),
            public: at("pub"),
        }
    }

    /// What an auditor can check this log with, from the files that exist:
    /// the chain's first public key, the MAC seed, and the last record the
    /// writer saved with its key state (the log must reach at least that
    /// far). Errors name the file.
    pub fn verify_keys(&self) -> Result<verify::Keys, String> {
        let mut keys = verify::Keys::default();
        if self.public.exists() {
            keys.public_key = Some(read_hex_file(&self.public)?);
        }
        keys.anchor = saved_anchor(&self.state);
        if self.seed.exists() {
            let raw = Zeroizing::new(read_hex_file(&self.seed)?);
            keys.seed = Some(Zeroizing::new(
                raw.as_slice()
                    .try_into()
                    .map_err(|_| "seed is not 32 bytes".to_string())?,
            ));
        }
        Ok(keys)
    }
}

/// Where the seed, key state, signing key and public key of a log live.
pub fn writer_key_files(cfg: &Settings) -> KeyFiles {
    KeyFiles::for_log(cfg)
}

/// A file holding hex (a seed or a public key), decoded.
pub fn read_hex_file(p: &Path) -> Result<Vec<u8>, String> {
    let text =
        Zeroizing::new(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?);
    chain::unhex(&text).ok_or_else(|| format!("{}: not hex", p.display()))
}

/// The last record (seq, hash) saved in a key state file, if it can be
/// read and names one.
pub fn saved_anchor(state: &Path) -> Option<(u64, String)> {
    let text = Zeroizing::new(std::fs::read_to_string(state).ok()?);
    let v = serde_json::from_str::<serde_json::Value>(&text).ok()?;
    let seq = v.get("seq").and_then(|s| s.as_u64())?;
    let hash = v.get("hash").and_then(|h| h.as_str())?;
    Some((seq, hash.to_owned()))
}

pub struct Writer {
    cfg: Settings,
    host: Arc<str>,
    /// Shared with the sync thread, which calls `fdatasync` on it.
    pub(super) file: Arc<File>,
    file_len: u64,
    file_day: Option<jiff::civil::Date>,
    file_first_seq: Option<u64>,
    next_seq: u64,
    last_hash: Option<String>,
    key: EpochKey,
    signer: EpochSigner,
    /// The chain's first public key, hex: names the chain in checkpoints.
    first_public: String,
    keys: KeyFiles,
    /// The current epoch holds records: ratcheting out of it protects them.
    epoch_used: bool,
    /// The last record is a checkpoint of the current epoch, naming the next
    /// epoch's public key: the epoch is sealed.
    epoch_sealed: bool,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    last_ratchet: Instant,
    sink: Option<SyslogSink>,
    /// A record to write first, e.g. `audit.recovered`.
    pending: Vec<Record>,
    /// Set while the rotation checkpoint is written.
    rotating: bool,
    buf: Vec<u8>,
    /// Batches written so far.
    appended: u64,
    /// A sync of this file failed: what it holds is unknown, so it takes
    /// no more records.
    pub(super) sync_failed: bool,
}

/// The tail of an existing chain.
struct Tail {
    seq: u64,
    hash: String,
    epoch: u64,
    /// The next epoch's public key, if the last record is a checkpoint.
    next_public_key: Option<String>,
}

impl Writer {
    pub fn open(cfg: &Settings, host: Arc<str>) -> io::Result<Writer> {
        let keys = KeyFiles::for_log(cfg);
        for private in [&cfg.path, &keys.seed, &keys.state, &keys.sign] {
            crate::platform::refuse_if_shared(private)?;
        }
        let mut file = open_log(cfg)?;
        let recovered = recover_torn_line(&mut file, &cfg.path)?;
        let tail = chain_tail(&mut file, &cfg.path)?;
        let (key, signer, first_public) = match &tail {
            // Key state without a log: the log was removed. Refuse, rather
            // than quietly start a new chain over the evidence.
            None if keys.state.exists() => {
                return Err(io::Error::other(format!(
                    "audit key state {} exists but the log {} is gone; move the key state away to start a new chain",
                    keys.state.display(),
                    cfg.path.display()
                )))
            }
            None => start_chain(&keys)?,
            Some(t) => load_chain(&keys, t)?,
        };
        let in_epoch = tail.as_ref().is_some_and(|t| t.epoch == key.epoch);
        // Sealed only by a checkpoint naming the key this signer hands over
        // to: after a fixed key, that is a fresh random one.
        let sealed = in_epoch
            && tail.as_ref().and_then(|t| t.next_public_key.as_deref())
                == Some(signer.next_public_hex());
        let file_len = file.metadata()?.len();
        let mut w = Writer {
            cfg: cfg.clone(),
            host,
            file: Arc::new(file),
            file_len,
            file_day: None,
            file_first_seq: None,
            next_seq: tail.as_ref().map_or(0, |t| t.seq + 1),
            last_hash: tail.as_ref().map(|t| t.hash.clone()),
            epoch_used: in_epoch,
            epoch_sealed: sealed,
            key,
            signer,
            first_public,
            keys,
            since_checkpoint: 0,
            appended: 0,
            sync_failed: false,
            last_checkpoint: Instant::now(),
            last_ratchet: Instant::now(),
            sink: cfg.syslog.as_ref().map(start_sink),
            pending: Vec::new(),
            rotating: false,
            buf: Vec::with_capacity(64 * 1024),
        };
        if w.file_len > 0 {
            let (seq, day) = first_record(&w.cfg.path);
            w.file_day = day.or_else(|| Some(today()));
            w.file_first_seq = seq;
        }
        if tail.is_some() {
            w.leave_start_epoch()?;
        }
        if let Some((torn_len, torn_hash)) = recovered {
            let mut r = Record::new("audit.recovered", request_id(), w.host.clone());
            r.decision = Decision::Allow;
            r.reason = Some("torn_line".into());
            r.detail =
                Some(json!({"file": cfg.path, "torn_bytes": torn_len, "torn_sha256": torn_hash}));
            w.pending.push(r);
        }
        Ok(w)
    }

    /// Every start of an existing chain begins in an epoch that holds no
    /// records: ratchets out of the epoch the log ends in, if it holds
    /// records. A fixed key from before signing keys ratcheted is handed
    /// over at once, even from an epoch without records.
    fn leave_start_epoch(&mut self) -> io::Result<()> {
        if !(self.epoch_used || self.signer.is_fixed()) {
            return Ok(());
        }
        self.epoch_used = true;
        let fixed = self.signer.is_fixed();
        self.ratchet()?;
        if fixed {
            info!(
                from_epoch = self.key.epoch - 1,
                "Audit signing key now ratchets per epoch; the fixed signing key was removed"
            );
        }
        Ok(())
    }

    /// Writes records queued while opening, such as `audit.recovered`,
    /// and syncs them.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let (ok, _) = self.write_batch(pending);
        if !ok {
            return Err(io::Error::other("cannot write the audit log"));
        }
        self.file.sync_data()
    }

    /// Chains and writes records in one write, with a checkpoint after
    /// every `checkpoint_every` records. With `fsync = "always"` each
    /// record is synced before this returns; with `"batch"` the callers
    /// wait for the sync thread. Returns each record's sequence number, in
    /// order.
    pub fn write_many(&mut self, mut recs: Vec<Record>) -> Vec<Result<u64, AuditUnavailable>> {
        let mut out = Vec::with_capacity(recs.len());
        while !recs.is_empty() {
            if self.sync_failed {
                out.resize(out.len() + recs.len(), Err(AuditUnavailable));
                break;
            }
            let room = self
                .cfg
                .checkpoint_every
                .saturating_sub(self.since_checkpoint)
                .max(1);
            let rest = recs.split_off(recs.len().min(room as usize));
            let n = recs.len();
            let (ok, seqs) = self.write_batch(recs);
            if ok {
                out.extend(seqs.into_iter().map(|s| s.ok_or(AuditUnavailable)));
            } else {
                out.resize(out.len() + n, Err(AuditUnavailable));
            }
            if self.since_checkpoint >= self.cfg.checkpoint_every && !self.sync_failed {
                self.checkpoint("count", false);
            }
            recs = rest;
        }
        out
    }

    /// [`write_many`](Self::write_many) for one record.
    pub fn write_one(&mut self, rec: Record) -> Result<u64, AuditUnavailable> {
        self.write_many(vec![rec])
            .pop()
            .unwrap_or(Err(AuditUnavailable))
    }

    /// The policy this writer syncs by.
    pub fn fsync(&self) -> Fsync {
        self.cfg.fsync
    }

    /// Batches appended so far; the sync thread syncs up to this.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Checkpoints and ratchets that are due by time.
    pub fn tick(&mut self) {
        self.on_timer();
    }

    /// Writes the final checkpoint, syncs the file and saves the key state.
    pub fn seal(&mut self) -> io::Result<()> {
        if self.sync_failed {
            // What the file holds is unknown: no signature vouches for it.
            return Err(io::Error::other("an earlier sync of the audit log failed"));
        }
        self.seal_and_stop();
        self.file.sync_all().inspect_err(|e| {
            self.sync_failed = true;
            error!(error = %e, "Cannot sync the audit log at shutdown");
        })
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.since_checkpoint > 0 && now >= self.last_checkpoint + self.cfg.checkpoint_interval {
            self.checkpoint("interval", false);
        }
        if now >= self.last_ratchet + self.cfg.ratchet_interval {
            if let Err(e) = self.ratchet() {
                error!(error = %e, "Cannot save the audit key state; keeping the current epoch");
            }
        }
    }

    /// Seals the epoch, moves the MAC and signing keys to the next epoch and
    /// saves the new state. The old keys are wiped. An epoch without records
    /// stays.
    fn ratchet(&mut self) -> io::Result<()> {
        if self.sync_failed {
            return Err(io::Error::other("an earlier sync of the audit log failed"));
        }
        if !self.epoch_used {
            return Ok(());
        }
        if !self.epoch_sealed {
            self.checkpoint("ratchet", false);
            if !self.epoch_sealed {
                return Err(io::Error::other(
                    "cannot write the checkpoint that seals the epoch",
                ));
            }
        }
        // The checkpoint naming the next public key reaches the disk before
        // the key state moves past it.
        if let Err(e) = self.file.sync_data() {
            self.sync_failed = true;
            return Err(e);
        }
        let next_signer = self.signer.next().map_err(io::Error::other)?;
        let next = self.key.next_raw();
        save_key_state(
            &self.keys.state,
            KeyState {
                epoch: self.key.epoch + 1,
                key: &next,
                sign: next_signer.seed(),
                first: &self.first_public,
                anchor: self.anchor(),
            },
        )?;
        let was_fixed = self.signer.is_fixed();
        self.key = EpochKey::from_raw(self.key.epoch + 1, &next);
        self.signer = next_signer;
        if was_fixed {
            remove_fixed_signing_key(&self.keys.sign);
        }
        self.epoch_used = false;
        self.epoch_sealed = false;
        self.last_ratchet = Instant::now();
        Ok(())
    }

    /// The last record written: saved with the key state, so that a log cut
    /// back to an earlier point is noticed at the next start and by verify.
    fn anchor(&self) -> Option<(u64, String)> {
        Some((self.next_seq.checked_sub(1)?, self.last_hash.clone()?))
    }

    fn seal_and_stop(&mut self) {
        self.checkpoint("shutdown", true);
        if let Err(e) = save_key_state(
            &self.keys.state,
            KeyState {
                epoch: self.key.epoch,
                key: self.key.raw(),
                sign: self.signer.seed(),
                first: &self.first_public,
                anchor: self.anchor(),
            },
        ) {
            error!(error = %e, "Cannot save the audit key state at shutdown");
        }
        if let Some(sink) = &self.sink {
            sink.flush(Duration::from_secs(2));
        }
        info!("Audit log sealed");
    }

    /// Writes a checkpoint that signs the last record's hash.
    fn checkpoint(&mut self, why: &str, last: bool) {
        // Rotate first, so the checkpoint covers the record right before it.
        self.maybe_rotate();
        let Some(covers_hash) = self.last_hash.clone() else {
            return;
        };
        let covers_seq = self.next_seq.saturating_sub(1);
        debug_assert_eq!(self.signer.epoch, self.key.epoch);
        let sig = self.signer.sign_checkpoint(covers_seq, &covers_hash);
        let mut r = Record::new("checkpoint", request_id(), self.host.clone());
        r.decision = Decision::Allow;
        r.reason = Some(why.to_owned());
        r.detail = Some(json!({
            "covers_seq": covers_seq,
            "covers_hash": covers_hash,
            "epoch": self.key.epoch,
            "signature": sig,
            "public_key": self.signer.public_hex(),
            "next_public_key": self.signer.next_public_hex(),
            "first_public_key": self.first_public,
            "final": last,
        }));
        if self.append(vec![r]).0 {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
            self.epoch_sealed = true;
        }
    }

    /// Chains and writes a batch (and syncs it with `fsync = "always"`).
    /// Returns whether the batch reached the file, and each record's
    /// sequence number.
    fn write_batch(&mut self, jobs: Vec<Record>) -> (bool, Vec<Option<u64>>) {
        self.maybe_rotate();
        if self.sync_failed {
            // Rotation could not sync the file: nothing more goes into it.
            let n = jobs.len();
            return (false, vec![None; n]);
        }
        self.append(jobs)
    }

    fn maybe_rotate(&mut self) {
        if self.rotation_due() {
            if let Err(e) = self.rotate() {
                error!(error = %e, "Audit log rotation failed; continuing in the current file");
            }
        }
    }

    fn append(&mut self, mut jobs: Vec<Record>) -> (bool, Vec<Option<u64>>) {
        let saved = (self.next_seq, self.last_hash.clone());
        self.buf.clear();
        let mut seqs = Vec::with_capacity(jobs.len());
        let mut ends = Vec::with_capacity(jobs.len());
        for rec in &mut jobs {
            rec.seq = self.next_seq;
            rec.prev = self.last_hash.clone();
            rec.epoch = Some(self.key.epoch);
            let start = self.buf.len();
            let mut line = Vec::with_capacity(768);
            if serde_json::to_writer(&mut line, rec).is_err() {
                seqs.push(None);
                ends.push(start);
                continue;
            }
            let h = chain::seal_line(&mut line, &self.key);
            self.buf.extend_from_slice(&line);
            self.last_hash = Some(hex(&h));
            seqs.push(Some(self.next_seq));
            ends.push(self.buf.len());
            self.next_seq += 1;
        }
        let result = self.write_out(&ends);
        let ok = result.is_ok();
        if let Err(e) = &result {
            error!(error = %e, "Cannot write the audit log; refusing requests until it can");
            let _ = self.file.set_len(self.file_len);
            // Where the handle is not in append mode (Windows), the next
            // write goes to the new end.
            let _ = (&*self.file).seek(SeekFrom::End(0));
            (self.next_seq, self.last_hash) = saved;
        } else {
            let written = self.buf.len() as u64;
            if self.file_len == 0 {
                self.file_day = Some(today());
                self.file_first_seq = seqs.iter().flatten().next().copied();
            }
            self.file_len += written;
            let n = seqs.iter().flatten().count() as u64;
            self.since_checkpoint += n;
            if n > 0 {
                // A checkpoint marks itself sealed after this returns.
                self.epoch_used = true;
                self.epoch_sealed = false;
            }
            self.forward(&jobs, &ends);
            self.appended += 1;
        }
        (ok, seqs)
    }

    fn write_out(&mut self, ends: &[usize]) -> io::Result<()> {
        match self.cfg.fsync {
            Fsync::Always => {
                let mut start = 0;
                for &end in ends {
                    if end > start {
                        (&*self.file).write_all(&self.buf[start..end])?;
                        if let Err(e) = self.file.sync_data() {
                            self.sync_failed = true;
                            return Err(e);
                        }
                    }
                    start = end;
                }
                Ok(())
            }
            // The sync thread syncs batches; see `AuditLog`.
            Fsync::Batch | Fsync::Never => (&*self.file).write_all(&self.buf),
        }
    }

    /// Ships written records to the syslog sink.
    fn forward(&self, jobs: &[Record], ends: &[usize]) {
        let Some(sink) = &self.sink else { return };
        let all = self.cfg.syslog.as_ref().is_some_and(|s| s.all_records);
        let mut start = 0;
        for (rec, &end) in jobs.iter().zip(ends) {
            if end > start && (all || rec.kind == "checkpoint") {
                let line = String::from_utf8_lossy(&self.buf[start..end - 1]);
                let decision = match rec.decision {
                    Decision::Allow => "allow",
                    Decision::Deny => "deny",
                    Decision::Error => "error",
                };
                sink.send(&line, rec.kind, decision);
            }
            start = end;
        }
    }

    fn rotation_due(&self) -> bool {
        if self.file_len == 0 || self.rotating {
            return false;
        }
        (self.cfg.rotate_bytes > 0 && self.file_len >= self.cfg.rotate_bytes)
            || (self.cfg.rotate_daily && self.file_day.is_some_and(|d| d != today()))
    }

    /// Seals the current file with a checkpoint, renames it after its first
    /// sequence number and starts a new one. The chain continues.
    fn rotate(&mut self) -> io::Result<()> {
        self.rotating = true;
        self.checkpoint("rotation", false);
        self.rotating = false;
        if let Err(e) = self.file.sync_all() {
            self.sync_failed = true;
            return Err(e);
        }
        let first = self.file_first_seq.unwrap_or(self.next_seq);
        let rotated = rotated_name(&self.cfg.path, first);
        std::fs::rename(&self.cfg.path, &rotated)?;
        match crate::platform::open_append(&self.cfg.path, LOG_MODE) {
            Ok(f) => self.file = Arc::new(f),
            Err(e) => {
                // Put the file back, so that the chain goes on in the file
                // the next rotation expects.
                std::fs::rename(&rotated, &self.cfg.path)?;
                return Err(e);
            }
        }
        self.file_len = 0;
        self.file_day = None;
        self.file_first_seq = None;
        // Without it the new file's name may not survive a crash.
        if let Err(e) = crate::platform::sync_dir(&self.cfg.path) {
            self.sync_failed = true;
            return Err(e);
        }
        info!(file = %rotated.display(), "Rotated audit log");
        Ok(())
    }
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Creates the state and log directories and opens the log for appending.
fn open_log(cfg: &Settings) -> io::Result<File> {
    std::fs::create_dir_all(&cfg.state_dir)?;
    if let Some(dir) = cfg.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = crate::platform::open_append(&cfg.path, LOG_MODE)?;
    // A log created just now must keep its name through a crash. Some
    // file systems cannot sync a directory (EINVAL); nothing is lost
    // there that a sync could keep.
    match crate::platform::sync_dir(&cfg.path) {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => return Err(e),
        _ => {}
    }
    Ok(file)
}

/// The last record of the chain: in the open log `file` at `path`, or, if
/// it holds none, in the newest rotated file.
fn chain_tail(file: &mut File, path: &Path) -> io::Result<Option<Tail>> {
    match last_record(file)? {
        Some(t) => Ok(Some(t)),
        None => Ok(rotated_files(path)
            .last()
            .map(|p| File::open(p).and_then(|mut f| last_record(&mut f)))
            .transpose()?
            .flatten()),
    }
}

/// Starts the off-host syslog sink.
fn start_sink(s: &Syslog) -> SyslogSink {
    SyslogSink::start(SyslogConfig {
        address: s.address.clone(),
        app_name: "botward".into(),
        hostname: hostname(),
        facility: 13,
        queue: 10_000,
    })
}

/// Permission bits of a new log file: the owner writes, its group reads.
const LOG_MODE: u32 = 0o640;

/// `audit.jsonl` → `audit.jsonl.000000001234`.
pub fn rotated_name(path: &Path, first_seq: u64) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{first_seq:012}"));
    PathBuf::from(s)
}

/// Every file of a log, current and rotated, in chain order.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = rotated_files(path);
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

/// Rotated files of a log, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let digits = n.strip_prefix(&prefix)?;
            if digits.len() != 12 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The sequence number and UTC day of a file's first record.
fn first_record(path: &Path) -> (Option<u64>, Option<jiff::civil::Date>) {
    let Ok(mut f) = File::open(path) else {
        return (None, None);
    };
    let mut head = vec![0u8; 64 * 1024];
    let Ok(n) = f.read(&mut head) else {
        return (None, None);
    };
    let line = head[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return (None, None);
    };
    let day = v
        .get("ts")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date());
    (v.get("seq").and_then(|s| s.as_u64()), day)
}

/// The last MiB of a regular, non-empty file and its offset; the file is
/// left positioned at its end for appending.
fn read_tail(file: &mut File) -> io::Result<Option<(u64, Vec<u8>)>> {
    let meta = file.metadata()?;
    if meta.len() == 0 || !meta.is_file() {
        return Ok(None);
    }
    let start = meta.len().saturating_sub(1024 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    file.seek(SeekFrom::End(0))?;
    Ok(Some((start, tail)))
}

/// Cuts a torn last line (a crash mid-write) off the file. Returns its
/// length and hash, for the `audit.recovered` record.
fn recover_torn_line(file: &mut File, path: &Path) -> io::Result<Option<(u64, String)>> {
    let Some((start, tail)) = read_tail(file)? else {
        return Ok(None);
    };
    if tail.last() == Some(&b'\n') {
        return Ok(None);
    }
    let cut = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => start + i as u64 + 1,
        None if start == 0 => 0,
        None => {
            return Err(io::Error::other(
                "audit log ends in a line longer than 1 MiB",
            ))
        }
    };
    let torn = &tail[(cut - start) as usize..];
    let torn_hash = hex(&chain::hash(torn));
    warn!(file = %path.display(), bytes = torn.len(), "Audit log ends in a torn line; cutting it off");
    file.set_len(cut)?;
    file.sync_all()?;
    file.seek(SeekFrom::End(0))?;
    Ok(Some((torn.len() as u64, torn_hash)))
}

/// The last complete record of a file.
fn last_record(file: &mut File) -> io::Result<Option<Tail>> {
    let Some((_, tail)) = read_tail(file)? else {
        return Ok(None);
    };
    for line in tail.split(|b| *b == b'\n').rev() {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let (Some(seq), Some(hash)) = (
            v.get("seq").and_then(|s| s.as_u64()),
            v.get("hash").and_then(|h| h.as_str()),
        ) else {
            return Err(io::Error::other("the last audit record has no chain fields; move the old log away to start a new chain"));
        };
        let epoch = v.get("epoch").and_then(|e| e.as_u64()).unwrap_or(0);
        let next_public_key = match v.get("kind").and_then(|k| k.as_str()) {
            Some("checkpoint") => v
                .pointer("/detail/next_public_key")
                .and_then(|k| k.as_str())
                .map(str::to_owned),
            _ => None,
        };
        return Ok(Some(Tail {
            seq,
            hash: hash.to_owned(),
            epoch,
            next_public_key,
        }));
    }
    Ok(None)
}

/// A new chain: a fresh MAC seed (written once, mode 0400, for the operator
/// to move off the host), a fresh signing key whose public key is written
/// once as the chain's first public key, and the epoch-0 key state.
fn start_chain(keys: &KeyFiles) -> io::Result<(EpochKey, EpochSigner, String)> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut seed = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(seed.as_mut())
        .map_err(|_| io::Error::other("no system randomness"))?;
    // Key files of an earlier chain whose log is gone: keep them, renamed.
    // Its first public key still verifies its copies elsewhere.
    for old in [&keys.seed, &keys.public, &keys.sign] {
        if old.exists() {
            let mut aside = old.as_os_str().to_owned();
            aside.push(format!(".{}", jiff::Timestamp::now().as_second()));
            std::fs::rename(old, PathBuf::from(aside))?;
        }
    }
    write_secret_file(&keys.seed, hex(seed.as_ref()).as_bytes(), 0o400)?;
    let key = EpochKey::genesis(&seed);
    let signer = EpochSigner::generate().map_err(io::Error::other)?;
    let first = signer.public_hex();
    save_key_state(
        &keys.state,
        KeyState {
            epoch: 0,
            key: key.raw(),
            sign: signer.seed(),
            first: &first,
            anchor: None,
        },
    )?;
    write_secret_file(&keys.public, format!("{first}\n").as_bytes(), 0o444)?;
    info!(seed = %keys.seed.display(), public_key = %keys.public.display(), "Started a new audit chain; move the seed and the first public key off this host");
    Ok((key, signer, first))
}

/// An existing chain: the keys of the key state's epoch. The writer then
/// seals that epoch and ratchets, so every start begins a new epoch.
fn load_chain(keys: &KeyFiles, tail: &Tail) -> io::Result<(EpochKey, EpochSigner, String)> {
    let last_epoch = tail.epoch;
    let text = Zeroizing::new(std::fs::read_to_string(&keys.state).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("audit key state {} is unreadable ({e}); the chain cannot continue. Move the log away to start a new chain", keys.state.display()),
        )
    })?);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| io::Error::other("audit key state is corrupt"))?;
    let epoch = v
        .get("epoch")
        .and_then(|e| e.as_u64())
        .ok_or_else(|| io::Error::other("audit key state has no epoch"))?;
    let raw = v
        .get("key")
        .and_then(|k| k.as_str())
        .and_then(chain::unhex32)
        .map(Zeroizing::new)
        .ok_or_else(|| io::Error::other("audit key state has no key"))?;
    if epoch < last_epoch {
        return Err(io::Error::other(format!(
            "audit key state is at epoch {epoch} but the log is at epoch {last_epoch}: it was rolled back"
        )));
    }
    if let Some(saved) = v.get("seq").and_then(|s| s.as_u64()) {
        let saved_hash = v.get("hash").and_then(|h| h.as_str()).unwrap_or("");
        if tail.seq < saved || (tail.seq == saved && tail.hash != saved_hash) {
            return Err(io::Error::other(format!(
                "the audit log ends at seq {} but botward had written up to seq {saved}: records were cut or replaced; refusing to continue the chain",
                tail.seq
            )));
        }
    }
    let signer = match v.get("sign") {
        Some(sign) => {
            let seed = sign
                .as_str()
                .and_then(chain::unhex32)
                .map(Zeroizing::new)
                .ok_or_else(|| io::Error::other("audit key state has a malformed signing key"))?;
            // A fixed key left by a start that stopped right after handing
            // over from it.
            if keys.sign.exists() {
                remove_fixed_signing_key(&keys.sign);
            }
            EpochSigner::from_seed(epoch, &seed).map_err(io::Error::other)?
        }
        // A key state from before signing keys ratcheted: the fixed key.
        None => {
            let pkcs8 = Zeroizing::new(std::fs::read(&keys.sign).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "audit key state {} has no signing key and the fixed signing key {} is unreadable ({e}); the chain cannot continue",
                        keys.state.display(),
                        keys.sign.display()
                    ),
                )
            })?);
            let signer = EpochSigner::from_fixed_pkcs8(epoch, &pkcs8)
                .map_err(|e| io::Error::other(format!("{}: {e}", keys.sign.display())))?;
            // The fixed key is the chain's first public key.
            if !keys.public.exists() {
                std::fs::write(&keys.public, format!("{}\n", signer.public_hex()))?;
            }
            signer
        }
    };
    let first = match v.get("first").and_then(|f| f.as_str()) {
        Some(f) => f.to_owned(),
        None if signer.is_fixed() => signer.public_hex(),
        None => return Err(io::Error::other("audit key state has no first public key")),
    };
    Ok((EpochKey::from_raw(epoch, &raw), signer, first))
}

/// Overwrites the fixed signing key file, syncs it and removes it. A
/// failure is logged: the log goes on with ratcheting keys, and the next
/// start tries again.
fn remove_fixed_signing_key(path: &Path) {
    let wiped = (|| {
        let len = std::fs::metadata(path)?.len();
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.write_all(&vec![0u8; len as usize])?;
        f.sync_all()?;
        drop(f);
        std::fs::remove_file(path)?;
        // Should the removal not survive a crash, the file left holds
        // zeros, and the next start removes it again.
        let _ = crate::platform::sync_dir(path);
        io::Result::Ok(())
    })();
    if let Err(e) = wiped {
        error!(error = %e, file = %path.display(), "Cannot remove the old fixed audit signing key; remove it by hand");
    }
}

/// Replaces the key state file atomically: write, sync, rename, sync.
/// What the key state file holds.
struct KeyState<'a> {
    epoch: u64,
    key: &'a [u8; 32],
    /// `None` only for a fixed signing key, kept in `<log>.sign`.
    sign: Option<&'a [u8; 32]>,
    first: &'a str,
    /// The last record written.
    anchor: Option<(u64, String)>,
}

fn save_key_state(path: &Path, state: KeyState<'_>) -> io::Result<()> {
    let mut v =
        serde_json::json!({"epoch": state.epoch, "key": hex(state.key), "first": state.first});
    if let Some(sign) = state.sign {
        v["sign"] = hex(sign).into();
    }
    if let Some((seq, hash)) = state.anchor {
        v["seq"] = seq.into();
        v["hash"] = hash.into();
    }
    let text = Zeroizing::new(format!("{v}\n"));
    crate::state_file::replace(path, text.as_bytes(), 0o600)
}

fn write_secret_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = crate::platform::create_new(path, mode)?;
    f.write_all(bytes)?;
    f.sync_all()
}
