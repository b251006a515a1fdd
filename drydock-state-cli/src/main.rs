//! `drydock-state`: inspect and drive drydock-state from a shell.
//!
//! Exit status: 0 on success, 1 on an error (one line on stderr), 2 on a usage error, 3 when
//! `lease claim` or `lease renew` finds another instance holding the lease.
//!
//! No output shows a password: both output modes pass through the redaction of
//! `output::redact` (every URI as `drydock_state::redact_uri` shows it); only a fetched design
//! document is printed as it is.
//!
//! The parts: `args` (the command line clap parses), `commands` (one module per command
//! group) and `output` (the outcome of a command, its text rendering and the redaction).

use std::process::ExitCode;

use clap::Parser;
use drydock_state::{Config, Result};

mod args;
mod commands;
mod output;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drydock-state: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors never carry a password; redacted again all the same, as stdout is.
            eprintln!(
                "drydock-state: error: {}",
                output::redact::redact_text(&e.to_string())
            );
            ExitCode::from(1)
        }
    }
}

/// Loads the configuration (`--database-url` over it), runs the command and prints its
/// outcome; returns the exit status.
async fn run(cli: args::Cli) -> Result<u8> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database_url {
        config.database.url = Some(url);
    }
    commands::execute(cli.command, &config, cli.output)
        .await?
        .print(cli.output)
}
