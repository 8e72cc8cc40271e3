//! How botward reaches Vault and logs in, as validated from the config's
//! `[vault]` table.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub addresses: Vec<String>,
    pub ca: Option<PathBuf>,
    pub timeout: Duration,
    pub auth: VaultAuth,
}

/// How botward logs in to Vault. Only file paths are kept here: credentials
/// are read from their files at each login and never held in the settings.
#[derive(Clone, Debug, PartialEq)]
pub enum VaultAuth {
    Token {
        token_file: PathBuf,
    },
    AppRole {
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    /// TLS certificate login; the client certificate is presented on every
    /// connection to Vault.
    Cert {
        mount: String,
        name: String,
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}
