//! The command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing::{info, warn};

use crate::audit::{AuditLog, Decision};
use crate::client::{self, ClientSettings};
use crate::config::Config;
use crate::server::{self, Listeners, Runtime, Shared};

// Every line a command prints goes through `text::escape`: messages carry
// paths, config values, audit fields and what a peer answered, and none may
// move the terminal's cursor or forge a line. (The secret `get` prints is
// written with `write_all`, untouched.)
macro_rules! println {
    () => { ::std::println!() };
    ($($arg:tt)*) => { ::std::println!("{}", $crate::text::Escaped(format_args!($($arg)*))) };
}
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($arg:tt)*) => { ::std::eprintln!("{}", $crate::text::Escaped(format_args!($($arg)*))) };
}

/// Exit code for a bad config or bad usage (EX_USAGE).
pub const EX_USAGE: u8 = 64;
/// Exit code when a needed service is unavailable (EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;

#[derive(Parser, Debug)]
#[command(
    name = "botward",
    version,
    about = "Secrets-broker sidecar for RPA bots: mTLS identity, just-in-time Vault secrets, audited"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the sidecar.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and list every problem with its location.
    CheckConfig { file: PathBuf },
    /// Print a secret, or one field of it, for scripts.
    Get {
        name: String,
        #[arg(long)]
        field: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Run a command with secrets in its environment only; release every
    /// lease when it exits.
    Exec {
        /// VAR=NAME or VAR=NAME#field; repeat for more.
        #[arg(long = "env", value_name = "VAR=NAME[#field]", required = true)]
        env: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Development CA and certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Verify, query and report on audit logs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Anomaly and least-privilege analysis of audit logs.
    Analyze {
        /// Days of each bot's history to learn from before scoring.
        #[arg(long, default_value_t = 28)]
        train_days: u32,
        /// Time zone of the bot hosts (default: this system's zone).
        #[arg(long)]
        tz: Option<String>,
        /// text, json or html
        #[arg(long, default_value = "text")]
        format: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// One-command local demo with a real OpenBao dev server.
    Dev {
        /// Working folder for the demo files (removed on exit unless --keep).
        #[arg(long, default_value = "botward-dev")]
        dir: PathBuf,
        /// TCP port for botward.
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Keep the demo folder on exit.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// https://127.0.0.1:8443 or unix:///path/to/botward.sock
    #[arg(long, env = "BOTWARD_ADDR", default_value = "https://127.0.0.1:8443")]
    pub addr: String,
    /// The bot's client certificate (PEM).
    #[arg(long, env = "BOTWARD_CERT")]
    pub cert: PathBuf,
    /// The bot's private key (PEM).
    #[arg(long, env = "BOTWARD_KEY")]
    pub key: PathBuf,
    /// The CA that signed botward's server certificate (PEM).
    #[arg(long, env = "BOTWARD_CA")]
    pub ca: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the chain, MACs and checkpoint signatures, and against anchors
    /// kept off the host. Exit 0: intact and sealed; 1: tampered; 2: intact
    /// but the tail is unsealed.
    Verify {
        #[command(flatten)]
        keys: AuditKeyArgs,
        /// Records kept off the host (the syslog sink's copies, or lines of
        /// checkpoint records): the log must still hold each of them, as it
        /// is. Repeat for several files.
        #[arg(long = "anchor", value_name = "FILE")]
        anchors: Vec<PathBuf>,
        /// Log files, current and rotated, in any order; default: the
        /// config's log and its rotated files.
        files: Vec<PathBuf>,
    },
    /// Filter records.
    Query {
        /// A verified bot; never matches refused handshakes or
        /// unauthenticated requests
        #[arg(long)]
        bot: Option<String>,
        /// The name an unverified certificate claimed (refused handshakes
        /// and unauthenticated requests only)
        #[arg(long)]
        claimed_bot: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        /// allow, deny or error
        #[arg(long)]
        decision: Option<String>,
        /// Record kind, e.g. secret.read or auth.failure
        #[arg(long)]
        kind: Option<String>,
        /// RFC 3339 time or a date (UTC); inclusive
        #[arg(long, value_parser = crate::audit::query::parse_time)]
        since: Option<jiff::Timestamp>,
        /// RFC 3339 time or a date (UTC); exclusive
        #[arg(long, value_parser = crate::audit::query::parse_time)]
        until: Option<jiff::Timestamp>,
        /// table, jsonl, csv or ocsf
        #[arg(long, default_value = "table")]
        format: crate::audit::query::Format,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a self-contained HTML report for auditors.
    Report {
        #[arg(long)]
        html: PathBuf,
        #[command(flatten)]
        keys: AuditKeyArgs,
        files: Vec<PathBuf>,
    },
}

/// Where the auditor's keys are: paths only, never key material.
#[derive(Args, Debug, Clone)]
pub struct AuditKeyArgs {
    /// Take the log, the public key and (if still on this host) the seed
    /// from a botward config.
    #[arg(long, conflicts_with_all = ["public_key", "seed"])]
    pub config: Option<PathBuf>,
    /// The chain's first public key (hex), `<log>.pub`; the keys of later
    /// epochs are the ones the checkpoints name.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The chain seed (hex), `<log>.seed`, to check every record's MAC.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// The log starts at this seq because older files were retired on
    /// purpose; without it, a log must start at seq 0.
    #[arg(long)]
    pub from_seq: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a dev CA and a server certificate for localhost.
    Init {
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
    },
    /// Issue a bot certificate signed by the dev CA.
    Issue {
        #[arg(long)]
        bot: String,
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        #[arg(long, default_value = "corp.example")]
        trust_domain: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => runtime().block_on(serve(config)),
        Command::CheckConfig { file } => check_config(&file),
        Command::Get { name, field, conn } => {
            runtime().block_on(get(&name, field.as_deref(), conn))
        }
        Command::Exec { env, conn, command } => runtime().block_on(exec(env, conn, command)),
        Command::Certs { command } => certs(command),
        Command::Audit { command } => audit(command),
        Command::Analyze {
            train_days,
            tz,
            format,
            files,
        } => analyze(train_days, tz.as_deref(), &format, &files),
        Command::Dev { dir, port, keep } => runtime().block_on(dev(dir, port, keep)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(c) => {
            println!(
                "{}: ok ({} bots, {} secrets)",
                file.display(),
                c.bots.len(),
                c.secrets.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s) found", problems.0.len());
            ExitCode::from(EX_USAGE)
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
    crate::tls::install_provider();
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    // Before any secret is fetched.
    let hardening = crate::harden::apply(&config.hardening);
    let audit = match AuditLog::open(&config.audit) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!(
                "botward: cannot open audit log {}: {e}",
                config.audit.path.display()
            );
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let lease_key = {
        let rng = ring::rand::SystemRandom::new();
        match ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng) {
            Ok(k) => Arc::new(k),
            Err(_) => {
                eprintln!("botward: no system randomness");
                return ExitCode::FAILURE;
            }
        }
    };
    let listen = config.listen.clone();
    let lease_ledger = config.lease_ledger.clone();
    let anomaly = config.anomaly.clone();
    let grants: serde_json::Map<String, serde_json::Value> = config
        .bots
        .values()
        .map(|b| (b.name.clone(), serde_json::json!(b.secrets)))
        .collect();
    let runtime = match Runtime::build(config, None, lease_key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("botward: {}: {e}", config_path.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    let listeners = match Listeners::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("botward: cannot listen: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let (leases, orphans) = match crate::leases::Leases::open(Some(&lease_ledger)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("botward: lease ledger {}: {e}", lease_ledger.display());
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let scorer = anomaly
        .enabled
        .then(|| Arc::new(crate::anomaly::online::Scorer::open(&anomaly)));
    let shared = Shared::new(
        runtime,
        audit,
        Arc::new(leases),
        scorer.clone(),
        config_path,
    );
    if let Err(error) = shared.runtime().vault.ensure_login().await {
        warn!(%error, "Vault login failed at start; botward retries on each request");
    }
    // Leases a crash left behind are revoked before anything else.
    for h in &orphans {
        shared.revoke_held(h, "orphaned").await;
    }
    if !orphans.is_empty() {
        info!(
            count = orphans.len(),
            "Revoked leases orphaned by an earlier run"
        );
    }
    let where_ = listeners.describe();
    shared
        .audit_event(
            "server.start",
            Decision::Allow,
            None,
            Some(serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "listen": where_, "hardening": hardening, "grants": grants})),
        )
        .await;
    info!(listen = %where_, "botward ready");
    println!("botward ready {where_}");
    let _ = std::io::stdout().flush();
    ready(&where_);

    let reloader = tokio::spawn(reload_on_sighup(shared.clone()));
    let watcher = tokio::spawn(server::watch_files(shared.clone(), Duration::from_secs(2)));
    let reaper = tokio::spawn(server::reap_leases(shared.clone(), Duration::from_secs(1)));
    let saver = scorer.clone().map(|s| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                if let Err(e) = s.save() {
                    warn!(error = %e, "Cannot save anomaly baselines");
                }
            }
        })
    });
    server::run(shared.clone(), listeners, shutdown, Duration::from_secs(20)).await;
    reloader.abort();
    watcher.abort();
    reaper.abort();
    if let Some(s) = saver {
        s.abort();
    }
    if let Some(s) = &scorer {
        if let Err(e) = s.save() {
            warn!(error = %e, "Cannot save anomaly baselines");
        }
    }
    let left = shared.revoke_all("shutdown").await;
    if left > 0 {
        warn!(
            left,
            "Some leases could not be revoked; the next start retries them"
        );
    }
    // Revoking a token needs the token, so it goes after the leases.
    shared.runtime().vault.revoke_tokens().await;
    shared
        .audit_event("server.stop", Decision::Allow, None, None)
        .await;
    info!("botward stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn reload_on_sighup(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let _ = shared.reload("sighup").await;
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_shared: Arc<Shared>) {}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn get(name: &str, field: Option<&str>, conn: ConnArgs) -> ExitCode {
    let settings = ClientSettings {
        addr: conn.addr,
        cert: conn.cert,
        key: conn.key,
        ca: conn.ca,
    };
    let mut path = format!("/v1/secrets/{}", client::encode(name));
    if let Some(f) = field {
        path.push_str("?field=");
        path.push_str(&client::encode(f));
    }
    let answer = match client::call(&settings, "GET", &path).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    if answer.status != 200 {
        eprintln!("botward: {}", client::error_line(&answer));
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    let written = if field.is_some() {
        out.write_all(answer.body.expose_secret())
    } else {
        // Print only the data object, on one line.
        match serde_json::from_slice::<serde_json::Value>(answer.body.expose_secret()) {
            Ok(mut v) => {
                let data = v
                    .get_mut("data")
                    .map(serde_json::Value::take)
                    .unwrap_or_default();
                crate::secret::wipe_value(&mut v);
                let mut buf = crate::secret::WipedBuf::with_capacity(answer.body.len() + 1);
                let _ = serde_json::to_writer(buf.as_mut_vec(), &data);
                let mut data = data;
                crate::secret::wipe_value(&mut data);
                buf.extend_from_slice(b"\n");
                out.write_all(buf.expose_secret())
            }
            Err(_) => {
                eprintln!("botward: the response was not JSON");
                return ExitCode::FAILURE;
            }
        }
    };
    if let Err(e) = written.and_then(|_| out.flush()) {
        eprintln!("botward: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

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
    if !crate::config::is_valid_name(name) {
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

async fn exec(env: Vec<String>, conn: ConnArgs, command: Vec<String>) -> ExitCode {
    use crate::secret::{wipe_value, WipedBuf};
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
    let settings = ClientSettings {
        addr: conn.addr,
        cert: conn.cert,
        key: conn.key,
        ca: conn.ca,
    };
    let mut leases = Vec::new();
    // Each secret is read once, however many variables take fields of it:
    // the fields of one dynamic secret belong to one lease.
    let mut fetched: Vec<(String, serde_json::Value)> = Vec::new();
    for spec in &specs {
        if fetched.iter().any(|(n, _)| *n == spec.name) {
            continue;
        }
        let answer = match client::call(
            &settings,
            "GET",
            &format!("/v1/secrets/{}", client::encode(&spec.name)),
        )
        .await
        {
            Ok(a) if a.status == 200 => a,
            Ok(a) => {
                eprintln!("botward: {}: {}", spec.name, client::error_line(&a));
                release_leases(&settings, &leases).await;
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("botward: {e}");
                release_leases(&settings, &leases).await;
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        let v: serde_json::Value =
            serde_json::from_slice(answer.body.expose_secret()).unwrap_or_default();
        if let Some(id) = v.pointer("/lease/id").and_then(|i| i.as_str()) {
            leases.push(id.to_owned());
        }
        fetched.push((spec.name.clone(), v));
    }
    let mut values: Vec<(String, WipedBuf)> = Vec::new();
    for spec in &specs {
        let v = &fetched
            .iter()
            .find(|(n, _)| *n == spec.name)
            .expect("fetched above")
            .1;
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
            for (_, v) in &mut fetched {
                wipe_value(v);
            }
            release_leases(&settings, &leases).await;
            return ExitCode::FAILURE;
        }
        values.push((spec.var.clone(), out));
    }
    for (_, v) in &mut fetched {
        wipe_value(v);
    }
    drop(fetched);

    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    for (var, value) in &values {
        cmd.env(
            var,
            std::ffi::OsStr::from_bytes_compat(value.expose_secret()),
        );
    }
    let spawned = cmd.spawn();
    // The values now live only in the child's environment.
    drop(cmd);
    drop(values);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("botward: cannot run {}: {e}", command[0]);
            release_leases(&settings, &leases).await;
            return ExitCode::from(127);
        }
    };
    let status = wait_forwarding_signals(&mut child).await;
    let released = release_leases(&settings, &leases).await;
    let code = match status {
        Ok(st) => exit_code_of(st),
        Err(e) => {
            eprintln!("botward: waiting for the command failed: {e}");
            1
        }
    };
    if !released && code == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::from(code)
}

#[cfg(unix)]
trait OsStrCompat {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}

#[cfg(unix)]
impl OsStrCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}

/// Waits for the child, passing on the signals a supervisor sends.
#[cfg(unix)]
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
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

#[cfg(unix)]
fn exit_code_of(st: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        _ => 1,
    }
}

fn certs(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Init { dir } => (|| {
            std::fs::create_dir_all(&dir)
                .map_err(|e| crate::certs::CertError(format!("{}: {e}", dir.display())))?;
            let ca = crate::certs::Ca::generate("botward dev CA")?;
            ca.write(&dir)?;
            ca.issue_server(&["localhost", "127.0.0.1", "::1"])?
                .write(&dir, "server")?;
            println!(
                "wrote {0}/ca.pem, {0}/ca-key.pem, {0}/server.pem, {0}/server-key.pem",
                dir.display()
            );
            Ok(())
        })(),
        CertsCommand::Issue {
            bot,
            dir,
            trust_domain,
            days,
        } => (|| {
            if !crate::config::is_valid_name(&bot) {
                return Err(crate::certs::CertError(format!(
                    "{bot:?} is not a valid bot name"
                )));
            }
            let ca = crate::certs::Ca::load(&dir.join("ca.pem"), &dir.join("ca-key.pem"))?;
            let validity = crate::certs::Validity {
                starts_days_ago: 1,
                ends_in_days: days,
            };
            let (c, k) = ca
                .issue_bot(&trust_domain, &bot, validity)?
                .write(&dir, &bot)?;
            println!(
                "wrote {} and {} for spiffe://{trust_domain}/bot/{bot}",
                c.display(),
                k.display()
            );
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botward: {e}");
            ExitCode::FAILURE
        }
    }
}

fn analyze(train_days: u32, tz: Option<&str>, format: &str, files: &[PathBuf]) -> ExitCode {
    use std::io::BufRead;
    let tz = match tz {
        None => jiff::tz::TimeZone::system(),
        Some(name) => match jiff::tz::TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) => {
                eprintln!("botward: unknown time zone {name:?}");
                return ExitCode::from(EX_USAGE);
            }
        },
    };
    if !matches!(format, "text" | "json" | "html") {
        eprintln!("botward: --format is text, json or html");
        return ExitCode::from(EX_USAGE);
    }
    let files = match crate::audit::verify::order_files(files) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let train = jiff::SignedDuration::from_hours(24 * i64::from(train_days));
    let mut analyzer = crate::anomaly::Analyzer::new(crate::anomaly::Options { train, tz });
    let mut line = Vec::with_capacity(4096);
    for f in &files {
        let file = match std::fs::File::open(f) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("botward: {}: {e}", f.display());
                return ExitCode::from(EX_USAGE);
            }
        };
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => analyzer.line(&line),
                Err(e) => {
                    eprintln!("botward: {}: {e}", f.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let analysis = analyzer.finish();
    for w in &analysis.warnings {
        eprintln!("botward: warning: {w}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match format {
        "json" => serde_json::to_string_pretty(&analysis.findings)
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{}", crate::text::escape_json(&j))),
        "html" => crate::anomaly::html::html(&analysis, &mut out),
        _ => out.write_all(crate::anomaly::text(&analysis).as_bytes()),
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botward: {e}");
            ExitCode::FAILURE
        }
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            keys,
            anchors,
            files,
        } => audit_verify(&keys, &anchors, files),
        AuditCommand::Query {
            bot,
            claimed_bot,
            secret,
            decision,
            kind,
            since,
            until,
            format,
            files,
        } => {
            let filter = crate::audit::query::Filter {
                bot,
                claimed_bot,
                secret,
                decision,
                kind,
                since,
                until,
            };
            let records = match crate::audit::read_records(&files) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("botward: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match crate::audit::query::write(records, &filter, format, &mut out)
                .and_then(|n| out.flush().map(|_| n))
            {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("botward: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::Report { html, keys, files } => audit_report(&html, &keys, files),
    }
}

fn audit_report(out: &Path, args: &AuditKeyArgs, files: Vec<PathBuf>) -> ExitCode {
    use crate::audit::report::{self, ChainStatus};
    use crate::audit::verify::{self, Outcome};
    let (files, keys) = match audit_inputs(args, files) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let chain = if keys.public_key.is_none() && keys.seed.is_none() {
        ChainStatus {
            verdict: "not verified".into(),
            detail: "no public key or seed was given; run with --public-key or --config".into(),
            ok: false,
        }
    } else {
        match verify::verify(&files, &keys) {
            Err(e) => ChainStatus { verdict: "not verified".into(), detail: e.to_string(), ok: false },
            Ok(r) => match r.outcome {
                Outcome::Sealed => ChainStatus {
                    verdict: "intact and sealed".into(),
                    detail: format!("{} records, {} checkpoints, in {} file(s)", r.records, r.checkpoints, r.files),
                    ok: true,
                },
                Outcome::Unsealed { after_checkpoint, unsealed } => ChainStatus {
                    verdict: "intact, tail unsealed".into(),
                    detail: format!(
                        "{} records verified; {unsealed} after {} are not yet sealed (a live log, a crash or a truncation)",
                        r.records,
                        after_checkpoint.map_or("the start".to_string(), |c| format!("the checkpoint at seq {c}"))
                    ),
                    ok: true,
                },
                Outcome::Tampered { file, line, seq, damage, detail } => ChainStatus {
                    verdict: format!("TAMPERED ({damage})"),
                    detail: format!("{}:{line} seq {}: {detail}", file.display(), seq.map_or("?".into(), |s| s.to_string())),
                    ok: false,
                },
            },
        }
    };
    let records = match crate::audit::read_records(&files) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("botward: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let written = std::fs::File::create(out).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        report::html(&records, &chain, &mut w)?;
        w.flush()
    });
    match written {
        Ok(()) => {
            println!(
                "wrote {} ({} records; chain: {})",
                out.display(),
                records.len(),
                chain.verdict
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("botward: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// Files and keys for the audit tools, from `--config` or the flags.
fn audit_inputs(
    args: &AuditKeyArgs,
    mut files: Vec<PathBuf>,
) -> Result<(Vec<PathBuf>, crate::audit::verify::Keys), String> {
    use crate::audit::chain;
    let mut keys = crate::audit::verify::Keys::default();
    let read_hex = |p: &Path| -> Result<Vec<u8>, String> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        );
        chain::unhex(&text).ok_or_else(|| format!("{}: not hex", p.display()))
    };
    if let Some(cfg) = &args.config {
        let config = Config::load(cfg).map_err(|p| p.to_string())?;
        let kf = crate::audit::writer_key_files(&config.audit);
        if kf.public.exists() {
            keys.public_key = Some(read_hex(&kf.public)?);
        }
        // The last record botward saved with its key state: the log must
        // reach at least that far.
        if let Ok(text) = std::fs::read_to_string(&kf.state) {
            let text = zeroize::Zeroizing::new(text);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let (Some(seq), Some(hash)) = (
                    v.get("seq").and_then(|s| s.as_u64()),
                    v.get("hash").and_then(|h| h.as_str()),
                ) {
                    keys.anchor = Some((seq, hash.to_owned()));
                }
            }
        }
        if kf.seed.exists() {
            let raw = zeroize::Zeroizing::new(read_hex(&kf.seed)?);
            keys.seed = Some(zeroize::Zeroizing::new(
                raw.as_slice()
                    .try_into()
                    .map_err(|_| "seed is not 32 bytes".to_string())?,
            ));
        }
        if files.is_empty() {
            files = crate::audit::log_files(&config.audit.path);
        }
    }
    if let Some(p) = &args.public_key {
        keys.public_key = Some(read_hex(p)?);
    }
    if let Some(p) = &args.seed {
        let raw = zeroize::Zeroizing::new(read_hex(p)?);
        keys.seed =
            Some(zeroize::Zeroizing::new(raw.as_slice().try_into().map_err(
                |_| format!("{}: the seed is not 32 bytes", p.display()),
            )?));
    }
    keys.from_seq = args.from_seq;
    if files.is_empty() {
        return Err("no audit files given".into());
    }
    Ok((files, keys))
}

fn audit_verify(args: &AuditKeyArgs, anchors: &[PathBuf], files: Vec<PathBuf>) -> ExitCode {
    use crate::audit::verify::{self, printable, Outcome};
    let (files, mut keys) = match audit_inputs(args, files) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("botward: {}", printable(&e));
            return ExitCode::from(EX_USAGE);
        }
    };
    if keys.public_key.is_none() && keys.seed.is_none() {
        eprintln!("botward: give --public-key, --seed or --config: without a key the chain proves nothing");
        return ExitCode::from(EX_USAGE);
    }
    keys.anchors = match verify::Anchors::read(anchors) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("botward: {}", printable(&e));
            return ExitCode::from(EX_USAGE);
        }
    };
    let started = std::time::Instant::now();
    let report = match verify::verify(&files, &keys) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("botward: {}", printable(&e.to_string()));
            return ExitCode::from(EX_USAGE);
        }
    };
    let checked = match (report.macs_checked, report.signatures_checked) {
        (true, true) => "hashes, MACs and signatures",
        (true, false) => "hashes and MACs",
        (false, _) => "hashes and signatures",
    };
    let range = match (report.first_seq, report.last_seq) {
        (Some(a), Some(b)) => format!("seq {a}..={b}"),
        _ => "no records".into(),
    };
    let summary = format!(
        "{} records in {} file(s), {range}, {} checkpoints; checked {checked} in {:.2}s",
        report.records,
        report.files,
        report.checkpoints,
        started.elapsed().as_secs_f64()
    );
    let (verdict, code) = match &report.outcome {
        Outcome::Sealed => (format!("intact and sealed: {summary}"), ExitCode::SUCCESS),
        Outcome::Unsealed {
            after_checkpoint,
            unsealed,
        } => {
            let since = after_checkpoint.map_or("the start".to_string(), |c| {
                format!("the checkpoint at seq {c}")
            });
            let what = match (unsealed, after_checkpoint) {
                (0, Some(c)) => {
                    format!("the last record is the checkpoint at seq {c}, not a final seal")
                }
                _ => format!("{unsealed} record(s) after {since} are not sealed"),
            };
            (
                format!("intact, but {what} (a live log, a crash or a truncation): {summary}"),
                ExitCode::from(2),
            )
        }
        Outcome::Tampered {
            file,
            line,
            seq,
            damage,
            detail,
        } => {
            let seq = seq.map_or("?".into(), |s| s.to_string());
            println!(
                "{}",
                printable(&format!(
                    "TAMPERED: {}:{line} seq {seq}: {damage}: {detail}",
                    file.display()
                ))
            );
            return ExitCode::FAILURE;
        }
    };
    println!("{}", printable(&verdict));
    for line in report.coverage() {
        println!("  {}", printable(&line));
    }
    code
}

async fn dev(dir: PathBuf, port: u16, keep: bool) -> ExitCode {
    crate::tls::install_provider();
    let dir = match std::path::absolute(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("botward dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bao = match crate::dev::find_bao() {
        Some(b) => b,
        None => match crate::dev::install_bao() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("botward dev: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        },
    };
    let bao_dir = dir.join("openbao");
    let server = match crate::dev::DevBao::start(&bao, &bao_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("botward dev: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let files = match crate::dev::write_demo(&server, &dir, &format!("127.0.0.1:{port}")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("botward dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "botward".into());
    let (bot, cert, key) = &files.bots[0];
    let print_help = move |_: &str| {
        let ca = files.ca.display();
        let (cert, key) = (cert.display(), key.display());
        println!();
        println!(
            "OpenBao dev server: {} (log: {})",
            server_addr_hint(&bao_dir),
            bao_dir.join("bao.log").display()
        );
        println!(
            "Config: {}   Audit log: {}",
            files.config.display(),
            files.dir.join("audit.jsonl").display()
        );
        println!();
        println!("As {bot}, paste any of these in another terminal:");
        println!("  curl --cert {cert} --key {key} --cacert {ca} https://127.0.0.1:{port}/v1/secrets/erp-db");
        println!("  curl --cert {cert} --key {key} --cacert {ca} 'https://127.0.0.1:{port}/v1/secrets/erp-db?field=password'");
        println!(
            "  curl --cert {cert} --key {key} --cacert {ca} https://127.0.0.1:{port}/v1/whoami"
        );
        println!("  curl --cert {cert} --key {key} --cacert {ca} https://127.0.0.1:{port}/v1/secrets/sftp   # not granted: 403");
        println!("  BOTWARD_ADDR=https://127.0.0.1:{port} BOTWARD_CERT={cert} BOTWARD_KEY={key} BOTWARD_CA={ca} {exe} get erp-db --field password");
        println!("  BOTWARD_ADDR=unix://{} BOTWARD_CERT={cert} BOTWARD_KEY={key} BOTWARD_CA={ca} {exe} get erp-db", files.dir.join("botward.sock").display());
        println!();
        println!("Press Ctrl-C to stop and clean up.");
    };
    let code = serve_until(files_config_path(&dir), shutdown_signal(), print_help).await;
    drop(server);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

fn files_config_path(dir: &Path) -> PathBuf {
    dir.join("botward.toml")
}

fn server_addr_hint(bao_dir: &Path) -> String {
    bao_dir.display().to_string()
}
