//! How the host's service manager runs `botward serve`: on a console the
//! server runs directly ([`run`]); `botward service run`, what the
//! installed service starts, hands it to the service control manager
//! ([`dispatch`]). The rest installs, controls and removes the service.
//!
//! The service reports `StartPending` until the server listens, then
//! `Running`; a stop or shutdown control reports `StopPending` and asks the
//! server to stop exactly as Ctrl-C does ([`super::signals::request_stop`]),
//! and `Stopped` follows once it has drained, revoked its leases and sealed
//! the audit log, with the server's exit code as the service-specific code.
//! User-defined control 128 reloads the config, as SIGHUP does on unix.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState,
    ServiceStatus, ServiceType, UserEventCode,
};
use windows_service::service_control_handler::ServiceStatusHandle;
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_sys::Win32::System::Services::{
    ChangeServiceConfig2W, CloseServiceHandle, CreateServiceW, OpenSCManagerW, SC_HANDLE,
    SC_MANAGER_CONNECT, SC_MANAGER_CREATE_SERVICE, SERVICE_AUTO_START, SERVICE_CHANGE_CONFIG,
    SERVICE_CONFIG_DESCRIPTION, SERVICE_DESCRIPTIONW, SERVICE_ERROR_NORMAL,
    SERVICE_WIN32_OWN_PROCESS,
};
use zeroize::Zeroizing;

use super::ffi::wide;
use super::{eventlog, signals};

/// The service's name, which `sc` and the Event Log source use.
pub const NAME: &str = "botward";
/// What the Services console shows.
pub const DISPLAY_NAME: &str = "botward secrets broker";
/// The user-defined control code that reloads the config.
pub const RELOAD_CONTROL: u32 = 128;

/// How long the server may take to start listening (Vault login, revoking
/// orphaned leases) before the service manager gives up on it.
const START_HINT: Duration = Duration::from_secs(60);
/// How long the server may take to stop: the 20 s drain, then revoking
/// leases and tokens.
const STOP_HINT: Duration = Duration::from_secs(60);
/// How long `service stop` and `service start` wait for the state they
/// asked for.
pub const WAIT_LIMIT: Duration = Duration::from_secs(90);

/// Runs `serve`, the whole life of the server, on the calling thread.
pub fn run(serve: impl FnOnce() -> ExitCode + Send + 'static) -> ExitCode {
    serve()
}

// === the running service ===

/// Tells the service manager that the server listens.
pub type Ready<'a> = &'a (dyn Fn() + Sync);

type Serve = Box<dyn FnOnce(Ready<'_>) -> u8 + Send>;

static SERVE: Mutex<Option<Serve>> = Mutex::new(None);
static STATUS: OnceLock<ServiceStatusHandle> = OnceLock::new();
static STOPPING: AtomicBool = AtomicBool::new(false);
static EXIT: AtomicU32 = AtomicU32::new(1);

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Connects to the service control manager and runs `serve` as service
/// [`NAME`]; `serve` calls its argument once the server listens and returns
/// the server's exit code, which this returns too. Fails when the process
/// was not started by the service manager (on a console, say).
pub fn dispatch(serve: impl FnOnce(Ready<'_>) -> u8 + Send + 'static) -> io::Result<u8> {
    *SERVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(serve));
    service_dispatcher::start(NAME, ffi_service_main).map_err(os_error)?;
    Ok(EXIT.load(Ordering::SeqCst) as u8)
}

/// What a control from the service manager does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop and shutdown: drain and stop, as Ctrl-C.
    Stop,
    /// User-defined control 128: reload the config, as SIGHUP.
    Reload,
    /// Interrogate: nothing to do, the status is current.
    Answer,
    /// Anything else is refused.
    Refuse,
}

/// The action for `control`.
pub fn action(control: ServiceControl) -> Action {
    match control {
        ServiceControl::Stop | ServiceControl::Shutdown => Action::Stop,
        ServiceControl::UserEvent(code) if code.to_raw() == RELOAD_CONTROL => Action::Reload,
        ServiceControl::Interrogate => Action::Answer,
        _ => Action::Refuse,
    }
}

