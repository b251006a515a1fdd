//! `drydock-state`: inspect and drive drydock-state from a shell.
//!
//! Exit status: 0 on success, 1 on an error (one line on stderr), 2 on a usage error, 3 when
//! `lease claim` or `lease renew` finds another instance holding the lease.
//!
//! No output shows a password: both output modes pass through the redaction of `render`
//! (every URI as `drydock_state::redact_uri` shows it); only a fetched design document is
//! printed as it is.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use clap::{value_parser, Args, Parser, Subcommand, ValueEnum};
use drydock_state::{
    BootAction, BootActionContext, BootActionId, BootActionStatus, BuildData, BuildDataQuery,
    Claim, ClaimRequest, Config, Error, IdentityKey, LeaseOutcome, Link, NewMessage, NewTask,
    OrphanPolicy, Result, ResultStatus, StateStore, SubtaskFilter, Task, TaskFilter, TaskId,
    TaskStatus, TaskUpdate, TaskViewOptions, Verbosity,
};
use serde_json::{json, Value};
use uuid::Uuid;

mod render;

/// Exit status when the lease is held by another instance.
const EXIT_LEASE_HELD_ELSEWHERE: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "drydock-state",
    version,
    about = "Inspect and drive drydock-state: tasks, messages, build data, boot actions, the leader lease and designs."
)]
struct Cli {
    /// Database URL (postgres://…, sqlite://…, memory://). Default: the config file, then
    /// DRYDOCK_DATABASE__URL, then the embedded SQLite database.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// A TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
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
        #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Policy {
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
struct GuardArgs {
    /// Write as the claimant of the task: the claiming instance (needs --attempt).
    #[arg(long, value_name = "I", requires = "attempt")]
    instance: Option<String>,
    /// The lease term the claim was made under; omit for an unfenced claim.
    #[arg(long, value_name = "T", requires = "instance", value_parser = value_parser!(i64).range(1..))]
    term: Option<i64>,
    /// The claim's attempt number (the claimed task's `attempt`).
    #[arg(long, value_name = "N", requires = "instance", value_parser = value_parser!(i64).range(1..))]
    attempt: Option<i64>,
}

impl GuardArgs {
    fn claim(&self) -> Option<Claim> {
        match (&self.instance, self.attempt) {
            (Some(instance), Some(attempt)) => {
                Some(Claim::new(instance.clone(), self.term, attempt))
            }
            _ => None,
        }
    }
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    /// Create a task.
    Create {
        /// The action, e.g. deploy_nodes.
        #[arg(long)]
        action: String,
        /// The site design URI.
        #[arg(long, value_name = "URI")]
        design_ref: Option<String>,
        /// The parent task; the new task is appended to its subtasks.
        #[arg(long, value_name = "ID")]
        parent: Option<TaskId>,
        /// The node filter, as JSON.
        #[arg(long, value_name = "JSON", value_parser = parse_json)]
        node_filter: Option<Value>,
        /// The initial status.
        #[arg(long, value_enum, default_value_t = InitialStatus::Requested)]
        status: InitialStatus,
        /// Back-date the creation (RFC 3339, kept to the microsecond), for imports and
        /// retention tests. Default: now.
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
        created: Option<DateTime<Utc>>,
        /// Who creates the task.
        #[arg(long, value_name = "NAME", default_value = "drydock-state-cli")]
        created_by: String,
    },
    /// Show a task with its messages; with --layers, --subtask-errors or --build-data, the
    /// task view Drydock's API returned (`GET /api/v1.0/tasks/{id}`).
    Get {
        /// The task id.
        id: TaskId,
        /// Show the task tree down this many layers (the task is layer 1; -1 for all), as a
        /// map of task id to task (null for an id listed but not stored) with `init_task_id`.
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = value_parser!(i32).range(-1..))]
        layers: Option<i32>,
        /// Add `subtask_errors`: the result of every subtask, at any depth, that reported
        /// errors.
        #[arg(long)]
        subtask_errors: bool,
        /// Add each shown task's `build_data`.
        #[arg(long)]
        build_data: bool,
    },
    /// List tasks, oldest first.
    List {
        /// Only tasks in this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<TaskStatus>,
        /// Only tasks with this action.
        #[arg(long)]
        action: Option<String>,
        /// Only subtasks of this task.
        #[arg(long, value_name = "ID")]
        parent: Option<TaskId>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Claim the oldest queued task (prints it, or null when nothing is queued).
    Claim {
        /// Only tasks with this action (repeatable).
        #[arg(long = "action", value_name = "A")]
        actions: Vec<String>,
        /// The claiming instance.
        #[arg(long, value_name = "ID", default_value_t = default_instance())]
        instance: String,
        /// Fence the claim with this lease term.
        #[arg(long, value_name = "N")]
        term: Option<i64>,
        /// Name the claim with a UUID of your choosing: re-sending the same claim (after an
        /// error that left you unsure whether it was made) returns the task already claimed
        /// under it instead of claiming another.
        #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
        claim_id: Option<Uuid>,
    },
    /// Change the fields of a task: status, result, links, retry count.
    Update(TaskUpdateArgs),
    /// Change a task's status.
    SetStatus {
        /// The task id.
        id: TaskId,
        /// The new status.
        #[arg(value_parser = parse_status)]
        status: TaskStatus,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// List a task's subtasks, in the order they were added.
    Subtasks {
        /// The parent task id.
        id: TaskId,
        /// Only those not finished.
        #[arg(long, conflicts_with = "complete")]
        active: bool,
        /// Only those finished (complete or terminated).
        #[arg(long)]
        complete: bool,
    },
    /// Terminate a task.
    Terminate {
        /// The task id.
        id: TaskId,
        /// Who terminates it.
        #[arg(long, value_name = "NAME", default_value = "drydock-state-cli")]
        by: String,
    },
}

#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("fields")
        .required(true)
        .multiple(true)
        .args(["status", "result_status", "result_message", "result_reason", "successes", "failures", "links", "retry"])
))]
struct TaskUpdateArgs {
    /// The task id.
    id: TaskId,
    /// The new status.
    #[arg(long, value_name = "S", value_parser = parse_status)]
    status: Option<TaskStatus>,
    /// How the work went.
    #[arg(long, value_name = "R", value_parser = parse_result_status)]
    result_status: Option<ResultStatus>,
    /// The result's one-line summary.
    #[arg(long, value_name = "M")]
    result_message: Option<String>,
    /// Why the work did not succeed.
    #[arg(long, value_name = "M")]
    result_reason: Option<String>,
    /// A target that succeeded (repeatable; replaces the stored list).
    #[arg(long = "success", value_name = "NODE")]
    successes: Vec<String>,
    /// A target that failed (repeatable; replaces the stored list).
    #[arg(long = "failure", value_name = "NODE")]
    failures: Vec<String>,
    /// A result link (repeatable; replaces the stored list).
    #[arg(long = "link", value_name = "REL=HREF", value_parser = parse_link)]
    links: Vec<Link>,
    /// The retry count.
    #[arg(long, value_name = "N", value_parser = value_parser!(i32).range(0..))]
    retry: Option<i32>,
    #[command(flatten)]
    guard: GuardArgs,
}

