//! What the audit log is configured with: where it is written, how it is
//! synced, rotated, checkpointed and ratcheted, and where it is shipped.
//! The config file's `[audit]` table is validated into a [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub path: PathBuf,
    /// Where the seed, the key state and the signing key live; by default
    /// beside the log.
    pub state_dir: PathBuf,
    pub fsync: Fsync,
    /// Rotate when the file reaches this size; 0 turns size rotation off.
    pub rotate_bytes: u64,
    /// Rotate when the UTC day changes.
    pub rotate_daily: bool,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub ratchet_interval: Duration,
    pub syslog: Option<Syslog>,
}

/// When the audit file is synced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Every record is written and synced on its own.
    Always,
    /// Records of concurrent requests are written and synced together.
    Batch,
    /// Left to the operating system.
    Never,
}

/// The off-host RFC 5424 syslog sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syslog {
    pub address: String,
    /// Send every record, or only checkpoints.
    pub all_records: bool,
}
