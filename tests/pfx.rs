//! `botward certs issue --pfx`: the real binary writes the PKCS#12 file and
//! real OpenSSL 3 reads it back, verifies its MAC and yields the key and the
//! certificates that botward wrote as PEM; a wrong password is refused, and
//! the password never reaches stdout or stderr.
//!
//! Under CI (`CI=true`) a missing openssl is a failure; elsewhere the tests
//! that need it skip with a note.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const OPENSSL: &str = "/usr/bin/openssl";
const BOT: &str = "invoice-bot";

/// A scratch folder with a dev CA in it, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("botward-pfx-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = Dir(dir);
        let out = botward(&["certs", "init", "--dir", d.s()]);
        assert!(out.status.success(), "certs init: {out:?}");
        d
    }

    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn botward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_botward"))
        .args(args)
        .output()
        .unwrap()
}

fn issue(dir: &Dir, extra: &[&str]) -> Output {
    let mut args = vec!["certs", "issue", "--bot", BOT, "--dir", dir.s(), "--pfx"];
    args.extend_from_slice(extra);
    botward(&args)
}

/// Finds openssl (`BOTWARD_OPENSSL`, else /usr/bin/openssl), or decides to
/// skip (outside CI) or fail (under CI).
fn openssl_or_skip(test: &str) -> Option<PathBuf> {
    let bin =
        std::env::var_os("BOTWARD_OPENSSL").map_or_else(|| PathBuf::from(OPENSSL), PathBuf::from);
    if bin.is_file() {
        return Some(bin);
    }
    let shown = bin.display();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: openssl ({shown}) is required under CI; run scripts/install-deps.sh");
    }
    eprintln!("{test}: skipped, {shown} not found (run scripts/install-deps.sh)");
    None
}

fn openssl(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// The SubjectPublicKeyInfo DER of a certificate.
fn cert_spki(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.tbs_certificate.subject_pki.raw.to_vec()
}

/// Asks OpenSSL for everything in the file (`-nodes`: the key unencrypted)
/// and checks it against the PEM files botward wrote beside it.
fn check_contents(bin: &Path, dir: &Dir, passin: &str) {
    let pfx = dir.join(&format!("{BOT}.pfx"));
    let out = openssl(
        bin,
        &[
            "pkcs12",
            "-in",
            pfx.to_str().unwrap(),
            "-passin",
            passin,
            "-nodes",
        ],
    );
    assert!(
        out.status.success(),
        "openssl pkcs12: {}",
        text(&out.stderr)
    );
    let pem = out.stdout;

    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.unwrap().to_vec())
        .collect();
    let bot_cert = cert_der(&dir.join(&format!("{BOT}.pem")));
    let ca_cert = cert_der(&dir.join("ca.pem"));
    assert_eq!(certs, vec![bot_cert.clone(), ca_cert], "bot then CA");

    let key = PrivateKeyDer::from_pem_slice(&pem).unwrap();
    let key = rcgen::KeyPair::try_from(&key).unwrap();
    assert_eq!(key.public_key_der(), cert_spki(&bot_cert));
    let written = std::fs::read_to_string(dir.join(&format!("{BOT}-key.pem"))).unwrap();
    let written = rcgen::KeyPair::from_pem(&written).unwrap();
    assert_eq!(key.public_key_der(), written.public_key_der());

    // The attributes Windows pairs the key and the certificate by.
    let listing = text(&pem);
    let name = format!("friendlyName: botward bot {BOT}");
    assert_eq!(listing.matches(&name).count(), 2, "{listing}");
    let ids: Vec<&str> = listing
        .lines()
        .filter(|l| l.trim_start().starts_with("localKeyID:"))
        .collect();
    assert_eq!(ids.len(), 2, "{listing}");
    assert_eq!(ids[0], ids[1]);

    // The algorithms and iteration counts, as OpenSSL reads them.
    let out = openssl(
        bin,
        &[
            "pkcs12",
            "-in",
            pfx.to_str().unwrap(),
            "-passin",
            passin,
            "-info",
            "-noout",
        ],
    );
    assert!(
        out.status.success(),
        "openssl pkcs12 -info: {}",
        text(&out.stderr)
    );
    let info = text(&out.stderr);
    let pbes2 = "PBES2, PBKDF2, AES-256-CBC, Iteration 10000, PRF hmacWithSHA256";
    for want in [
        "MAC: sha256, Iteration 10000".to_owned(),
        format!("PKCS7 Encrypted data: {pbes2}"),
        format!("Shrouded Keybag: {pbes2}"),
    ] {
        assert!(info.contains(&want), "{want:?} not in {info}");
    }
}

#[cfg(unix)]
fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_mode_0600(_path: &Path) {}

