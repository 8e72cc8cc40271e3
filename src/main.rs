//! The `botward` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    let subscriber = tracing_subscriber::registry().with(filter).with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false),
    );
    // Under the service control manager the Event Log gets the warnings,
    // errors and the server's lifecycle too.
    #[cfg(windows)]
    let subscriber = subscriber.with(
        cli.runs_as_service()
            .then(botward::platform::windows::eventlog::EventLog::open)
            .flatten(),
    );
    subscriber.init();
    botward::cli::run(cli)
}
