//! botward: a secrets-broker sidecar for RPA bot hosts.
//!
//! Bots present their own mTLS client certificate on a local socket and ask
//! for secrets by logical name; botward checks the grant, fetches the secret
//! from Vault or OpenBao just in time, and writes an audit record for every
//! request, allowed or not.
//!
//! Layout:
//! - [`config`]: raw TOML, validated into [`config::Config`].
//! - [`identity`]: the bot's name from its client certificate.
//! - [`policy`]: the pure access decision.
//! - [`tls`]: server and client TLS configuration.
//! - [`vault`]: the Vault client wrapper; [`leases`]: leases handed out and
//!   their ledger.
//! - [`server`] and [`api`]: accept loops, routes and responses;
//!   [`refusals`]: refusals before authentication, summed per source;
//!   [`process`]: the process behind a unix-socket connection.
//! - [`audit`]: the audit log writer and the auditor's tools.
//! - [`anomaly`]: per-bot behavioural baselines and detectors.
//! - [`secret`]: types that hold secret values; [`alloc`]: the wiping
//!   allocator; [`harden`]: process hardening at start.
//! - [`error`]: error types and their HTTP mapping.
//! - [`text`]: control characters escaped in everything shown to a person.
//! - [`cli`], [`client`], [`certs`], [`dev`]: the command line.

pub mod alloc;
pub mod anomaly;
pub mod api;
pub mod audit;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod client;
pub mod coalesce;
pub mod config;
pub mod dev;
pub mod error;
pub mod harden;
pub mod identity;
pub mod leases;
pub mod policy;
pub mod process;
pub mod refusals;
pub mod secret;
pub mod server;
pub mod state_file;
pub mod text;
pub mod tls;
pub mod vault;

/// Locks `m`, recovering it if a thread panicked while holding it: every
/// value guarded this way is consistent between statements. The audit
/// writer, whose poisoning stops the log on purpose, does not use this.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for the read side of an `RwLock`.
pub fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for the write side of an `RwLock`.
pub fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
