//! Shared harness for integration tests: a real OpenBao dev server, a test
//! PKI made with `botward::certs`, and the real `botward` binary.
//!
//! Under CI (`CI=true`) a missing OpenBao is a failure; elsewhere the test
//! skips itself with a note.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use botward::certs::{Ca, Validity};
use botward::client::{Answer, ClientSettings};
use botward::dev::DevBao;
use serde_json::Value;

pub const TRUST_DOMAIN: &str = "corp.example";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Finds `bao`, or decides to skip (outside CI) or fail (under CI).
pub fn bao_or_skip(test: &str) -> Option<PathBuf> {
    match botward::dev::find_bao() {
        Some(b) => Some(b),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: OpenBao (`bao`) is required under CI; run scripts/install-deps.sh")
        }
        None => {
            eprintln!(
                "SKIP {test}: no `bao` found (set BOTWARD_BAO or run scripts/install-deps.sh)"
            );
            None
        }
    }
}

pub fn python() -> PathBuf {
    std::env::var_os("BOTWARD_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(repo().join(".tools/venv/bin/python")).filter(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How botward logs in to the test Vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    AppRole,
    RootToken,
}

/// One test's world: OpenBao, PKI, seeded secrets.
pub struct Harness {
    pub dir: PathBuf,
    pub bao: DevBao,
    pub ca: Ca,
    pub tls: PathBuf,
    pub role_id: PathBuf,
    pub secret_id: PathBuf,
    pub token_file: PathBuf,
    /// The seeded value of erp-db's password.
    pub erp_password: String,
    pub sftp_password: String,
}

pub struct BotCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: Vec<u8>,
}

pub fn random_hex(n: usize) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).unwrap();
    botward::identity::hex(&b)
}

