//! Accounts, security identifiers and DACLs.
//!
//! State files are created with a protected DACL (nothing inherited from
//! the folder) that grants SYSTEM, Administrators and botward's own
//! account, and no one else: the Windows form of modes 0400, 0600 and 0640.
//! A state file that Everyone, Users or another broad group may read is
//! refused at start.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::path::Path;
use std::ptr::null_mut;

use windows_sys::Win32::Foundation::{LocalFree, GENERIC_READ, GENERIC_WRITE, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    ConvertStringSidToSidW, GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    GetAce, GetTokenInformation, LookupAccountNameW, LookupAccountSidW, TokenUser,
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE, FILE_SHARE_READ,
    FILE_SHARE_WRITE, OPEN_ALWAYS,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::ffi::{file_from, from_wide_ptr, owned, wide};

// === accounts ===

/// The SID and `DOMAIN\name` of the account `process` runs as.
pub fn token_account(process: &OwnedHandle) -> (Option<String>, Option<String>) {
    let Some(buf) = token_user(process.as_raw_handle()) else {
        return (None, None);
    };
    let sid = user_sid(&buf);
    // SAFETY: `sid` is a valid SID inside `buf`.
    unsafe { (sid_string(sid), account_name(sid)) }
}

/// The SID botward itself runs as, read once.
pub fn own_sid() -> io::Result<String> {
    static OWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(s) = OWN.get() {
        return Ok(s.clone());
    }
    // SAFETY: the pseudo-handle of this process needs no closing.
    let buf = token_user(unsafe { GetCurrentProcess() }).ok_or_else(io::Error::last_os_error)?;
    // SAFETY: the SID lies inside `buf`.
    let sid = unsafe { sid_string(user_sid(&buf)) }.ok_or_else(io::Error::last_os_error)?;
    Ok(OWN.get_or_init(|| sid).clone())
}

/// The `TOKEN_USER` of a process, in an 8-byte aligned buffer that also
/// holds the SID it points to.
fn token_user(process: HANDLE) -> Option<Vec<u64>> {
    let mut token: HANDLE = null_mut();
    // SAFETY: `token` is a valid out-pointer; the handle is owned at once.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return None;
    }
    let token = owned(token)?;
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, `len` is written.
    unsafe { GetTokenInformation(token.as_raw_handle(), TokenUser, null_mut(), 0, &mut len) };
    let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
    // SAFETY: `buf` holds `len` bytes, 8-byte aligned.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast(),
            len,
            &mut len,
        )
    };
    (ok != 0).then_some(buf)
}

/// The SID a `TOKEN_USER` buffer from [`token_user`] points to.
fn user_sid(buf: &[u64]) -> PSID {
    // SAFETY: the buffer starts with the TOKEN_USER the call wrote.
    unsafe { (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid }
}

/// `S-1-...` for a SID.
///
/// # Safety
/// `sid` points to a valid SID.
unsafe fn sid_string(sid: PSID) -> Option<String> {
    let mut text: *mut u16 = null_mut();
    // SAFETY: the caller gives a valid SID; `text` is an out-pointer.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return None;
    }
    // SAFETY: the call returned a NUL-terminated string, freed right after.
    let s = unsafe { from_wide_ptr(text) };
    // SAFETY: allocated by the call with LocalAlloc.
    unsafe { LocalFree(text.cast()) };
    s
}

/// `DOMAIN\name` for a SID, when the account can be looked up.
///
/// # Safety
/// `sid` points to a valid SID.
unsafe fn account_name(sid: PSID) -> Option<String> {
    let mut name = [0u16; 256];
    let mut domain = [0u16; 256];
    let (mut n, mut d) = (name.len() as u32, domain.len() as u32);
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: both buffers hold the lengths given.
    let ok = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut n,
            domain.as_mut_ptr(),
            &mut d,
            &mut kind,
        )
    };
    if ok == 0 {
        return None;
    }
    let name = String::from_utf16_lossy(&name[..n as usize]);
    let domain = String::from_utf16_lossy(&domain[..d as usize]);
    Some(if domain.is_empty() {
        name
    } else {
        format!("{domain}\\{name}")
    })
}