fn on_control(control: ServiceControl) -> ServiceControlHandlerResult {
    match action(control) {
        Action::Stop => {
            if !STOPPING.swap(true, Ordering::SeqCst) {
                report(ServiceState::StopPending, STOP_HINT, 0);
            }
            signals::request_stop();
            ServiceControlHandlerResult::NoError
        }
        Action::Reload => {
            signals::request_reload();
            ServiceControlHandlerResult::NoError
        }
        Action::Answer => ServiceControlHandlerResult::NoError,
        Action::Refuse => ServiceControlHandlerResult::NotImplemented,
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some(serve) = SERVE.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let Ok(handle) = service_control_handler::register(NAME, on_control) else {
        tracing::error!("Cannot register the service control handler");
        return;
    };
    let _ = STATUS.set(handle);
    report(ServiceState::StartPending, START_HINT, 0);
    let ready = || {
        if !STOPPING.load(Ordering::SeqCst) {
            report(ServiceState::Running, Duration::ZERO, 0);
        }
    };
    let code = serve(&ready);
    EXIT.store(u32::from(code), Ordering::SeqCst);
    report(ServiceState::Stopped, Duration::ZERO, code);
}

/// Reports `state` to the service manager; `code` is the server's exit
/// code once stopped.
fn report(state: ServiceState, wait_hint: Duration, code: u8) {
    let Some(handle) = STATUS.get() else {
        return;
    };
    let controls_accepted = match state {
        ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        _ => ServiceControlAccept::empty(),
    };
    let exit_code = match code {
        0 => ServiceExitCode::Win32(0),
        c => ServiceExitCode::ServiceSpecific(u32::from(c)),
    };
    let status = ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: u32::from(!matches!(
            state,
            ServiceState::Running | ServiceState::Stopped
        )),
        wait_hint,
        process_id: None,
    };
    if let Err(e) = handle.set_service_status(status) {
        tracing::warn!(error = %e, "Cannot report the service status");
    }
}

// === installing and controlling ===

