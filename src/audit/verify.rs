//! `botward audit verify`: checks the chain, the MACs (with the seed), the
//! checkpoint signatures (with the chain's first public key, walked through
//! the keys each checkpoint names) and, against anchors kept off the host,
//! that the log was neither cut back nor rewritten behind them; across
//! rotated files. The [`Report`] says what each input could check and what
//! it could not.

mod anchor;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::anchor::{parse_message, read_messages, Anchor, Anchors, Malformed};
use super::chain::{self, EpochKey};
pub use super::fields::printable;

/// The largest epoch step a record may take.
const MAX_EPOCH_JUMP: u64 = 1_000_000;

/// The most distinct hosts remembered from a log, to match anchors.
const MAX_HOSTS: usize = 256;

/// What the verifier may check with.
#[derive(Default)]
pub struct Keys {
    /// The public key of the log's first epoch: `<log>.pub` for a log that
    /// starts at seq 0. Later epochs' keys are the ones the checkpoints name.
    pub public_key: Option<Vec<u8>>,
    pub seed: Option<zeroize::Zeroizing<[u8; 32]>>,
    /// The last record botward saved with its key state (seq, hash): a log
    /// that ends before it was cut.
    pub anchor: Option<(u64, String)>,
    /// Records kept off the host: the log must hold each of its host's, as
    /// they are.
    pub anchors: Anchors,
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
    pub signatures: Signatures,
    pub anchors: AnchorCheck,
}

/// How far signatures vouch for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signatures {
    /// The last checkpoint whose signature verified, and its epoch.
    pub through: Option<(u64, u64)>,
    /// The last epoch a checkpoint was signed by a key that did not ratchet
    /// (a log written before signing keys ratcheted).
    pub fixed_until_epoch: Option<u64>,
    /// The first epoch whose checkpoints named the next epoch's key.
    pub ratchets_from_epoch: Option<u64>,
}

/// What the anchors could check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnchorCheck {
    /// Anchors given, copies counted once, and the files they came from.
    pub given: usize,
    pub files: usize,
    /// Anchors the log was checked against.
    pub checked: usize,
    /// The latest of them, by seq.
    pub latest: Option<u64>,
    /// Checkpoints of other chains (another first public key), set aside.
    pub other_chains: usize,
    /// Records of other hosts, set aside.
    pub other_hosts: usize,
    /// Older than the log's first record (files retired on purpose).
    pub before_start: usize,
    /// The record the key state on this host names, when it was given.
    pub key_state: Option<u64>,
}

#[derive(Deserialize)]
struct Light<'a> {
    seq: u64,
    #[serde(borrow)]
    host: Option<Cow<'a, str>>,
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
    next_public_key: Option<String>,
    #[serde(rename = "final")]
    is_final: Option<bool>,
}

/// The signing key checkpoints must verify with, walked from the first
/// public key through the next keys the checkpoints name.
struct SigningChain {
    key: Vec<u8>,
    /// The epoch `key` signs; `None` before the first checkpoint, whose
    /// epoch the given key is taken to sign.
    epoch: Option<u64>,
    /// The key the last checkpoint of `epoch` named for the next epoch.
    next: Option<Vec<u8>>,
}

/// Where the log holds an anchored seq.
struct Seen {
    hash: String,
    file: PathBuf,
    line: usize,
}

/// A line of a log file, where damage is found.
struct At<'p> {
    path: &'p Path,
    line: usize,
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

// === impl At ===

impl At<'_> {
    fn tampered(&self, seq: Option<u64>, damage: Damage, detail: String) -> Outcome {
        Outcome::Tampered {
            file: self.path.to_owned(),
            line: self.line,
            seq,
            damage,
            detail,
        }
    }
}

// === impl Report ===

