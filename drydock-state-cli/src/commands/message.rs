//! `message add`.

use drydock_state::{Error, NewMessage, Result, StateStore};

use super::read_input;
use crate::args::{MessageAdd, MessageCommand};
use crate::output::{to_json, Outcome};

pub async fn run(cmd: MessageCommand, store: &dyn StateStore) -> Result<Outcome> {
    match cmd {
        MessageCommand::Add(add) => add_message(add, store).await,
    }
}

/// Appends the message (given, or read from a file or standard input) to the task.
async fn add_message(add: MessageAdd, store: &dyn StateStore) -> Result<Outcome> {
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
    Ok(Outcome::new(to_json(&stored)?, text))
}
