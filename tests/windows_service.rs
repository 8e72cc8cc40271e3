//! botward as a Windows service, driven through Wine from Linux: `service
//! install` registers it and its Event Log source, `service start` brings
//! it up under Wine's service control manager, a bot on Linux reads a
//! secret over mTLS, `service reload` makes it serve a new grant, `service
//! stop` drains it and seals the audit log, and `service uninstall`
//! removes it.
//!
//! Needs a Windows build (`cargo build --release --target
//! x86_64-pc-windows-gnu`) in `BOTWARD_WIN_EXE` and a Wine prefix in
//! `BOTWARD_WINEPREFIX` whose system32 (or the exe's folder) holds the
//! `bcryptprimitives.dll` shim Wine 8 lacks; `BOTWARD_WINE` names the
//! `wine64` loader if it is not on PATH. scripts/windows.sh sets all three
//! and runs these tests with `--include-ignored`; the plain Linux pass
//! ignores them. Without the variables they skip themselves with a note,
//! and fail under CI. They restart the prefix's wineserver, so that the
//! services Wine starts write Wine's `eventlog` debug channel (where its
//! `ReportEventW` writes each event) to a file of the test.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::botward::client::{call, ClientSettings};
use ::botward::dev::{free_port, BotEntry, ConfigTemplate, SecretEntry, VaultLogin};
use common::*;
use serde_json::Value;

/// The tests share one prefix and one service name.
static PREFIX: Mutex<()> = Mutex::new(());

/// A generous limit for one Wine command (the first one after a fresh
/// wineserver starts the prefix's services).
const COMMAND_LIMIT: Duration = Duration::from_secs(180);
const SERVE_LIMIT: Duration = Duration::from_secs(60);

struct WineSession {
    loader: PathBuf,
    exe: PathBuf,
    prefix: PathBuf,
    /// Where the wineserver session's processes (the service among them)
    /// write their stderr.
    session_log: PathBuf,
    dir: PathBuf,
}

impl WineSession {
    fn find(test: &str, dir: &Path) -> Option<WineSession> {
        let exe = std::env::var_os("BOTWARD_WIN_EXE").map(PathBuf::from);
        let prefix = std::env::var_os("BOTWARD_WINEPREFIX").map(PathBuf::from);
        let (Some(exe), Some(prefix)) = (exe, prefix) else {
            if required() {
                panic!("{test}: BOTWARD_WIN_EXE and BOTWARD_WINEPREFIX are required under CI");
            }
            eprintln!("SKIP {test}: set BOTWARD_WIN_EXE and BOTWARD_WINEPREFIX to run botward.exe under Wine");
            return None;
        };
        assert!(exe.is_file(), "{test}: no {}", exe.display());
        let loader = std::env::var_os("BOTWARD_WINE")
            .map(PathBuf::from)
            .or_else(|| on_path("wine64"))
            .or_else(|| Some(PathBuf::from("/usr/lib/wine/wine64")).filter(|p| p.exists()))
            .unwrap_or_else(|| PathBuf::from("wine"));
        let wine = WineSession {
            loader,
            exe,
            prefix,
            session_log: dir.join("wine-session.log"),
            dir: dir.to_owned(),
        };
        wine.new_session();
        Some(wine)
    }

