//! `build-data add` and `build-data list`.

use drydock_state::{BuildData, BuildDataQuery, Error, Result, StateStore, TaskId, Verbosity};
use serde_json::json;

use super::read_input;
use crate::args::{BuildDataAdd, BuildDataCommand};
use crate::output::{text, to_json, Outcome};

pub async fn run(cmd: BuildDataCommand, store: &dyn StateStore) -> Result<Outcome> {
    match cmd {
        BuildDataCommand::Add(add) => add_element(add, store).await,
        BuildDataCommand::List {
            node,
            task,
            latest,
            brief,
        } => list(node, task, latest, brief, store).await,
    }
}

/// Records the element (given, or read from a file or standard input).
async fn add_element(add: BuildDataAdd, store: &dyn StateStore) -> Result<Outcome> {
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
    Ok(Outcome::new(
        json!({"recorded": true, "node_name": data.node_name, "generator": data.generator}),
        text,
    ))
}

async fn list(
    node: Option<String>,
    task: Option<TaskId>,
    latest: bool,
    brief: bool,
    store: &dyn StateStore,
) -> Result<Outcome> {
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
    Ok(Outcome::new(to_json(&rows)?, text::build_data(&rows)))
}
