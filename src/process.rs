//! The calling process behind a connection, bound when it is accepted and
//! checked again later.
//!
//! The kernel names the process that called `connect` (`SO_PEERCRED` on
//! the unix socket; on Windows the named pipe's client pid, or the owner of
//! a loopback TCP connection); [`crate::platform::process_facts`] reads its
//! executable and start time (on Linux from `/proc/PID/exe` and
//! `/proc/PID/stat`; on Windows from the process and its token). A process that
//! connects and then executes another program, or exits and leaves its PID
//! to a new process that inherited the socket, no longer matches what was
//! bound, and its requests are refused.

use std::path::PathBuf;

/// What was known about the peer process when it connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub pid: i32,
    pub exe: Option<PathBuf>,
    /// The process's start, an opaque value that tells a reused PID apart
    /// (see [`crate::platform::ProcessFacts`]).
    pub start: Option<u64>,
    /// The Windows account it runs as, SID and `DOMAIN\name`.
    pub sid: Option<String>,
    pub user: Option<String>,
}

// === impl Binding ===

impl Binding {
    /// Reads the process's executable and start time now.
    pub fn read(pid: i32) -> Binding {
        let facts = crate::platform::process_facts(pid);
        Binding {
            pid,
            exe: facts.exe,
            start: facts.start,
            sid: facts.sid,
            user: facts.user,
        }
    }

    /// Whether the process behind `pid` is still the one that was bound:
    /// same start time, same executable, same account. A process that is
    /// gone, or whose facts can no longer be read, does not hold.
    pub fn still_holds(&self) -> bool {
        let now = Binding::read(self.pid);
        if self.start.is_some() && now.start.is_none() {
            return false;
        }
        if self.exe.is_some() && now.exe.is_none() {
            return false;
        }
        now == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn this_process_holds_and_a_changed_one_does_not() {
        let me = Binding::read(std::process::id() as i32);
        assert!(me.exe.is_some() && me.start.is_some());
        assert!(me.still_holds());
        let reused = Binding {
            start: me.start.map(|s| s + 1),
            ..me.clone()
        };
        assert!(!reused.still_holds());
        let other_exe = Binding {
            exe: Some("/usr/bin/other".into()),
            ..me.clone()
        };
        assert!(!other_exe.still_holds());
        let gone = Binding::read(i32::MAX);
        assert!(gone.exe.is_none());
        let was_there = Binding {
            pid: i32::MAX,
            ..me
        };
        assert!(!was_there.still_holds());
    }
}
