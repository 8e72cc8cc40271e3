//! botward: a secrets-broker sidecar for RPA bot hosts.
//!
//! Bots present their own mTLS client certificate on a local socket and ask
//! for secrets by logical name; botward checks the grant, fetches the secret
//! from Vault or OpenBao just in time, and writes an audit record for every
//! request, allowed or not.
//!
//! Layers, top down; a module uses only those below it
//! (`scripts/modgraph.py` checks that no two modules depend on each other):
//! - [`cli`]: arguments and one file per command; [`client`], [`certs`] and
//!   [`dev`] serve the commands.
//! - [`app`]: the composition root, `App::start` and `App::run`, with the
//!   background loops.
//! - [`server`]: the transports (TCP loopback, unix socket) behind one
//!   listener trait, TLS handshakes and connection caps; [`refusals`]:
//!   refusals before authentication, summed per source.
//! - [`api`]: HTTP routes and one module per endpoint group.
//! - [`broker`]: the core: authenticate, decide, fetch (cache, coalescer,
//!   Vault), track the lease, record, answer.
//! - [`policy`]: the pure access decision over the domain types it owns;
//!   [`config`]: raw TOML validated into them and into each subsystem's
//!   settings.
//! - [`vault`]: the Vault client; [`leases`]: leases handed out and their
//!   ledger; [`cache`], [`coalesce`]: KV reads served once.
//! - [`tls`] and [`identity`]: TLS configuration and the bot's name from its
//!   certificate; [`process`]: the process behind a local connection.
//! - [`audit`]: the record schema, the writer, and the auditor's tools;
//!   [`anomaly`]: per-bot behavioural baselines and detectors.
//! - [`platform`]: everything that differs between operating systems;
//!   [`alloc`]: the wiping allocator; [`harden`]: process hardening at
//!   start.
//! - [`secret`]: types that hold secret values; [`error`]: error types and
//!   their reasons; [`text`] and [`html`]: escaping for people and pages;
//!   [`state_file`]: atomic replacement of small files.

pub mod alloc;
pub mod anomaly;
pub mod api;
pub mod app;
pub mod audit;
pub mod broker;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod client;
pub mod coalesce;
pub mod config;
pub mod dev;
pub mod elevation;
pub mod error;
pub mod harden;
pub mod html;
pub mod identity;
pub mod leases;
pub mod platform;
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

/// [`lock`] for a wait on a `Condvar`.
pub fn wait<'a, T>(
    cv: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
) -> std::sync::MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for a timed wait on a `Condvar`.
pub fn wait_timeout<'a, T>(
    cv: &std::sync::Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> (std::sync::MutexGuard<'a, T>, std::sync::WaitTimeoutResult) {
    cv.wait_timeout(guard, timeout)
        .unwrap_or_else(|e| e.into_inner())
}
