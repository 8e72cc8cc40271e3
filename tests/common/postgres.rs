//! PostgreSQL: a real server for the database secrets engine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{random_hex, required, unique};

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
            if required() {
                panic!("{test}: PostgreSQL is required under CI; run scripts/install-deps.sh");
            }
            eprintln!("SKIP {test}: no PostgreSQL server binaries");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "botward-pg-{test}-{}-{}",
            std::process::id(),
            unique()
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
        let port = ::botward::dev::free_port();
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
