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
//! - [`server`] and [`api`]: accept loops, routes and responses.
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
pub mod secret;
pub mod server;
pub mod state_file;
pub mod text;
pub mod tls;
pub mod vault;
