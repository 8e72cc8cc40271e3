//! How the host's service manager runs `botward serve`.
//!
//! systemd starts botward with `Type=exec` (packaging/botward.service): the
//! service counts as started once the binary runs, `systemctl stop` sends
//! SIGTERM and `systemctl reload` SIGHUP, both watched by
//! [`super::signals`]. Nothing has to be registered with systemd or reported
//! to it, so [`run`] runs the server directly.

use std::process::ExitCode;

/// Runs `serve`, the whole life of the server, the way the service manager
/// expects, and returns its exit code. On unix that is a plain call on the
/// calling thread.
pub fn run(serve: impl FnOnce() -> ExitCode + Send + 'static) -> ExitCode {
    serve()
}