impl Harness {
    pub fn new(test: &str) -> Option<Harness> {
        let bao = bao_or_skip(test)?;
        botward::tls::install_provider();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("botward-it-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let ca = Ca::generate("botward test CA").unwrap();
        ca.write(&tls).unwrap();
        ca.issue_server(&["localhost", "127.0.0.1", "::1"])
            .unwrap()
            .write(&tls, "server")
            .unwrap();
        let bao = DevBao::start(&bao, &dir.join("openbao")).expect("start bao dev server");
        let erp_password = format!("erp-pw-{}", random_hex(12));
        let sftp_password = format!("sftp-pw-{}", random_hex(12));
        bao.kv_put(
            "rpa/erp-db",
            &[("username", "erp_invoice"), ("password", &erp_password)],
        )
        .unwrap();
        bao.kv_put(
            "rpa/sftp",
            &[("username", "reports"), ("password", &sftp_password)],
        )
        .unwrap();
        let (role_id, secret_id) = bao
            .setup_approle(&dir, &["secret/data/rpa/*"], "1h")
            .unwrap();
        let token_file = dir.join("token");
        botward::certs::write_file(&token_file, bao.root_token(), 0o600).unwrap();
        let h = Harness {
            dir,
            bao,
            ca,
            tls,
            role_id,
            secret_id,
            token_file,
            erp_password,
            sftp_password,
        };
        for bot in ["invoice-bot", "report-bot"] {
            h.issue_bot(bot, Validity::default());
        }
        Some(h)
    }

    /// Issues `<tls>/<name>.pem` for `spiffe://corp.example/bot/<name>`.
    pub fn issue_bot(&self, name: &str, validity: Validity) -> BotCert {
        let issued = self.ca.issue_bot(TRUST_DOMAIN, name, validity).unwrap();
        let (cert, key) = issued.write(&self.tls, name).unwrap();
        BotCert {
            cert,
            key,
            serial: issued.serial.clone(),
        }
    }

    pub fn bot(&self, name: &str) -> BotCert {
        BotCert {
            cert: self.tls.join(format!("{name}.pem")),
            key: self.tls.join(format!("{name}-key.pem")),
            serial: vec![],
        }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.tls.join("ca.pem")
    }

    /// A config with the two standard bots, plus `extra` TOML appended.
    pub fn config(&self, auth: Auth, audit: &Path, extra: &str) -> String {
        let auth = match auth {
            Auth::AppRole => format!(
                "method = \"approle\"\nrole_id_file = \"{}\"\nsecret_id_file = \"{}\"",
                self.role_id.display(),
                self.secret_id.display()
            ),
            Auth::RootToken => format!(
                "method = \"token\"\ntoken_file = \"{}\"",
                self.token_file.display()
            ),
        };
        format!(
            r#"[listen]
tcp = "127.0.0.1:0"
unix = "{dir}/botward.sock"
unix_mode = "0666"

[tls]
cert = "{tls}/server.pem"
key = "{tls}/server-key.pem"
client_ca = "{tls}/ca.pem"
trust_domain = "{td}"

[vault]
addresses = ["{addr}"]
timeout_ms = 2000

[vault.auth]
{auth}

[audit]
path = "{audit}"

[[secret]]
name = "erp-db"
kind = "kv"
mount = "secret"
path = "rpa/erp-db"

[[secret]]
name = "sftp"
kind = "kv"
mount = "secret"
path = "rpa/sftp"

[[bot]]
name = "invoice-bot"
owner = "alice@corp.example"
team = "finance-ops"
purpose = "posts supplier invoices"
secrets = ["erp-db"]

[[bot]]
name = "report-bot"
owner = "bob@corp.example"
team = "controlling"
secrets = ["sftp"]
{extra}
"#,
            dir = self.dir.display(),
            tls = self.tls.display(),
            td = TRUST_DOMAIN,
            addr = self.bao.addr,
            audit = audit.display(),
        )
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

impl Drop for Harness {
    /// Every audit record the test wrote must match the published schema.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
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
        let log = dir.join(format!(
            "botward-{}.log",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
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

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.tcp)
    }

    pub fn settings(&self, h: &Harness, bot: &BotCert) -> ClientSettings {
        ClientSettings {
            addr: format!("https://{}", self.tcp),
            cert: bot.cert.clone(),
            key: bot.key.clone(),
            ca: h.ca_pem(),
        }
    }

    /// One request with botward's own client, as `bot`.
    pub fn call(&self, h: &Harness, bot: &BotCert, method: &str, path: &str) -> Answer {
        let s = self.settings(h, bot);
        rt().block_on(botward::client::call(&s, method, path))
            .expect("request")
    }

    pub fn get_json(&self, h: &Harness, bot: &BotCert, path: &str) -> (u16, Value) {
        let a = self.call(h, bot, "GET", path);
        let v = serde_json::from_slice(a.body.expose_secret()).unwrap_or(Value::Null);
        (a.status, v)
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

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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

/// Runs curl as a bot would and returns (HTTP status, body). Status 0 means
/// the TLS handshake failed.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

pub fn curl_as(h: &Harness, bot: &BotCert, url: &str, extra: &[&str]) -> (u16, String) {
    let (c, k, ca) = (
        bot.cert.display().to_string(),
        bot.key.display().to_string(),
        h.ca_pem().display().to_string(),
    );
    let mut args = vec![
        "--cert",
        c.as_str(),
        "--key",
        k.as_str(),
        "--cacert",
        ca.as_str(),
    ];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

/// A PostgreSQL server from Debian's packages, in a temp dir on a loopback
/// port, with password authentication. Stopped when dropped.
pub struct Postgres {
    child: Child,
    pub port: u16,
    pub password: String,
    pub dir: PathBuf,
}

fn pg_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOTWARD_PG_BIN")
        .map(PathBuf::from)
        .filter(|p| p.join("initdb").exists())
    {
        return Some(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

impl Postgres {
    pub fn start(test: &str) -> Option<Postgres> {
        let Some(bin) = pg_bin() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: PostgreSQL is required under CI; run scripts/install-deps.sh");
            }
            eprintln!("SKIP {test}: no PostgreSQL server binaries");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "botward-pg-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let password = format!("pg-{}", random_hex(12));
        std::fs::write(dir.join("pw"), &password).unwrap();
        // PostgreSQL refuses to run as root: run it as the postgres user.
        let as_root = unsafe { libc::geteuid() } == 0;
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a postgres user (Debian's postgresql package creates it)")
        };
        let ids = as_root.then(|| (id("-u"), id("-g")));
        let run_as = |cmd: &Path| {
            let mut c = Command::new(cmd);
            if let Some((uid, gid)) = ids {
                use std::os::unix::process::CommandExt;
                c.uid(uid).gid(gid);
            }
            c
        };
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres failed");
        }
        let out = run_as(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "scram-sha-256", "-U", "postgres", "--no-sync"])
            .arg(format!("--pwfile={}", dir.join("pw").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = botward::dev::free_port();
        let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
        let child = run_as(&bin.join("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pg = Postgres {
            child,
            port,
            password,
            dir,
        };
        let start = Instant::now();
        while !pg.psql("postgres", &pg.password, "select 1").0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "postgres did not start: {}",
                std::fs::read_to_string(pg.dir.join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(pg)
    }

    /// Runs one statement as `user`; returns (success, output).
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> (bool, String) {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tA",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    /// Mounts OpenBao's database engine on `pg` with role `erp-readonly`,
    /// and lets botward's AppRole read its credentials.
    pub fn enable_database(&self, pg: &Postgres, default_ttl: &str) {
        self.bao
            .cli(&["secrets", "enable", "database"], None)
            .unwrap();
        self.bao
            .cli(
                &[
                    "write",
                    "database/config/erp",
                    "plugin_name=postgresql-database-plugin",
                    &format!("connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port),
                    "allowed_roles=erp-readonly",
                    "username=postgres",
                    &format!("password={}", pg.password),
                    "verify_connection=true",
                ],
                None,
            )
            .unwrap();
        self.bao
            .cli(
                &[
                    "write",
                    "database/roles/erp-readonly",
                    "db_name=erp",
                    "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT pg_read_all_data TO \"{{name}}\";",
                    &format!("default_ttl={default_ttl}"),
                    "max_ttl=24h",
                ],
                None,
            )
            .unwrap();
        let policy = "path \"secret/data/rpa/*\" { capabilities = [\"read\"] }\n\
                      path \"database/creds/*\" { capabilities = [\"read\"] }\n\
                      path \"sys/leases/revoke\" { capabilities = [\"update\"] }\n\
                      path \"sys/leases/renew\" { capabilities = [\"update\"] }\n";
        self.bao
            .cli(&["policy", "write", "botward", "-"], Some(policy))
            .unwrap();
    }

    /// Leases OpenBao still holds for the database role.
    pub fn db_leases(&self) -> usize {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                "LIST",
                "-H",
                &format!("X-Vault-Token: {}", self.bao.root_token()),
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!(
                "{}/v1/sys/leases/lookup/database/creds/erp-readonly/",
                self.bao.addr
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        match code.trim() {
            // Vault answers 404 to a list with nothing in it.
            "404" => 0,
            "200" => serde_json::from_str::<serde_json::Value>(body).unwrap()["data"]["keys"]
                .as_array()
                .map_or(0, Vec::len),
            other => panic!("listing leases failed: {other} {body}"),
        }
    }
}
