//! Named pipes: server instances with a DACL, and the client's pid.
//!
//! The pipe's DACL grants SYSTEM, Administrators and botward's own account
//! full control, and read and write to the configured accounts or groups
//! (Authenticated Users when none are configured); everyone else is
//! refused by the kernel before a byte is read. The first instance is
//! created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so botward fails to start
//! rather than share a name another process already holds, and remote
//! clients are rejected.

use std::ffi::OsStr;
use std::io;
use std::os::windows::io::AsRawHandle;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;

use super::security::{account_sid, own_sid, Descriptor};

/// The access a pipe's instances are created with.
pub struct PipeSecurity(Descriptor);

impl PipeSecurity {
    /// Access for `accounts` (names such as `CORP\svc-rpa` or SIDs); an
    /// account that does not exist is an error.
    pub fn new(accounts: &[String]) -> io::Result<PipeSecurity> {
        let mut sids = Vec::with_capacity(accounts.len());
        for a in accounts {
            sids.push(account_sid(a)?);
        }
        let sddl = pipe_sddl(&own_sid()?, &sids);
        Descriptor::from_sddl(&sddl).map(PipeSecurity)
    }
}

/// SDDL of the pipe's DACL. Clients get generic read and write, which is
/// what .NET, PowerShell and tokio clients open a pipe with.
pub fn pipe_sddl(own: &str, clients: &[String]) -> String {
    let mut s = format!("D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;{own})");
    if clients.is_empty() {
        s.push_str("(A;;GRGW;;;AU)");
    }
    for sid in clients {
        s.push_str(&format!("(A;;GRGW;;;{sid})"));
    }
    s
}

/// Creates an instance of the pipe `name`. The `first` instance fails if
/// the name is taken.
pub fn create(name: &OsStr, security: &PipeSecurity, first: bool) -> io::Result<NamedPipeServer> {
    let mut sa = security.0.attributes();
    let mut opts = ServerOptions::new();
    opts.first_pipe_instance(first).reject_remote_clients(true);
    // SAFETY: `sa` is a valid SECURITY_ATTRIBUTES whose descriptor lives in
    // `security` for the whole call.
    unsafe { opts.create_with_security_attributes_raw(name, std::ptr::addr_of_mut!(sa).cast()) }
}

/// The pid of the process on the other end of a connected instance.
pub fn client_pid(pipe: &NamedPipeServer) -> io::Result<i32> {
    let mut pid = 0u32;
    // SAFETY: a connected pipe handle and a valid out-pointer.
    if unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle(), &mut pid) } == 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(pid).map_err(|_| io::Error::other("client pid out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::windows::named_pipe::ClientOptions;

    #[test]
    fn the_dacl_names_each_account() {
        assert_eq!(
            pipe_sddl("S-1-5-18", &[]),
            "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;S-1-5-18)(A;;GRGW;;;AU)"
        );
        let two = pipe_sddl("S-1-5-18", &["S-1-5-21-1".into(), "S-1-5-32-545".into()]);
        assert!(two.ends_with("(A;;GRGW;;;S-1-5-21-1)(A;;GRGW;;;S-1-5-32-545)"));
        assert!(!two.contains(";AU)"));
    }

    #[tokio::test]
    async fn a_client_is_named_by_its_pid_and_the_name_is_held() {
        let name = format!(r"\\.\pipe\botward-test-{}", std::process::id());
        let security = PipeSecurity::new(&["BUILTIN\\Users".into()]).unwrap();
        assert!(PipeSecurity::new(&["NO-SUCH\\account-x".into()]).is_err());
        let server = create(name.as_ref(), &security, true).unwrap();
        // A second first instance of the same name is refused by Windows;
        // Wine does not implement the flag.
        if !super::super::ffi::under_wine() {
            assert!(create(name.as_ref(), &security, true).is_err());
        }
        let mut client = ClientOptions::new().open(&name).unwrap();
        server.connect().await.unwrap();
        assert_eq!(client_pid(&server).unwrap(), std::process::id() as i32);
        client.write_all(b"ping").await.unwrap();
        let mut server = server;
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
