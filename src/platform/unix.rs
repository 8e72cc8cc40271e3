//! The unix implementation of [`crate::platform`]: Linux in full, other
//! unixes with what POSIX offers.
//!
//! Process facts come from `/proc`, peer credentials from `SO_PEERCRED`,
//! memory and dump protection from `prctl`, `setrlimit` and `mlockall`, and
//! file access from permission bits.

#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::net::{UnixListener, UnixStream};

use super::facts::{PeerFacts, ProcessFacts};

pub mod service;
pub mod signals;

// === processes ===

/// The executable and start time of `pid`, each `None` when it cannot be
/// read (the process is gone, or the platform has no `/proc`). Reading
/// another user's executable needs `CAP_SYS_PTRACE`; without it the exe stays
/// unknown and exe rules fail closed.
pub fn process_facts(pid: i32) -> ProcessFacts {
    ProcessFacts {
        exe: exe(pid),
        start: start_time(pid),
        sid: None,
        user: None,
    }
}

#[cfg(target_os = "linux")]
fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[cfg(not(target_os = "linux"))]
fn exe(_pid: i32) -> Option<PathBuf> {
    None
}

/// Field 22 of `/proc/PID/stat`, read after the command name, which may
/// itself contain spaces and parentheses.
#[cfg(target_os = "linux")]
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

#[cfg(not(target_os = "linux"))]
fn start_time(_pid: i32) -> Option<u64> {
    None
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After ") " come fields 3 (state) onwards; start time is field 22.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether two executable paths name the same file: on unix, byte for byte.
pub fn same_exe(a: &Path, b: &Path) -> bool {
    a == b
}

// === local sockets ===

/// The uid, gid and pid of the process that connected to `stream`, from
/// the kernel (`SO_PEERCRED`). The pid is `None` where the kernel does not
/// report it.
pub fn peer_facts(stream: &UnixStream) -> io::Result<PeerFacts> {
    let cred = stream.peer_cred()?;
    Ok(PeerFacts {
        uid: Some(cred.uid()),
        gid: Some(cred.gid()),
        pid: cred.pid(),
    })
}

/// Binds a unix socket at `path` with permission bits `mode`. A stale
/// socket from an earlier run is removed first; any other file at `path` is
/// left alone and refused.
pub fn bind_local(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

// === memory and dumps ===

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Raises the soft descriptor limit to the hard one, as far as the system
/// allows, and returns the soft limit now in force.
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

/// Marks the process not dumpable: the kernel writes no core dump of it and
/// lets no other user's process attach to it. The error is the warning to
/// report.
#[cfg(target_os = "linux")]
pub fn forbid_dumps() -> Result<(), String> {
    // SAFETY: plain system call with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "prctl(PR_SET_DUMPABLE, 0) failed: {}",
            io::Error::last_os_error()
        ))
    }
}

#[cfg(not(target_os = "linux"))]
pub fn forbid_dumps() -> Result<(), String> {
    Err("dump protection is only implemented on Linux".into())
}

/// Sets the core file size limit to zero, soft and hard. The error is the
/// warning to report.
#[cfg(target_os = "linux")]
pub fn zero_core_limit() -> Result<(), String> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "setrlimit(RLIMIT_CORE, 0) failed: {}",
            io::Error::last_os_error()
        ))
    }
}

#[cfg(not(target_os = "linux"))]
pub fn zero_core_limit() -> Result<(), String> {
    Err("the core limit is only set on Linux".into())
}

/// Whether the process may be dumped now, or `None` where the platform has
/// no such attribute.
#[cfg(target_os = "linux")]
pub fn dumpable() -> Option<bool> {
    // SAFETY: reads a process attribute.
    Some(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } != 0)
}

#[cfg(not(target_os = "linux"))]
pub fn dumpable() -> Option<bool> {
    None
}

/// Locks all memory, present and future, so that none of it is written to
/// swap. The error is the warning to report.
#[cfg(target_os = "linux")]
pub fn lock_all_memory() -> Result<(), String> {
    if let Err(why) = can_lock_everything() {
        return Err(format!("memory not locked, secrets may reach swap: {why}"));
    }
    // MCL_ONFAULT locks each page when it is first touched instead of
    // faulting in every mapping up front (thread stacks, reserved heap), so
    // resident memory stays what botward uses. Kernels before 4.4 reject the
    // flag.
    // SAFETY: plain system calls.
    let locked = unsafe {
        libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) == 0
            || libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) == 0
    };
    if locked {
        Ok(())
    } else {
        Err(format!(
            "mlockall failed, secrets may reach swap: {}",
            io::Error::last_os_error()
        ))
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lock_all_memory() -> Result<(), String> {
    Err("memory locking is only implemented on Linux, secrets may reach swap".into())
}

/// `mlockall(MCL_FUTURE)` under a finite `RLIMIT_MEMLOCK` would make later
/// allocations fail once the limit is reached, so memory is locked only
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

// === files ===

/// Creates a new file at `path` for writing, failing if one exists. `mode`
/// is the file's access in unix permission bits (`0o600`: the owner only),
/// applied as the file is created.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Opens `path` for reading and appending, creating it with `mode` (unix
/// permission bits) if it does not exist.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(mode)
        .open(path)
}