impl Report {
    /// What the keys and anchors given could check, and what they could
    /// not, one line each: MACs, signatures, truncation.
    pub fn coverage(&self) -> Vec<String> {
        let macs = if self.macs_checked {
            "hashes and MACs: checked with the seed, for every record".to_string()
        } else {
            "MACs: not checked: no seed given".to_string()
        };
        let s = &self.signatures;
        let signatures = match (self.signatures_checked, s.through) {
            (false, _) => "signatures: not checked: no public key given".to_string(),
            (true, None) => "signatures: none to check: the log has no checkpoint".to_string(),
            (true, Some((seq, epoch))) => {
                let how = match (s.fixed_until_epoch, s.ratchets_from_epoch) {
                    (None, _) => "the signing key walked from the first public key through every epoch".to_string(),
                    (Some(_), None) => "the signing key did not ratchet (a log written before botward ratcheted signing keys): whoever held that key could re-sign all of it".to_string(),
                    (Some(f), Some(r)) => format!("the signing key was fixed up to epoch {f} (written before botward ratcheted signing keys: whoever held it could re-sign those epochs) and ratchets from epoch {r} on"),
                };
                format!(
                    "signatures: checked up to the checkpoint at seq {seq} (epoch {epoch}); {how}"
                )
            }
        };
        let a = &self.anchors;
        let mut truncation = match (a.checked, a.key_state) {
            (0, None) => "truncation: not checked: without anchors, a log cut back to a checkpoint cannot be told from a live log (give --anchor FILE with checkpoint records kept off the host)".to_string(),
            (0, Some(k)) => format!("truncation: checked only against the key state on this host (seq {k}), which an intruder on the host can rewrite too (give --anchor FILE with checkpoint records kept off the host)"),
            (n, k) => format!(
                "truncation: checked against {n} anchor(s) kept off the host, from {} file(s), the latest at seq {}{}",
                a.files,
                a.latest.map_or("?".to_string(), |l| l.to_string()),
                k.map_or(String::new(), |k| format!(", and the key state on this host (seq {k})"))
            ),
        };
        if a.other_chains > 0 {
            truncation.push_str(&format!(
                "; {} checkpoint(s) of other chains set aside",
                a.other_chains
            ));
        }
        if a.other_hosts > 0 {
            truncation.push_str(&format!(
                "; {} anchor(s) of other hosts set aside",
                a.other_hosts
            ));
        }
        if a.before_start > 0 {
            truncation.push_str(&format!(
                "; {} anchor(s) older than the log's first record not checked",
                a.before_start
            ));
        }
        vec![macs, signatures, truncation]
    }
}

