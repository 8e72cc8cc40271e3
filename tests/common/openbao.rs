//! OpenBao: finding `bao`, seeding the dev server with the tests' secrets
//! and AppRole, and the database secrets engine.

use std::path::{Path, PathBuf};
use std::process::Command;

use ::botward::dev::DevBao;

use super::{random_hex, required, Harness, Postgres};

/// Finds `bao`, or decides to skip (outside CI) or fail (under CI).
pub fn bao_or_skip(test: &str) -> Option<PathBuf> {
    match ::botward::dev::find_bao() {
        Some(b) => Some(b),
        None if required() => {
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

/// What [`seed`] put into a fresh dev server.
pub(crate) struct Seeded {
    pub role_id: PathBuf,
    pub secret_id: PathBuf,
    pub token_file: PathBuf,
    pub erp_password: String,
    pub sftp_password: String,
}

/// Seeds `rpa/erp-db` and `rpa/sftp` with random passwords, an AppRole that
/// reads `secret/data/rpa/*`, and writes the root token to `<dir>/token`.
pub(crate) fn seed(bao: &DevBao, dir: &Path) -> Seeded {
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
        .setup_approle(dir, &["secret/data/rpa/*"], "1h")
        .unwrap();
    let token_file = dir.join("token");
    ::botward::certs::write_file(&token_file, bao.root_token(), 0o600).unwrap();
    Seeded {
        role_id,
        secret_id,
        token_file,
        erp_password,
        sftp_password,
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
