//! The Windows implementation of [`crate::platform`].
//!
//! Process facts come from the process and its token (`OpenProcess`,
//! `QueryFullProcessImageNameW`, `GetProcessTimes`, `TokenUser`), the peer
//! of a named pipe from `GetNamedPipeClientProcessId` and the peer of a
//! loopback TCP connection from the owning-PID table
//! (`GetExtendedTcpTable`). Files are created with a protected DACL instead
//! of permission bits, and dumps are kept away with the error mode and a
//! Windows Error Reporting exclusion.

#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};

use std::io;
use std::net::SocketAddr;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::ptr::null_mut;

use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, QueryFullProcessImageNameW, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::facts::ProcessFacts;

pub mod eventlog;
mod ffi;
pub mod pipe;
pub mod security;
pub mod service;
pub mod signals;
mod tcp;

use ffi::{owned, wide};
pub use security::{create_new, open_append, refuse_if_shared};
pub use tcp::tcp_owner;

// === processes ===

/// The executable, creation time and account of `pid`, each `None` when it
/// cannot be read (the process is gone, or botward may not open it: a
/// process of another user needs botward to run as a service account or an
/// administrator). Rules that need a fact that is missing fail closed.
pub fn process_facts(pid: i32) -> ProcessFacts {
    let Some(process) = u32::try_from(pid).ok().and_then(open_process) else {
        return ProcessFacts::default();
    };
    let (sid, user) = security::token_account(&process);
    ProcessFacts {
        exe: image_name(&process),
        start: creation_time(&process),
        sid,
        user,
    }
}

fn open_process(pid: u32) -> Option<OwnedHandle> {
    // SAFETY: plain call; the handle is owned at once.
    owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })
}

