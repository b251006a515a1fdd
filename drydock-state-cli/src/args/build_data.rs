//! `build-data`: record and list node build data.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use drydock_state::TaskId;

#[derive(Subcommand, Debug)]
pub enum BuildDataCommand {
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
pub struct BuildDataAdd {
    /// The node.
    #[arg(long, value_name = "N")]
    pub node: String,
    /// The task that collected it.
    #[arg(long, value_name = "ID")]
    pub task: TaskId,
    /// What produced it (lshw, lldp, ...).
    #[arg(long, value_name = "G")]
    pub generator: String,
    /// Its MIME type.
    #[arg(long, value_name = "MIME")]
    pub format: String,
    /// The data.
    #[arg(long)]
    pub data: Option<String>,
    /// Read the data from a file, or `-` for standard input.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}
