//! The core of botward: a request from an authenticated connection is
//! authenticated again, decided, served from Vault (through the cache and
//! the coalescer), its lease tracked, and recorded before it is answered.
//!
//! The broker knows nothing of how a request arrived: the transports in
//! [`crate::server`] hand it a [`Conn`] with the peer's facts, and the HTTP
//! layer in [`crate::api`] hands it parsed requests and renders what it
//! returns.

mod activity;
mod conn;
pub mod elevate;
mod enroll;
mod exchange;
mod fetch;
mod held;
mod lifecycle;
mod refused;
mod reload;
mod revoke;
mod runtime;
mod shared;
mod standing;
pub mod terms;
mod tokens;

pub use activity::Activity;
pub use conn::Conn;
pub use enroll::{Local, ENROLL, ENROLL_TOKEN};
pub use exchange::{Answer, Arrival, Exchange, Reply};
pub use fetch::Secret;
pub use held::{Health, Renewed};
pub use refused::{auth_failure, Summed};
pub use revoke::LeaseSlot;
pub use runtime::Runtime;
pub use shared::Shared;
