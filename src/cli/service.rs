//! `botward service ...`: installing, controlling and running botward as the
//! Windows service `botward`. On unix the command only explains that
//! systemd runs botward there.

use std::process::ExitCode;

use super::args::ServiceCommand;

#[cfg(not(windows))]
pub(super) fn service(_command: ServiceCommand) -> ExitCode {
    eprintln!(
        "botward service: this command installs and controls the Windows service; on this system systemd runs botward (packaging/botward.service: systemctl start|stop|reload botward)"
    );
    ExitCode::from(crate::app::EX_USAGE)
}

#[cfg(windows)]
pub(super) fn service(command: ServiceCommand) -> ExitCode {
    imp::service(command)
}

#[cfg(windows)]
mod imp {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use zeroize::Zeroizing;

    use super::super::args::ServiceCommand;
    use super::super::serve::{self, Failures};
    use crate::app::{EX_UNAVAILABLE, EX_USAGE};
    use crate::platform::windows::service::{self as svc, ServiceError, NAME, WAIT_LIMIT};

    pub(super) fn service(command: ServiceCommand) -> ExitCode {
        let done = match command {
            ServiceCommand::Install {
                config,
                account,
                password_file,
            } => return install(&config, account.as_deref(), password_file.as_deref()),
            ServiceCommand::Uninstall => svc::uninstall(WAIT_LIMIT).map(|installed| {
                if installed {
                    format!("service {NAME} and its Event Log source removed")
                } else {
                    format!("service {NAME} was not installed; its Event Log source is removed")
                }
            }),
            ServiceCommand::Start => {
                svc::start(WAIT_LIMIT).map(|()| format!("service {NAME} is running"))
            }
            ServiceCommand::Stop => svc::stop(WAIT_LIMIT).map(|was| {
                if was {
                    format!("service {NAME} has stopped")
                } else {
                    format!("service {NAME} was not running")
                }
            }),
            ServiceCommand::Reload => {
                svc::reload().map(|()| format!("service {NAME} asked to reload its config"))
            }
            ServiceCommand::Run { config } => return run(config),
        };
        report(done)
    }

    fn report(done: Result<String, ServiceError>) -> ExitCode {
        match done {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("botward service: {e}");
                ExitCode::from(match e {
                    ServiceError::BadPath(_) => EX_USAGE,
                    ServiceError::Os { .. } => EX_UNAVAILABLE,
                    _ => 1,
                })
            }
        }
    }

    fn install(config: &Path, account: Option<&str>, password_file: Option<&Path>) -> ExitCode {
        let (exe, config) = match (std::env::current_exe(), std::path::absolute(config)) {
            (Ok(exe), Ok(config)) => (exe, config),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("botward service: cannot resolve the paths: {e}");
                return ExitCode::from(EX_USAGE);
            }
        };
        if !serve::checked(&config) {
            eprintln!("botward service: not installed: the config does not validate");
            return ExitCode::from(EX_USAGE);
        }
        let password = match password_file.map(read_password).transpose() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("botward service: {e}");
                return ExitCode::from(EX_USAGE);
            }
        };
        let spec = svc::Install {
            exe: &exe,
            config: &config,
            account,
            password: password.as_ref().map(|p| p.as_str()),
        };
        report(svc::install(&spec).map(|()| {
            format!(
                "service {NAME} installed: {}, as {}",
                exe.display(),
                account.unwrap_or("LocalSystem")
            )
        }))
    }

    /// The first line of the password file; the error names the file, never
    /// what it holds.
    fn read_password(path: &Path) -> Result<Zeroizing<String>, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(format!("the password file {} is empty", path.display()));
        }
        Ok(Zeroizing::new(line.to_owned()))
    }

    /// Runs the server under the service control manager, the Event Log
    /// receiving its operational log (see `main`).
    fn run(config: PathBuf) -> ExitCode {
        let done = svc::dispatch(move |ready| {
            super::super::runtime().block_on(serve::serve_code(
                config,
                serve::shutdown_signal(),
                |_| ready(),
                Failures::Log,
            ))
        });
        match done {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!(
                    "botward service run: not started by the service control manager ({e}); on a console run `botward serve --config FILE`"
                );
                ExitCode::from(EX_USAGE)
            }
        }
    }
}
