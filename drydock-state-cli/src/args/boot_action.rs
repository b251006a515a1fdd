//! `boot-action`: boot actions and the boot-action context of a node.

use clap::Subcommand;
use drydock_state::{BootActionStatus, TaskId};

use super::parse;

#[derive(Subcommand, Debug)]
pub enum BootActionCommand {
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
        #[arg(long, value_name = "S", value_parser = parse::boot_action_status, default_value = "incomplete")]
        status: BootActionStatus,
    },
    /// Set a boot action's status, as its node reports it (a final status, success or
    /// failure, never changes again).
    SetStatus {
        /// The boot action id (26 characters of Crockford base32).
        id: String,
        /// The new status.
        #[arg(value_parser = parse::boot_action_status)]
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
pub enum BootActionContextCommand {
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