/// Why a service command failed.
#[derive(Debug)]
pub enum ServiceError {
    NotInstalled,
    AlreadyInstalled,
    /// A path holds a character a command line cannot carry.
    BadPath(String),
    /// The service did not reach the state asked for in time.
    Timeout {
        want: &'static str,
        now: String,
        limit: Duration,
    },
    /// The service stopped instead of starting.
    Exited(String),
    Os {
        what: &'static str,
        error: io::Error,
    },
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::NotInstalled => write!(f, "service {NAME} is not installed"),
            ServiceError::AlreadyInstalled => write!(
                f,
                "service {NAME} is already installed; run `botward service uninstall` first"
            ),
            ServiceError::BadPath(p) => write!(f, "{p}: a path with '\"' cannot be quoted"),
            ServiceError::Timeout { want, now, limit } => write!(
                f,
                "service {NAME} is not {want} after {} s (it is {now}); see the Application event log, source {NAME}",
                limit.as_secs()
            ),
            ServiceError::Exited(code) => write!(
                f,
                "service {NAME} stopped while starting ({code}); see the Application event log, source {NAME}"
            ),
            ServiceError::Os { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for ServiceError {}

fn os_error(e: windows_service::Error) -> io::Error {
    match e {
        windows_service::Error::Winapi(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn os(what: &'static str) -> impl Fn(windows_service::Error) -> ServiceError {
    move |e| {
        let error = os_error(e);
        match error.raw_os_error() {
            // ERROR_SERVICE_DOES_NOT_EXIST
            Some(1060) => ServiceError::NotInstalled,
            _ => ServiceError::Os { what, error },
        }
    }
}

/// `arg` in double quotes as `CommandLineToArgvW` reads it back: the
/// backslashes before the closing quote are doubled. A `"` inside cannot be
/// part of a Windows path, so it is refused rather than escaped.
pub fn quote(arg: &OsStr) -> Result<OsString, ServiceError> {
    let s = arg.to_string_lossy();
    if s.contains('"') || s.contains('\0') {
        return Err(ServiceError::BadPath(s.into_owned()));
    }
    let trailing = s.len() - s.trim_end_matches('\\').len();
    let mut out = OsString::with_capacity(arg.len() + trailing + 2);
    out.push("\"");
    out.push(arg);
    out.push("\\".repeat(trailing));
    out.push("\"");
    Ok(out)
}

/// The command line the service manager starts:
/// `"<exe>" service run --config "<config>"`.
pub fn command_line(exe: &Path, config: &Path) -> Result<OsString, ServiceError> {
    let mut line = quote(exe.as_os_str())?;
    line.push(" service run --config ");
    line.push(quote(config.as_os_str())?);
    Ok(line)
}

/// What `service install` registers.
pub struct Install<'a> {
    /// This executable, by its full path.
    pub exe: &'a Path,
    /// The config, by its absolute path.
    pub config: &'a Path,
    /// `None` for LocalSystem.
    pub account: Option<&'a str>,
    /// The account's password, for an account that has one.
    pub password: Option<&'a str>,
}

/// A service manager handle, closed on drop.
struct ScHandle(SC_HANDLE);

impl ScHandle {
    fn new(h: SC_HANDLE, what: &'static str) -> Result<ScHandle, ServiceError> {
        if h.is_null() {
            let error = io::Error::last_os_error();
            // ERROR_SERVICE_EXISTS
            if error.raw_os_error() == Some(1073) {
                return Err(ServiceError::AlreadyInstalled);
            }
            return Err(ServiceError::Os { what, error });
        }
        Ok(ScHandle(h))
    }
}

impl Drop for ScHandle {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed once, here.
        unsafe { CloseServiceHandle(self.0) };
    }
}

/// Registers the Event Log source and the service, set to start
/// automatically in its own process.
pub fn install(spec: &Install<'_>) -> Result<(), ServiceError> {
    let line = wide(&command_line(spec.exe, spec.config)?);
    eventlog::register_source().map_err(|error| ServiceError::Os {
        what: "cannot register the Event Log source",
        error,
    })?;
    // SAFETY: plain call; the handle is owned at once.
    let scm = unsafe {
        OpenSCManagerW(
            null(),
            null(),
            SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE,
        )
    };
    let scm = ScHandle::new(scm, "cannot open the service control manager")?;
    let name = wide(OsStr::new(NAME));
    let display = wide(OsStr::new(DISPLAY_NAME));
    let account = spec.account.map(|a| wide(OsStr::new(a)));
    let password = spec.password.map(|p| Zeroizing::new(wide(OsStr::new(p))));
    let ptr = |w: &Option<Vec<u16>>| w.as_ref().map_or(null(), |w| w.as_ptr());
    // SAFETY: every string is NUL-terminated and outlives the call; the
    // optional ones are null for LocalSystem.
    let service = unsafe {
        CreateServiceW(
            scm.0,
            name.as_ptr(),
            display.as_ptr(),
            SERVICE_CHANGE_CONFIG,
            SERVICE_WIN32_OWN_PROCESS,
            SERVICE_AUTO_START,
            SERVICE_ERROR_NORMAL,
            line.as_ptr(),
            null(),
            null_mut(),
            null(),
            ptr(&account),
            password.as_ref().map_or(null(), |p| p.as_ptr()),
        )
    };
    let service = ScHandle::new(service, "cannot create the service")?;
    let mut text = wide(OsStr::new(&format!(
        "Secrets broker for RPA bots: mTLS bot identity, Vault secrets, audit. Config: {}",
        spec.config.display()
    )));
    let description = SERVICE_DESCRIPTIONW {
        lpDescription: text.as_mut_ptr(),
    };
    // SAFETY: `description` points to a NUL-terminated string alive for the
    // call. A description that cannot be set leaves a working service.
    unsafe {
        ChangeServiceConfig2W(
            service.0,
            SERVICE_CONFIG_DESCRIPTION,
            (&description as *const SERVICE_DESCRIPTIONW).cast(),
        )
    };
    Ok(())
}

fn manager() -> Result<ServiceManager, ServiceError> {
    ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(os("cannot open the service control manager"))
}

/// Stops the service if it runs, deletes it and removes the Event Log
/// source. `Ok(false)`: there was no service (the source is removed all
/// the same).
pub fn uninstall(limit: Duration) -> Result<bool, ServiceError> {
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let installed = match manager()?.open_service(NAME, access) {
        Ok(service) => {
            let status = service
                .query_status()
                .map_err(os("cannot query the service"))?;
            if status.current_state != ServiceState::Stopped {
                stop_and_wait(&service, limit)?;
            }
            service.delete().map_err(os("cannot delete the service"))?;
            true
        }
        Err(e) => match os("cannot open the service")(e) {
            ServiceError::NotInstalled => false,
            other => return Err(other),
        },
    };
    eventlog::remove_source().map_err(|error| ServiceError::Os {
        what: "cannot remove the Event Log source",
        error,
    })?;
    Ok(installed)
}

/// Starts the service and waits until it runs.
pub fn start(limit: Duration) -> Result<(), ServiceError> {
    let service = manager()?
        .open_service(NAME, ServiceAccess::START | ServiceAccess::QUERY_STATUS)
        .map_err(os("cannot open the service"))?;
    service
        .start::<&OsStr>(&[])
        .map_err(os("cannot start the service"))?;
    let status = wait_for(
        &service,
        &[ServiceState::Running, ServiceState::Stopped],
        limit,
        "running",
    )?;
    if status.current_state == ServiceState::Stopped {
        return Err(ServiceError::Exited(exit_text(status.exit_code)));
    }
    Ok(())
}

/// Stops the service and waits until it has stopped. `Ok(false)`: it was
/// not running.
pub fn stop(limit: Duration) -> Result<bool, ServiceError> {
    let service = manager()?
        .open_service(NAME, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)
        .map_err(os("cannot open the service"))?;
    let status = service
        .query_status()
        .map_err(os("cannot query the service"))?;
    if status.current_state == ServiceState::Stopped {
        return Ok(false);
    }
    stop_and_wait(&service, limit)?;
    Ok(true)
}

/// Sends the reload control.
pub fn reload() -> Result<(), ServiceError> {
    let service = manager()?
        .open_service(NAME, ServiceAccess::USER_DEFINED_CONTROL)
        .map_err(os("cannot open the service"))?;
    let code = UserEventCode::from_raw(RELOAD_CONTROL).map_err(|e| ServiceError::Os {
        what: "bad control code",
        error: io::Error::other(e.to_string()),
    })?;
    service
        .notify(code)
        .map_err(os("cannot send the reload control"))?;
    Ok(())
}

fn stop_and_wait(
    service: &windows_service::service::Service,
    limit: Duration,
) -> Result<(), ServiceError> {
    match service.stop() {
        Ok(_) => {}
        // ERROR_SERVICE_NOT_ACTIVE: it stopped meanwhile;
        // ERROR_SERVICE_CANNOT_ACCEPT_CTRL: it is stopping (or still
        // starting) already, and the wait tells which.
        Err(windows_service::Error::Winapi(e)) if matches!(e.raw_os_error(), Some(1061 | 1062)) => {
        }
        Err(e) => return Err(os("cannot stop the service")(e)),
    }
    wait_for(service, &[ServiceState::Stopped], limit, "stopped").map(|_| ())
}

/// Polls the service until it is in one of `states`.
fn wait_for(
    service: &windows_service::service::Service,
    states: &[ServiceState],
    limit: Duration,
    want: &'static str,
) -> Result<ServiceStatus, ServiceError> {
    let begin = Instant::now();
    loop {
        let status = service
            .query_status()
            .map_err(os("cannot query the service"))?;
        if states.contains(&status.current_state) {
            return Ok(status);
        }
        if begin.elapsed() >= limit {
            return Err(ServiceError::Timeout {
                want,
                now: format!("{:?}", status.current_state),
                limit,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn exit_text(code: ServiceExitCode) -> String {
    match code {
        ServiceExitCode::ServiceSpecific(c) => format!("exit code {c}"),
        ServiceExitCode::Win32(c) => format!("Windows error {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_quotes_both_paths() {
        let line = command_line(
            Path::new(r"C:\Program Files\botward\botward.exe"),
            Path::new(r"C:\ProgramData\botward\botward.toml"),
        )
        .unwrap();
        assert_eq!(
            line,
            r#""C:\Program Files\botward\botward.exe" service run --config "C:\ProgramData\botward\botward.toml""#
        );
        let line =
            command_line(Path::new(r"C:\b.exe"), Path::new(r"D:\My Configs\x y.toml")).unwrap();
        assert_eq!(
            line,
            r#""C:\b.exe" service run --config "D:\My Configs\x y.toml""#
        );
    }

    #[test]
    fn a_trailing_backslash_is_doubled_and_a_quote_refused() {
        assert_eq!(quote(OsStr::new(r"C:\dir\")).unwrap(), r#""C:\dir\\""#);
        assert_eq!(quote(OsStr::new(r"Z:\tmp\a b")).unwrap(), r#""Z:\tmp\a b""#);
        assert!(matches!(
            quote(OsStr::new(r#"C:\a"b"#)),
            Err(ServiceError::BadPath(_))
        ));
    }

    #[test]
    fn controls_map_to_stop_reload_and_nothing_else() {
        let user = |c| ServiceControl::UserEvent(UserEventCode::from_raw(c).unwrap());
        assert_eq!(action(ServiceControl::Stop), Action::Stop);
        assert_eq!(action(ServiceControl::Shutdown), Action::Stop);
        assert_eq!(action(user(128)), Action::Reload);
        assert_eq!(action(user(129)), Action::Refuse);
        assert_eq!(action(ServiceControl::Interrogate), Action::Answer);
        assert_eq!(action(ServiceControl::Pause), Action::Refuse);
        assert_eq!(action(ServiceControl::Preshutdown), Action::Refuse);
    }

    #[test]
    fn on_a_console_there_is_no_service_manager_to_dispatch_to() {
        let err = dispatch(|_| 0).unwrap_err();
        // ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
        assert_eq!(err.raw_os_error(), Some(1063), "{err}");
    }
}
