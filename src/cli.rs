//! The command line.
//!
//! This module parses arguments and dispatches; each command lives in its
//! own file.

use std::process::ExitCode;

// Every line a command prints goes through `text::escape`: messages carry
// paths, config values, audit fields and what a peer answered, and none may
// move the terminal's cursor or forge a line. (The secret `get` prints is
// written with `write_all`, untouched.)
macro_rules! println {
    () => { ::std::println!() };
    ($($arg:tt)*) => { ::std::println!("{}", $crate::text::Escaped(format_args!($($arg)*))) };
}
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($arg:tt)*) => { ::std::eprintln!("{}", $crate::text::Escaped(format_args!($($arg)*))) };
}

mod analyze;
mod args;
mod audit;
mod certs;
mod dev;
mod elevation;
mod exec;
mod get;
mod identity;
mod serve;
mod service;

pub use crate::app::{EX_UNAVAILABLE, EX_USAGE};
pub use args::{
    AuditCommand, AuditKeyArgs, BotCommand, CertsCommand, Cli, Command, ConnArgs, ElevationCommand,
    LocalArgs, ServiceCommand,
};
pub use serve::{serve, serve_until, shutdown_signal};

use crate::platform;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => platform::service::run(|| runtime().block_on(serve(config))),
        Command::CheckConfig { file } => serve::check_config(&file),
        Command::Get { name, field, conn } => {
            runtime().block_on(get::get(&name, field.as_deref(), conn))
        }
        Command::Exec { env, conn, command } => runtime().block_on(exec::exec(env, conn, command)),
        Command::Certs { command } => certs::certs(command),
        Command::Audit { command } => audit::audit(command),
        Command::Analyze {
            train_days,
            tz,
            format,
            config,
            files,
        } => analyze::analyze(
            train_days,
            tz.as_deref(),
            &format,
            config.as_deref(),
            &files,
        ),
        Command::Service { command } => service::service(command),
        Command::Elevation { command } => runtime().block_on(elevation::elevation(command)),
        Command::Bot {
            command: BotCommand::EnrollToken { bot, to },
        } => runtime().block_on(identity::enroll_token(&bot, &to)),
        Command::Enroll {
            token,
            token_file,
            renew,
            out,
            to,
        } => runtime().block_on(identity::enroll(token, token_file, renew, &out, &to)),
        Command::Renew { dir, to } => runtime().block_on(identity::renew(&dir, &to)),
        Command::Dev { dir, port, keep } => runtime().block_on(dev::dev(dir, port, keep)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}
