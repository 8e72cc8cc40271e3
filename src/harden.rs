//! Process hardening at start: no core dumps, no ptrace by other users, and
//! memory locked so that secrets are not written to swap.

use serde::Serialize;
use tracing::{info, warn};

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

/// Raises the soft descriptor limit to the hard one, as far as the system
/// allows, and returns the soft limit now in force. The default soft limit
/// (often 1024) is below what `limits.max_connections` asks for, and a
/// process out of descriptors cannot reach Vault or write its audit log.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that asks for no more than the
        // hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // rlim_t is not u64 on every unix.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<u64> {
    None
}

/// Applies the protections it can and reports the rest.
pub fn apply(h: &Hardening) -> Report {
    let mut r = Report::default();
    crate::alloc::set_enabled(h.wipe_freed_memory);
    r.wipe_freed_memory = h.wipe_freed_memory;
    #[cfg(target_os = "linux")]
    {
        if h.disable_core_dumps {
            // SAFETY: plain system calls with constant arguments.
            let ok = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
            if !ok {
                r.warnings.push(format!(
                    "prctl(PR_SET_DUMPABLE, 0) failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `zero` is a valid rlimit.
            r.core_limit_zero = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } == 0;
            if !r.core_limit_zero {
                r.warnings.push(format!(
                    "setrlimit(RLIMIT_CORE, 0) failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        // SAFETY: reads a process attribute.
        r.dumpable = Some(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } != 0);
        if h.mlock {
            match can_lock_everything() {
                Err(why) => r
                    .warnings
                    .push(format!("memory not locked, secrets may reach swap: {why}")),
                Ok(()) => {
                    // MCL_ONFAULT locks each page when it is first touched
                    // instead of faulting in every mapping up front (thread
                    // stacks, reserved heap), so resident memory stays what
                    // botward uses. Kernels before 4.4 reject the flag.
                    // SAFETY: plain system calls.
                    let locked = unsafe {
                        libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT)
                            == 0
                            || libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) == 0
                    };
                    if locked {
                        r.memory_locked = true;
                    } else {
                        r.warnings.push(format!(
                            "mlockall failed, secrets may reach swap: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    r.warnings
        .push("process hardening is only implemented on Linux".into());
    for w in &r.warnings {
        warn!(warning = %w, "Hardening");
    }
    info!(dumpable = ?r.dumpable, core_limit_zero = r.core_limit_zero, memory_locked = r.memory_locked, wipe_freed_memory = r.wipe_freed_memory, "Hardening applied");
    r
}

/// `mlockall(MCL_FUTURE)` under a finite `RLIMIT_MEMLOCK` would make later
/// allocations fail once the limit is reached, so botward locks memory only
/// with `CAP_IPC_LOCK` or an unlimited `RLIMIT_MEMLOCK`.
#[cfg(target_os = "linux")]
fn can_lock_everything() -> Result<(), String> {
    const CAP_IPC_LOCK: u32 = 14;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if cap_eff & (1 << CAP_IPC_LOCK) != 0 {
        return Ok(());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0
        && lim.rlim_cur == libc::RLIM_INFINITY
    {
        return Ok(());
    }
    Err(format!(
        "no CAP_IPC_LOCK and RLIMIT_MEMLOCK is {} bytes; grant CAP_IPC_LOCK (the packaged unit does) or set hardening.mlock = false",
        lim.rlim_cur
    ))
}
