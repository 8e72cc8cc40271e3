//! `botward dev`: a local OpenBao and botward to try things with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::app::EX_UNAVAILABLE;

use super::serve::{serve_until, shutdown_signal};

pub(super) async fn dev(dir: PathBuf, port: u16, keep: bool) -> ExitCode {
    crate::tls::install_provider();
    let dir = match std::path::absolute(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("botward dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bao = match crate::dev::find_bao() {
        Some(b) => b,
        None => match crate::dev::install_bao() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("botward dev: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        },
    };
    let bao_dir = dir.join("openbao");
    let server = match crate::dev::DevBao::start(&bao, &bao_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("botward dev: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let files = match crate::dev::write_demo(&server, &dir, &format!("127.0.0.1:{port}")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("botward dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "botward".into());
    let (bot, cert, key) = &files.bots[0];
    let print_help = move |_: &str| {
        let ca = files.ca.display();
        let (cert, key) = (cert.display(), key.display());
        println!();
        println!(
            "OpenBao dev server: {} (log: {})",
            server_addr_hint(&bao_dir),
            bao_dir.join("bao.log").display()
        );
        println!(
            "Config: {}   Audit log: {}",
            files.config.display(),
            files.dir.join("audit.jsonl").display()
        );
        println!();
        println!("As {bot}, paste any of these in another terminal:");
        println!("  curl --cert {cert} --key {key} --cacert {ca} https://127.0.0.1:{port}/v1/secrets/erp-db");
        println!("  curl --cert {cert} --key {key} --cacert {ca} 'https://127.0.0.1:{port}/v1/secrets/erp-db?field=password'");
        println!(
            "  curl --cert {cert} --key {key} --cacert {ca} https://127.0.0.1:{port}/v1/whoami"
        );
        println!("  curl --cert {cert} --key {key} --cacert {ca} https://127.0.0.1:{port}/v1/secrets/sftp   # not granted: 403");
        println!("  BOTWARD_ADDR=https://127.0.0.1:{port} BOTWARD_CERT={cert} BOTWARD_KEY={key} BOTWARD_CA={ca} {exe} get erp-db --field password");
        println!("  BOTWARD_ADDR=unix://{} BOTWARD_CERT={cert} BOTWARD_KEY={key} BOTWARD_CA={ca} {exe} get erp-db", files.dir.join("botward.sock").display());
        println!();
        println!("Press Ctrl-C to stop and clean up.");
    };
    let code = serve_until(files_config_path(&dir), shutdown_signal(), print_help).await;
    drop(server);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

fn files_config_path(dir: &Path) -> PathBuf {
    dir.join("botward.toml")
}

fn server_addr_hint(bao_dir: &Path) -> String {
    bao_dir.display().to_string()
}