/// The SID of an account or group given by name (`CORP\RPA Robots`,
/// `BUILTIN\Users`) or already as a SID string.
pub fn account_sid(account: &str) -> io::Result<String> {
    if account.starts_with("S-1-") {
        let w = wide(account.as_ref());
        let mut sid: PSID = null_mut();
        // SAFETY: `w` is NUL-terminated; the SID is freed right after.
        if unsafe { ConvertStringSidToSidW(w.as_ptr(), &mut sid) } == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{account:?} is not a valid SID"),
            ));
        }
        // SAFETY: allocated by the call with LocalAlloc.
        unsafe { LocalFree(sid) };
        return Ok(account.to_owned());
    }
    let w = wide(account.as_ref());
    let mut sid = [0u64; 9]; // SECURITY_MAX_SID_SIZE is 68 bytes
    let mut cb = (sid.len() * 8) as u32;
    let mut domain = [0u16; 256];
    let mut cch = domain.len() as u32;
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: every buffer holds the size given.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            w.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut cb,
            domain.as_mut_ptr(),
            &mut cch,
            &mut kind,
        )
    };
    if ok == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no account or group {account:?}: {}",
                io::Error::last_os_error()
            ),
        ));
    }
    // SAFETY: the call wrote a valid SID into `sid`.
    unsafe { sid_string(sid.as_mut_ptr().cast()) }.ok_or_else(io::Error::last_os_error)
}

// === security descriptors ===

/// A self-relative security descriptor built from SDDL, freed on drop.
pub struct Descriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is immutable memory owned by this value alone.
unsafe impl Send for Descriptor {}
// SAFETY: as above; it is only read.
unsafe impl Sync for Descriptor {}

impl Descriptor {
    pub fn from_sddl(sddl: &str) -> io::Result<Descriptor> {
        let w = wide(sddl.as_ref());
        let mut sd: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: `w` is NUL-terminated; `sd` is an out-pointer.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                w.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Descriptor(sd))
    }

    /// Security attributes that point at this descriptor; valid while it
    /// lives.
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated with LocalAlloc by the SDDL conversion.
        unsafe { LocalFree(self.0) };
    }
}

/// The DACL of a state file of unix mode `mode`: full control for SYSTEM
/// and Administrators; for botward's own account full control, or read
/// only when the mode has no owner write bit. Group and other bits grant
/// nothing: there is no Windows group that stands for a unix file group.
pub fn file_sddl(mode: u32, owner_sid: &str) -> String {
    let owner = if mode & 0o200 != 0 { "FA" } else { "FR" };
    format!("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;{owner};;;{owner_sid})")
}

fn file_descriptor(mode: u32) -> io::Result<Descriptor> {
    Descriptor::from_sddl(&file_sddl(mode, &own_sid()?))
}

// === files ===

/// Creates a new file at `path` for reading and writing, failing if one
/// exists, with the DACL for `mode` (see [`file_sddl`]) from the start.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    open_with(path, mode, CREATE_NEW)
}

/// Opens `path` for reading and writing at its end, creating it with the
/// DACL for `mode` if it does not exist. botward is the only writer of the
/// files it appends to; after a `set_len` the caller seeks to the end again.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let mut f = open_with(path, mode, OPEN_ALWAYS)?;
    f.seek(SeekFrom::End(0))?;
    Ok(f)
}

fn open_with(path: &Path, mode: u32, disposition: u32) -> io::Result<File> {
    let sd = file_descriptor(mode)?;
    let sa = sd.attributes();
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated and `sa` points at `sd`, which
    // outlives the call.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            &sa,
            disposition,
            FILE_ATTRIBUTE_NORMAL,
            null_mut(),
        )
    };
    file_from(h)
}

