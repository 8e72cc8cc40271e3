//! Configuration: a raw TOML shape that rejects unknown keys (`raw`), then a
//! validated [`Config`] with typed fields (`model`), built by `validate`.
//!
//! Validation collects every problem it finds, each with the file, line and
//! column it refers to (`problem`), so that `botward check-config` can list
//! them all. Durations are read by `duration`.
//!
//! The validated config is made of the types its users own: the policy's bot
//! and secret definitions, `tls::Settings`, `vault::Settings`,
//! `audit::Settings` and `harden::Hardening`, next to the tables defined in `model`.

use std::path::Path;

pub use crate::audit::{Fsync, Settings as Audit, Syslog};
pub use crate::harden::Hardening;

mod duration;
mod model;
mod problem;
mod raw;
mod validate;

pub use crate::policy::is_person_name;
pub use duration::parse_duration;
pub use model::{AnomalySettings, Config, ElevationSettings, IdentitySettings, Limits, Listen};
pub use problem::{Problem, Problems};

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_owned(),
                at: None,
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Validates config text. `path` names the file in problems and anchors
    /// relative paths inside the config.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Problems> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| problem::line_col(text, s.start));
            Problems(vec![Problem {
                file: path.to_owned(),
                at,
                message: e.message().trim().to_owned(),
            }])
        })?;
        validate::validate(raw, text, path)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::policy::ProcessRule;
    use crate::vault::VaultAuth;

    fn fixture_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("botward-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "server.pem",
            "server-key.pem",
            "ca.pem",
            "role-id",
            "secret-id",
            "token",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        dir
    }

    /// An absolute exe path where the tests run: Windows wants a drive.
    const EXE: &str = if cfg!(windows) {
        r"C:\RPA\python.exe"
    } else {
        "/opt/rpa/bin/python3"
    };

    /// The paths are TOML literal strings: a Windows temp folder has
    /// backslashes, which a basic string would read as escapes.
    fn sample(dir: &Path) -> String {
        format!(
            r#"
[listen]
tcp = "127.0.0.1:8443"

[tls]
cert = '{d}/server.pem'
key = '{d}/server-key.pem'
client_ca = '{d}/ca.pem'
trust_domain = "corp.example"

[vault]
addresses = ["http://127.0.0.1:8200"]

[vault.auth]
method = "approle"
role_id_file = '{d}/role-id'
secret_id_file = '{d}/secret-id'

[audit]
path = '{d}/audit.jsonl'

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
processes = [{{ uid = 1001, exe = '{EXE}' }}]
"#,
            d = dir.display()
        )
    }

    #[test]
    fn sample_config_is_valid() {
        let dir = fixture_dir();
        let c = Config::parse(&sample(&dir), &dir.join("botward.toml")).unwrap();
        assert_eq!(c.listen.tcp, Some("127.0.0.1:8443".parse().unwrap()));
        let bot = c.bot("invoice-bot").unwrap();
        assert!(bot.secrets.contains("erp-db"));
        assert_eq!(
            bot.processes,
            vec![ProcessRule {
                uid: Some(1001),
                exe: Some(EXE.into()),
                ..ProcessRule::default()
            }]
        );
        assert!(matches!(c.vault.auth, VaultAuth::AppRole { .. }));
    }

    fn problems(text: &str, dir: &Path) -> Vec<String> {
        match Config::parse(text, &dir.join("botward.toml")) {
            Ok(_) => panic!("config was accepted"),
            Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let dir = fixture_dir();
        let text = sample(&dir).replace("[audit]\n", "[audit]\nrotate = true\n");
        let p = problems(&text, &dir);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("unknown field `rotate`"), "{p:?}");
        let line = text.lines().position(|l| l.starts_with("rotate")).unwrap() + 1;
        assert!(p[0].contains(&format!("botward.toml:{line}:")), "{p:?}");
    }

    #[test]
    fn every_semantic_problem_is_listed_with_its_place() {
        let dir = fixture_dir();
        let text = sample(&dir)
            .replace("127.0.0.1:8443", "not-an-address")
            .replace("secret-id'", "missing-secret-id'")
            .replace(
                r#"secrets = ["erp-db"]"#,
                r#"secrets = ["erp-db", "payroll"]"#,
            )
            .replace("Mon-Fri 06:00-20:00", "Mon-Fry 06:00-20:00");
        let p = problems(&text, &dir);
        assert_eq!(p.len(), 4, "{p:#?}");
        let joined = p.join("\n");
        assert!(joined.contains("listen.tcp"));
        assert!(joined.contains("missing-secret-id"));
        assert!(joined.contains("\"payroll\", which no [[secret]] defines"));
        assert!(joined.contains("bad schedule"));
        for line in &p {
            assert!(line.contains("botward.toml:"), "no location in {line}");
        }
    }

    #[test]
    fn lifecycle_keys_are_checked() {
        let dir = fixture_dir();
        let with = |lifecycle: &str, bot: &str| {
            sample(&dir)
                .replace(
                    "secrets = [\"erp-db\"]\n",
                    &format!("secrets = [\"erp-db\"]\n{bot}\n"),
                )
                .replace("[[bot]]", &format!("[lifecycle]\n{lifecycle}\n\n[[bot]]"))
        };
        let good = with(
            "dormant_after = \"30d\"\ndormant = \"deny\"",
            "reactivate = \"CHG-4711\"",
        );
        let c = Config::parse(&good, &dir.join("botward.toml")).unwrap();
        let life = &c.bot("invoice-bot").unwrap().lifecycle;
        assert_eq!(
            life.dormant_after,
            Some(jiff::SignedDuration::from_hours(24 * 30))
        );
        assert_eq!(life.dormant, crate::policy::Enforcement::Deny);
        assert_eq!(life.reactivate.as_deref(), Some("CHG-4711"));
        assert_eq!(c.activity_state, dir.join("activity.json"));
        for (lifecycle, bot, want) in [
            (
                "dormant_after = \"59m\"",
                "",
                "dormant_after must be at least 1h",
            ),
            (
                "dormant_after = \"soon\"",
                "",
                "lifecycle.dormant_after: \"soon\"",
            ),
            (
                "dormant = \"deny\"",
                "",
                "lifecycle.dormant needs lifecycle.dormant_after",
            ),
            (
                "dormant_after = \"1h\"\ndormant = \"off\"",
                "",
                "lifecycle.dormant must be",
            ),
            (
                "",
                "reactivate = \"\"",
                "reactivate must be a change ticket",
            ),
            (
                "",
                "reactivate = \"CHG\\u202e1\"",
                "reactivate must be a change ticket",
            ),
        ] {
            let p = problems(&with(lifecycle, bot), &dir).join("\n");
            assert!(p.contains(want), "{lifecycle} {bot}: {p}");
        }
    }

    /// An approver certificate in `dir`.
    fn approver_cert(dir: &Path, name: &str) -> PathBuf {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }

    const PRIVILEGED: &str = "\n[[secret]]\nname = \"sap-admin\"\nkind = \"kv\"\nmount = \"secret\"\npath = \"rpa/sap-admin\"\nprivileged = true\napprovals = 2\n";

    #[test]
    fn elevation_is_validated_with_its_approvers() {
        let dir = fixture_dir();
        let lead = approver_cert(&dir, "lead");
        let cfo = approver_cert(&dir, "cfo");
        let elevation = format!(
            "\n[elevation]\nmax_window = \"1h\"\nmailbox = {{ mount = \"secret\", prefix = \"botward/elevations\" }}\n\n[[approver]]\nname = \"lead@corp.example\"\ncert = '{}'\nteams = [\"finance-ops\"]\n\n[[approver]]\nname = \"cfo@corp.example\"\ncert = '{}'\nteams = [\"*\"]\n",
            lead.display(),
            cfo.display()
        );
        let text = sample(&dir) + PRIVILEGED + &elevation;
        let c = Config::parse(&text, &dir.join("botward.toml")).unwrap();
        let e = c.elevation.as_ref().unwrap();
        assert_eq!(e.max_window, Duration::from_secs(3600));
        assert_eq!(e.poll_interval, Duration::from_secs(2));
        assert_eq!(
            (e.mount.as_str(), e.prefix.as_str()),
            ("secret", "botward/elevations")
        );
        assert_eq!(c.secret("sap-admin").unwrap().approvals, 2);
        assert!(c.approvers["cfo@corp.example"].covers("anything"));
        assert!(c.watched_files().contains(&lead));

        // Privileged secrets need [elevation], and enough approvers.
        let p = problems(&(sample(&dir) + PRIVILEGED), &dir);
        assert!(p[0].contains("an [elevation] table"), "{p:?}");
        let one = text.replace(
            "name = \"cfo@corp.example\"",
            "name = \"lead@corp.example\"",
        );
        let p = problems(&one, &dir);
        assert!(p.iter().any(|p| p.contains("defined twice")), "{p:?}");
        let bad = text
            .replace("max_window = \"1h\"", "max_window = \"8d\"")
            .replace(
                "prefix = \"botward/elevations\"",
                "prefix = \"botward/../x\"",
            )
            .replace("teams = [\"*\"]", "teams = []")
            .replace(
                &cfo.display().to_string(),
                &dir.join("ca.pem").display().to_string(),
            );
        let p = problems(&bad, &dir);
        let joined = p.join("\n");
        assert!(joined.contains("elevation.max_window"), "{joined}");
        assert!(joined.contains("elevation.mailbox.prefix"), "{joined}");
        assert!(joined.contains("teams must list"), "{joined}");
        assert!(
            joined.contains("approver \"cfo@corp.example\": cert"),
            "{joined}"
        );
        let stray = sample(&dir) + "\n[[secret]]\nname = \"x\"\nkind = \"kv\"\nmount = \"secret\"\npath = \"rpa/x\"\napprovals = 2\n";
        let p = problems(&stray, &dir);
        assert!(
            p[0].contains("approvals applies only to privileged secrets"),
            "{p:?}"
        );
    }

    #[test]
    fn non_loopback_listener_is_refused() {
        let dir = fixture_dir();
        let p = problems(
            &sample(&dir).replace("127.0.0.1:8443", "0.0.0.0:8443"),
            &dir,
        );
        assert!(p[0].contains("not a loopback address"), "{p:?}");
    }

    #[test]
    fn cache_ttl_is_for_kv_secrets_only_and_bounded() {
        let dir = fixture_dir();
        let kv = sample(&dir).replace(
            "path = \"rpa/erp-db\"\n",
            "path = \"rpa/erp-db\"\ncache_ttl = \"30s\"\n",
        );
        let c = Config::parse(&kv, &dir.join("botward.toml")).unwrap();
        assert_eq!(
            c.secret("erp-db").unwrap().cache_ttl,
            Some(Duration::from_secs(30))
        );
        let plain = Config::parse(&sample(&dir), &dir.join("botward.toml")).unwrap();
        assert_eq!(
            plain.secret("erp-db").unwrap().cache_ttl,
            None,
            "off unless asked for"
        );

        let dynamic = format!(
            "{}\n[[secret]]\nname = \"db-login\"\nkind = \"dynamic\"\npath = \"database/creds/ro\"\ncache_ttl = \"30s\"\n",
            sample(&dir)
        );
        let p = problems(&dynamic, &dir);
        assert!(
            p[0].contains("cache_ttl applies only to kind \"kv\""),
            "{p:?}"
        );
        for bad in ["25h", "0s", "soon"] {
            let p = problems(&kv.replace("\"30s\"", &format!("{bad:?}")), &dir);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].contains("cache_ttl"), "{p:?}");
        }
    }

    // The packaged file is the Linux one: a unix socket and unix exe paths,
    // which a Windows build refuses.
    #[cfg(unix)]
    #[test]
    fn the_packaged_sample_config_is_valid() {
        let dir = fixture_dir();
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        for f in [
            "tls/server.pem",
            "tls/server-key.pem",
            "tls/bots-ca.pem",
            "vault-ca.pem",
            "role-id",
            "secret-id",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let text = include_str!("../packaging/botward.toml")
            .replace("/etc/botward/", &format!("{}/", dir.display()));
        let c = Config::parse(&text, &dir.join("botward.toml")).unwrap_or_else(|p| panic!("{p}"));
        assert!(c.bot("invoice-bot").unwrap().schedule.is_some());
        assert_eq!(c.listen.unix_mode, 0o666);
    }
    #[test]
    fn windows_process_rules_are_checked_where_they_are_written() {
        let dir = fixture_dir();
        let rule = format!("processes = [{{ uid = 1001, exe = '{EXE}' }}]");
        let good = sample(&dir).replace(
            &rule,
            r#"processes = [
  { user = 'CORP\svc-rpa-invoice', exe = 'C:\Program Files\UiPath\Studio\UiPath.Executor.exe' },
  { sid = "S-1-5-21-1004336348-1177238915-682003330-1001" },
]"#,
        );
        let c = Config::parse(&good, &dir.join("botward.toml")).unwrap();
        let rules = &c.bot("invoice-bot").unwrap().processes;
        assert_eq!(rules[0].user.as_deref(), Some(r"CORP\svc-rpa-invoice"));
        assert_eq!(
            rules[0].exe.as_deref(),
            Some(Path::new(
                r"C:\Program Files\UiPath\Studio\UiPath.Executor.exe"
            ))
        );
        assert_eq!(
            rules[1].sid.as_deref(),
            Some("S-1-5-21-1004336348-1177238915-682003330-1001")
        );
        for (bad, why) in [
            (r#"{ sid = "S-1-5-x" }"#, "not a security identifier"),
            (r#"{ sid = "1-5-21" }"#, "not a security identifier"),
            (r#"{ user = "svc-rpa" }"#, "DOMAIN\\name"),
            (r#"{ user = 'CORP\' }"#, "DOMAIN\\name"),
            (r#"{ exe = 'Program Files\x.exe' }"#, "absolute path"),
            (r#"{ }"#, "needs uid, exe, sid or user"),
        ] {
            let text = sample(&dir).replace(&rule, &format!("processes = [{bad}]"));
            let p = problems(&text, &dir);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].contains(why), "{bad}: {p:?}");
        }
    }

    #[test]
    fn a_pipe_is_a_windows_listener() {
        let dir = fixture_dir();
        let with =
            |listen: &str| sample(&dir).replace("[listen]\n", &format!("[listen]\n{listen}\n"));
        let stray = problems(&with("pipe_accounts = ['CORP\\RPA Robots']"), &dir);
        assert!(
            stray.iter().any(|p| p.contains("needs listen.pipe")),
            "{stray:?}"
        );
        let pipe = with(r"pipe = '\\.\pipe\botward'");
        if cfg!(windows) {
            let c = Config::parse(&pipe, &dir.join("botward.toml")).unwrap();
            assert_eq!(c.listen.pipe.as_deref(), Some(r"\\.\pipe\botward"));
            let p = problems(&with(r"pipe = '\\server\pipe\botward'"), &dir);
            assert!(p[0].contains("not a local pipe name"), "{p:?}");
        } else {
            let p = problems(&pipe, &dir);
            assert!(p[0].contains("only on Windows"), "{p:?}");
        }
    }
}
