//! masrun: deploys and operates Matrix Authentication Service beside Synapse by running Rhai
//! task files against inventory hosts. This file only parses arguments, sets up logging, and
//! maps the run's result to an exit status.

mod cli;
mod engine;
mod inventory;
mod primitives;
mod python_literal;
mod repl;
mod report;
mod run;
mod transport;
mod vars;
mod yaml;

use std::process::ExitCode;

fn main() -> ExitCode {
    let command = cli::parse(std::env::args().collect());
    init_logging(command.verbose());
    let status = match command {
        cli::Command::Run(cli) => run::run(cli),
        cli::Command::Repl(cli) => repl::repl(cli),
        cli::Command::Eval(cli) => repl::eval(cli),
    };
    ExitCode::from(status as u8)
}

/// Diagnostics go to stderr through `tracing`; `-vv` adds info (such as the SSH keys offered),
/// `-vvv` debug, and `RUST_LOG` overrides.
fn init_logging(verbosity: u8) {
    let default = match verbosity {
        0 | 1 => "masrun=warn",
        2 => "masrun=info",
        _ => "masrun=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal, so a log file gets plain text. A run lasts seconds, so
    // timestamps add nothing.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}
