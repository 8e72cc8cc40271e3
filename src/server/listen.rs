//! The transports botward listens on, behind one [`Listener`] trait: each
//! accepted connection comes with the facts the operating system vouches
//! for about its peer.

use std::future::Future;
use std::io;
#[cfg(unix)]
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;

use crate::audit::{Peer, Transport};
use crate::policy::PeerFacts;

/// What a transport learned about a connection when it accepted it.
pub struct Accepted {
    pub peer: Peer,
    pub facts: PeerFacts,
    /// botward's own end of a TCP connection: with the peer's address it
    /// finds the connection in the kernel's owning-PID table (Windows).
    pub local: Option<std::net::SocketAddr>,
}

/// A bound socket of one transport.
pub trait Listener: Send + Sync {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection, with its peer's facts.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Accepted)>> + Send;

    /// Where it listens, e.g. `tcp=127.0.0.1:8443`.
    fn describe(&self) -> Option<String>;
}

/// Loopback TCP: the peer is an address; any local process can connect.
pub struct Tcp(TcpListener);

/// The unix socket: the kernel names the peer's uid and pid.
#[cfg(unix)]
pub struct Unix(UnixListener);

/// A Windows named pipe: the kernel names the peer's pid, and the pipe's
/// DACL decides which accounts may connect at all.
#[cfg(windows)]
pub struct Pipe {
    name: String,
    security: crate::platform::windows::pipe::PipeSecurity,
    /// The instance waiting for the next client. Accepting holds the lock
    /// across the wait, so a cancelled accept leaves the instance in place.
    next: tokio::sync::Mutex<tokio::net::windows::named_pipe::NamedPipeServer>,
}

/// Sockets bound before serving starts, so tests can bind port 0.
#[derive(Default)]
pub struct Listeners {
    pub tcp: Option<Tcp>,
    #[cfg(unix)]
    pub unix: Option<Unix>,
    #[cfg(windows)]
    pub pipe: Option<Pipe>,
}

// === impl Listeners ===

impl Listeners {
    pub fn bind(cfg: &crate::config::Listen) -> io::Result<Listeners> {
        let tcp = match cfg.tcp {
            Some(addr) => {
                let std = std::net::TcpListener::bind(addr)?;
                std.set_nonblocking(true)?;
                Some(Tcp(TcpListener::from_std(std)?))
            }
            None => None,
        };
        #[cfg(unix)]
        let unix = match &cfg.unix {
            Some(path) => Some(Unix(crate::platform::bind_local(path, cfg.unix_mode)?)),
            None => None,
        };
        #[cfg(windows)]
        let pipe = match &cfg.pipe {
            Some(name) => Some(Pipe::bind(name, &cfg.pipe_accounts)?),
            None => None,
        };
        Ok(Listeners {
            tcp,
            #[cfg(unix)]
            unix,
            #[cfg(windows)]
            pipe,
        })
    }

    /// A line that says where botward listens, e.g. for scripts and tests.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.tcp.as_ref().and_then(Listener::describe));
        #[cfg(unix)]
        parts.extend(self.unix.as_ref().and_then(Listener::describe));
        #[cfg(windows)]
        parts.extend(self.pipe.as_ref().and_then(Listener::describe));
        parts.join(" ")
    }
}

// === impl Tcp ===

impl Listener for Tcp {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, Accepted)> {
        let (stream, addr) = self.0.accept().await?;
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            transport: Transport::Tcp,
            addr: Some(addr.to_string()),
            ..Peer::default()
        };
        let facts = PeerFacts::default();
        let local = stream.local_addr().ok();
        Ok((stream, Accepted { peer, facts, local }))
    }

    fn describe(&self) -> Option<String> {
        let a = self.0.local_addr().ok()?;
        Some(format!("tcp={a}"))
    }
}

// === impl Unix ===

#[cfg(unix)]
impl Listener for Unix {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Stream, Accepted)> {
        let (stream, _) = self.0.accept().await?;
        let cred = crate::platform::peer_facts(&stream)?;
        // The process itself is read in the connection's task, after the
        // uid cap: /proc reads stay off the accept loop.
        let peer = Peer {
            transport: Transport::Unix,
            addr: None,
            pid: cred.pid,
            uid: cred.uid,
            ..Peer::default()
        };
        let facts = PeerFacts {
            uid: cred.uid,
            verified: true,
            ..PeerFacts::default()
        };
        Ok((
            stream,
            Accepted {
                peer,
                facts,
                local: None,
            },
        ))
    }

    fn describe(&self) -> Option<String> {
        let p = self.path()?;
        Some(format!("unix={}", p.display()))
    }
}

#[cfg(unix)]
impl Unix {
    fn path(&self) -> Option<std::path::PathBuf> {
        let a = self.0.local_addr().ok()?;
        a.as_pathname().map(Path::to_owned)
    }
}

/// The socket file goes with the listener.
#[cfg(unix)]
impl Drop for Unix {
    fn drop(&mut self) {
        if let Some(p) = self.path() {
            let _ = std::fs::remove_file(p);
        }
    }
}

// === impl Pipe ===

#[cfg(windows)]
impl Pipe {
    /// Creates the pipe's first instance; fails if another process holds
    /// the name.
    fn bind(name: &str, accounts: &[String]) -> io::Result<Pipe> {
        use crate::platform::windows::pipe;
        let security = pipe::PipeSecurity::new(accounts)?;
        let first = pipe::create(name.as_ref(), &security, true)?;
        Ok(Pipe {
            name: name.to_owned(),
            security,
            next: tokio::sync::Mutex::new(first),
        })
    }
}

#[cfg(windows)]
impl Listener for Pipe {
    type Stream = tokio::net::windows::named_pipe::NamedPipeServer;

    async fn accept(&self) -> io::Result<(Self::Stream, Accepted)> {
        use crate::platform::windows::pipe;
        let mut next = self.next.lock().await;
        next.connect().await?;
        let fresh = pipe::create(self.name.as_ref(), &self.security, false)?;
        let stream = std::mem::replace(&mut *next, fresh);
        drop(next);
        // The process itself is read in the connection's task.
        let pid = pipe::client_pid(&stream).ok();
        let peer = Peer {
            transport: Transport::Pipe,
            addr: Some(self.name.clone()),
            pid,
            ..Peer::default()
        };
        let facts = PeerFacts {
            verified: pid.is_some(),
            ..PeerFacts::default()
        };
        Ok((
            stream,
            Accepted {
                peer,
                facts,
                local: None,
            },
        ))
    }

    fn describe(&self) -> Option<String> {
        Some(format!("pipe={}", self.name))
    }
}
