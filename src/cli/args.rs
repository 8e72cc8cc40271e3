//! The command line's arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
        /// The config the logs were written under: which secrets are
        /// privileged, for `unused_grant` and `privilege_creep`.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Install and control botward as a Windows service (on Linux systemd
    /// runs it: packaging/botward.service).
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Elevation requests, for approvers: list them, and sign approvals,
    /// denials and revocations.
    Elevation {
        #[command(subcommand)]
        command: ElevationCommand,
    },
    /// Bot identities, for the operator on the host.
    Bot {
        #[command(subcommand)]
        command: BotCommand,
    },
    /// Enroll this account as a bot: a key made in DIR (it never leaves
    /// it), a certificate from Vault PKI through botward's unix socket.
    Enroll {
        /// The one-time token from `botward bot enroll-token` (better from
        /// the environment or --token-file: a command line is visible to
        /// every local user).
        #[arg(long, env = "BOTWARD_ENROLL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A file holding the token (first line), or `-` for stdin.
        #[arg(long, conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// Renew the identity in DIR instead, as `botward renew` does.
        #[arg(long)]
        renew: bool,
        /// The identity folder: bot.pem (key and certificate, mode 0600).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        to: LocalArgs,
    },
    /// Renew the certificate in DIR with a new key, using the current one.
    Renew {
        #[arg(long, env = "BOTWARD_IDENTITY_DIR")]
        dir: PathBuf,
        #[command(flatten)]
        to: LocalArgs,
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

/// `botward service ...`: the Windows service `botward`.
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Register the service (auto start, LocalSystem unless --account) and
    /// its Event Log source; the config must pass `check-config`.
    Install {
        #[arg(long, short)]
        config: PathBuf,
        /// The account to run as, e.g. `NT AUTHORITY\LocalService` or
        /// `.\botward`; default LocalSystem.
        #[arg(long)]
        account: Option<String>,
        /// A file holding the account's password (first line).
        #[arg(long, requires = "account")]
        password_file: Option<PathBuf>,
    },
    /// Stop the service if it runs, delete it and its Event Log source.
    Uninstall,
    /// Start the service and wait until it serves.
    Start,
    /// Stop the service and wait until it has drained and stopped.
    Stop,
    /// Make the running service reload its config (control code 128).
    Reload,
    /// What the service control manager starts; not for a console.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
}

impl Cli {
    /// Whether this is `botward service run`, the process the service
    /// control manager starts.
    pub fn runs_as_service(&self) -> bool {
        matches!(
            self.command,
            Command::Service {
                command: ServiceCommand::Run { .. }
            }
        )
    }
}

/// `botward bot ...`.
#[derive(Subcommand, Debug)]
pub enum BotCommand {
    /// Print a one-time enrollment token for BOT (root or botward's own
    /// account only; audited).
    EnrollToken {
        bot: String,
        #[command(flatten)]
        to: LocalArgs,
    },
}

