//! `botward bot enroll-token`, `botward enroll` and `botward renew`, and
//! the identity folder `get` and `exec` use: `DIR/bot.pem` holds the bot's
//! private key and its certificate chain, mode 0600, replaced as one file
//! so that key and certificate always match.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};
use zeroize::Zeroize;

use crate::app::{EX_UNAVAILABLE, EX_USAGE};
use crate::client::{self, ClientSettings};

use super::args::{ConnArgs, LocalArgs};

/// The file in an identity folder.
const IDENTITY_FILE: &str = "bot.pem";

/// What a call ended with, as an exit code and a line for stderr.
struct Failed(ExitCode, String);

pub(super) async fn enroll_token(bot: &str, to: &LocalArgs) -> ExitCode {
    let body = json!({ "bot": bot }).to_string().into_bytes();
    let answer =
        match client::call_anonymous(&to.addr, &to.ca, "POST", "/v1/identity/enroll-tokens", body)
            .await
        {
            Ok(a) => a,
            Err(e) => return fail(Failed(ExitCode::from(EX_UNAVAILABLE), e.to_string())),
        };
    if answer.status != 200 {
        return fail(Failed(ExitCode::FAILURE, client::error_line(&answer)));
    }
    let v: Value = serde_json::from_slice(answer.body.expose_secret()).unwrap_or_default();
    let Some(token) = v["token"].as_str() else {
        return fail(Failed(
            ExitCode::FAILURE,
            "botward answered no token".into(),
        ));
    };
    // The token is for the bot's account only: stdout, never stderr.
    std::println!("{token}");
    eprintln!(
        "botward: enrollment token for {bot}, valid once until {}",
        v["expires"].as_str().unwrap_or("?")
    );
    ExitCode::SUCCESS
}

pub(super) async fn enroll(
    token: Option<String>,
    token_file: Option<PathBuf>,
    renew_instead: bool,
    out: &Path,
    to: &LocalArgs,
) -> ExitCode {
    if renew_instead {
        return renew(out, to).await;
    }
    let token = match (token, token_file) {
        (Some(t), _) => Some(t),
        (None, Some(file)) => match read_token(&file) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("botward: {}: {e}", file.display());
                return ExitCode::from(EX_USAGE);
            }
        },
        (None, None) => None,
    };
    let Some(mut token) = token else {
        eprintln!("botward: give the token: BOTWARD_ENROLL_TOKEN, --token-file or --token");
        return ExitCode::from(EX_USAGE);
    };
    let result = enroll_into(&token, out, to).await;
    token.zeroize();
    match result {
        Ok((bot, not_after)) => {
            eprintln!(
                "botward: enrolled as {bot}; {} valid until {not_after}",
                out.join(IDENTITY_FILE).display()
            );
            ExitCode::SUCCESS
        }
        Err(f) => fail(f),
    }
}

async fn enroll_into(token: &str, out: &Path, to: &LocalArgs) -> Result<(String, String), Failed> {
    if !to.addr.starts_with("unix://") {
        let msg = format!(
            "enrollment goes over botward's unix socket (unix:///...), not {}",
            to.addr
        );
        return Err(Failed(ExitCode::from(EX_USAGE), msg));
    }
    prepare_dir(out)?;
    let (key, csr) = new_key_and_csr()?;
    let mut body = json!({ "token": token, "csr": csr })
        .to_string()
        .into_bytes();
    let answer = client::call_anonymous(
        &to.addr,
        &to.ca,
        "POST",
        "/v1/identity/enroll",
        body.clone(),
    )
    .await;
    body.zeroize();
    let answer = answer.map_err(|e| Failed(ExitCode::from(EX_UNAVAILABLE), e.to_string()))?;
    store(out, key, &answer)
}

pub(super) async fn renew(dir: &Path, to: &LocalArgs) -> ExitCode {
    let settings = dir_settings(dir, &to.addr, &to.ca);
    match renew_with(&settings, dir).await {
        Ok((bot, not_after)) => {
            eprintln!("botward: renewed {bot}; valid until {not_after}");
            ExitCode::SUCCESS
        }
        Err(f) => fail(f),
    }
}

async fn renew_with(settings: &ClientSettings, dir: &Path) -> Result<(String, String), Failed> {
    let (key, csr) = new_key_and_csr()?;
    let body = json!({ "csr": csr }).to_string().into_bytes();
    let answer = client::call_with(settings, "POST", "/v1/identity/renew", Some(body))
        .await
        .map_err(|e| Failed(ExitCode::from(EX_UNAVAILABLE), e.to_string()))?;
    store(dir, key, &answer)
}

