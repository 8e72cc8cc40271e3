//! Requests to reload and to stop. Windows has no signals: Ctrl-C,
//! Ctrl-Break, closing the console and system shutdown stop botward, and
//! the service control manager's stop and custom reload control arrive
//! through [`super::service`], which calls [`request_stop`] and
//! [`request_reload`].

use std::io;
use std::process::ExitStatus;

use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
use tokio::sync::Notify;

static RELOAD: Notify = Notify::const_new();
static STOP: Notify = Notify::const_new();

/// Asks the running server to reload its configuration.
pub fn request_reload() {
    RELOAD.notify_one();
}

/// Asks the running server to stop, as SIGTERM does on unix.
pub fn request_stop() {
    STOP.notify_one();
}

/// How a reload request is named in its `config.reload` record: the
/// service's reload control (`botward service reload`).
pub const RELOAD_TRIGGER: &str = "service_reload";

/// Reload requests, one per [`request_reload`].
pub struct Reloads(());

// === impl Reloads ===

impl Reloads {
    /// Waits for the next request; a request made before the wait is kept.
    pub async fn recv(&mut self) -> Option<()> {
        RELOAD.notified().await;
        Some(())
    }
}

/// Starts watching for reload requests.
pub fn reloads() -> io::Result<Reloads> {
    Ok(Reloads(()))
}

/// Completes on Ctrl-C, Ctrl-Break, console close, system shutdown or a
/// stop request from the service control manager.
pub async fn shutdown() {
    let (Ok(mut c), Ok(mut b), Ok(mut close), Ok(mut down)) =
        (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_shutdown())
    else {
        // Without a console only the service manager can stop botward.
        return STOP.notified().await;
    };
    tokio::select! {
        _ = c.recv() => {}
        _ = b.recv() => {}
        _ = close.recv() => {}
        _ = down.recv() => {}
        _ = STOP.notified() => {}
    }
}

/// Waits for `child`. Console events reach every process on the console,
/// so the child receives Ctrl-C itself; botward only keeps waiting for it
/// instead of ending first.
pub async fn wait_forwarding(child: &mut tokio::process::Child) -> io::Result<ExitStatus> {
    let Ok(mut c) = ctrl_c() else {
        return child.wait().await;
    };
    loop {
        tokio::select! {
            st = child.wait() => return st,
            _ = c.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_made_before_the_wait_are_kept() {
        let mut reloads = reloads().unwrap();
        request_reload();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), reloads.recv()).await;
        assert_eq!(got, Ok(Some(())));
        request_stop();
        tokio::time::timeout(std::time::Duration::from_secs(10), shutdown())
            .await
            .unwrap();
        let mut child = tokio::process::Command::new("cmd")
            .args(["/c", "exit", "5"])
            .spawn()
            .unwrap();
        assert_eq!(wait_forwarding(&mut child).await.unwrap().code(), Some(5));
    }
}
