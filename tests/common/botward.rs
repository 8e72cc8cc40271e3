//! The `botward` binary: its config (from [`ConfigTemplate`], the template
//! `botward dev` writes its config with), starting and stopping
//! `botward serve`, and its audit file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ::botward::dev::{BotEntry, ConfigTemplate, SecretEntry, VaultLogin};
use serde_json::Value;

use super::{python, repo, unique, Harness, TRUST_DOMAIN};

/// How botward logs in to the test Vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    AppRole,
    RootToken,
}

/// The two standard bots: `invoice-bot` reads `erp-db`, `report-bot` reads
/// `sftp`.
pub fn standard_bots() -> Vec<BotEntry> {
    vec![
        BotEntry::new(
            "invoice-bot",
            "alice@corp.example",
            "finance-ops",
            &["erp-db"],
        )
        .purpose("posts supplier invoices"),
        BotEntry::new("report-bot", "bob@corp.example", "controlling", &["sftp"]),
    ]
}

impl Harness {
    /// The standard config as a template: TCP on a free port and a Unix
    /// socket in the test folder, the seeded secrets `erp-db` and `sftp`,
    /// and [`standard_bots`]; no extra TOML yet.
    pub fn template(&self, auth: Auth, audit: &Path) -> ConfigTemplate {
        let login = match auth {
            Auth::AppRole => VaultLogin::AppRole {
                role_id_file: self.role_id.clone(),
                secret_id_file: self.secret_id.clone(),
            },
            Auth::RootToken => VaultLogin::Token {
                token_file: self.token_file.clone(),
            },
        };
        ConfigTemplate::new(&self.tls, &self.bao.addr, login, audit)
            .unix(&self.dir.join("botward.sock"))
            .trust_domain(TRUST_DOMAIN)
            .vault_timeout_ms(2000)
            .secrets(vec![
                SecretEntry::kv("erp-db", "rpa/erp-db"),
                SecretEntry::kv("sftp", "rpa/sftp"),
            ])
            .bots(standard_bots())
            .extra("")
    }

    /// A config with the two standard bots, plus `extra` TOML appended.
    pub fn config(&self, auth: Auth, audit: &Path, extra: &str) -> String {
        self.template(auth, audit).extra(extra).render()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// Starts botward with `config` and waits until it listens.
    pub fn start(&self, config: &str) -> Botward {
        self.start_with_env(config, &[])
    }

    pub fn start_with_env(&self, config: &str, env: &[(&str, &str)]) -> Botward {
        let config_path = self.dir.join("botward.toml");
        std::fs::write(&config_path, config).unwrap();
        Botward::spawn(&config_path, &self.dir, env)
    }

    /// Starts botward with its descriptor limit (soft and hard) at `nofile`.
    pub fn start_with_nofile(&self, config: &str, nofile: u64) -> Botward {
        let config_path = self.dir.join("botward.toml");
        std::fs::write(&config_path, config).unwrap();
        Botward::spawn_with(&config_path, &self.dir, &[], Some(nofile))
    }
}

/// A running `botward serve`.
pub struct Botward {
    child: Child,
    pub tcp: String,
    pub unix: Option<PathBuf>,
    pub config_path: PathBuf,
    pub log: PathBuf,
}

impl Botward {
    pub fn spawn(config_path: &Path, dir: &Path, env: &[(&str, &str)]) -> Botward {
        Botward::spawn_with(config_path, dir, env, None)
    }

    pub fn spawn_with(
        config_path: &Path,
        dir: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Botward {
        let log = dir.join(format!("botward-{}.log", unique()));
        let mut cmd = Command::new(botward_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(config_path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory
            // of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn botward");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "botward did not become ready; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let mut tcp = String::new();
        let mut unix = None;
        for part in line.trim_start_matches("botward ready").split_whitespace() {
            if let Some(a) = part.strip_prefix("tcp=") {
                tcp = a.to_owned();
            }
            if let Some(p) = part.strip_prefix("unix=") {
                unix = Some(PathBuf::from(p));
            }
        }
        Botward {
            child,
            tcp,
            unix,
            config_path: config_path.to_owned(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Botward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The botward binary under test: this build's, or `BOTWARD_BIN`, so that
/// a regression test can be run against an older build to show it fails
/// there.
pub fn botward_bin() -> PathBuf {
    std::env::var_os("BOTWARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_botward")))
}

/// All records of an audit file.
pub fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// Waits until an audit record matches `pred`, and returns it.
pub fn wait_for_record(path: &Path, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(r) = audit_records(path).into_iter().find(|r| pred(r)) {
            return r;
        }
        if start.elapsed() > limit {
            panic!(
                "no matching audit record in {}:\n{}",
                path.display(),
                std::fs::read_to_string(path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks every `audit.jsonl*` record file in `dir` (not its keys or
/// signatures) against proto/audit-event.schema.json.
pub(crate) fn check_audit_schema(dir: &Path) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("audit.jsonl"))
                && !p.to_string_lossy().ends_with(".pub")
                && !p.to_string_lossy().ends_with(".seed")
                && !p.to_string_lossy().ends_with(".key")
                && !p.to_string_lossy().ends_with(".sign")
        })
        .collect();
    if files.is_empty() {
        return;
    }
    let out = Command::new(python())
        .arg(repo().join("tests/clients/openapi_check.py"))
        .arg("--audit")
        .args(&files)
        .output()
        .expect("run the audit schema check");
    assert!(
        out.status.success(),
        "audit records do not match proto/audit-event.schema.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
