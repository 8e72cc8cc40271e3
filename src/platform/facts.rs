//! The facts the operating system gives about processes and peers, in
//! types every implementation fills.

use std::path::PathBuf;

/// What the operating system says about a running process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    /// The executable it runs, when it can be read.
    pub exe: Option<PathBuf>,
    /// An opaque value that tells two processes with the same pid apart (on
    /// Linux, the start time in clock ticks since boot; on Windows, the
    /// creation time).
    pub start: Option<u64>,
    /// The security identifier of the account it runs as (Windows), e.g.
    /// `S-1-5-21-...-1001`.
    pub sid: Option<String>,
    /// That account as `DOMAIN\name` (Windows).
    pub user: Option<String>,
}

/// Who is on the other end of a local socket, as the kernel reports it.
/// Each field is `None` where the platform cannot tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerFacts {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
}