impl TaskUpdateArgs {
    fn update(&self) -> TaskUpdate {
        let mut update = TaskUpdate::new();
        if let Some(status) = self.status {
            update = update.status(status);
        }
        if let Some(status) = self.result_status {
            update = update.result_status(status);
        }
        if let Some(message) = &self.result_message {
            update = update.result_message(Some(message.as_str()));
        }
        if let Some(reason) = &self.result_reason {
            update = update.result_reason(Some(reason.as_str()));
        }
        if !self.successes.is_empty() {
            update = update.successes(self.successes.iter().map(String::as_str));
        }
        if !self.failures.is_empty() {
            update = update.failures(self.failures.iter().map(String::as_str));
        }
        if !self.links.is_empty() {
            update = update.links(self.links.iter().cloned());
        }
        if let Some(retry) = self.retry {
            update = update.retry(retry);
        }
        update
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum InitialStatus {
    Requested,
    Queued,
}

#[derive(Subcommand, Debug)]
enum MessageCommand {
    /// Append a result message to a task.
    Add(MessageAdd),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("text").required(true).args(["message", "message_file"])))]
struct MessageAdd {
    /// The task id.
    id: TaskId,
    /// The message text.
    #[arg(long)]
    message: Option<String>,
    /// Read the message from a file, or `-` for standard input.
    #[arg(long, value_name = "PATH")]
    message_file: Option<PathBuf>,
    /// The message reports an error.
    #[arg(long)]
    error: bool,
    /// What the message is about.
    #[arg(long, value_name = "T", default_value = "task")]
    context_type: String,
    /// Which one.
    #[arg(long, value_name = "C", default_value = "")]
    context: String,
}

