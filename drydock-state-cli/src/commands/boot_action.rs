//! `boot-action`: boot actions and a node's boot-action context.

use drydock_state::{
    BootAction, BootActionContext, BootActionId, Error, IdentityKey, Result, StateStore,
};

use crate::args::{BootActionCommand, BootActionContextCommand};
use crate::output::{text, to_json, Outcome};

pub async fn run(cmd: BootActionCommand, store: &dyn StateStore) -> Result<Outcome> {
    match cmd {
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
            Ok(Outcome::new(to_json(&context)?, identity_key.to_hex()))
        }
        BootActionCommand::Context(BootActionContextCommand::Get { node }) => {
            drydock_state::validate_node_name("boot_action.node_name", &node)?;
            let context = store
                .boot_action_context(&node)
                .await?
                .ok_or_else(|| Error::not_found("boot-action context", format!("node {node}")))?;
            Ok(Outcome::new(
                to_json(&context)?,
                text::boot_action_context(&context),
            ))
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
            Ok(Outcome::new(
                to_json(&action)?,
                action.action_id.to_string(),
            ))
        }
        BootActionCommand::SetStatus { id, status } => {
            let id = parse_boot_action_id(&id)?;
            let action = store.set_boot_action_status(id, status, &[]).await?;
            let text = format!(
                "boot action {id} ({} on {}) is {}",
                action.action_name, action.node_name, action.action_status
            );
            Ok(Outcome::new(to_json(&action)?, text))
        }
        BootActionCommand::List { node } => {
            drydock_state::validate_node_name("boot_action.node_name", &node)?;
            let actions = store.boot_actions_for_node(&node).await?;
            Ok(Outcome::new(
                to_json(&actions)?,
                text::boot_action_table(&actions),
            ))
        }
        BootActionCommand::Get { id } => {
            let id = parse_boot_action_id(&id)?;
            let action = store
                .boot_action(id)
                .await?
                .ok_or_else(|| Error::not_found("boot action", id))?;
            Ok(Outcome::new(
                to_json(&action)?,
                text::boot_action_detail(&action),
            ))
        }
    }
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
