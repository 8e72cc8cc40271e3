//! The calling process behind a unix-socket connection, bound at accept and
//! checked again later.
//!
//! The kernel names the process that called `connect` (`SO_PEERCRED`). Its
//! executable is read from `/proc/PID/exe` and its start time from
//! `/proc/PID/stat`. A process that connects and then executes another
//! program, or exits and leaves its PID to a new process that inherited the
//! socket, no longer matches what was bound, and its requests are refused.

use std::path::PathBuf;

/// What was known about the peer process when it connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub pid: i32,
    pub exe: Option<PathBuf>,
    /// Start time in clock ticks since boot; tells a reused PID apart.
    pub start: Option<u64>,
}

// === impl Binding ===

impl Binding {
    /// Reads the process's executable and start time now.
    pub fn read(pid: i32) -> Binding {
        Binding {
            pid,
            exe: exe(pid),
            start: start_time(pid),
        }
    }

    /// Whether the process behind `pid` is still the one that was bound:
    /// same start time, same executable. A process that is gone, or whose
    /// facts can no longer be read, does not hold.
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

/// The executable of `pid`. Reading another user's needs `CAP_SYS_PTRACE`;
/// without it the exe stays unknown and exe rules fail closed.
#[cfg(target_os = "linux")]
pub fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[cfg(not(target_os = "linux"))]
pub fn exe(_pid: i32) -> Option<PathBuf> {
    None
}

/// Field 22 of `/proc/PID/stat`, read after the command name, which may
/// itself contain spaces and parentheses.
#[cfg(target_os = "linux")]
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

#[cfg(not(target_os = "linux"))]
pub fn start_time(_pid: i32) -> Option<u64> {
    None
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After ") " come fields 3 (state) onwards; start time is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_a_hostile_command_name() {
        let stat = "4242 (evil) 1 2 3) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[cfg(target_os = "linux")]
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
