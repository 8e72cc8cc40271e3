//! Process hardening at start: no core dumps, no ptrace by other users, and
//! memory locked so that secrets are not written to swap.

use serde::Serialize;
use tracing::{info, warn};

use crate::platform;

/// Which protections to apply; all on by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hardening {
    pub mlock: bool,
    pub disable_core_dumps: bool,
    pub wipe_freed_memory: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            mlock: true,
            disable_core_dumps: true,
            wipe_freed_memory: true,
        }
    }
}

/// What was actually achieved, for the log and the `server.start` record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dumpable: Option<bool>,
    pub core_limit_zero: bool,
    pub memory_locked: bool,
    pub wipe_freed_memory: bool,
    pub warnings: Vec<String>,
}

/// Applies the protections it can and reports the rest.
pub fn apply(h: &Hardening) -> Report {
    let mut r = Report::default();
    crate::alloc::set_enabled(h.wipe_freed_memory);
    r.wipe_freed_memory = h.wipe_freed_memory;
    if h.disable_core_dumps {
        if let Err(w) = platform::forbid_dumps() {
            r.warnings.push(w);
        }
        match platform::zero_core_limit() {
            Ok(()) => r.core_limit_zero = true,
            Err(w) => r.warnings.push(w),
        }
    }
    r.dumpable = platform::dumpable();
    if h.mlock {
        match platform::lock_all_memory() {
            Ok(()) => r.memory_locked = true,
            Err(w) => r.warnings.push(w),
        }
    }
    for w in &r.warnings {
        warn!(warning = %w, "Hardening");
    }
    info!(dumpable = ?r.dumpable, core_limit_zero = r.core_limit_zero, memory_locked = r.memory_locked, wipe_freed_memory = r.wipe_freed_memory, "Hardening applied");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_asked_for_is_not_applied() {
        let r = apply(&Hardening {
            mlock: false,
            disable_core_dumps: false,
            wipe_freed_memory: true,
        });
        assert!(r.wipe_freed_memory);
        assert!(!r.memory_locked);
        assert!(!r.core_limit_zero);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
}
