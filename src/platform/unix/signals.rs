//! Signals: SIGHUP asks for a reload, SIGTERM and SIGINT (Ctrl-C) for a
//! shutdown, and `botward exec` passes on to its child what a supervisor
//! sends.

#![allow(unsafe_code)]

use std::io;
use std::process::ExitStatus;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// How a reload request is named in its `config.reload` record.
pub const RELOAD_TRIGGER: &str = "sighup";

/// Reload requests, one per SIGHUP.
pub struct Reloads(Signal);

// === impl Reloads ===

impl Reloads {
    /// Waits for the next request; `None` once no more can arrive.
    pub async fn recv(&mut self) -> Option<()> {
        self.0.recv().await
    }
}

/// Starts watching for reload requests.
pub fn reloads() -> io::Result<Reloads> {
    signal(SignalKind::hangup()).map(Reloads)
}

/// Completes on SIGTERM or Ctrl-C. If SIGTERM cannot be watched it never
/// completes.
pub async fn shutdown() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Waits for `child`, passing on SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1
/// and SIGUSR2 as they arrive.
pub async fn wait_forwarding(child: &mut tokio::process::Child) -> io::Result<ExitStatus> {
    let pid = child.id().map(|p| p as i32);
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    let mut streams = Vec::new();
    for k in kinds {
        if let Ok(s) = signal(k) {
            streams.push((k.as_raw_value(), s));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (raw, mut s) in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(raw).is_err() {
                    break;
                }
            }
        });
    }
    loop {
        tokio::select! {
            st = child.wait() => return st,
            Some(sig) = rx.recv() => {
                if let Some(pid) = pid {
                    // SAFETY: sends a signal to our own child.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the SIGHUP it raises would otherwise be passed on to a child
    // that another test waits for.
    #[tokio::test]
    async fn a_sighup_is_a_reload_request_and_a_child_is_waited_for() {
        let mut reloads = reloads().unwrap();
        // SAFETY: signals this process, whose SIGHUP is now caught by tokio.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), reloads.recv()).await;
        assert_eq!(got, Ok(Some(())));

        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "exit 5"])
            .spawn()
            .unwrap();
        let st = wait_forwarding(&mut child).await.unwrap();
        assert_eq!(st.code(), Some(5));
    }
}
