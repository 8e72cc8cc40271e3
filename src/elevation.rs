//! Just-in-time elevation: a bot asks for a time-boxed window on a
//! privileged secret, approvers sign their decisions with the keys of
//! their certificates, and the window opens only when enough distinct
//! approvers' signatures check out. Requests and decisions travel through
//! a KV v2 mailbox in Vault (or a file), which is never trusted beyond the
//! signatures.
//!
//! [`statement`] signs and verifies decisions, [`check`] holds the rules a
//! decision must pass, and [`store`] the requests and windows of one
//! botward.

pub mod check;
pub mod statement;
pub mod store;

pub use check::{Asked, Rejected};
pub use statement::{Signed, Statement, Verdict};
pub use store::{Elevations, Status};