/// Groups whose members are any local or network user: a state file they
/// may read is not private.
const BROAD: &[(&str, &str)] = &[
    ("S-1-1-0", "Everyone"),
    ("S-1-2-0", "LOCAL"),
    ("S-1-5-2", "NETWORK"),
    ("S-1-5-4", "INTERACTIVE"),
    ("S-1-5-7", "ANONYMOUS LOGON"),
    ("S-1-5-11", "Authenticated Users"),
    ("S-1-5-113", "Local account"),
    ("S-1-5-32-545", "Users"),
    ("S-1-5-32-546", "Guests"),
];

/// FILE_READ_DATA, GENERIC_ALL and GENERIC_READ.
const READ_BITS: u32 = 0x1 | 0x1000_0000 | 0x8000_0000;
const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
const INHERIT_ONLY_ACE: u8 = 0x08;

/// Refuses a state file that a broad group may read. A file that does not
/// exist yet is fine: botward creates it private.
pub fn refuse_if_shared(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let name = wide(path.as_os_str());
    let mut dacl: *mut ACL = null_mut();
    let mut sd: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: `name` is NUL-terminated; out-pointers are valid; `sd` is
    // freed below and `dacl` points into it.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            &mut dacl,
            null_mut(),
            &mut sd,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    // SAFETY: `dacl` is null or points into `sd`, alive until freed below.
    let found = unsafe { broad_reader(dacl) };
    // SAFETY: allocated by GetNamedSecurityInfoW with LocalAlloc.
    unsafe { LocalFree(sd) };
    match found {
        None => Ok(()),
        Some(who) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} may be read by {who}; botward keeps its state files to SYSTEM, Administrators and its own account (icacls \"{}\" /inheritance:r /grant:r SYSTEM:F Administrators:F)",
                path.display(),
                path.display()
            ),
        )),
    }
}

/// The first broad group a DACL lets read, if any. A missing DACL lets
/// everyone in.
///
/// # Safety
/// `dacl` is null or points to a valid ACL.
unsafe fn broad_reader(dacl: *mut ACL) -> Option<&'static str> {
    if dacl.is_null() {
        return Some("everyone (the file has no DACL)");
    }
    // SAFETY: the caller gives a valid ACL.
    let count = unsafe { (*dacl).AceCount };
    for i in 0..u32::from(count) {
        let mut ace: *mut core::ffi::c_void = null_mut();
        // SAFETY: `i` is below the ACE count.
        if unsafe { GetAce(dacl, i, &mut ace) } == 0 {
            continue;
        }
        // SAFETY: every ACE starts with a header.
        let header = unsafe { *ace.cast::<ACE_HEADER>() };
        if header.AceType != ACCESS_ALLOWED_ACE_TYPE || header.AceFlags & INHERIT_ONLY_ACE != 0 {
            continue;
        }
        let allowed = ace.cast::<ACCESS_ALLOWED_ACE>();
        // SAFETY: an access-allowed ACE: mask, then the SID at SidStart.
        let (mask, sid) = unsafe {
            (
                (*allowed).Mask,
                std::ptr::addr_of_mut!((*allowed).SidStart).cast::<core::ffi::c_void>(),
            )
        };
        if mask & READ_BITS == 0 {
            continue;
        }
        // SAFETY: `sid` is the ACE's SID.
        let Some(s) = (unsafe { sid_string(sid) }) else {
            continue;
        };
        if let Some((_, name)) = BROAD.iter().find(|(b, _)| *b == s) {
            return Some(name);
        }
    }
    None
}

// === mitigations ===

