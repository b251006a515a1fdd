//! `message`: append result messages to a task.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use drydock_state::TaskId;

#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// Append a result message to a task.
    Add(MessageAdd),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("text").required(true).args(["message", "message_file"])))]
pub struct MessageAdd {
    /// The task id.
    pub id: TaskId,
    /// The message text.
    #[arg(long)]
    pub message: Option<String>,
    /// Read the message from a file, or `-` for standard input.
    #[arg(long, value_name = "PATH")]
    pub message_file: Option<PathBuf>,
    /// The message reports an error.
    #[arg(long)]
    pub error: bool,
    /// What the message is about.
    #[arg(long, value_name = "T", default_value = "task")]
    pub context_type: String,
    /// Which one.
    #[arg(long, value_name = "C", default_value = "")]
    pub context: String,
}
