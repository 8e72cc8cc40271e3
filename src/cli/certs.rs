//! `botward certs`: a development CA and bot certificates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::CertsCommand;
use crate::certs::pfx::{self, Password};
use crate::certs::{CertError, Issued};

pub(super) fn certs(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Init { dir } => (|| {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CertError(format!("{}: {e}", dir.display())))?;
            let ca = crate::certs::Ca::generate("botward dev CA")?;
            ca.write(&dir)?;
            ca.issue_server(&["localhost", "127.0.0.1", "::1"])?
                .write(&dir, "server")?;
            println!(
                "wrote {0}/ca.pem, {0}/ca-key.pem, {0}/server.pem, {0}/server-key.pem",
                dir.display()
            );
            Ok(())
        })(),
        CertsCommand::Issue {
            bot,
            dir,
            trust_domain,
            days,
            pfx,
            pfx_password_file,
        } => {
            let pfx = pfx.then_some(pfx_password_file);
            issue(&bot, &dir, &trust_domain, days, pfx)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botward: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Issues a bot certificate; `pfx` is `Some` with `--pfx`, holding the
/// password file if one was named.
fn issue(
    bot: &str,
    dir: &Path,
    trust_domain: &str,
    days: i64,
    pfx: Option<Option<PathBuf>>,
) -> Result<(), CertError> {
    if !crate::policy::is_valid_name(bot) {
        return Err(CertError(format!("{bot:?} is not a valid bot name")));
    }
    // The password first, so that a bad password file leaves nothing written.
    let password = match &pfx {
        Some(Some(file)) => Some((read_password(file)?, false)),
        Some(None) => Some((Password::generate()?, true)),
        None => None,
    };
    let ca = crate::certs::Ca::load(&dir.join("ca.pem"), &dir.join("ca-key.pem"))?;
    let validity = crate::certs::Validity {
        starts_days_ago: 1,
        ends_in_days: days,
    };
    let issued = ca.issue_bot(trust_domain, bot, validity)?;
    let (c, k) = issued.write(dir, bot)?;
    println!(
        "wrote {} and {} for spiffe://{trust_domain}/bot/{bot}",
        c.display(),
        k.display()
    );
    if let Some((password, generated)) = password {
        let file = write_pfx(dir, bot, &issued, ca.cert_der(), &password)?;
        let pw_file = dir.join(format!("{bot}.pfx.password"));
        if generated {
            let mut text =
                zeroize::Zeroizing::new(String::with_capacity(pfx::GENERATED_PASSWORD_LEN + 1));
            // A generated password is letters and digits.
            text.extend(password.expose_secret().iter().map(|b| char::from(*b)));
            text.push('\n');
            crate::certs::write_file(&pw_file, &text, 0o600)?;
            println!(
                "wrote {} (PKCS#12); its password is in {}",
                file.display(),
                pw_file.display()
            );
        } else {
            // A password file from an earlier run no longer opens the file.
            match std::fs::remove_file(&pw_file) {
                Ok(()) => println!("removed the stale {}", pw_file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CertError(format!("{}: {e}", pw_file.display()))),
            }
            println!("wrote {} (PKCS#12) with the given password", file.display());
        }
    }
    Ok(())
}

/// The password in the first line of `file`.
fn read_password(file: &Path) -> Result<Password, CertError> {
    let contents = zeroize::Zeroizing::new(
        std::fs::read(file).map_err(|e| CertError(format!("{}: {e}", file.display())))?,
    );
    Password::from_file_contents(&contents)
        .map_err(|e| CertError(format!("{}: {e}", file.display())))
}

/// Writes `DIR/BOT.pfx` (mode 0600) with the bot's key, its certificate and
/// the CA certificate.
fn write_pfx(
    dir: &Path,
    bot: &str,
    issued: &Issued,
    ca_der: &[u8],
    password: &Password,
) -> Result<PathBuf, CertError> {
    let der = pfx::encode(
        &pfx::Contents {
            key_pkcs8: &issued.key_der,
            cert_der: &issued.cert_der,
            ca_der: &[ca_der],
            friendly_name: &format!("botward bot {bot}"),
        },
        password,
    )?;
    let file = dir.join(format!("{bot}.pfx"));
    crate::certs::write_bytes(&file, &der, 0o600)?;
    Ok(file)
}