fn image_name(process: &OwnedHandle) -> Option<PathBuf> {
    let mut buf = vec![0u16; 32 * 1024];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` units; the call writes at most that many.
    let ok = unsafe {
        QueryFullProcessImageNameW(process.as_raw_handle(), 0, buf.as_mut_ptr(), &mut len)
    };
    if ok == 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(PathBuf::from(OsString::from_wide(&buf)))
}

fn creation_time(process: &OwnedHandle) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: four valid, writable FILETIMEs.
    let ok = unsafe {
        GetProcessTimes(
            process.as_raw_handle(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// Whether two executable paths name the same file as Windows compares
/// them: without regard to case.
pub fn same_exe(a: &Path, b: &Path) -> bool {
    a.as_os_str().to_string_lossy().to_lowercase() == b.as_os_str().to_string_lossy().to_lowercase()
}

/// The pid of the process on the other end of a loopback TCP connection
/// whose client side is `client` and server side `server`. Pid 0, the idle
/// process, is what the table shows for an owner it cannot name (under
/// Wine, a process that is not a Windows one): unknown, not a process.
pub fn loopback_owner(client: SocketAddr, server: SocketAddr) -> Option<i32> {
    if !client.ip().is_loopback() {
        return None;
    }
    tcp_owner(client, server)
        .filter(|&p| p != 0)
        .and_then(|p| i32::try_from(p).ok())
}

// === memory and dumps ===

/// Windows has no descriptor limit to raise: handles are bounded by memory.
pub fn raise_fd_limit() -> Option<u64> {
    None
}

/// No error dialogs and no Windows Error Reporting for this process: a
/// crash leaves no dump with secrets in it. The error is the warning to
/// report.
pub fn forbid_dumps() -> Result<(), String> {
    use windows_sys::Win32::System::Diagnostics::Debug::{
        SetErrorMode, SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX, SEM_NOOPENFILEERRORBOX,
    };
    // SAFETY: sets a process attribute.
    unsafe {
        SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX)
    };
    security::apply_mitigations()
}

/// Excludes botward's executable from Windows Error Reporting, which would
/// otherwise write a dump of a crashed process: the Windows counterpart of
/// a zero core limit. The error is the warning to report.
pub fn zero_core_limit() -> Result<(), String> {
    use windows_sys::Win32::System::ErrorReporting::WerAddExcludedApplication;
    let exe = std::env::current_exe().map_err(|e| format!("no executable path: {e}"))?;
    let name = wide(exe.as_os_str());
    // All users needs an administrator (the service account); the current
    // user alone is the fallback.
    for all_users in [1, 0] {
        // SAFETY: `name` is NUL-terminated.
        if unsafe { WerAddExcludedApplication(name.as_ptr(), all_users) } >= 0 {
            return Ok(());
        }
    }
    Err("Windows Error Reporting exclusion failed: crash dumps may be written".into())
}

/// Windows has no per-process dumpable flag.
pub fn dumpable() -> Option<bool> {
    None
}

/// Raises the process's working-set minimum and makes it a hard limit, so
/// that the memory botward uses stays resident instead of being paged out.
/// The error is the warning to report.
pub fn lock_all_memory() -> Result<(), String> {
    use windows_sys::Win32::System::Memory::{
        SetProcessWorkingSetSizeEx, QUOTA_LIMITS_HARDWS_MAX_DISABLE, QUOTA_LIMITS_HARDWS_MIN_ENABLE,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    const MIN: usize = 64 << 20;
    const MAX: usize = 1 << 30;
    // SAFETY: sets limits of this process.
    let ok = unsafe {
        SetProcessWorkingSetSizeEx(
            GetCurrentProcess(),
            MIN,
            MAX,
            QUOTA_LIMITS_HARDWS_MIN_ENABLE | QUOTA_LIMITS_HARDWS_MAX_DISABLE,
        )
    };
    if ok != 0 {
        Ok(())
    } else {
        Err(format!(
            "the working set could not be locked, secrets may reach the page file: {} (the service account needs SeIncreaseWorkingSetPrivilege and SeIncreaseBasePriorityPrivilege, or set hardening.mlock = false)",
            io::Error::last_os_error()
        ))
    }
}

// === files ===

/// Flushes the directory holding `path` so that a rename in it is durable.
/// NTFS journals renames itself, and a directory can be opened only with
/// backup semantics, so a directory that cannot be flushed is not an error.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, FlushFileBuffers, FILE_FLAG_BACKUP_SEMANTICS, FILE_GENERIC_WRITE,
        FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = wide(dir.as_os_str());
    // SAFETY: `name` is NUL-terminated; the handle is owned at once.
    let h = owned(unsafe {
        CreateFileW(
            name.as_ptr(),
            FILE_GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_BACKUP_SEMANTICS,
            null_mut(),
        )
    });
    if let Some(h) = h {
        // SAFETY: `h` is an open directory handle.
        unsafe { FlushFileBuffers(h.as_raw_handle()) };
        return Ok(());
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory", dir.display()),
        ))
    }
}

// === programs botward runs ===

/// `bytes` as an OS string, for a child's environment. A Windows
/// environment holds Unicode, so the bytes must be UTF-8.
pub fn os_str_from_bytes(bytes: &[u8]) -> Result<Cow<'_, OsStr>, std::str::Utf8Error> {
    let s = std::str::from_utf8(bytes)?;
    Ok(Cow::Borrowed(OsStr::new(s)))
}

/// The exit code of a child as a byte: its own code when it fits, else 1
/// (Windows codes are 32 bits, e.g. 0xC0000005 for an access violation).
pub fn exit_code(st: ExitStatus) -> u8 {
    match st.code() {
        Some(c) => u8::try_from(c).unwrap_or(1),
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_process_and_of_none() {
        let me = process_facts(std::process::id() as i32);
        let exe = std::env::current_exe().unwrap();
        assert!(same_exe(me.exe.as_deref().unwrap(), &exe), "{me:?}");
        assert!(me.start.is_some());
        let sid = me.sid.clone().unwrap();
        assert!(sid.starts_with("S-1-"), "{sid}");
        assert!(me.user.as_deref().unwrap().contains('\\'), "{me:?}");
        assert_eq!(process_facts(std::process::id() as i32), me);
        assert_eq!(process_facts(-1), ProcessFacts::default());
    }

    #[test]
    fn exe_paths_compare_without_case() {
        assert!(same_exe(
            Path::new(r"C:\Program Files\UiPath\UiPath.Executor.exe"),
            Path::new(r"c:\program files\uipath\UIPATH.EXECUTOR.EXE")
        ));
        assert!(!same_exe(Path::new(r"C:\a.exe"), Path::new(r"C:\b.exe")));
    }

    #[test]
    fn a_directory_syncs_and_a_missing_one_does_not() {
        let dir = std::env::temp_dir().join(format!("botward-win-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        sync_dir(&dir.join("state.json")).unwrap();
        assert!(sync_dir(&dir.join("missing").join("state.json")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_utf8_reaches_an_environment() {
        assert_eq!(
            os_str_from_bytes(b"caf\xc3\xa9").unwrap(),
            OsStr::new("café")
        );
        assert!(os_str_from_bytes(b"caf\xe9").is_err());
    }

    #[test]
    fn exit_codes_fit_a_byte() {
        let run = |code: &str| {
            std::process::Command::new("cmd")
                .args(["/c", "exit", code])
                .status()
                .unwrap()
        };
        assert_eq!(exit_code(run("3")), 3);
        assert_eq!(exit_code(run("300")), 1);
    }
}
