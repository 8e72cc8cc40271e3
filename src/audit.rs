//! The audit log: one JSON line per request, allowed or not, written before
//! the response leaves. If a record cannot be written the request fails
//! closed.
//!
//! A [`Record`] ([`record`]) is written through the [`AuditLog`] ([`log`]):
//! one lock guards the file, so sequence numbers follow file order, and
//! concurrent requests share a write and a sync. The [`writer`] chains the
//! records into a hash chain with forward-secure MACs and signed checkpoints
//! ([`chain`]), rotates the files and keeps the key state. The log is
//! configured with [`Settings`] ([`settings`]). [`verify`], [`query`],
//! [`report`] and [`ocsf`] are the auditor's tools, reading records through
//! [`fields`] and summing up just-in-time elevations with [`elevations`];
//! [`syslog`] ships records off the host.

pub mod chain;
pub mod elevations;
pub mod fields;
pub mod log;
pub mod ocsf;
pub mod query;
pub mod record;
pub mod report;
pub mod settings;
pub mod syslog;
pub mod verify;
pub mod writer;

pub use self::log::AuditLog;
pub use self::record::{
    hostname, now_rfc3339, request_id, source_of_ip, truncate, Backend, CertInfo, Decision, Peer,
    Record, Transport,
};
pub use self::settings::{Fsync, Settings, Syslog};
pub use self::verify::read_records;
pub use self::writer::{log_files, writer_key_files, AuditUnavailable};