/// State files are protected by their mode, which botward sets when it
/// creates them; an existing file is not checked on unix.
pub fn refuse_if_shared(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Syncs the directory holding `path`, which makes a rename in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

// === programs botward runs ===

/// `bytes` as an OS string, for a child's environment. Any bytes are a unix
/// OS string, so this never copies and never fails.
pub fn os_str_from_bytes(bytes: &[u8]) -> Result<Cow<'_, OsStr>, std::str::Utf8Error> {
    use std::os::unix::ffi::OsStrExt;
    Ok(Cow::Borrowed(OsStr::from_bytes(bytes)))
}

/// The exit code a shell would report for a child that ended with `st`:
/// its own code, or 128 plus the signal that killed it.
pub fn exit_code(st: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("botward-platform-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn start_time_is_read_past_a_hostile_command_name() {
        let stat = "4242 (evil) 1 2 3) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn facts_of_this_process_and_of_none() {
        let me = process_facts(std::process::id() as i32);
        assert_eq!(me.exe, std::env::current_exe().ok());
        assert!(me.start.is_some());
        assert_eq!(process_facts(std::process::id() as i32), me);
        assert_eq!(process_facts(i32::MAX), ProcessFacts::default());
    }

    #[tokio::test]
    async fn peer_facts_name_the_process_on_the_other_end() {
        let (a, b) = UnixStream::pair().unwrap();
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let want = PeerFacts {
            uid: Some(uid),
            gid: Some(gid),
            pid: Some(std::process::id() as i32),
        };
        assert_eq!(peer_facts(&a).unwrap(), want);
        assert_eq!(peer_facts(&b).unwrap(), want);
    }

    #[tokio::test]
    async fn bind_local_replaces_a_stale_socket_but_no_other_file() {
        let dir = scratch("bind");
        let sock = dir.join("s.sock");
        let first = bind_local(&sock, 0o660).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        drop(first);
        let second = bind_local(&sock, 0o600).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let client = UnixStream::connect(&sock).await.unwrap();
        let (served, _) = second.accept().await.unwrap();
        assert_eq!(
            peer_facts(&served).unwrap().pid,
            Some(std::process::id() as i32)
        );
        drop(client);
        let plain = dir.join("plain");
        std::fs::write(&plain, b"keep").unwrap();
        let e = bind_local(&plain, 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&plain).unwrap(), b"keep");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_are_created_with_their_mode() {
        let dir = scratch("files");
        let f = dir.join("state");
        create_new(&f, 0o600).unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = create_new(&f, 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let log = dir.join("log");
        {
            use std::io::Write;
            let mut a = open_append(&log, 0o640).unwrap();
            a.write_all(b"one\n").unwrap();
            let mut b = open_append(&log, 0o600).unwrap();
            b.write_all(b"two\n").unwrap();
        }
        assert_eq!(std::fs::read(&log).unwrap(), b"one\ntwo\n");
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        sync_dir(&f).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_fd_limit_is_raised_to_the_hard_limit() {
        let soft = raise_fd_limit().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        #[allow(clippy::unnecessary_cast)]
        let (cur, max) = (lim.rlim_cur as u64, lim.rlim_max as u64);
        assert_eq!(soft, cur);
        assert!(cur <= max);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dumpable_is_known_on_linux() {
        assert!(dumpable().is_some());
    }

    #[test]
    fn exit_codes_are_what_a_shell_reports() {
        let run = |script: &str| {
            std::process::Command::new("sh")
                .args(["-c", script])
                .status()
                .unwrap()
        };
        assert_eq!(exit_code(run("exit 3")), 3);
        assert_eq!(exit_code(run("kill -TERM $$")), 128 + 15);
    }

    #[test]
    fn any_bytes_are_an_os_string() {
        let v = os_str_from_bytes(b"caf\xe9").unwrap();
        assert!(matches!(v, Cow::Borrowed(_)));
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(v.as_bytes(), b"caf\xe9");
    }
}
