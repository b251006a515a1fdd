//! `task`: create, get, list, claim, update, set-status, subtasks and terminate.

use drydock_state::{
    ClaimRequest, Error, NewTask, Result, StateStore, SubtaskFilter, TaskFilter, TaskStatus,
    TaskViewOptions,
};
use serde_json::Value;

use crate::args::{InitialStatus, TaskCommand};
use crate::output::{text, to_json, Outcome};

pub async fn run(cmd: TaskCommand, store: &dyn StateStore) -> Result<Outcome> {
    match cmd {
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
            create(task, store).await
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
            Ok(Outcome::new(to_json(&task)?, text::task_detail(&task)))
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
            let text = text::task_view(&view, &options)?;
            Ok(Outcome::new(view, text))
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
            Ok(Outcome::new(to_json(&tasks)?, text::task_table(&tasks)))
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
                Some(task) => Ok(Outcome::new(to_json(&task)?, task.task_id.to_string())),
                None => Ok(Outcome::new(Value::Null, "nothing queued".into())),
            }
        }
        TaskCommand::Update(args) => {
            let guard = args.guard.claim();
            let task = store
                .update_task(args.id, &args.update(), guard.as_ref())
                .await?;
            let text = format!(
                "task {} is {} (result {})",
                args.id, task.status, task.result.status
            );
            Ok(Outcome::new(to_json(&task)?, text))
        }
        TaskCommand::SetStatus { id, status, guard } => {
            let guard = guard.claim();
            let task = store.set_status(id, status, guard.as_ref()).await?;
            let text = format!("task {id} is {}", task.status);
            Ok(Outcome::new(to_json(&task)?, text))
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
            Ok(Outcome::new(to_json(&tasks)?, text::task_table(&tasks)))
        }
        TaskCommand::Terminate { id, by } => {
            let task = store.terminate_task(id, &by, None).await?;
            let text = format!("task {id} is {} (terminated by {by})", task.status);
            Ok(Outcome::new(to_json(&task)?, text))
        }
    }
}

/// Creates `task`, appended to its parent's subtasks when it has one, and prints the task as
/// the store returned it (a new task has no messages, so a read would show nothing more).
///
/// With a parent, nothing is created when the parent takes no new subtasks: the parent is
/// read first and refused as `add_subtask` would refuse it (which checks again, atomically).
/// The task is validated before that read, so that an invalid task is reported as invalid
/// whatever its parent; without a parent, `create_task` is the only validation.
async fn create(task: NewTask, store: &dyn StateStore) -> Result<Outcome> {
    if let Some(parent) = task.parent_task_id {
        task.validate()?;
        let stored = store
            .get_task(parent)
            .await?
            .ok_or_else(|| Error::not_found("parent task", parent))?;
        drydock_state::backend::refuse_new_work_under(&stored)?;
    }
    let stored = store.create_task(&task).await?;
    if let Some(parent) = task.parent_task_id {
        store.add_subtask(parent, stored.task_id, None).await?;
    }
    Ok(Outcome::new(to_json(&stored)?, stored.task_id.to_string()))
}