/// The client settings for `get` and `exec`. With an identity folder whose
/// certificate has less than a third of its life left, it is renewed
/// first; a failed renewal only warns while the certificate still holds.
pub(super) async fn settings(conn: ConnArgs) -> Result<ClientSettings, ExitCode> {
    let Some(dir) = conn.dir else {
        return match (conn.cert, conn.key) {
            (Some(cert), Some(key)) => Ok(ClientSettings {
                addr: conn.addr,
                cert,
                key,
                ca: conn.ca,
            }),
            _ => {
                eprintln!("botward: give --dir, or both --cert and --key");
                Err(ExitCode::from(EX_USAGE))
            }
        };
    };
    let settings = dir_settings(&dir, &conn.addr, &conn.ca);
    let now = jiff::Timestamp::now();
    match lifetime(&settings.cert) {
        Some((from, until)) if renewal_due(from, until, now) => {
            if let Err(Failed(_, msg)) = renew_with(&settings, &dir).await {
                eprintln!(
                    "botward: renewing {} failed: {msg}",
                    settings.cert.display()
                );
                if until <= now {
                    return Err(ExitCode::from(EX_UNAVAILABLE));
                }
            }
        }
        Some(_) => {}
        None => {
            eprintln!(
                "botward: {} holds no readable certificate",
                settings.cert.display()
            );
            return Err(ExitCode::from(EX_USAGE));
        }
    }
    Ok(settings)
}

/// Whether less than a third of the lifetime `from`..`until` is left.
fn renewal_due(from: jiff::Timestamp, until: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    let life = until.duration_since(from);
    until.duration_since(now) < life / 3
}

fn dir_settings(dir: &Path, addr: &str, ca: &Path) -> ClientSettings {
    let file = dir.join(IDENTITY_FILE);
    ClientSettings {
        addr: addr.to_owned(),
        cert: file.clone(),
        key: file,
        ca: ca.to_owned(),
    }
}

/// The validity of the first certificate in `path`.
fn lifetime(path: &Path) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    use x509_parser::prelude::FromDer;
    let der = crate::tls::load_certs(path).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
    let v = cert.validity();
    let from = jiff::Timestamp::from_second(v.not_before.timestamp()).ok()?;
    let until = jiff::Timestamp::from_second(v.not_after.timestamp()).ok()?;
    Some((from, until))
}

/// Creates the identity folder, mode 0700, unless it exists: then it is
/// left as it is (bot.pem itself is always 0600).
fn prepare_dir(dir: &Path) -> Result<(), Failed> {
    let usage =
        |e: std::io::Error| Failed(ExitCode::from(EX_USAGE), format!("{}: {e}", dir.display()));
    if dir.is_dir() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(usage)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(usage)
    }
}

/// A new P-256 key and a CSR for it; botward sets the subject and SANs.
fn new_key_and_csr() -> Result<(rcgen::KeyPair, String), Failed> {
    let failed = |e: rcgen::Error| Failed(ExitCode::FAILURE, format!("cannot make a key: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(failed)?
        .serialize_request(&key)
        .map_err(failed)?
        .pem()
        .map_err(failed)?;
    Ok((key, csr))
}

/// Writes key and certificate chain from botward's answer to DIR/bot.pem.
fn store(
    dir: &Path,
    key: rcgen::KeyPair,
    answer: &client::Answer,
) -> Result<(String, String), Failed> {
    if answer.status != 200 {
        return Err(Failed(ExitCode::FAILURE, client::error_line(answer)));
    }
    let bad = || Failed(ExitCode::FAILURE, "botward answered no certificate".into());
    let v: Value = serde_json::from_slice(answer.body.expose_secret()).map_err(|_| bad())?;
    let cert = v["certificate"].as_str().ok_or_else(bad)?;
    if !carries_key(cert, &key) {
        let msg = "botward answered a certificate for another key; bot.pem is unchanged";
        return Err(Failed(ExitCode::FAILURE, msg.into()));
    }
    let mut pem = key.serialize_pem();
    drop(key);
    pem.push_str(cert.trim_end());
    pem.push('\n');
    for c in v["chain"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        pem.push_str(c.trim_end());
        pem.push('\n');
    }
    let path: PathBuf = dir.join(IDENTITY_FILE);
    let written = replace(&path, pem.as_bytes());
    pem.zeroize();
    written.map_err(|e| Failed(ExitCode::FAILURE, format!("{}: {e}", path.display())))?;
    let field = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
    Ok((field("bot"), field("not_after")))
}

/// Whether the PEM certificate `cert` is for `key`.
fn carries_key(cert: &str, key: &rcgen::KeyPair) -> bool {
    use x509_parser::prelude::FromDer;
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(cert.as_bytes()) else {
        return false;
    };
    x509_parser::certificate::X509Certificate::from_der(&block.contents)
        .is_ok_and(|(_, c)| c.tbs_certificate.subject_pki.raw == key.public_key_der().as_slice())
}

/// Replaces `path` atomically, through a temporary file of this process's
/// own, so that jobs renewing at the same time never rename each other's
/// half-written file into place.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("pem.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = crate::platform::create_new(&tmp, 0o600).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed?;
    crate::platform::sync_dir(path)
}

/// The first line of `file`, or of stdin for `-`.
fn read_token(file: &Path) -> std::io::Result<String> {
    let mut text = if file == Path::new("-") {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line
    } else {
        std::fs::read_to_string(file)?
    };
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    text.zeroize();
    Ok(token)
}

fn fail(Failed(code, msg): Failed) -> ExitCode {
    eprintln!("botward: {msg}");
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_with_a_third_of_the_life_left() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let (from, until) = (t("2027-01-01T00:00:00Z"), t("2027-01-01T03:00:00Z"));
        assert!(!renewal_due(from, until, t("2027-01-01T01:59:59Z")));
        assert!(renewal_due(from, until, t("2027-01-01T02:00:01Z")));
        assert!(renewal_due(from, until, t("2027-01-02T00:00:00Z")));
    }
}
