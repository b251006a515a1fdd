//! The command line: every command, subcommand and flag, as clap parses them.
//!
//! The doc comments of the clap types are the help text `--help` prints, and the names and
//! flags are an interface scripts depend on: change neither lightly.

use std::path::PathBuf;

use clap::{value_parser, Args, Parser, Subcommand, ValueEnum};
use drydock_state::{Claim, OrphanPolicy};

mod boot_action;
mod build_data;
mod design;
mod lease;
mod message;
mod parse;
mod task;
mod worker;

pub use boot_action::{BootActionCommand, BootActionContextCommand};
pub use build_data::{BuildDataAdd, BuildDataCommand};
pub use design::DesignCommand;
pub use lease::LeaseCommand;
pub use message::{MessageAdd, MessageCommand};
pub use task::{InitialStatus, TaskCommand};
pub use worker::WorkerArgs;

#[derive(Parser, Debug)]
#[command(
    name = "drydock-state",
    version,
    about = "Inspect and drive drydock-state: tasks, messages, build data, boot actions, the leader lease and designs."
)]
pub struct Cli {
    /// Database URL (postgres://…, mysql://…, sqlite://…, memory://). Default: the config file, then
    /// DRYDOCK_DATABASE__URL, then the embedded SQLite database.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// A TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or upgrade the schema.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Result messages.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Node build data.
    #[command(subcommand, name = "build-data")]
    BuildData(BuildDataCommand),
    /// The leader lease.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Delete task trees older than a retention period, with their messages.
    Purge {
        /// Retention, e.g. 30d or 12h.
        #[arg(long, value_name = "DURATION", value_parser = parse::retention)]
        older_than: std::time::Duration,
    },
    /// Design references.
    #[command(subcommand)]
    Design(DesignCommand),
    /// Boot actions: what nodes run on first boot, and the context they present.
    #[command(subcommand, name = "boot-action")]
    BootAction(BootActionCommand),
    /// Check that the store answers: prints the backend and its clock (exit 1 when it cannot
    /// be reached).
    Health,
    /// After winning lease term T: recover the running and terminating tasks claimed under an
    /// older term (prints the ids recovered, oldest first).
    #[command(name = "recover-orphans")]
    RecoverOrphans {
        /// The new leader's lease term; tasks claimed under a lower term are recovered.
        #[arg(long, value_name = "T", value_parser = value_parser!(i64).range(1..))]
        term: i64,
        /// What becomes of a running orphan: back to the queue, or complete with result
        /// failure (a terminating one is terminated either way).
        #[arg(long, value_enum)]
        policy: Policy,
    },
    /// Import a Drydock database (its alembic schema, head 4713e7ebca9) into the configured
    /// store, in one transaction, and print what each table gave. Stop Drydock first. Safe to
    /// run again: nothing is imported twice. The source is only read.
    Adopt {
        /// The Drydock database, e.g. `postgres://drydock@db/drydock` (a password in it is never
        /// shown).
        #[arg(long, value_name = "URL")]
        from: String,
        /// Do everything, report it, and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The time zone Drydock's sessions wrote naive task and message times in (an IANA
        /// name, e.g. UTC). Default: the source server's setting for Drydock's role and
        /// database.
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
    },
    /// Run as an orchestrator instance: campaign for the lease and, while leader, claim tasks
    /// and run a command for each, until SIGTERM or SIGINT (then finish gracefully and
    /// release the lease). Prints one line per lease change and per task.
    Worker(WorkerArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    Requeue,
    Fail,
}

impl From<Policy> for OrphanPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Requeue => OrphanPolicy::Requeue,
            Policy::Fail => OrphanPolicy::Fail,
        }
    }
}

/// The claim a write is made under: `--instance`, `--term` and `--attempt` as the claimed
/// task shows them (`claimed_by`, `claim_term`, `attempt`). Without them the write is
/// unguarded. With them, it is refused (exit 1, nothing changed) unless the task still carries
/// exactly that claim and, with a term, that instance still holds the lease with that term.
#[derive(Args, Debug)]
pub struct GuardArgs {
    /// Write as the claimant of the task: the claiming instance (needs --attempt).
    #[arg(long, value_name = "I", requires = "attempt")]
    pub instance: Option<String>,
    /// The lease term the claim was made under; omit for an unfenced claim.
    #[arg(long, value_name = "T", requires = "instance", value_parser = value_parser!(i64).range(1..))]
    pub term: Option<i64>,
    /// The claim's attempt number (the claimed task's `attempt`).
    #[arg(long, value_name = "N", requires = "instance", value_parser = value_parser!(i64).range(1..))]
    pub attempt: Option<i64>,
}

impl GuardArgs {
    /// The claim the flags name, or `None` for an unguarded write.
    pub fn claim(&self) -> Option<Claim> {
        match (&self.instance, self.attempt) {
            (Some(instance), Some(attempt)) => {
                Some(Claim::new(instance.clone(), self.term, attempt))
            }
            _ => None,
        }
    }
}
