//! The process that owns a loopback TCP connection, from the kernel's
//! owning-PID table (`GetExtendedTcpTable`).
//!
//! A connection appears twice in the table: once from the client's side
//! (local = client address, remote = server address) and once from the
//! server's. Only the row whose local and remote address and port are
//! exactly the client's and the server's names the client. Each call copies
//! the whole table, so it is made once per connection, after its first bytes
//! (a client shows up in the table only once it has sent some).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID,
    TCP_TABLE_OWNER_PID_CONNECTIONS,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};

const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
const NO_ERROR: u32 = 0;

/// The pid of the process whose end of a TCP connection is `client`, talking
/// to `server`; `None` when no such connection is in the table.
pub fn tcp_owner(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    match (client.ip(), server.ip()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            let rows = table::<MIB_TCPROW_OWNER_PID>(AF_INET as u32)?;
            rows.iter()
                .find(|r| {
                    v4(r.dwLocalAddr) == c
                        && port(r.dwLocalPort) == client.port()
                        && v4(r.dwRemoteAddr) == s
                        && port(r.dwRemotePort) == server.port()
                })
                .map(|r| r.dwOwningPid)
        }
        (IpAddr::V6(c), IpAddr::V6(s)) => {
            let rows = table::<MIB_TCP6ROW_OWNER_PID>(AF_INET6 as u32)?;
            rows.iter()
                .find(|r| {
                    Ipv6Addr::from(r.ucLocalAddr) == c
                        && port(r.dwLocalPort) == client.port()
                        && Ipv6Addr::from(r.ucRemoteAddr) == s
                        && port(r.dwRemotePort) == server.port()
                })
                .map(|r| r.dwOwningPid)
        }
        _ => None,
    }
}

/// An address as the table stores it: in network byte order.
fn v4(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

/// A port as the table stores it: network byte order in the low 16 bits.
fn port(raw: u32) -> u16 {
    u16::from_be(raw as u16)
}

/// The rows of the connection table of one address family. `R` is the row
/// type of that family; the table is a count followed by the rows.
fn table<R: Copy>(family: u32) -> Option<Vec<R>> {
    // The table can grow between the size query and the read: retry.
    let mut size = 0u32;
    for _ in 0..4 {
        let mut buf = vec![0u64; (size as usize).div_ceil(8).max(1)];
        // SAFETY: `buf` holds `size` bytes (rounded up, 8-byte aligned).
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut size,
                0,
                family,
                TCP_TABLE_OWNER_PID_CONNECTIONS,
                0,
            )
        };
        match rc {
            NO_ERROR => return Some(rows(&buf, size as usize)),
            ERROR_INSUFFICIENT_BUFFER => continue,
            _ => return None,
        }
    }
    None
}

/// Reads the count and the rows out of a table the kernel filled.
fn rows<R: Copy>(buf: &[u64], size: usize) -> Vec<R> {
    let bytes = (buf.len() * 8).min(size);
    if bytes < 4 {
        return Vec::new();
    }
    let base = buf.as_ptr().cast::<u8>();
    // SAFETY: the first four bytes are the row count.
    let count = unsafe { base.cast::<u32>().read() } as usize;
    // Rows start after the count, at the row type's alignment.
    let offset = std::mem::align_of::<R>().max(4);
    let fit = bytes.saturating_sub(offset) / std::mem::size_of::<R>();
    (0..count.min(fit))
        .map(|i| {
            // SAFETY: row `i` lies within the filled bytes, checked above;
            // `buf` is 8-byte aligned, enough for every row type.
            unsafe {
                base.add(offset + i * std::mem::size_of::<R>())
                    .cast::<R>()
                    .read()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The variable that makes [`connect_back`] a client.
    const CONNECT: &str = "BOTWARD_TEST_CONNECT_BACK";

    #[test]
    fn the_client_side_of_a_loopback_connection_is_found() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let listener = std::net::TcpListener::bind(host).unwrap();
            let server = listener.local_addr().unwrap();
            // The client is another process: this test binary, running
            // only `connect_back`.
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "platform::windows::tcp::tests::connect_back"])
                .args(["--ignored", "--test-threads", "1"])
                .env(CONNECT, server.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let (mut served, peer) = accept_from(&listener, &mut child);
            let mut first = [0u8; 1];
            served.read_exact(&mut first).unwrap();
            let owner = tcp_owner(peer, server);
            let unknown = SocketAddr::new(peer.ip(), peer.port().wrapping_add(1));
            let none = tcp_owner(unknown, server);
            served.write_all(b"x").unwrap();
            assert!(child.wait().unwrap().success());
            // Wine 8 names no owner in its IPv6 table.
            if !(host.starts_with('[') && super::super::ffi::under_wine()) {
                assert_eq!(owner, Some(child.id()), "{host}");
            }
            // A port next to the client's names no connection.
            assert_eq!(none, None);
        }
    }

    /// The next connection, or a failure once the child that should make it
    /// has exited.
    fn accept_from(
        listener: &std::net::TcpListener,
        child: &mut std::process::Child,
    ) -> (std::net::TcpStream, SocketAddr) {
        listener.set_nonblocking(true).unwrap();
        loop {
            match listener.accept() {
                Ok((s, a)) => {
                    s.set_nonblocking(false).unwrap();
                    return (s, a);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(st) = child.try_wait().unwrap() {
                        panic!("the client exited without connecting: {st}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Connects to the address in [`CONNECT`], sends a byte and waits for
    /// one back; run by the test above in a child process.
    #[test]
    #[ignore = "the client half of the_client_side_of_a_loopback_connection_is_found"]
    fn connect_back() {
        let addr = std::env::var(CONNECT).expect("run by the test above");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        s.read_exact(&mut back).unwrap();
    }
}
