//! The cross-built botward.exe under Wine: its version, and `check-config`
//! on configs written the Windows way (drive-letter paths in TOML literal
//! strings). scripts/windows.sh builds the exe and runs these; see
//! tests/common/wine.rs for the harness.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{unique, Wine};

/// Generous: the first Wine process of a run starts Wine's services.
const LIMIT: Duration = Duration::from_secs(120);

/// A folder under `C:\ProgramData` with placeholder TLS files, as
/// (its Windows path, its Linux path).
fn program_data(wine: &Wine, test: &str) -> (String, PathBuf) {
    let name = format!("botward-{test}-{}-{}", std::process::id(), unique());
    let linux = wine.drive_c().join("ProgramData").join(&name).join("tls");
    std::fs::create_dir_all(&linux).unwrap();
    for f in ["server.pem", "server-key.pem", "ca.pem"] {
        std::fs::write(linux.join(f), "placeholder").unwrap();
    }
    (format!(r"C:\ProgramData\{name}"), linux)
}

/// A config whose TLS files are under `C:\ProgramData`, whose AppRole files
/// are in the Linux folder `dir` (so on Wine's `Z:` drive) and whose audit
/// log would go to `C:\ProgramData\botward`; `listen` and `exe` are pasted
/// in as they are.
fn windows_config(wine: &Wine, dir: &Path, data: &str, listen: &str, exe: &str) -> String {
    for f in ["role-id", "secret-id"] {
        std::fs::write(dir.join(f), "placeholder").unwrap();
    }
    let role_id = wine.windows_path(&dir.join("role-id"));
    assert!(role_id.starts_with(r"Z:\"), "{role_id}");
    let secret_id = wine.windows_path(&dir.join("secret-id"));
    format!(
        r#"
[listen]
{listen}

[tls]
cert = '{data}\tls\server.pem'
key = '{data}\tls\server-key.pem'
client_ca = '{data}\tls\ca.pem'
trust_domain = "corp.example"

[vault]
addresses = ["http://127.0.0.1:8200"]

[vault.auth]
method = "approle"
role_id_file = '{role_id}'
secret_id_file = '{secret_id}'

[audit]
path = 'C:\ProgramData\botward\audit.jsonl'

[[secret]]
name = "erp-db"
kind = "kv"
mount = "secret"
path = "rpa/erp-db"

[[bot]]
name = "invoice-bot"
owner = "alice@corp.example"
team = "finance-ops"
secrets = ["erp-db"]
schedule = "Mon-Fri 06:00-20:00 Europe/Berlin"
processes = [{{ exe = '{exe}' }}]
"#
    )
}

#[test]
#[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
fn version_under_wine() {
    let Some(wine) = Wine::find("version_under_wine") else {
        return;
    };
    let dir = wine.scratch("version");
    let done = wine.run(&dir, ["--version"], LIMIT);
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(
        done.stdout.trim_end(),
        format!("botward {}", env!("CARGO_PKG_VERSION")),
        "{done:?}"
    );
}

#[test]
#[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
fn check_config_accepts_a_windows_config() {
    let Some(wine) = Wine::find("check_config_accepts_a_windows_config") else {
        return;
    };
    let dir = wine.scratch("config-ok");
    let (data, _) = program_data(&wine, "config-ok");
    let config = dir.join("botward.toml");
    std::fs::write(
        &config,
        windows_config(
            &wine,
            &dir,
            &data,
            r#"tcp = "127.0.0.1:8443""#,
            r"C:\Program Files\RPA\python.exe",
        ),
    )
    .unwrap();
    let config_win = wine.windows_path(&config);
    let done = wine.run(&dir, ["check-config", config_win.as_str()], LIMIT);
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(
        done.stdout.trim_end(),
        format!("{config_win}: ok (1 bots, 1 secrets)"),
        "{done:?}"
    );
}

#[test]
#[ignore = "drives botward.exe under Wine: scripts/windows.sh runs it"]
fn check_config_lists_what_windows_refuses() {
    let Some(wine) = Wine::find("check_config_lists_what_windows_refuses") else {
        return;
    };
    let dir = wine.scratch("config-bad");
    let (data, tls) = program_data(&wine, "config-bad");
    std::fs::remove_file(tls.join("ca.pem")).unwrap();
    let config = dir.join("botward.toml");
    // A unix socket, a missing CA file, and an exe path without a drive,
    // which is absolute on Linux but not on Windows.
    let text = windows_config(
        &wine,
        &dir,
        &data,
        "tcp = \"127.0.0.1:8443\"\nunix = 'C:\\ProgramData\\botward\\botward.sock'",
        "/opt/rpa/bin/python3",
    );
    std::fs::write(&config, &text).unwrap();
    let config_win = wine.windows_path(&config);
    let done = wine.run(&dir, ["check-config", config_win.as_str()], LIMIT);
    assert_eq!(done.code, Some(64), "{done:?}");
    let problems: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(problems.len(), 4, "{done:?}");
    assert_eq!(problems[3], "3 problem(s) found", "{done:?}");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let has = |prefix: String, rest: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&prefix) && p.contains(rest)),
            "no problem {prefix}...{rest} in {done:?}"
        );
    };
    has(
        format!("{config_win}: "),
        "listen.unix is only supported on unix systems",
    );
    has(
        format!("{config_win}:{}:", line_of("client_ca")),
        &format!(r"tls.client_ca: cannot read {data}\tls\ca.pem"),
    );
    has(
        format!("{config_win}:{}:", line_of("processes")),
        "process exe \"/opt/rpa/bin/python3\" must be an absolute path",
    );
}
