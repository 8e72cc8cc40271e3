//! `botward audit verify`: checks the chain, the MACs (with the seed) and the
//! checkpoint signatures (with the public key) across rotated files.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::chain::{self, EpochKey};

/// The largest epoch step a record may take.
const MAX_EPOCH_JUMP: u64 = 1_000_000;

/// What the verifier may check with.
#[derive(Default)]
pub struct Keys {
    pub public_key: Option<Vec<u8>>,
    pub seed: Option<zeroize::Zeroizing<[u8; 32]>>,
    /// The last record botward saved with its key state (seq, hash): a log
    /// that ends before it was cut.
    pub anchor: Option<(u64, String)>,
    /// Where the log may start when older files were retired on purpose;
    /// otherwise it must start at seq 0.
    pub from_seq: Option<u64>,
}

/// The kind of damage found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    Edited,
    Deleted,
    Reordered,
    BadSignature,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Intact, and the last record is the final seal of a clean shutdown.
    Sealed,
    /// Intact, but records after the last checkpoint are not sealed: a live
    /// log, a crash, or a truncation.
    Unsealed {
        after_checkpoint: Option<u64>,
        unsealed: u64,
    },
    Tampered {
        file: PathBuf,
        line: usize,
        seq: Option<u64>,
        damage: Damage,
        detail: String,
    },
}

#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub records: u64,
    pub files: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: u64,
    pub macs_checked: bool,
    pub signatures_checked: bool,
}

#[derive(Deserialize)]
struct Light<'a> {
    seq: u64,
    #[serde(borrow)]
    prev: Option<Cow<'a, str>>,
    epoch: Option<u64>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    detail: Option<CheckpointDetail>,
}

#[derive(Deserialize)]
struct CheckpointDetail {
    covers_seq: Option<u64>,
    covers_hash: Option<String>,
    epoch: Option<u64>,
    signature: Option<String>,
    #[serde(rename = "final")]
    is_final: Option<bool>,
}

// === impl Damage ===

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Edited => "edited",
            Damage::Deleted => "deleted",
            Damage::Reordered => "reordered",
            Damage::BadSignature => "bad signature",
        })
    }
}

/// Orders log files by the sequence number of their first record.
pub fn order_files(files: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut keyed = Vec::with_capacity(files.len());
    for f in files {
        let first = first_seq(f)?;
        keyed.push((first.unwrap_or(u64::MAX), f.clone()));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, f)| f).collect())
}

fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut head = vec![0u8; 64 * 1024];
    let n = f.read(&mut head)?;
    let line = head[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
    Ok(serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("seq")?.as_u64()))
}

/// Verifies the files as one chain.
pub fn verify(files: &[PathBuf], keys: &Keys) -> io::Result<Report> {
    let files = order_files(files)?;
    let mut v = Verifier {
        keys,
        key: keys.seed.as_ref().map(|s| EpochKey::genesis(s)),
        expected: None,
        last_hash: None,
        last_epoch: 0,
        last_checkpoint: None,
        last_final: false,
        torn: false,
        report: Report {
            outcome: Outcome::Sealed,
            records: 0,
            files: files.len(),
            first_seq: None,
            last_seq: None,
            checkpoints: 0,
            macs_checked: keys.seed.is_some(),
            signatures_checked: keys.public_key.is_some(),
        },
    };
    for (i, f) in files.iter().enumerate() {
        if let Err(t) = v.file(f, i + 1 == files.len())? {
            v.report.outcome = t;
            return Ok(v.report);
        }
    }
    if let Some((seq, hash)) = &keys.anchor {
        let cut = match v.report.last_seq {
            None => true,
            Some(last) => {
                last < *seq || (last == *seq && v.last_hash.as_deref() != Some(hash.as_str()))
            }
        };
        if cut {
            let last = files.last().cloned().unwrap_or_default();
            v.report.outcome = Outcome::Tampered {
                file: last,
                line: 0,
                seq: v.report.last_seq,
                damage: Damage::Deleted,
                detail: format!("the log ends at seq {:?}, but botward had written up to seq {seq}: the tail was cut", v.report.last_seq),
            };
            return Ok(v.report);
        }
    }
    let unsealed = match v.last_checkpoint {
        Some(c) => v.report.last_seq.map_or(0, |l| l - c),
        None => v.report.records,
    };
    v.report.outcome = if v.last_final && !v.torn && unsealed == 0 {
        Outcome::Sealed
    } else {
        Outcome::Unsealed {
            after_checkpoint: v.last_checkpoint,
            unsealed: unsealed + u64::from(v.torn),
        }
    };
    Ok(v.report)
}

