//! The `botward` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;

/// Every freed block is wiped: see `botward::alloc`.
#[global_allocator]
static ALLOC: botward::alloc::WipingAlloc = botward::alloc::WipingAlloc;

fn main() -> ExitCode {
    let cli = match botward::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                botward::cli::EX_USAGE
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // vaultrs logs every Vault error status at ERROR; botward reports those
    // itself, with context.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,vaultrs=off,rustify=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    botward::cli::run(cli)
}