#[derive(Subcommand, Debug)]
enum BuildDataCommand {
    /// Record a build-data element.
    Add(BuildDataAdd),
    /// List build data, newest first.
    List {
        /// Only this node's.
        #[arg(long, value_name = "N")]
        node: Option<String>,
        /// Only this task's.
        #[arg(long, value_name = "ID")]
        task: Option<TaskId>,
        /// Only the newest element per node and generator.
        #[arg(long)]
        latest: bool,
        /// Leave the data elements out.
        #[arg(long)]
        brief: bool,
    },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["data", "file"])))]
struct BuildDataAdd {
    /// The node.
    #[arg(long, value_name = "N")]
    node: String,
    /// The task that collected it.
    #[arg(long, value_name = "ID")]
    task: TaskId,
    /// What produced it (lshw, lldp, ...).
    #[arg(long, value_name = "G")]
    generator: String,
    /// Its MIME type.
    #[arg(long, value_name = "MIME")]
    format: String,
    /// The data.
    #[arg(long)]
    data: Option<String>,
    /// Read the data from a file, or `-` for standard input.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum LeaseCommand {
    /// Claim the lease (exit 3 if another instance holds it).
    Claim {
        /// The claiming instance.
        #[arg(long, value_name = "ID")]
        instance: String,
    },
    /// Renew the lease (exit 3 if this instance does not hold it).
    Renew {
        /// The holding instance.
        #[arg(long, value_name = "ID")]
        instance: String,
    },
    /// Release the lease.
    Release {
        /// The holding instance.
        #[arg(long, value_name = "ID")]
        instance: String,
    },
    /// Show the current holder.
    Show,
}

#[derive(Subcommand, Debug)]
enum DesignCommand {
    /// Fetch a design document and print it (or write it to a file).
    Fetch {
        /// The design URI.
        uri: String,
        /// Write the document here instead of standard output.
        #[arg(long, value_name = "PATH")]
        output_file: Option<PathBuf>,
    },
    /// List the design schemes this build serves.
    Schemes,
}

#[derive(Subcommand, Debug)]
enum BootActionCommand {
    /// A node's boot-action context: the task deploying it and the key it presents.
    #[command(subcommand)]
    Context(BootActionContextCommand),
    /// Record a boot action for a node (prints its id).
    Add {
        /// The node.
        #[arg(long, value_name = "N")]
        node: String,
        /// The task deploying the node.
        #[arg(long, value_name = "T")]
        task: TaskId,
        /// The node's identity key: 64 hex digits (32 bytes).
        #[arg(long, value_name = "HEX")]
        key: String,
        /// The action's name in the site design.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Its initial status (`unreported` for an action that does not signal).
        #[arg(long, value_name = "S", value_parser = parse_boot_action_status, default_value = "incomplete")]
        status: BootActionStatus,
    },
    /// Set a boot action's status, as its node reports it (a final status, success or
    /// failure, never changes again).
    SetStatus {
        /// The boot action id (26 characters of Crockford base32).
        id: String,
        /// The new status.
        #[arg(value_parser = parse_boot_action_status)]
        status: BootActionStatus,
    },
    /// List a node's boot actions, by name.
    List {
        /// The node.
        #[arg(long, value_name = "N")]
        node: String,
    },
    /// Show one boot action.
    Get {
        /// The boot action id (26 characters of Crockford base32).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum BootActionContextCommand {
    /// Set a node's context, replacing the one it had (prints the key).
    Set {
        /// The node.
        #[arg(long, value_name = "N")]
        node: String,
        /// The task deploying the node.
        #[arg(long, value_name = "T")]
        task: TaskId,
        /// The identity key, 64 hex digits (32 bytes); a new random one when not given.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
    /// Show a node's context.
    Get {
        /// The node.
        #[arg(long, value_name = "N")]
        node: String,
    },
}

fn parse_boot_action_status(s: &str) -> std::result::Result<BootActionStatus, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn parse_status(s: &str) -> std::result::Result<TaskStatus, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn parse_result_status(s: &str) -> std::result::Result<ResultStatus, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn parse_uuid(s: &str) -> std::result::Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|e| format!("not a UUID: {e}"))
}

