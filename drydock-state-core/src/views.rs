//! Drydock's task views: what its API's `GET /api/v1.0/tasks/{id}` returned with `layers`,
//! `subtaskerrors` and `builddata` (`control/tasks.py`), built from two statements whatever
//! the tree's size: one [`TaskStore::task_tree`](crate::TaskStore::task_tree) and, when build
//! data is asked for, one [`BuildStore::build_data_of_tasks`](crate::BuildStore::build_data_of_tasks).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::Result;
use crate::model::{BuildData, Task, TaskId, TreeNode, Verbosity};
use crate::store::StateStore;

/// What a task view includes, as Drydock's query parameters said it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskViewOptions {
    /// `layers`: 0 (the default) for the task alone; `N` for a map of the task and its subtasks
    /// down to layer `N` (the task is layer 1); `-1` for the whole tree.
    pub layers: i32,
    /// `subtaskerrors`: add `subtask_errors`, the results (with `task_id` added) of the
    /// subtasks, at any depth, that reported errors.
    pub subtask_errors: bool,
    /// `builddata`: add each shown task's `build_data` list.
    pub build_data: bool,
}

/// The view of task `id` as Drydock's API returned it, or `None` when there is no such task.
///
/// * layers 0: the task's JSON (plus `build_data`, plus `subtask_errors`);
/// * layers `N` or `-1`: `{"init_task_id": id, "<id>": task, "<subtask id>": task or null,
///   ...}` for every task down to layer `N` (`null` for an id listed but not stored), plus
///   `subtask_errors` when asked.
///
/// Unlike Drydock, a task listed twice or a cycle of subtask lists is shown once and never
/// loops.
pub async fn task_view(
    store: &dyn StateStore,
    id: TaskId,
    options: &TaskViewOptions,
) -> Result<Option<Value>> {
    let layers = options.layers;
    let all = layers == -1;
    // Tasks shown are those of layer < `layers` (the root is layer 1 = depth 0); errors are
    // looked for at every depth, as Drydock's loop did.
    let depth = if options.subtask_errors || all {
        None
    } else {
        Some(u32::try_from(layers.max(1) - 1).unwrap_or(0))
    };
    let tree = store.task_tree(id, depth).await?;
    let Some(root) = tree.first().and_then(|n| n.task.as_ref()) else {
        return Ok(None);
    };
    let shown = |node: &TreeNode| {
        node.depth == 0 || (layers != 0 && (all || (node.depth as i64) < i64::from(layers)))
    };
    let mut build_data: HashMap<TaskId, Vec<Value>> = HashMap::new();
    if options.build_data {
        let ids: Vec<TaskId> = tree
            .iter()
            .filter(|n| n.task.is_some() && shown(n))
            .map(|n| n.task_id)
            .collect();
        for b in store.build_data_of_tasks(&ids, Verbosity::Full).await? {
            build_data
                .entry(b.task_id)
                .or_default()
                .push(build_json(&b));
        }
    }
    let task_json = |task: &Task| {
        let mut v = task.to_json(false);
        if options.build_data {
            if let Value::Object(map) = &mut v {
                map.insert(
                    "build_data".into(),
                    Value::Array(build_data.get(&task.task_id).cloned().unwrap_or_default()),
                );
            }
        }
        v
    };
    let errors = || {
        let mut errors = Map::new();
        for node in tree.iter().skip(1) {
            if let Some(task) = &node.task {
                if task.result.details.error_count > 0 {
                    let mut result = serde_json::to_value(&task.result).unwrap_or_default();
                    if let Value::Object(map) = &mut result {
                        map.insert("task_id".into(), Value::String(task.task_id.to_string()));
                    }
                    errors.insert(task.task_id.to_string(), result);
                }
            }
        }
        Value::Object(errors)
    };
    let mut view = if layers == 0 {
        task_json(root)
    } else {
        let mut map = Map::new();
        map.insert("init_task_id".into(), Value::String(id.to_string()));
        for node in tree.iter().filter(|n| shown(n)) {
            map.insert(
                node.task_id.to_string(),
                node.task.as_ref().map_or(Value::Null, &task_json),
            );
        }
        Value::Object(map)
    };
    if options.subtask_errors {
        if let Value::Object(map) = &mut view {
            map.insert("subtask_errors".into(), errors());
        }
    }
    Ok(Some(view))
}

/// A build-data element as Drydock's `BuildData.to_dict` showed it.
fn build_json(b: &BuildData) -> Value {
    serde_json::to_value(b).unwrap_or_default()
}