struct Verifier<'k> {
    keys: &'k Keys,
    key: Option<EpochKey>,
    expected: Option<u64>,
    last_hash: Option<String>,
    last_epoch: u64,
    last_checkpoint: Option<u64>,
    last_final: bool,
    torn: bool,
    report: Report,
}

impl Verifier<'_> {
    /// Streams one file, line by line: memory stays bounded by the longest
    /// line, whatever the size of the log.
    fn file(&mut self, path: &Path, is_last: bool) -> io::Result<Result<(), Outcome>> {
        use std::io::BufRead;
        let mut reader = io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut line = Vec::with_capacity(4096);
        let mut line_no = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(Ok(()));
            }
            line_no += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            } else {
                // A torn last line: a crash mid-write. Only the live file may
                // end so; the next start cuts it off and records
                // `audit.recovered`.
                if is_last {
                    self.torn = true;
                    return Ok(Ok(()));
                }
                return Ok(Err(self.tampered(
                    path,
                    line_no,
                    None,
                    Damage::Edited,
                    "a rotated file ends in a torn line".into(),
                )));
            }
            if let Err(t) = self.record(path, line_no, &line) {
                return Ok(Err(t));
            }
        }
    }

    /// Whether a record with `seq` comes later in the file: tells a reorder
    /// from a deletion. Only read when something is already wrong.
    fn appears_later(path: &Path, seq: u64) -> bool {
        use std::io::BufRead;
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        io::BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
            .any(|l| serde_json::from_slice::<Light<'_>>(&l).is_ok_and(|r| r.seq == seq))
    }

    fn tampered(
        &self,
        path: &Path,
        line: usize,
        seq: Option<u64>,
        damage: Damage,
        detail: String,
    ) -> Outcome {
        Outcome::Tampered {
            file: path.to_owned(),
            line,
            seq,
            damage,
            detail,
        }
    }

    fn record(&mut self, path: &Path, line_no: usize, line: &[u8]) -> Result<(), Outcome> {
        let Some((canonical, hash_hex, mac_hex)) = chain::split_line(line) else {
            return Err(self.tampered(
                path,
                line_no,
                None,
                Damage::Edited,
                "not a sealed record (hash and mac missing or malformed)".into(),
            ));
        };
        let rec: Light<'_> = serde_json::from_slice(line).map_err(|e| {
            self.tampered(
                path,
                line_no,
                None,
                Damage::Edited,
                format!("not a valid record: {e}"),
            )
        })?;
        let seq = Some(rec.seq);
        let h = chain::hash(&canonical);
        if crate::identity::hex(&h) != hash_hex {
            return Err(self.tampered(
                path,
                line_no,
                seq,
                Damage::Edited,
                "the record does not match its hash".into(),
            ));
        }
        match self.expected {
            Some(e) if rec.seq < e => {
                return Err(self.tampered(
                    path,
                    line_no,
                    seq,
                    Damage::Reordered,
                    format!("seq {} appears after seq {}", rec.seq, e - 1),
                ));
            }
            Some(e) if rec.seq > e => {
                let (damage, detail) = if Self::appears_later(path, e) {
                    (
                        Damage::Reordered,
                        format!("seq {} appears before seq {e}", rec.seq),
                    )
                } else if rec.seq == e + 1 {
                    (Damage::Deleted, format!("record {e} is missing"))
                } else {
                    (
                        Damage::Deleted,
                        format!("records {e} to {} are missing", rec.seq - 1),
                    )
                };
                return Err(self.tampered(path, line_no, seq, damage, detail));
            }
            Some(_) => {
                if rec.prev.as_deref() != self.last_hash.as_deref() {
                    return Err(self.tampered(
                        path,
                        line_no,
                        seq,
                        Damage::Edited,
                        "prev does not match the hash of the record before it: an earlier record was replaced".into(),
                    ));
                }
            }
            None => {
                if rec.seq != 0 && self.keys.from_seq != Some(rec.seq) {
                    return Err(self.tampered(
                        path,
                        line_no,
                        seq,
                        Damage::Deleted,
                        format!(
                            "the log starts at seq {}: records 0 to {} are missing (if older files were retired on purpose, pass --from-seq {})",
                            rec.seq,
                            rec.seq - 1,
                            rec.seq
                        ),
                    ));
                }
                if rec.seq == 0 && rec.prev.is_some() {
                    return Err(self.tampered(
                        path,
                        line_no,
                        seq,
                        Damage::Edited,
                        "the first record of a chain has a prev".into(),
                    ));
                }
                self.report.first_seq = seq;
            }
        }
        let epoch = rec.epoch.unwrap_or(0);
        // Epochs advance once a ratchet interval and at each start; a jump
        // of more than a million (a year of one-second ratchets) is forged,
        // and deriving its key would take forever.
        if epoch > self.last_epoch.saturating_add(MAX_EPOCH_JUMP) {
            return Err(self.tampered(
                path,
                line_no,
                seq,
                Damage::Edited,
                format!("implausible epoch {epoch} after epoch {}", self.last_epoch),
            ));
        }
        if epoch < self.last_epoch {
            return Err(self.tampered(
                path,
                line_no,
                seq,
                Damage::Reordered,
                format!("epoch {epoch} after epoch {}", self.last_epoch),
            ));
        }
        if let Some(key) = self.key.as_mut() {
            while key.epoch < epoch {
                key.ratchet();
            }
            if !key.verify(&h, mac_hex) {
                return Err(self.tampered(
                    path,
                    line_no,
                    seq,
                    Damage::Edited,
                    "the MAC does not match: the record was rewritten without the key".into(),
                ));
            }
        }
        if rec.kind == "checkpoint" {
            let d = rec.detail.as_ref();
            let covers_seq = d.and_then(|d| d.covers_seq);
            let covers_hash = d.and_then(|d| d.covers_hash.as_deref());
            if covers_seq != rec.seq.checked_sub(1)
                || covers_hash != rec.prev.as_deref()
                || d.and_then(|d| d.epoch) != Some(epoch)
            {
                return Err(self.tampered(
                    path,
                    line_no,
                    seq,
                    Damage::BadSignature,
                    "the checkpoint does not cover the record before it".into(),
                ));
            }
            if let Some(pk) = &self.keys.public_key {
                let msg = chain::checkpoint_message(
                    rec.seq.saturating_sub(1),
                    covers_hash.unwrap_or(""),
                    epoch,
                );
                let sig = d.and_then(|d| d.signature.as_deref()).unwrap_or("");
                if !chain::verify_signature(pk, &msg, sig) {
                    return Err(self.tampered(
                        path,
                        line_no,
                        seq,
                        Damage::BadSignature,
                        "the checkpoint signature does not verify with the public key".into(),
                    ));
                }
            }
            self.last_checkpoint = Some(rec.seq);
            self.last_final = d.and_then(|d| d.is_final).unwrap_or(false);
            self.report.checkpoints += 1;
        } else {
            self.last_final = false;
        }
        self.expected = Some(rec.seq + 1);
        self.last_hash = Some(hash_hex.to_owned());
        self.last_epoch = epoch;
        self.report.records += 1;
        self.report.last_seq = seq;
        Ok(())
    }
}
