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
    renew_instead: bool,
    out: &Path,
    to: &LocalArgs,
) -> ExitCode {
    if renew_instead {
        return renew(out, to).await;
    }
    let Some(mut token) = token else {
        eprintln!("botward: --token is required");
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

fn prepare_dir(dir: &Path) -> Result<(), Failed> {
    let usage =
        |e: std::io::Error| Failed(ExitCode::from(EX_USAGE), format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(usage)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(usage)?;
    }
    Ok(())
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
    let written = crate::state_file::replace_durably(&path, pem.as_bytes(), 0o600);
    pem.zeroize();
    written.map_err(|e| Failed(ExitCode::FAILURE, format!("{}: {e}", path.display())))?;
    let field = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
    Ok((field("bot"), field("not_after")))
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
