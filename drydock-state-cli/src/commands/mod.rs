//! The commands: each group in a module of its own, each command returning the
//! [`Outcome`] it prints.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use drydock_state::{Config, Error, Result, StateStore};

use crate::args::{Command, Output};
use crate::output::Outcome;

mod admin;
mod adopt;
mod boot_action;
mod build_data;
mod design;
mod lease;
mod message;
mod task;
mod worker;

/// Runs `command` under `config` (`worker` prints its events in `output` as they happen). Only the commands that need the store open it (and so
/// migrate its schema): `config` and `design` work without one.
pub async fn execute(command: Command, config: &Config, output: Output) -> Result<Outcome> {
    match command {
        Command::Config => Ok(admin::config(config)),
        Command::Design(cmd) => design::run(cmd, config).await,
        Command::Migrate => Ok(admin::migrate(&*open(config).await?, config)),
        Command::Health => admin::health(&*open(config).await?, config).await,
        Command::Purge { older_than } => admin::purge(&*open(config).await?, older_than).await,
        Command::RecoverOrphans { term, policy } => {
            admin::recover_orphans(&*open(config).await?, term, policy.into()).await
        }
        Command::Task(cmd) => task::run(cmd, &*open(config).await?).await,
        Command::Message(cmd) => message::run(cmd, &*open(config).await?).await,
        Command::BuildData(cmd) => build_data::run(cmd, &*open(config).await?).await,
        Command::Lease(cmd) => lease::run(cmd, &*open(config).await?).await,
        Command::BootAction(cmd) => boot_action::run(cmd, &*open(config).await?).await,
        Command::Adopt {
            from,
            dry_run,
            time_zone,
        } => {
            let store = open(config).await?;
            adopt::run(&*store, config, &from, dry_run, time_zone.as_deref()).await
        }
        Command::Worker(args) => worker::run(args, config, output).await,
    }
}

/// Opens the configured store, migrating its schema.
async fn open(config: &Config) -> Result<Arc<dyn StateStore>> {
    drydock_state::open_configured(config).await
}

/// The configured database URL (the embedded SQLite database when none is), its password
/// hidden.
fn database_url(config: &Config) -> String {
    let url = config
        .database
        .url
        .clone()
        .unwrap_or_else(drydock_state::default_database_url);
    drydock_state::redact_uri(&url)
}

/// Reads a whole file, or standard input for `-`, as UTF-8 text.
fn read_input(field: &str, path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    read.map_err(|e| Error::invalid(field, format!("cannot read {}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(field, format!("{} is not valid UTF-8", path.display())))
}