/// Process mitigation policies that cost botward nothing: no legacy
/// extension-point DLLs (AppInit and the like) and no images loaded from
/// remote shares or low-integrity files.
pub fn apply_mitigations() -> Result<(), String> {
    use windows_sys::Win32::System::Threading::{
        ProcessExtensionPointDisablePolicy, ProcessImageLoadPolicy, SetProcessMitigationPolicy,
    };
    let mut failed = Vec::new();
    for (policy, flags, name) in [
        (
            ProcessExtensionPointDisablePolicy,
            0b1u32,
            "extension points",
        ),
        (
            ProcessImageLoadPolicy,
            0b11u32,
            "remote and low-label images",
        ),
    ] {
        // SAFETY: each policy takes one 32-bit flags word.
        let ok = unsafe { SetProcessMitigationPolicy(policy, (&flags as *const u32).cast(), 4) };
        if ok == 0 {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "process mitigations not applied: {}",
            failed.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("botward-win-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn this_process_has_an_account() {
        let sid = own_sid().unwrap();
        assert!(sid.starts_with("S-1-5-"), "{sid}");
        assert_eq!(account_sid(&sid).unwrap(), sid);
        assert!(account_sid("S-1-bogus").is_err());
        assert_eq!(
            account_sid("BUILTIN\\Administrators").unwrap(),
            "S-1-5-32-544"
        );
        assert!(account_sid("NO-SUCH-DOMAIN\\nobody-at-all").is_err());
    }

    #[test]
    fn the_file_dacl_follows_the_owner_write_bit() {
        assert_eq!(
            file_sddl(0o400, "S-1-5-18"),
            "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;S-1-5-18)"
        );
        assert!(file_sddl(0o640, "S-1-5-21-1").ends_with("(A;;FA;;;S-1-5-21-1)"));
    }

    #[test]
    fn created_files_are_private_and_shared_ones_refused() {
        use std::io::{Read, Write};
        let dir = scratch("dacl");
        let f = dir.join("state");
        create_new(&f, 0o600).unwrap().write_all(b"one").unwrap();
        assert_eq!(
            create_new(&f, 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        refuse_if_shared(&f).unwrap();
        refuse_if_shared(&dir.join("missing")).unwrap();
        let log = dir.join("log");
        open_append(&log, 0o640).unwrap().write_all(b"a\n").unwrap();
        let mut again = open_append(&log, 0o640).unwrap();
        again.write_all(b"b\n").unwrap();
        let mut text = String::new();
        File::open(&log).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "a\nb\n");
        refuse_if_shared(&log).unwrap();

        // Files opened to Everyone or to Users are refused; one that
        // grants a broad group only an inherit-only entry is not. Each is
        // created with its DACL. Wine keeps of a file's DACL only what unix
        // mode bits can hold (the owner and Everyone), so the group cases
        // run on Windows only.
        for (name, sddl, who) in [
            ("everyone", "D:P(A;;FA;;;SY)(A;;FR;;;WD)", Some("Everyone")),
            ("users", "D:P(A;;FA;;;SY)(A;;FR;;;BU)", Some("Users")),
            ("inherit-only", "D:P(A;;FA;;;SY)(A;IO;FR;;;BU)", None),
            ("private", "D:P(A;;FA;;;SY)(A;;FA;;;BA)", None),
        ] {
            if sddl.contains(";BU)") && super::super::ffi::under_wine() {
                continue;
            }
            let f = dir.join(name);
            create_with(&f, &Descriptor::from_sddl(sddl).unwrap());
            match (refuse_if_shared(&f), who) {
                (Ok(()), None) => {}
                (Err(e), Some(who)) => {
                    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
                    assert!(e.to_string().contains(&format!("read by {who};")), "{e}");
                }
                (got, want) => panic!("{name}: {got:?}, want {want:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn create_with(path: &Path, sd: &Descriptor) {
        let sa = sd.attributes();
        let name = wide(path.as_os_str());
        // SAFETY: `name` is NUL-terminated; `sa` points at `sd`.
        let h = unsafe {
            CreateFileW(
                name.as_ptr(),
                GENERIC_WRITE,
                0,
                &sa,
                CREATE_NEW,
                FILE_ATTRIBUTE_NORMAL,
                null_mut(),
            )
        };
        drop(file_from(h).unwrap());
    }
}