/// Where botward listens, and the CA of its server certificate.
#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    /// unix:///path/to/botward.sock (enrollment), or any address (renewal)
    #[arg(
        long,
        env = "BOTWARD_ADDR",
        default_value = "unix:///run/botward/botward.sock"
    )]
    pub addr: String,
    /// The CA that signed botward's server certificate (PEM).
    #[arg(long, env = "BOTWARD_CA")]
    pub ca: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// https://127.0.0.1:8443 or unix:///path/to/botward.sock
    #[arg(long, env = "BOTWARD_ADDR", default_value = "https://127.0.0.1:8443")]
    pub addr: String,
    /// An identity folder from `botward enroll`: its bot.pem is both
    /// certificate and key, renewed when a third of its life is left.
    #[arg(long, env = "BOTWARD_IDENTITY_DIR", conflicts_with_all = ["cert", "key"])]
    pub dir: Option<PathBuf>,
    /// The bot's client certificate (PEM).
    #[arg(long, env = "BOTWARD_CERT", required_unless_present = "dir")]
    pub cert: Option<PathBuf>,
    /// The bot's private key (PEM).
    #[arg(long, env = "BOTWARD_KEY", required_unless_present = "dir")]
    pub key: Option<PathBuf>,
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
    /// Issue a bot certificate signed by the dev CA
    ///
    /// Writes DIR/BOT.pem and DIR/BOT-key.pem (the key with mode 0600).
    /// With --pfx, also DIR/BOT.pfx (mode 0600): PKCS#12 with the bot's key,
    /// its certificate and the CA certificate, encrypted with PBES2
    /// (PBKDF2-HMAC-SHA256, AES-256-CBC) and MACed with HMAC-SHA256, for the
    /// Windows certificate store (Windows 10 1709 / Server 2019 or later) or
    /// OpenSSL 3. On the bot host, as the bot user (PowerShell):
    ///
    ///   $pw = Get-Content BOT.pfx.password -TotalCount 1 |
    ///     ConvertTo-SecureString -AsPlainText -Force
    ///   Import-PfxCertificate -FilePath BOT.pfx -Password $pw `
    ///     -CertStoreLocation Cert:\CurrentUser\My
    ///
    /// Without -Exportable, Windows marks the key non-exportable.
    #[command(verbatim_doc_comment)]
    Issue {
        #[arg(long)]
        bot: String,
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        #[arg(long, default_value = "corp.example")]
        trust_domain: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Also write DIR/BOT.pfx (PKCS#12) for the Windows certificate store.
        #[arg(long)]
        pfx: bool,
        /// The .pfx password: the first line of FILE, printable ASCII. Without
        /// it a random 24-character password goes to DIR/BOT.pfx.password
        /// (mode 0600); it is never printed.
        #[arg(long, value_name = "FILE", requires = "pfx")]
        pfx_password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ElevationCommand {
    /// List the requests in the Vault mailbox.
    List {
        #[command(flatten)]
        mailbox: MailboxArgs,
        /// Only requests still waiting for a decision.
        #[arg(long)]
        pending: bool,
        /// text or json
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Sign an approval: the window starts now and lasts the requested
    /// duration, or `--duration` if shorter.
    Approve {
        id: String,
        #[command(flatten)]
        signer: SignerArgs,
        /// A window shorter than the one requested, e.g. "10m".
        #[arg(long)]
        duration: Option<String>,
    },
    /// Sign a denial of a pending request.
    Deny {
        id: String,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Sign a revocation: a pending request is cancelled, an open window
    /// closes at once.
    Revoke {
        id: String,
        #[command(flatten)]
        signer: SignerArgs,
    },
}

/// Where the elevation mailbox is. The token comes from `VAULT_TOKEN`,
/// `BAO_TOKEN` or `~/.vault-token`, as with the bao CLI.
#[derive(Args, Debug, Clone)]
pub struct MailboxArgs {
    /// Vault address (default: `VAULT_ADDR` or `BAO_ADDR`).
    #[arg(long)]
    pub vault_addr: Option<String>,
    /// CA certificate for an https address (default: `VAULT_CACERT` or
    /// `BAO_CACERT`).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The mailbox's KV v2 mount, as in `[elevation] mailbox`.
    #[arg(long, default_value = "secret")]
    pub mount: String,
    /// The mailbox's path under the mount.
    #[arg(long, default_value = "botward/elevations")]
    pub prefix: String,
}

/// Who signs a decision, and where it goes.
#[derive(Args, Debug)]
pub struct SignerArgs {
    /// The approver's certificate, as configured in `[[approver]] cert`.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long)]
    pub key: PathBuf,
    /// The approver's name as in `[[approver]] name` (default: the
    /// certificate's e-mail address, else its common name).
    #[arg(long)]
    pub name: Option<String>,
    /// Write the signed decision to this file instead of the mailbox, for
    /// a host that cannot reach Vault: POST it to
    /// /v1/elevations/{id}/decisions there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Read the request from this file (the JSON of the mailbox entry or of
    /// GET /v1/elevations/{id}) instead of the mailbox.
    #[arg(long)]
    pub request: Option<PathBuf>,
    #[command(flatten)]
    pub mailbox: MailboxArgs,
}
