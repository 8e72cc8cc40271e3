//! Shared harness for integration tests: a real OpenBao dev server, a test
//! PKI made with `botward::certs`, and the real `botward` binary.
//!
//! One module per real component: [`openbao`] (the dev server and what the
//! tests seed in it), [`botward`] (the binary, its config and its audit
//! file), [`http`] (curl and botward's own client, as bots call it) and
//! [`postgres`] (a database server for dynamic credentials), and [`wine`]
//! (the cross-built botward.exe under Wine). Everything is re-exported
//! here, so tests `use common::*`.
//!
//! Under CI (`CI=true`) a missing OpenBao, PostgreSQL or botward.exe is a
//! failure; elsewhere the test skips itself with a note.

#![allow(unsafe_code)] // libc calls on the processes under test
#![allow(dead_code)]

mod botward;
mod http;
mod openbao;
mod postgres;
mod wine;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ::botward::certs::{Ca, Validity};
use ::botward::dev::DevBao;

pub use self::botward::*;
// Not every test calls curl or `rt` itself.
#[allow(unused_imports)]
pub use self::http::*;
pub use self::openbao::*;
pub use self::postgres::*;
// Only the Windows tests drive botward.exe.
#[allow(unused_imports)]
pub use self::wine::*;

pub const TRUST_DOMAIN: &str = "corp.example";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A number no other call in this test process gets: keeps the folders and
/// logs of one test's servers apart.
pub(crate) fn unique() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// Whether a missing server is a failure (CI) rather than a skip.
pub(crate) fn required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
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

pub fn random_hex(n: usize) -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).unwrap();
    ::botward::identity::hex(&b)
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

impl Harness {
    pub fn new(test: &str) -> Option<Harness> {
        let bao = bao_or_skip(test)?;
        ::botward::tls::install_provider();
        let dir = std::env::temp_dir().join(format!(
            "botward-it-{test}-{}-{}",
            std::process::id(),
            unique()
        ));
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
        let seeded = seed(&bao, &dir);
        let h = Harness {
            dir,
            bao,
            ca,
            tls,
            role_id: seeded.role_id,
            secret_id: seeded.secret_id,
            token_file: seeded.token_file,
            erp_password: seeded.erp_password,
            sftp_password: seeded.sftp_password,
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
}

impl Drop for Harness {
    /// Every audit record the test wrote must match the published schema.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        check_audit_schema(&self.dir);
    }
}