fn parse_rfc3339(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|e| format!("not an RFC 3339 date and time (e.g. 2024-05-01T12:00:00Z): {e}"))
}

fn parse_link(s: &str) -> std::result::Result<Link, String> {
    match s.split_once('=') {
        Some((rel, href)) if !rel.is_empty() && !href.is_empty() => Ok(Link {
            rel: rel.to_string(),
            href: href.to_string(),
        }),
        _ => Err("expected REL=HREF, both non-empty (e.g. detail_logs=https://logs/1)".into()),
    }
}

fn parse_json(s: &str) -> std::result::Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not valid JSON: {e}"))
}

fn parse_retention(s: &str) -> std::result::Result<std::time::Duration, String> {
    match drydock_state::config::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn default_instance() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("cli@{host}")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
                render::redact_text(&e.to_string())
            );
            ExitCode::from(1)
        }
    }
}

/// What a command produced: JSON for `--output json`, text otherwise, and an exit status.
/// Both go through [`render::redact_json`] / [`render::redact_text`] before they are printed,
/// so no output shows a URI's password; only `document` (a fetched design, printed as the
/// text output and as the JSON field `document`) is printed as it is.
struct Outcome {
    json: Value,
    text: String,
    code: u8,
    document: Option<String>,
}

impl Outcome {
    fn new(json: Value, text: String) -> Self {
        Outcome {
            json,
            text,
            code: 0,
            document: None,
        }
    }

    /// A fetched document: `meta` (redacted) in JSON with the document beside it, the
    /// document alone as text; the document's bytes are printed untouched.
    fn document(meta: Value, document: String) -> Self {
        Outcome {
            document: Some(document),
            ..Outcome::new(meta, String::new())
        }
    }

    /// What `--output json` prints.
    fn json_output(mut self) -> Value {
        render::redact_json(&mut self.json);
        if let Some(document) = self.document {
            self.json["document"] = Value::String(document);
        }
        self.json
    }

    /// What `--output text` prints.
    fn text_output(self) -> String {
        match self.document {
            Some(document) => document,
            None => render::redact_text(&self.text).into_owned(),
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database_url {
        config.database.url = Some(url);
    }
    let outcome = match cli.command {
        Command::Config => {
            let mut effective = config.clone();
            effective
                .database
                .url
                .get_or_insert_with(drydock_state::default_database_url);
            let json = effective.to_redacted_json();
            let text = serde_json::to_string_pretty(&json).unwrap_or_default();
            Outcome::new(json, text)
        }
        Command::Design(cmd) => design(cmd, &config).await?,
        command => {
            let store = drydock_state::open_configured(&config).await?;
            execute(command, store, &config).await?
        }
    };
    let code = outcome.code;
    let mut stdout = std::io::stdout().lock();
    let written = match cli.output {
        Output::Json => writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&outcome.json_output()).unwrap_or_default()
        ),
        Output::Text => match outcome.text_output() {
            text if text.is_empty() => Ok(()),
            text => writeln!(stdout, "{}", text.trim_end()),
        },
    };
    // A closed pipe (`| head`) is not an error worth reporting.
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Error::invalid("stdout", e.to_string()));
        }
    }
    Ok(code)
}

fn task_json(task: &Task) -> Result<Value> {
    to_json(task)
}

/// Serializes a result for `--output json`; a failure is reported, never printed as `null`.
fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Backend {
        message: format!("cannot render the result as JSON: {e}"),
        source: None,
    })
}