#[test]
fn openssl_reads_the_pfx_with_the_generated_password() {
    let Some(bin) = openssl_or_skip("openssl_reads_the_pfx_with_the_generated_password") else {
        return;
    };
    let dir = Dir::new("generated");
    let out = issue(&dir, &[]);
    assert!(out.status.success(), "certs issue: {}", text(&out.stderr));
    let pw_file = dir.join(&format!("{BOT}.pfx.password"));
    assert_mode_0600(&dir.join(&format!("{BOT}.pfx")));
    assert_mode_0600(&pw_file);
    let stored = std::fs::read_to_string(&pw_file).unwrap();
    let password = stored.strip_suffix('\n').unwrap();
    assert_eq!(password.len(), 24);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));

    // The password file is named, its contents never shown.
    let stdout = text(&out.stdout);
    assert!(stdout.contains(pw_file.to_str().unwrap()), "{stdout}");
    assert!(!stdout.contains(password) && !text(&out.stderr).contains(password));

    check_contents(&bin, &dir, &format!("file:{}", pw_file.display()));
}

#[test]
fn openssl_reads_the_pfx_with_a_password_file_and_refuses_a_wrong_password() {
    let test = "openssl_reads_the_pfx_with_a_password_file_and_refuses_a_wrong_password";
    let Some(bin) = openssl_or_skip(test) else {
        return;
    };
    let dir = Dir::new("given");
    // An earlier run's generated password file goes: it no longer fits.
    assert!(issue(&dir, &[]).status.success());
    assert!(dir.join(&format!("{BOT}.pfx.password")).exists());
    let password = "Correct Horse 7 Battery Staple!";
    // Only the first line counts; botward also drops a Windows line end.
    let given = dir.join("given-password");
    std::fs::write(&given, format!("{password}\r\nnot the password\n")).unwrap();
    let out = issue(&dir, &["--pfx-password-file", given.to_str().unwrap()]);
    assert!(out.status.success(), "certs issue: {}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(password) && !text(&out.stderr).contains(password));
    assert!(!dir.join(&format!("{BOT}.pfx.password")).exists());

    let passfile = dir.join("openssl-password");
    std::fs::write(&passfile, format!("{password}\n")).unwrap();
    check_contents(&bin, &dir, &format!("file:{}", passfile.display()));

    let pfx = dir.join(&format!("{BOT}.pfx"));
    for wrong in [
        "pass:Correct Horse 7 Battery Staple",
        "pass:not the password",
    ] {
        let out = openssl(
            &bin,
            &[
                "pkcs12",
                "-in",
                pfx.to_str().unwrap(),
                "-passin",
                wrong,
                "-nodes",
            ],
        );
        assert!(!out.status.success(), "{wrong} accepted");
        assert!(
            text(&out.stderr).contains("Mac verify error"),
            "{}",
            text(&out.stderr)
        );
        assert!(!text(&out.stdout).contains("PRIVATE KEY"));
    }
}

#[test]
fn a_bad_password_file_writes_nothing_and_is_not_quoted() {
    let dir = Dir::new("bad");
    let bad = dir.join("bad-password");
    for contents in ["\nsecond line\n", "p\u{e4}ssw\u{f6}rd-mit-umlaut\n"] {
        std::fs::write(&bad, contents).unwrap();
        let out = issue(&dir, &["--pfx-password-file", bad.to_str().unwrap()]);
        assert!(!out.status.success());
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(
            !all.contains("second line") && !all.contains("mit-umlaut"),
            "{all}"
        );
        assert!(all.contains("bad-password"), "{all}");
        for name in [
            format!("{BOT}.pem"),
            format!("{BOT}-key.pem"),
            format!("{BOT}.pfx"),
        ] {
            assert!(!dir.join(&name).exists(), "{name} written");
        }
    }
    let out = issue(
        &dir,
        &["--pfx-password-file", dir.join("missing").to_str().unwrap()],
    );
    assert!(!out.status.success());
}

#[test]
fn the_password_file_flag_needs_pfx_and_without_pfx_no_pfx_is_written() {
    let dir = Dir::new("nopfx");
    let given = dir.join("given-password");
    std::fs::write(&given, "secret\n").unwrap();
    let out = botward(&[
        "certs",
        "issue",
        "--bot",
        BOT,
        "--dir",
        dir.s(),
        "--pfx-password-file",
        given.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--pfx"), "{}", text(&out.stderr));

    let out = botward(&["certs", "issue", "--bot", BOT, "--dir", dir.s()]);
    assert!(out.status.success());
    assert!(dir.join(&format!("{BOT}.pem")).exists());
    assert!(!dir.join(&format!("{BOT}.pfx")).exists());
    assert!(!dir.join(&format!("{BOT}.pfx.password")).exists());
}

#[test]
fn issue_help_documents_pfx() {
    let out = botward(&["certs", "issue", "--help"]);
    let help = text(&out.stdout);
    for want in [
        "--pfx",
        "--pfx-password-file",
        "Import-PfxCertificate",
        "Cert:\\CurrentUser\\My",
    ] {
        assert!(help.contains(want), "{want} not in {help}");
    }
}
