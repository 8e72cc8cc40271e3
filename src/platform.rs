//! Everything that differs between operating systems, behind small
//! functions with portable signatures.
//!
//! The rest of botward asks this module for facts about processes and
//! peers, for memory and dump protection, for files created with their
//! access, for the signals that reload and stop it, and for the way the
//! host's service manager runs it. One implementation module per operating
//! system provides the same functions: `unix` (Linux in full; other unixes
//! get what POSIX offers and report the rest as unsupported) and `windows`.
//! Peer facts carry an optional uid and pid, a process's start is an opaque
//! value, process facts carry a Windows account where there is one, and
//! [`service::run`] hands the whole server to the service manager.
//!
//! Only the implementation modules contain `unsafe` code (besides the
//! wiping allocator in [`crate::alloc`]).

mod facts;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(unix)]
pub use imp::{bind_local, euid, peer_facts};
pub use imp::{
    create_new, dumpable, exit_code, forbid_dumps, lock_all_memory, open_append, os_str_from_bytes,
    process_facts, raise_fd_limit, refuse_if_shared, same_exe, service, signals, sync_dir,
    zero_core_limit,
};

pub use facts::{PeerFacts, ProcessFacts};
