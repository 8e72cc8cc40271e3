//! `botward serve` and `botward check-config`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::app::EX_USAGE;
use crate::config::Config;
use crate::platform;

pub(super) fn check_config(file: &Path) -> ExitCode {
    if checked(file) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EX_USAGE)
    }
}

/// Whether `file` is a config botward can use; prints a summary, or every
/// problem with its location.
pub(super) fn checked(file: &Path) -> bool {
    match Config::load(file) {
        Ok(c) => {
            println!(
                "{}: ok ({} bots, {} secrets)",
                file.display(),
                c.bots.len(),
                c.secrets.len()
            );
            true
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s) found", problems.0.len());
            false
        }
    }
}

/// Runs the sidecar until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf) -> ExitCode {
    serve_until(config_path, shutdown_signal(), |_| {}).await
}

/// Runs the sidecar until `shutdown`; `ready` is told where it listens.
pub async fn serve_until(
    config_path: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(&str),
) -> ExitCode {
    ExitCode::from(serve_code(config_path, shutdown, ready, Failures::Print).await)
}

/// Where [`serve_code`] reports why the server could not start.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Failures {
    /// On stderr, for a person at a console.
    Print,
    /// As ERROR events of the operational log, which a service's Event Log
    /// receives.
    #[cfg_attr(not(windows), allow(dead_code))]
    Log,
}

/// [`serve_until`] with the exit code as a number, for a service manager
/// that reports it.
pub(super) async fn serve_code(
    config_path: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(&str),
    failures: Failures,
) -> u8 {
    crate::tls::install_provider();
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                match failures {
                    Failures::Print => eprintln!("{p}"),
                    Failures::Log => {
                        tracing::error!(problem = %crate::text::Escaped(p), "The config cannot be used");
                    }
                }
            }
            return EX_USAGE;
        }
    };
    let app = match crate::app::App::start(config, config_path).await {
        Ok(app) => app,
        Err(e) => {
            match failures {
                Failures::Print => eprintln!("botward: {e}"),
                Failures::Log => {
                    tracing::error!(error = %crate::text::Escaped(&e), "botward cannot start");
                }
            }
            return e.exit_code();
        }
    };
    println!("botward ready {}", app.listening());
    let _ = std::io::stdout().flush();
    ready(app.listening());
    app.run(shutdown).await;
    0
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    platform::signals::shutdown().await
}