    /// Restarts the prefix's wineserver; the first command of the new
    /// session starts Wine's services.exe with its stderr in
    /// [`WineSession::session_log`] and the `eventlog` debug channel on.
    fn new_session(&self) {
        let st = Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(st.is_ok(), "wineserver: {st:?}");
        wait_until("the old wineserver exits", COMMAND_LIMIT, || {
            Command::new("wineserver")
                .arg("-w")
                .env("WINEPREFIX", &self.prefix)
                .status()
                .is_ok()
        });
        let log = File::create(&self.session_log).unwrap();
        let mut child = self
            .command("-all,+eventlog", &["--version"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run wine");
        let code = wait_child(&mut child, "botward.exe --version");
        assert_eq!(code, Some(0), "{}", self.session_text());
    }

    fn command(&self, debug: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.loader);
        cmd.arg(&self.exe)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", debug)
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `botward.exe args` and returns its exit code and output.
    fn botward(&self, args: &[&str]) -> (Option<i32>, String) {
        self.run(None, args)
    }

    /// Runs a program of the prefix (`sc`, `reg`), or botward.exe when
    /// `program` is `None`.
    fn run(&self, program: Option<&str>, args: &[&str]) -> (Option<i32>, String) {
        let out = self.dir.join(format!("wine-{}.out", unique_id()));
        let file = File::create(&out).unwrap();
        let mut cmd = match program {
            None => self.command("-all", args),
            Some(p) => {
                let mut c = Command::new(&self.loader);
                c.arg(p)
                    .args(args)
                    .env("WINEPREFIX", &self.prefix)
                    .env("WINEDEBUG", "-all")
                    .stdin(Stdio::null());
                c
            }
        };
        let mut child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run wine");
        let what = format!("{program:?} {args:?}");
        let code = wait_child(&mut child, &what);
        (code, std::fs::read_to_string(&out).unwrap_or_default())
    }

    fn session_text(&self) -> String {
        std::fs::read_to_string(&self.session_log).unwrap_or_default()
    }
}

fn unique_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn wait_child(child: &mut std::process::Child, what: &str) -> Option<i32> {
    let begin = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if begin.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {} s", COMMAND_LIMIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let begin = Instant::now();
    while !done() {
        assert!(
            begin.elapsed() < limit,
            "{what}: not within {} s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `path` as Wine sees it: on drive Z:, the Linux root.
fn win(path: &Path) -> PathBuf {
    PathBuf::from(format!("Z:{}", path.display()).replace('/', "\\"))
}

/// The config the service reads, with Windows paths; `extra_grant` gives
/// invoice-bot `sftp` as well.
fn service_config(h: &Harness, port: u16, audit: &Path, extra_grant: bool) -> String {
    let login = VaultLogin::AppRole {
        role_id_file: win(&h.role_id),
        secret_id_file: win(&h.secret_id),
    };
    let invoice: &[&str] = if extra_grant {
        &["erp-db", "sftp"]
    } else {
        &["erp-db"]
    };
    ConfigTemplate::new(&win(&h.tls), &h.bao.addr, login, &win(audit))
        .tcp(&format!("127.0.0.1:{port}"))
        .trust_domain(TRUST_DOMAIN)
        .secrets(vec![
            SecretEntry::kv("erp-db", "rpa/erp-db"),
            SecretEntry::kv("sftp", "rpa/sftp"),
        ])
        .bots(vec![
            BotEntry::new("invoice-bot", "alice@corp.example", "finance-ops", invoice),
            BotEntry::new("report-bot", "bob@corp.example", "controlling", &["sftp"]),
        ])
        .extra("[hardening]\nmlock = false")
        .render()
}

/// A GET as `bot`: the status and the JSON body, or `None` while botward
/// does not answer.
fn get(h: &Harness, port: u16, bot: &str, path: &str) -> Option<(u16, Value)> {
    let b = h.bot(bot);
    let s = ClientSettings {
        addr: format!("https://127.0.0.1:{port}"),
        cert: b.cert,
        key: b.key,
        ca: h.ca_pem(),
    };
    let a = rt().block_on(call(&s, "GET", path)).ok()?;
    let v = serde_json::from_slice(a.body.expose_secret()).unwrap_or(Value::Null);
    Some((a.status, v))
}

fn is_absent(wine: &WineSession) -> bool {
    let (code, _) = wine.run(Some("sc"), &["query", "botward"]);
    code != Some(0)
}

#[test]
#[ignore = "drives botward.exe under Wine; run with --include-ignored and BOTWARD_WIN_EXE, BOTWARD_WINEPREFIX"]
fn the_service_installs_serves_reloads_stops_and_uninstalls() {
    let _prefix = PREFIX.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = Harness::new("winsvc") else {
        return;
    };
    let Some(wine) = WineSession::find("winsvc", &h.dir) else {
        return;
    };
    // A run that failed half-way may have left the service behind.
    let _ = wine.botward(&["service", "uninstall"]);
    let port = free_port();
    let audit = h.audit_path();
    let config = h.dir.join("service.toml");
    std::fs::write(&config, service_config(&h, port, &audit, false)).unwrap();
    let config_arg = win(&config).display().to_string();

    let (code, out) = wine.botward(&["service", "install", "--config", &config_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("service botward installed"), "{out}");
    check_registration(&wine, &config_arg);
    let (code, out) = wine.botward(&["service", "install", "--config", &config_arg]);
    assert_eq!(code, Some(1), "a second install is refused: {out}");
    assert!(out.contains("already installed"), "{out}");

    let (code, out) = wine.botward(&["service", "start"]);
    assert_eq!(code, Some(0), "{out}\n{}", wine.session_text());
    let mut first = None;
    wait_until("the service serves erp-db", SERVE_LIMIT, || {
        first = get(&h, port, "invoice-bot", "/v1/secrets/erp-db");
        first.is_some()
    });
    let (status, v) = first.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["password"], h.erp_password.as_str());
    let (status, _) = get(&h, port, "invoice-bot", "/v1/secrets/sftp").unwrap();
    assert_eq!(status, 403);

    // The grant changes and the reload control makes botward read it.
    std::fs::write(&config, service_config(&h, port, &audit, true)).unwrap();
    let (code, out) = wine.botward(&["service", "reload"]);
    assert_eq!(code, Some(0), "{out}");
    wait_for_record(&audit, SERVE_LIMIT, |r| {
        r["kind"] == "config.reload" && r["detail"]["trigger"] == "service_reload"
    });
    let (status, v) = get(&h, port, "invoice-bot", "/v1/secrets/sftp").unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["password"], h.sftp_password.as_str());

    let (code, out) = wine.botward(&["service", "stop"]);
    assert_eq!(code, Some(0), "{out}\n{}", wine.session_text());
    assert!(out.contains("has stopped"), "{out}");
    check_sealed(&audit);
    let (_, query) = wine.run(Some("sc"), &["query", "botward"]);
    assert!(query.contains("STOPPED"), "{query}");
    assert!(query.contains("SERVICE_EXIT_CODE  : 0"), "{query}");
    check_event_log(
        &wine,
        &[
            "botward ready",
            "Config reloaded trigger=service_reload",
            "botward stopped",
        ],
    );

    // A server that cannot start stops the service with its exit code.
    std::fs::write(&config, "[listen]\ntcp = \"127.0.0.1:1\"\n").unwrap();
    let (code, out) = wine.botward(&["service", "start"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("stopped while starting (exit code 64)"),
        "{out}"
    );
    let (_, query) = wine.run(Some("sc"), &["query", "botward"]);
    assert!(query.contains("SERVICE_EXIT_CODE  : 64"), "{query}");
    check_event_log(&wine, &["The config cannot be used problem="]);

    let (code, out) = wine.botward(&["service", "uninstall"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("removed"), "{out}");
    assert!(is_absent(&wine), "sc query still finds botward");
    let (code, _) = wine.run(Some("reg"), &["query", SOURCE_KEY]);
    assert_ne!(code, Some(0), "the Event Log source is still registered");
}

const SERVICE_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\botward";
const SOURCE_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\botward";

/// The service's registry entry and its Event Log source, as `reg query`
/// shows them.
fn check_registration(wine: &WineSession, config_arg: &str) {
    let (code, service) = wine.run(Some("reg"), &["query", SERVICE_KEY]);
    assert_eq!(code, Some(0), "{service}");
    let exe = win(&wine.exe).display().to_string();
    let image = format!("\"{exe}\" service run --config \"{config_arg}\"");
    let line = |name: &str| {
        service
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{service}"))
            .to_owned()
    };
    assert!(
        line("ImagePath")
            .to_lowercase()
            .contains(&image.to_lowercase()),
        "{service}\nwant {image}"
    );
    assert!(
        line("DisplayName").contains("botward secrets broker"),
        "{service}"
    );
    assert!(line("Start").contains("0x2"), "auto start: {service}");
    assert!(line("Type").contains("0x10"), "own process: {service}");
    assert!(line("ObjectName").contains("LocalSystem"), "{service}");
    assert!(line("Description").contains(config_arg), "{service}");
    let (code, source) = wine.run(Some("reg"), &["query", SOURCE_KEY]);
    assert_eq!(code, Some(0), "{source}");
    assert!(
        source.contains("REG_EXPAND_SZ")
            && source.contains(
                r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll"
            ),
        "{source}"
    );
    assert!(
        source.contains("TypesSupported") && source.contains("0x7"),
        "{source}"
    );
}

/// The audit log ends with the server's stop record and the final seal,
/// and the Linux build verifies it.
fn check_sealed(audit: &Path) {
    let records = audit_records(audit);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds.first().copied(), Some("server.start"), "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 2..], ["server.stop", "checkpoint"]);
    assert_eq!(records.last().unwrap()["detail"]["final"], true);
    let with = |suffix: &str| format!("{}{suffix}", audit.display());
    let out = Command::new(botward_bin())
        .args([
            "audit",
            "verify",
            "--public-key",
            &with(".pub"),
            "--seed",
            &with(".seed"),
        ])
        .arg(audit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("MACs and signatures"), "{text}");
}

/// Wine's `ReportEventW` writes each event to its `eventlog` debug channel:
/// the lifecycle events reached it.
fn check_event_log(wine: &WineSession, wanted: &[&str]) {
    let text = wine.session_text();
    let events: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(":eventlog:ReportEventW"))
        .collect();
    for want in wanted {
        assert!(
            events.iter().any(|l| l.contains(want)),
            "no event {want:?} in Wine's eventlog channel:\n{}",
            events.join("\n")
        );
    }
}

#[test]
#[ignore = "drives botward.exe under Wine; run with --include-ignored and BOTWARD_WIN_EXE, BOTWARD_WINEPREFIX"]
fn a_config_that_does_not_validate_is_not_installed() {
    let _prefix = PREFIX.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("botward-winsvc-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(wine) = WineSession::find("winsvc_bad_config", &dir) else {
        return;
    };
    let _ = wine.botward(&["service", "uninstall"]);
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[listen]\ntcp = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
    let arg = win(&config).display().to_string();
    let (code, out) = wine.botward(&["service", "install", "--config", &arg]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("does not validate"), "{out}");
    assert!(is_absent(&wine), "a refused config left a service behind");
    // On a console, `service run` has no service manager to talk to.
    let (code, out) = wine.botward(&["service", "run", "--config", &arg]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("botward serve"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn on_linux_the_service_command_points_to_systemd() {
    let out = Command::new(botward_bin())
        .args(["service", "start"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Windows service"), "{err}");
    assert!(err.contains("packaging/botward.service"), "{err}");
}