/// Reads every record of the given files, in chain order of the files,
/// skipping lines that are not JSON objects.
pub fn read_records(files: &[PathBuf]) -> io::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for f in order_files(files)? {
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

/// Verifies the files as one chain, then against the anchors. An error is
/// a file that cannot be read, or anchors none of which can be checked.
pub fn verify(files: &[PathBuf], keys: &Keys) -> io::Result<Report> {
    let files = order_files(files)?;
    let wanted_seqs = !keys.anchors.is_empty() || keys.anchor.is_some();
    let mut v = Verifier {
        keys,
        key: keys.seed.as_ref().map(|s| EpochKey::genesis(s)),
        signing: keys.public_key.as_ref().map(|k| SigningChain {
            key: k.clone(),
            epoch: None,
            next: None,
        }),
        expected: None,
        last_hash: None,
        last_epoch: 0,
        last_checkpoint: None,
        last_final: false,
        last_line: 0,
        torn: false,
        seen: HashMap::new(),
        wanted_seqs,
        hosts: Vec::new(),
        report: Report {
            outcome: Outcome::Sealed,
            records: 0,
            files: files.len(),
            first_seq: None,
            last_seq: None,
            checkpoints: 0,
            macs_checked: keys.seed.is_some(),
            signatures_checked: keys.public_key.is_some(),
            signatures: Signatures::default(),
            anchors: AnchorCheck::default(),
        },
    };
    for (i, f) in files.iter().enumerate() {
        if let Err(t) = v.file(f, i + 1 == files.len())? {
            v.report.outcome = t;
            return Ok(v.report);
        }
    }
    let end = files.last().cloned().unwrap_or_default();
    if let Err(t) = v.anchors(&end)? {
        v.report.outcome = t;
        return Ok(v.report);
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
    signing: Option<SigningChain>,
    expected: Option<u64>,
    last_hash: Option<String>,
    last_epoch: u64,
    last_checkpoint: Option<u64>,
    last_final: bool,
    /// The line of the last record in the last file.
    last_line: usize,
    torn: bool,
    /// The log's records at anchored seqs.
    seen: HashMap<u64, Seen>,
    wanted_seqs: bool,
    /// Hosts the log's records name: anchors of other hosts are set aside.
    hosts: Vec<String>,
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
                let at = At {
                    path,
                    line: line_no,
                };
                return Ok(Err(at.tampered(
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

    /// Checks the log against the anchors, once it verified on its own: a
    /// record that differs from an anchor was replaced; a log that ends
    /// before an anchor was cut back. The error is anchors none of which
    /// can be checked.
    fn anchors(&mut self, end: &Path) -> io::Result<Result<(), Outcome>> {
        let keys = self.keys;
        let anchors = &keys.anchors;
        let key_state = keys.anchor.as_ref().map(|(seq, hash)| Anchor {
            seq: *seq,
            hash: hash.clone(),
            host: None,
            chain: None,
            source: "the key state on this host".into(),
        });
        let check = &mut self.report.anchors;
        check.given = anchors.len();
        check.files = anchors.files();
        check.key_state = key_state.as_ref().map(|a| a.seq);
        // The log's chain, by the first public key the auditor gave: only
        // known for a log from seq 0, whose first epoch that key signs.
        let chain = match (&keys.public_key, self.report.first_seq) {
            (Some(k), Some(0)) => Some(crate::text::hex(k)),
            _ => None,
        };
        let mut beyond: Option<&Anchor> = None;
        let mut other_hosts = Vec::new();
        for a in anchors.iter().chain(key_state.as_ref()) {
            if !self.applies(a, chain.as_ref(), &mut other_hosts) {
                continue;
            }
            match self.seen.get(&a.seq) {
                Some(s) if s.hash != a.hash => return Ok(Err(replaced(s, a))),
                Some(_) => {}
                // Every seq from the first on is in the log, up to its end.
                None => {
                    if beyond.is_none_or(|b| a.seq > b.seq) {
                        beyond = Some(a);
                    }
                }
            }
        }
        if !anchors.is_empty() && self.report.anchors.checked == 0 {
            return Err(self.none_checkable(&other_hosts));
        }
        Ok(match beyond {
            Some(a) => Err(self.cut_back(end, a)),
            None => Ok(()),
        })
    }

    /// Whether the log is checked against `a`: not when it is a checkpoint
    /// of another chain than `chain`, a record of a host the log does not
    /// name (up to three of which go to `other_hosts`, for the message), or
    /// older than the log's first record. Counts it in the report either way.
    fn applies(
        &mut self,
        a: &Anchor,
        chain: Option<&String>,
        other_hosts: &mut Vec<String>,
    ) -> bool {
        let check = &mut self.report.anchors;
        // Checkpoints name their chain; other records, their host.
        if let (Some(mine), Some(theirs)) = (chain, &a.chain) {
            if mine != theirs {
                check.other_chains += 1;
                return false;
            }
        } else if let Some(h) = &a.host {
            if !self.hosts.contains(h) {
                check.other_hosts += 1;
                if other_hosts.len() < 3 && !other_hosts.contains(h) {
                    other_hosts.push(h.clone());
                }
                return false;
            }
        }
        if self.report.first_seq.is_some_and(|first| a.seq < first) {
            check.before_start += 1;
            return false;
        }
        if a.host.is_some() {
            check.checked += 1;
            check.latest = check.latest.max(Some(a.seq));
        }
        true
    }

    /// The error when none of the anchors given can be checked, saying why.
    fn none_checkable(&self, other_hosts: &[String]) -> io::Error {
        let check = &self.report.anchors;
        let hosts: Vec<String> = other_hosts
            .iter()
            .map(|h| format!("\"{}\"", printable(h)))
            .collect();
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "none of the {} anchors can be checked against this log: {} are checkpoints of other chains (another first public key), {} are records of other hosts ({}), {} are older than its first record",
                self.keys.anchors.len(),
                check.other_chains,
                check.other_hosts,
                hosts.join(", "),
                check.before_start
            ),
        )
    }

    /// The log, ending in `end`, stops before anchor `a`'s seq.
    fn cut_back(&self, end: &Path, a: &Anchor) -> Outcome {
        Outcome::Tampered {
            file: end.to_owned(),
            line: self.last_line,
            seq: self.report.last_seq,
            damage: Damage::Deleted,
            detail: format!(
                "the log ends at seq {}, but {} shows that seq {} was written: the log was cut back",
                self.report.last_seq.map_or("(none)".to_string(), |s| s.to_string()),
                shown_source(a),
                a.seq
            ),
        }
    }

    /// Checks a checkpoint's signature with the key of its epoch, and takes
    /// the next epoch's key it names. Returns what is wrong.
    fn signature(
        &mut self,
        epoch: u64,
        covers_seq: u64,
        covers_hash: &str,
        d: &CheckpointDetail,
    ) -> Result<(), String> {
        let ratchets_from = self.report.signatures.ratchets_from_epoch;
        let first_seq = self.report.first_seq;
        let Some(chain) = self.signing.as_mut() else {
            return Ok(());
        };
        let given = chain.epoch.is_none();
        match chain.epoch {
            Some(e) if e == epoch => {}
            Some(e) => match chain.next.take() {
                Some(next) if epoch == e + 1 => chain.key = next,
                Some(_) => {
                    return Err(format!(
                        "no checkpoint of epoch {} names the signing key of epoch {epoch}: checkpoints were removed",
                        epoch - 1
                    ))
                }
                // A fixed key signs every epoch.
                None => {}
            },
            None => {}
        }
        chain.epoch = Some(epoch);
        let next = d.next_public_key.as_deref();
        let msg = match next {
            Some(n) => chain::checkpoint_message_next(covers_seq, covers_hash, epoch, n),
            None => chain::checkpoint_message(covers_seq, covers_hash, epoch),
        };
        let sig = d.signature.as_deref().unwrap_or("");
        if !chain::verify_signature(&chain.key, &msg, sig) {
            return Err(if given && first_seq != Some(0) {
                "the checkpoint signature does not verify with the public key (a log that starts after seq 0 needs the public key of its first epoch: the next_public_key of the last checkpoint before it)".into()
            } else if given {
                "the checkpoint signature does not verify with the public key".into()
            } else {
                format!("the checkpoint signature does not verify with the key of epoch {epoch} that the checkpoints before it named: it was signed with another key, such as one taken from the host later")
            });
        }
        let sigs = &mut self.report.signatures;
        match next {
            Some(n) => {
                chain.next = Some(
                    chain::unhex32(n)
                        .ok_or("the checkpoint names a malformed next public key")?
                        .to_vec(),
                );
                sigs.ratchets_from_epoch.get_or_insert(epoch);
            }
            None => {
                if let Some(r) = ratchets_from {
                    return Err(format!("the checkpoint names no next public key, though signing keys ratchet since epoch {r}"));
                }
                sigs.fixed_until_epoch = Some(epoch);
            }
        }
        Ok(())
    }

    /// Checks one record: its hash, its place in the chain, its epoch, its
    /// MAC and, for a checkpoint, what it covers and its signature; then
    /// takes it as the end of the chain.
    fn record(&mut self, path: &Path, line_no: usize, line: &[u8]) -> Result<(), Outcome> {
        let at = At {
            path,
            line: line_no,
        };
        let Some((canonical, hash_hex, mac_hex)) = chain::split_line(line) else {
            return Err(at.tampered(
                None,
                Damage::Edited,
                "not a sealed record (hash and mac missing or malformed)".into(),
            ));
        };
        let rec: Light<'_> = serde_json::from_slice(line)
            .map_err(|e| at.tampered(None, Damage::Edited, format!("not a valid record: {e}")))?;
        let seq = Some(rec.seq);
        let h = chain::hash(&canonical);
        if crate::text::hex(&h) != hash_hex {
            return Err(at.tampered(
                seq,
                Damage::Edited,
                "the record does not match its hash".into(),
            ));
        }
        self.sequence(&at, &rec)?;
        let epoch = rec.epoch.unwrap_or(0);
        self.epoch(&at, seq, epoch)?;
        self.mac(&at, seq, epoch, &h, mac_hex)?;
        if rec.kind == "checkpoint" {
            self.checkpoint(&at, &rec, epoch)?;
        } else {
            self.last_final = false;
        }
        self.remember(&at, &rec, hash_hex);
        self.expected = Some(rec.seq + 1);
        self.last_hash = Some(hash_hex.to_owned());
        self.last_line = line_no;
        self.last_epoch = epoch;
        self.report.records += 1;
        self.report.last_seq = seq;
        Ok(())
    }

    /// Checks the record's seq and prev against the record before it, or,
    /// for the first record, where the log may start.
    fn sequence(&mut self, at: &At<'_>, rec: &Light<'_>) -> Result<(), Outcome> {
        let seq = Some(rec.seq);
        match self.expected {
            Some(e) if rec.seq < e => Err(at.tampered(
                seq,
                Damage::Reordered,
                format!("seq {} appears after seq {}", rec.seq, e - 1),
            )),
            Some(e) if rec.seq > e => {
                let (damage, detail) = Self::gap(at.path, e, rec.seq);
                Err(at.tampered(seq, damage, detail))
            }
            Some(_) if rec.prev.as_deref() != self.last_hash.as_deref() => Err(at.tampered(
                seq,
                Damage::Edited,
                "prev does not match the hash of the record before it: an earlier record was replaced".into(),
            )),
            Some(_) => Ok(()),
            None => self.start(at, rec),
        }
    }

    /// What is wrong when seq `found` comes where `expected` should: the
    /// records between were moved, or deleted.
    fn gap(path: &Path, expected: u64, found: u64) -> (Damage, String) {
        if Self::appears_later(path, expected) {
            (
                Damage::Reordered,
                format!("seq {found} appears before seq {expected}"),
            )
        } else if found == expected + 1 {
            (Damage::Deleted, format!("record {expected} is missing"))
        } else {
            (
                Damage::Deleted,
                format!("records {expected} to {} are missing", found - 1),
            )
        }
    }

    /// Checks the log's first record: it is seq 0, with no prev, unless the
    /// log may start later.
    fn start(&mut self, at: &At<'_>, rec: &Light<'_>) -> Result<(), Outcome> {
        let seq = Some(rec.seq);
        if rec.seq != 0 && self.keys.from_seq != Some(rec.seq) {
            return Err(at.tampered(
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
            return Err(at.tampered(
                seq,
                Damage::Edited,
                "the first record of a chain has a prev".into(),
            ));
        }
        self.report.first_seq = seq;
        Ok(())
    }

    /// Checks the record's epoch: never behind the last record's, nor more
    /// than [`MAX_EPOCH_JUMP`] ahead of it.
    fn epoch(&self, at: &At<'_>, seq: Option<u64>, epoch: u64) -> Result<(), Outcome> {
        // Epochs advance once a ratchet interval and at each start; a jump
        // of more than a million (a year of one-second ratchets) is forged,
        // and deriving its key would take forever.
        if epoch > self.last_epoch.saturating_add(MAX_EPOCH_JUMP) {
            return Err(at.tampered(
                seq,
                Damage::Edited,
                format!("implausible epoch {epoch} after epoch {}", self.last_epoch),
            ));
        }
        if epoch < self.last_epoch {
            return Err(at.tampered(
                seq,
                Damage::Reordered,
                format!("epoch {epoch} after epoch {}", self.last_epoch),
            ));
        }
        Ok(())
    }

    /// Checks the record's MAC with the key of its epoch, ratcheting the
    /// key up to it; without a seed, there is nothing to check.
    fn mac(
        &mut self,
        at: &At<'_>,
        seq: Option<u64>,
        epoch: u64,
        hash: &[u8; 32],
        mac_hex: &str,
    ) -> Result<(), Outcome> {
        let Some(key) = self.key.as_mut() else {
            return Ok(());
        };
        while key.epoch < epoch {
            key.ratchet();
        }
        if !key.verify(hash, mac_hex) {
            return Err(at.tampered(
                seq,
                Damage::Edited,
                "the MAC does not match: the record was rewritten without the key".into(),
            ));
        }
        Ok(())
    }

    /// Checks that a checkpoint covers the record before it, in its epoch,
    /// and its signature; then takes it as the last checkpoint.
    fn checkpoint(&mut self, at: &At<'_>, rec: &Light<'_>, epoch: u64) -> Result<(), Outcome> {
        let seq = Some(rec.seq);
        let d = rec.detail.as_ref();
        let covers_seq = d.and_then(|d| d.covers_seq);
        let covers_hash = d.and_then(|d| d.covers_hash.as_deref());
        if covers_seq != rec.seq.checked_sub(1)
            || covers_hash != rec.prev.as_deref()
            || d.and_then(|d| d.epoch) != Some(epoch)
        {
            return Err(at.tampered(
                seq,
                Damage::BadSignature,
                "the checkpoint does not cover the record before it".into(),
            ));
        }
        if let Some(d) = d {
            let covers = (rec.seq.saturating_sub(1), covers_hash.unwrap_or(""));
            if let Err(detail) = self.signature(epoch, covers.0, covers.1, d) {
                return Err(at.tampered(seq, Damage::BadSignature, detail));
            }
            if self.signing.is_some() {
                self.report.signatures.through = Some((rec.seq, epoch));
            }
        }
        self.last_checkpoint = Some(rec.seq);
        self.last_final = d.and_then(|d| d.is_final).unwrap_or(false);
        self.report.checkpoints += 1;
        Ok(())
    }

    /// Keeps what the anchors are checked against: where the log holds an
    /// anchored seq, and the hosts its records name.
    fn remember(&mut self, at: &At<'_>, rec: &Light<'_>, hash_hex: &str) {
        if self.wanted_seqs
            && (self.keys.anchors.contains_seq(rec.seq)
                || self
                    .keys
                    .anchor
                    .as_ref()
                    .is_some_and(|(s, _)| *s == rec.seq))
        {
            self.seen.insert(
                rec.seq,
                Seen {
                    hash: hash_hex.to_owned(),
                    file: at.path.to_owned(),
                    line: at.line,
                },
            );
        }
        if !self.keys.anchors.is_empty() {
            let host = rec.host.as_deref().unwrap_or("");
            if self.hosts.len() < MAX_HOSTS && !self.hosts.iter().any(|h| h == host) {
                self.hosts.push(host.to_owned());
            }
        }
    }
}

/// The log's record at `s` differs from anchor `a`, which has its seq.
fn replaced(s: &Seen, a: &Anchor) -> Outcome {
    Outcome::Tampered {
        file: s.file.clone(),
        line: s.line,
        seq: Some(a.seq),
        damage: Damage::Edited,
        detail: format!(
            "the record differs from {}, which has the same seq: it was replaced",
            shown_source(a)
        ),
    }
}

/// An anchor's source, for a message.
fn shown_source(a: &Anchor) -> String {
    match a.host {
        Some(_) => format!("anchor {}", a.source),
        None => a.source.clone(),
    }
}