async fn execute(command: Command, store: Arc<dyn StateStore>, config: &Config) -> Result<Outcome> {
    Ok(match command {
        Command::Migrate => {
            let url = config
                .database
                .url
                .clone()
                .unwrap_or_else(drydock_state::default_database_url);
            let url = drydock_state::redact_uri(&url);
            Outcome::new(
                json!({"migrated": true, "backend": store.backend_name(), "database": url}),
                format!("schema is up to date ({} at {url})", store.backend_name()),
            )
        }
        Command::Task(cmd) => task(cmd, &*store).await?,
        Command::Message(MessageCommand::Add(add)) => {
            let text = match (add.message, add.message_file) {
                (Some(text), _) => text,
                (None, Some(path)) => read_input("message-file", &path)?,
                (None, None) => {
                    return Err(Error::invalid(
                        "message",
                        "give --message or --message-file",
                    ))
                }
            };
            let message = NewMessage {
                error: add.error,
                ..NewMessage::info(text).with_context(add.context_type, add.context)
            };
            let stored = store.append_message(add.id, &message, None).await?;
            let text = format!("message {} appended to task {}", stored.sequence, add.id);
            Outcome::new(to_json(&stored)?, text)
        }
        Command::BuildData(BuildDataCommand::Add(add)) => {
            let element = match (add.data, add.file) {
                (Some(data), _) => data,
                (None, Some(path)) => read_input("file", &path)?,
                (None, None) => return Err(Error::invalid("data", "give --data or --file")),
            };
            let data = BuildData {
                node_name: add.node,
                task_id: add.task,
                collected_date: None,
                generator: add.generator,
                data_format: add.format,
                data_element: Some(element),
            };
            store.record_build_data(&data, None).await?;
            let text = format!(
                "recorded {} data for node {}",
                data.generator, data.node_name
            );
            Outcome::new(
                json!({"recorded": true, "node_name": data.node_name, "generator": data.generator}),
                text,
            )
        }
        Command::BuildData(BuildDataCommand::List {
            node,
            task,
            latest,
            brief,
        }) => {
            let query = BuildDataQuery {
                node_name: node,
                task_id: task,
                latest,
                verbosity: if brief {
                    Verbosity::Brief
                } else {
                    Verbosity::Full
                },
            };
            let rows = store.build_data(&query).await?;
            Outcome::new(to_json(&rows)?, render::build_data(&rows))
        }
        Command::Lease(cmd) => lease(cmd, &*store).await?,
        Command::RecoverOrphans { term, policy } => {
            let recovered = store.recover_orphans(term, policy.into()).await?;
            let text = recovered
                .iter()
                .map(TaskId::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            Outcome::new(to_json(&recovered)?, text)
        }
        Command::BootAction(cmd) => boot_action(cmd, &*store).await?,
        Command::Health => {
            let clock = store.ping().await?;
            let url = config
                .database
                .url
                .clone()
                .unwrap_or_else(drydock_state::default_database_url);
            let url = drydock_state::redact_uri(&url);
            let backend = store.backend_name();
            Outcome::new(
                json!({"healthy": true, "backend": backend, "database": url, "clock": clock}),
                format!(
                    "{backend} at {url} answers; its clock reads {}",
                    clock.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ),
            )
        }
        Command::Purge { older_than } => {
            let report = store.purge(older_than).await?;
            let text = format!(
                "purged {} tasks and {} messages",
                report.tasks, report.messages
            );
            Outcome::new(to_json(&report)?, text)
        }
        // Answered in `run` without opening a store.
        Command::Config | Command::Design(_) => {
            return Err(Error::invalid("command", "needs no store"))
        }
    })
}

async fn task(cmd: TaskCommand, store: &dyn StateStore) -> Result<Outcome> {
    Ok(match cmd {
        TaskCommand::Create {
            action,
            design_ref,
            parent,
            node_filter,
            status,
            created,
            created_by,
        } => {
            let mut task = NewTask::new(action)
                .with_status(match status {
                    InitialStatus::Requested => TaskStatus::Requested,
                    InitialStatus::Queued => TaskStatus::Queued,
                })
                .with_created_by(created_by);
            task.design_ref = design_ref;
            task.parent_task_id = parent;
            task.node_filter = node_filter;
            if let Some(created) = created {
                task.created = created;
            }
            task.validate()?;
            if let Some(parent) = parent {
                // Refuse before creating anything when the parent takes no new subtasks;
                // add_subtask checks again, atomically.
                let stored = store
                    .get_task(parent)
                    .await?
                    .ok_or_else(|| Error::not_found("parent task", parent))?;
                drydock_state::backend::refuse_new_work_under(&stored)?;
            }
            let mut stored = store.create_task(&task).await?;
            if let Some(parent) = parent {
                store.add_subtask(parent, stored.task_id, None).await?;
            }
            // What the store returned, with the result details every read assembles.
            if let Some(read) = store.get_task(stored.task_id).await? {
                stored = read;
            }
            Outcome::new(task_json(&stored)?, stored.task_id.to_string())
        }
        TaskCommand::Get {
            id,
            layers: None,
            subtask_errors: false,
            build_data: false,
        } => {
            let task = store
                .get_task(id)
                .await?
                .ok_or_else(|| Error::not_found("task", id))?;
            Outcome::new(task_json(&task)?, render::task_detail(&task))
        }
        TaskCommand::Get {
            id,
            layers,
            subtask_errors,
            build_data,
        } => {
            let options = TaskViewOptions {
                layers: layers.unwrap_or(0),
                subtask_errors,
                build_data,
            };
            let view = drydock_state::task_view(store, id, &options)
                .await?
                .ok_or_else(|| Error::not_found("task", id))?;
            let text = render::task_view(&view, &options)?;
            Outcome::new(view, text)
        }
        TaskCommand::List {
            status,
            action,
            parent,
            limit,
        } => {
            let filter = TaskFilter {
                status,
                action,
                parent,
                limit,
                ..Default::default()
            };
            let tasks = store.list_tasks(&filter).await?;
            Outcome::new(to_json(&tasks)?, render::task_table(&tasks))
        }
        TaskCommand::Claim {
            actions,
            instance,
            term,
            claim_id,
        } => {
            let mut request = ClaimRequest::new(instance).actions(actions);
            request.term = term;
            request.claim_id = claim_id;
            match store.claim_next(&request).await? {
                Some(task) => Outcome::new(task_json(&task)?, task.task_id.to_string()),
                None => Outcome::new(Value::Null, "nothing queued".into()),
            }
        }
        TaskCommand::Update(args) => {
            let guard = args.guard.claim();
            let task = store
                .update_task(args.id, &args.update(), guard.as_ref())
                .await?;
            Outcome::new(
                task_json(&task)?,
                format!(
                    "task {} is {} (result {})",
                    args.id, task.status, task.result.status
                ),
            )
        }
        TaskCommand::SetStatus { id, status, guard } => {
            let guard = guard.claim();
            let task = store.set_status(id, status, guard.as_ref()).await?;
            Outcome::new(task_json(&task)?, format!("task {id} is {}", task.status))
        }
        TaskCommand::Subtasks {
            id,
            active,
            complete,
        } => {
            let which = match (active, complete) {
                (true, _) => SubtaskFilter::Active,
                (_, true) => SubtaskFilter::Complete,
                _ => SubtaskFilter::All,
            };
            let tasks = store.subtasks(id, which).await?;
            Outcome::new(to_json(&tasks)?, render::task_table(&tasks))
        }
        TaskCommand::Terminate { id, by } => {
            let task = store.terminate_task(id, &by, None).await?;
            Outcome::new(
                task_json(&task)?,
                format!("task {id} is {} (terminated by {by})", task.status),
            )
        }
    })
}

async fn boot_action(cmd: BootActionCommand, store: &dyn StateStore) -> Result<Outcome> {
    Ok(match cmd {
        BootActionCommand::Context(BootActionContextCommand::Set { node, task, key }) => {
            let identity_key = match key {
                Some(hex) => parse_key(&hex)?,
                None => IdentityKey::generate(),
            };
            let context = BootActionContext {
                node_name: node,
                task_id: task,
                identity_key,
            };
            context.validate()?;
            store.set_boot_action_context(&context).await?;
            Outcome::new(to_json(&context)?, identity_key.to_hex())
        }
        BootActionCommand::Context(BootActionContextCommand::Get { node }) => {
            drydock_state::validate_node_name("boot_action.node_name", &node)?;
            let context = store
                .boot_action_context(&node)
                .await?
                .ok_or_else(|| Error::not_found("boot-action context", format!("node {node}")))?;
            Outcome::new(to_json(&context)?, render::boot_action_context(&context))
        }
        BootActionCommand::Add {
            node,
            task,
            key,
            name,
            status,
        } => {
            let mut action = BootAction::new(node, name, task, parse_key(&key)?, true);
            action.action_status = status;
            action.validate()?;
            store.add_boot_action(&action).await?;
            Outcome::new(to_json(&action)?, action.action_id.to_string())
        }
        BootActionCommand::SetStatus { id, status } => {
            let id = parse_boot_action_id(&id)?;
            let action = store.set_boot_action_status(id, status, &[]).await?;
            let text = format!(
                "boot action {id} ({} on {}) is {}",
                action.action_name, action.node_name, action.action_status
            );
            Outcome::new(to_json(&action)?, text)
        }
        BootActionCommand::List { node } => {
            drydock_state::validate_node_name("boot_action.node_name", &node)?;
            let actions = store.boot_actions_for_node(&node).await?;
            Outcome::new(to_json(&actions)?, render::boot_action_table(&actions))
        }
        BootActionCommand::Get { id } => {
            let id = parse_boot_action_id(&id)?;
            let action = store
                .boot_action(id)
                .await?
                .ok_or_else(|| Error::not_found("boot action", id))?;
            Outcome::new(to_json(&action)?, render::boot_action_detail(&action))
        }
    })
}

/// A boot action id as an operator gives it; one that is not a ULID in Crockford base32 is
/// invalid input (exit 1) naming `boot_action.action_id`.
fn parse_boot_action_id(text: &str) -> Result<BootActionId> {
    text.parse()
}

/// An identity key as an operator gives it; one that is not 64 hex digits is invalid input
/// (exit 1) naming `boot_action.identity_key`.
fn parse_key(text: &str) -> Result<IdentityKey> {
    text.parse()
}

async fn lease(cmd: LeaseCommand, store: &dyn StateStore) -> Result<Outcome> {
    let outcome = |result: LeaseOutcome, instance: &str| {
        let code = if result.held().is_some() {
            0
        } else {
            EXIT_LEASE_HELD_ELSEWHERE
        };
        let text = match &result {
            LeaseOutcome::Held(l) => format!(
                "{instance} holds the lease (term {}, expires {})",
                l.term, l.expires_at
            ),
            LeaseOutcome::Denied(Some(l)) => format!(
                "{} holds the lease (term {}, expires {})",
                l.instance_id, l.term, l.expires_at
            ),
            LeaseOutcome::Denied(None) => {
                format!("{instance} does not hold the lease; nobody does")
            }
        };
        Ok::<_, Error>(Outcome {
            code,
            ..Outcome::new(to_json(&result)?, text)
        })
    };
    Ok(match cmd {
        LeaseCommand::Claim { instance } => {
            outcome(store.claim_lease(&instance).await?, &instance)?
        }
        LeaseCommand::Renew { instance } => {
            outcome(store.renew_lease(&instance).await?, &instance)?
        }
        LeaseCommand::Release { instance } => {
            let released = store.release_lease(&instance).await?;
            let text = if released {
                format!("{instance} released the lease")
            } else {
                format!("{instance} did not hold the lease")
            };
            Outcome::new(json!({"released": released}), text)
        }
        LeaseCommand::Show => {
            let lease = store.current_lease().await?;
            let text = match &lease {
                Some(l) => format!(
                    "{} holds the lease (term {}, expires {})",
                    l.instance_id, l.term, l.expires_at
                ),
                None => "nobody holds the lease".into(),
            };
            Outcome::new(to_json(&lease)?, text)
        }
    })
}

async fn design(cmd: DesignCommand, config: &Config) -> Result<Outcome> {
    let resolver = drydock_state::design_resolver(&config.design)?;
    Ok(match cmd {
        DesignCommand::Schemes => {
            let drivers = resolver.drivers();
            let json = Value::Array(
                drivers
                    .iter()
                    .map(|(s, d)| json!({"scheme": s, "driver": d}))
                    .collect(),
            );
            let text = drivers
                .iter()
                .map(|(s, d)| format!("{s}\t{d}"))
                .collect::<Vec<_>>()
                .join("\n");
            Outcome::new(json, text)
        }
        DesignCommand::Fetch { uri, output_file } => {
            let document = drydock_state::fetch_design(&resolver, &uri).await?;
            let meta = json!({
                "source": document.source,
                "content_type": document.content_type,
                "size": document.bytes.len(),
            });
            match output_file {
                Some(path) => {
                    std::fs::write(&path, &document.bytes).map_err(|e| {
                        Error::invalid(
                            "output-file",
                            format!("cannot write {}: {e}", path.display()),
                        )
                    })?;
                    let text = format!(
                        "wrote {} bytes from {} to {}",
                        document.bytes.len(),
                        document.source,
                        path.display()
                    );
                    Outcome::new(meta, text)
                }
                None => {
                    let text = String::from_utf8(document.bytes.to_vec()).map_err(|_| {
                        Error::invalid("design", "is not UTF-8 text; use --output-file")
                    })?;
                    Outcome::document(meta, text)
                }
            }
        }
    })
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
