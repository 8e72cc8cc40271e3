//! Small helpers at the Windows API boundary: wide strings and owned
//! handles.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};

/// `s` as a NUL-terminated UTF-16 string, for the wide Windows calls.
pub(crate) fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// The NUL-terminated UTF-16 string at `p` as a Rust string.
///
/// # Safety
/// `p` is null or points to a NUL-terminated UTF-16 string.
pub(crate) unsafe fn from_wide_ptr(p: *const u16) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: the caller promises a NUL terminator.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units before the terminator are readable.
    let units = unsafe { std::slice::from_raw_parts(p, len) };
    Some(String::from_utf16_lossy(units))
}

/// Takes ownership of a handle a Windows call returned, `None` for the
/// null or invalid handle.
pub(crate) fn owned(h: HANDLE) -> Option<OwnedHandle> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return None;
    }
    // SAFETY: `h` is a handle just returned to us, closed only by this owner.
    Some(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// A file handle from `CreateFileW` as a `File`.
pub(crate) fn file_from(h: HANDLE) -> io::Result<File> {
    owned(h)
        .map(File::from)
        .ok_or_else(io::Error::last_os_error)
}

/// Whether this runs under Wine, whose ntdll exports `wine_get_version`:
/// for the few tests of behaviour Wine does not have.
#[cfg(test)]
pub(crate) fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll = wide("ntdll.dll".as_ref());
    // SAFETY: NUL-terminated names; ntdll is always loaded.
    unsafe {
        let m = GetModuleHandleW(ntdll.as_ptr());
        !m.is_null() && GetProcAddress(m, c"wine_get_version".as_ptr().cast()).is_some()
    }
}
