//! `botward exec`: secrets in a command's environment, their leases
//! released when it ends.

use std::process::ExitCode;

use crate::app::{EX_UNAVAILABLE, EX_USAGE};
use crate::client::{self, ClientSettings};
use crate::platform;
use crate::secret::{wipe_value, WipedBuf};

use super::args::ConnArgs;

/// One `--env` item.
struct EnvSpec {
    var: String,
    name: String,
    field: Option<String>,
}

fn parse_env_spec(s: &str) -> Result<EnvSpec, String> {
    let (var, target) = s
        .split_once('=')
        .ok_or_else(|| format!("--env {s:?}: expected VAR=NAME[#field]"))?;
    let var_ok = !var.is_empty()
        && !var.as_bytes()[0].is_ascii_digit()
        && var.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !var_ok {
        return Err(format!(
            "--env {s:?}: {var:?} is not an environment variable name"
        ));
    }
    let (name, field) = match target.split_once('#') {
        Some((n, f)) => (n, Some(f.to_owned())),
        None => (target, None),
    };
    if !crate::policy::is_valid_name(name) {
        return Err(format!("--env {s:?}: {name:?} is not a secret name"));
    }
    Ok(EnvSpec {
        var: var.to_owned(),
        name: name.to_owned(),
        field,
    })
}

async fn release_leases(settings: &ClientSettings, leases: &[String]) -> bool {
    let mut ok = true;
    for id in leases {
        let path = format!("/v1/leases/{}", client::encode(id));
        match client::call(settings, "DELETE", &path).await {
            Ok(a) if a.status == 204 => {}
            Ok(a) => {
                eprintln!(
                    "botward: releasing a lease failed: {}",
                    client::error_line(&a)
                );
                ok = false;
            }
            Err(e) => {
                eprintln!("botward: releasing a lease failed: {e}");
                ok = false;
            }
        }
    }
    ok
}

pub(super) async fn exec(env: Vec<String>, conn: ConnArgs, command: Vec<String>) -> ExitCode {
    let specs = match env
        .iter()
        .map(|s| parse_env_spec(s))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let settings = match super::identity::settings(conn).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut leases = Vec::new();
    let mut fetched = match fetch_all(&settings, &specs, &mut leases).await {
        Ok(f) => f,
        Err(code) => {
            release_leases(&settings, &leases).await;
            return code;
        }
    };
    let values = pick_values(&specs, &fetched);
    for (_, v) in &mut fetched {
        wipe_value(v);
    }
    drop(fetched);
    let Some(values) = values else {
        release_leases(&settings, &leases).await;
        return ExitCode::FAILURE;
    };
    let code = run_child(&command, values).await;
    let released = release_leases(&settings, &leases).await;
    if !released && code == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::from(code)
}

/// Reads each secret once, however many variables take fields of it: the
/// fields of one dynamic secret belong to one lease. The IDs of leases
/// issued go into `leases`, also when a later read fails.
async fn fetch_all(
    settings: &ClientSettings,
    specs: &[EnvSpec],
    leases: &mut Vec<String>,
) -> Result<Vec<(String, serde_json::Value)>, ExitCode> {
    let mut fetched: Vec<(String, serde_json::Value)> = Vec::new();
    for spec in specs {
        if fetched.iter().any(|(n, _)| *n == spec.name) {
            continue;
        }
        let path = format!("/v1/secrets/{}", client::encode(&spec.name));
        let answer = match client::call(settings, "GET", &path).await {
            Ok(a) if a.status == 200 => a,
            Ok(a) => {
                eprintln!("botward: {}: {}", spec.name, client::error_line(&a));
                return Err(ExitCode::FAILURE);
            }
            Err(e) => {
                eprintln!("botward: {e}");
                return Err(ExitCode::from(EX_UNAVAILABLE));
            }
        };
        let v: serde_json::Value =
            serde_json::from_slice(answer.body.expose_secret()).unwrap_or_default();
        if let Some(id) = v.pointer("/lease/id").and_then(|i| i.as_str()) {
            leases.push(id.to_owned());
        }
        fetched.push((spec.name.clone(), v));
    }
    Ok(fetched)
}

/// The value of each variable: the named field as text, or the whole
/// `data` object as JSON. `None`, after saying which, when a field is
/// missing.
fn pick_values(
    specs: &[EnvSpec],
    fetched: &[(String, serde_json::Value)],
) -> Option<Vec<(String, WipedBuf)>> {
    let mut values = Vec::new();
    for spec in specs {
        let v = &fetched.iter().find(|(n, _)| *n == spec.name)?.1;
        let mut out = WipedBuf::with_capacity(256);
        let found = match &spec.field {
            Some(f) => match v.get("data").and_then(|d| d.get(f)) {
                Some(serde_json::Value::String(s)) => {
                    out.extend_from_slice(s.as_bytes());
                    true
                }
                Some(other) => {
                    let _ = serde_json::to_writer(out.as_mut_vec(), other);
                    true
                }
                None => false,
            },
            None => v
                .get("data")
                .is_some_and(|d| serde_json::to_writer(out.as_mut_vec(), d).is_ok()),
        };
        if !found {
            eprintln!(
                "botward: {} has no field {:?}",
                spec.name,
                spec.field.as_deref().unwrap_or("")
            );
            return None;
        }
        values.push((spec.var.clone(), out));
    }
    Some(values)
}

/// Runs `command` with `values` in its environment, forwarding signals,
/// and gives its exit code (127 when it cannot be started).
async fn run_child(command: &[String], values: Vec<(String, WipedBuf)>) -> u8 {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    for (var, value) in &values {
        match platform::os_str_from_bytes(value.expose_secret()) {
            Ok(v) => cmd.env(var, v),
            Err(_) => {
                eprintln!("botward: the value for {var} is not UTF-8, which this system's environment cannot hold");
                return 1;
            }
        };
    }
    let spawned = cmd.spawn();
    // The values now live only in the child's environment.
    drop(cmd);
    drop(values);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("botward: cannot run {}: {e}", command[0]);
            return 127;
        }
    };
    match platform::signals::wait_forwarding(&mut child).await {
        Ok(st) => platform::exit_code(st),
        Err(e) => {
            eprintln!("botward: waiting for the command failed: {e}");
            1
        }
    }
}
