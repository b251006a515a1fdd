//! The bad-input catalogue: each row is an input a store must refuse with a typed error of a
//! given kind naming a given field, after which the store's observable state (every task with
//! its messages, all build data, the lease) must be exactly what it was. Also here, the other
//! half of "nothing silently cut or changed": a 10 MB message and build-data element stored
//! whole, SQL metacharacters stored and matched verbatim, and NUL bytes in lookups answered as
//! the reference answers them.
//!
//! Rows that need no store (database URLs, design references, configuration) are the
//! facade's, in `tests/bad_input.rs`; the CLI's are in `drydock-state-cli/tests/bad_input.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::support::{kind, snapshot, test_config};
use super::StoreFactory;
use crate::backend::now;
use crate::error::Result;
use crate::model::*;
use crate::store::StateStore;

/// What every store row gets: the store, seeded, and the ids of what was seeded.
#[derive(Clone)]
struct Fx {
    store: Arc<dyn StateStore>,
    /// A queued root task with messages and a subtask.
    root: TaskId,
    /// Its subtask, requested.
    child: TaskId,
    /// A complete task.
    done: TaskId,
    /// A terminated task.
    stopped: TaskId,
    /// The lease's term, held by `orch-a`.
    term: i64,
    /// A running task claimed by `orch-a` under `term` with `claim_id`.
    claimed: TaskId,
    /// Its claim: `orch-a` under `term`, attempt 1.
    claim: Claim,
    claim_id: uuid::Uuid,
}

type Fut = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

struct Row {
    name: &'static str,
    kind: &'static str,
    /// Text the error must contain: the field, key or entity at fault.
    names: Box<dyn Fn(&Fx) -> String + Send + Sync>,
    op: Box<dyn Fn(Fx) -> Fut + Send + Sync>,
}

fn row<F, R>(name: &'static str, kind: &'static str, names: &'static str, op: F) -> Row
where
    F: Fn(Fx) -> R + Send + Sync + 'static,
    R: Future<Output = Result<()>> + Send + 'static,
{
    Row {
        name,
        kind,
        names: Box::new(move |_| names.to_string()),
        op: Box::new(move |fx| Box::pin(op(fx))),
    }
}

/// A row whose error must contain what `names` makes of the seeded store.
fn row_with<F, R>(name: &'static str, kind: &'static str, names: fn(&Fx) -> String, op: F) -> Row
where
    F: Fn(Fx) -> R + Send + Sync + 'static,
    R: Future<Output = Result<()>> + Send + 'static,
{
    Row {
        names: Box::new(names),
        ..row(name, kind, "", op)
    }
}

/// A row whose error must name one of the seeded tasks.
fn row_naming<F, R>(name: &'static str, kind: &'static str, id: fn(&Fx) -> TaskId, op: F) -> Row
where
    F: Fn(Fx) -> R + Send + Sync + 'static,
    R: Future<Output = Result<()>> + Send + 'static,
{
    Row {
        names: Box::new(move |fx| id(fx).to_string()),
        ..row(name, kind, "", op)
    }
}

fn task(action: &str) -> NewTask {
    NewTask::new(action).with_status(TaskStatus::Queued)
}

fn with<F: FnOnce(&mut NewTask)>(action: &str, f: F) -> NewTask {
    let mut t = task(action);
    f(&mut t);
    t
}

/// A guard whose instance id has a NUL byte.
fn nul_guard(fx: &Fx) -> Claim {
    Claim::new("orch\0a", Some(fx.term), 1)
}

/// The seeded claim with `f` applied: a guard that no longer matches.
fn stale(fx: &Fx, f: impl FnOnce(&mut Claim)) -> Claim {
    let mut c = fx.claim.clone();
    f(&mut c);
    c
}

fn build(node: &str, task: TaskId, generator: &str, element: Option<&str>) -> BuildData {
    BuildData {
        node_name: node.into(),
        task_id: task,
        collected_date: Some(now()),
        generator: generator.into(),
        data_format: "text/plain".into(),
        data_element: element.map(str::to_string),
    }
}

/// Every store row. Each must fail and leave the store as it was.
fn store_rows() -> Vec<Row> {
    vec![
        row(
            "empty action",
            "invalid_input",
            "task.action",
            |fx| async move { fx.store.create_task(&task("")).await.map(drop) },
        ),
        row(
            "action with a space",
            "invalid_input",
            "task.action",
            |fx| async move { fx.store.create_task(&task("deploy nodes")).await.map(drop) },
        ),
        row(
            "action with a bell",
            "invalid_input",
            "task.action",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy\u{7}nodes"))
                    .await
                    .map(drop)
            },
        ),
        row(
            "action with a NUL",
            "invalid_input",
            "task.action",
            |fx| async move { fx.store.create_task(&task("deploy\0nodes")).await.map(drop) },
        ),
        row(
            "action with a newline",
            "invalid_input",
            "task.action",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes\n"))
                    .await
                    .map(drop)
            },
        ),
        row(
            "action of 129 characters",
            "invalid_input",
            "task.action",
            |fx| async move {
                fx.store
                    .create_task(&task(&"é".repeat(129)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "relative design ref",
            "invalid_input",
            "design_ref",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_design_ref("site/site.yaml"))
                    .await
                    .map(drop)
            },
        ),
        row(
            "malformed design ref",
            "invalid_input",
            "design_ref",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_design_ref("ht!tp://host/x"))
                    .await
                    .map(drop)
            },
        ),
        row(
            "opaque design ref",
            "invalid_input",
            "design_ref",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_design_ref("mailto:ops@site"))
                    .await
                    .map(drop)
            },
        ),
        row(
            "design ref with a NUL",
            "invalid_input",
            "design_ref",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_design_ref("file:///a\0b"))
                    .await
                    .map(drop)
            },
        ),
        row(
            "design ref over 8 KiB",
            "invalid_input",
            "design_ref",
            |fx| async move {
                let long = format!("https://host/{}", "a".repeat(9000));
                fx.store
                    .create_task(&task("deploy_nodes").with_design_ref(long))
                    .await
                    .map(drop)
            },
        ),
        row(
            "created_by with a NUL",
            "invalid_input",
            "task.created_by",
            |fx| async move {
                fx.store
                    .create_task(&with("deploy_nodes", |t| t.created_by = Some("a\0".into())))
                    .await
                    .map(drop)
            },
        ),
        row(
            "created running",
            "invalid_input",
            "task.status",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_status(TaskStatus::Running))
                    .await
                    .map(drop)
            },
        ),
        row(
            "created terminating",
            "invalid_input",
            "task.status",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_status(TaskStatus::Terminating))
                    .await
                    .map(drop)
            },
        ),
        row(
            "created with a negative retry",
            "invalid_input",
            "task.retry",
            |fx| async move {
                fx.store
                    .create_task(&with("deploy_nodes", |t| t.retry = -1))
                    .await
                    .map(drop)
            },
        ),
        row(
            "node filter key with a NUL",
            "invalid_input",
            "task.node_filter",
            |fx| async move {
                fx.store
                    .create_task(&task("deploy_nodes").with_node_filter(json!({"a\0": 1})))
                    .await
                    .map(drop)
            },
        ),
        row(
            "request context with a NUL",
            "invalid_input",
            "task.request_context",
            |fx| async move {
                fx.store
                    .create_task(&with("deploy_nodes", |t| {
                        t.request_context = Some(json!(["x\0"]))
                    }))
                    .await
                    .map(drop)
            },
        ),
        row(
            "own parent",
            "invalid_input",
            "task.parent_task_id",
            |fx| async move {
                let t = task("deploy_nodes");
                let id = t.task_id;
                fx.store.create_task(&t.with_parent(id)).await.map(drop)
            },
        ),
        row("unknown parent", "not_found", "parent", |fx| async move {
            fx.store
                .create_task(&task("deploy_nodes").with_parent(TaskId::new()))
                .await
                .map(drop)
        }),
        row_naming(
            "duplicate id",
            "already_exists",
            |fx| fx.root,
            |fx| async move {
                let mut t = task("prepare_site");
                t.task_id = fx.root;
                fx.store.create_task(&t).await.map(drop)
            },
        ),
        row_naming(
            "duplicate id of a subtask, other parent",
            "already_exists",
            |fx| fx.child,
            |fx| async move {
                let mut t = task("prepare_site").with_parent(fx.done);
                t.task_id = fx.child;
                fx.store.create_task(&t).await.map(drop)
            },
        ),
        row(
            "update of an unknown task",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .update_task(TaskId::new(), &TaskUpdate::new().retry(1), None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "update with a NUL in the message",
            "invalid_input",
            "task.result.message",
            |fx| async move {
                let u = TaskUpdate::new().result_message(Some("\0"));
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in the reason",
            "invalid_input",
            "task.result.reason",
            |fx| async move {
                let u = TaskUpdate::new().result_reason(Some("why\0"));
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in a success",
            "invalid_input",
            "task.result.successes",
            |fx| async move {
                let u = TaskUpdate::new().successes(["n1", "n\0"]);
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in a failure",
            "invalid_input",
            "task.result.failures",
            |fx| async move {
                let u = TaskUpdate::new().failures(["\0"]);
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in a link's rel",
            "invalid_input",
            "task.result.links",
            |fx| async move {
                let u = TaskUpdate::new().links([Link {
                    rel: "lo\0gs".into(),
                    href: "https://logs/1".into(),
                }]);
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in a link's href",
            "invalid_input",
            "task.result.links",
            |fx| async move {
                let u = TaskUpdate::new().links([Link {
                    rel: "logs".into(),
                    href: "https://logs/\0".into(),
                }]);
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in the node filter",
            "invalid_input",
            "task.node_filter",
            |fx| async move {
                let u = TaskUpdate::new().node_filter(Some(json!({"node_names": ["n\0"]})));
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a relative design ref",
            "invalid_input",
            "design_ref",
            |fx| async move {
                let u = TaskUpdate::new().design_ref(Some("site.yaml"));
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a NUL in the design ref",
            "invalid_input",
            "design_ref",
            |fx| async move {
                let u = TaskUpdate::new().design_ref(Some("file:///a\0b"));
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update with a negative retry",
            "invalid_input",
            "task.retry",
            |fx| async move {
                let u = TaskUpdate::new().retry(-1);
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row(
            "update to its own parent",
            "invalid_input",
            "task.parent_task_id",
            |fx| async move {
                let u = TaskUpdate::new().parent(Some(fx.child));
                fx.store.update_task(fx.child, &u, None).await.map(drop)
            },
        ),
        row(
            "update to an unknown parent",
            "not_found",
            "parent",
            |fx| async move {
                let u = TaskUpdate::new().parent(Some(TaskId::new()));
                fx.store.update_task(fx.child, &u, None).await.map(drop)
            },
        ),
        row_naming(
            "update complete -> running",
            "conflict",
            |fx| fx.done,
            |fx| async move {
                let u = TaskUpdate::new().status(TaskStatus::Running);
                fx.store.update_task(fx.done, &u, None).await.map(drop)
            },
        ),
        row_naming(
            "update complete -> complete (a final task takes no write)",
            "conflict",
            |fx| fx.done,
            |fx| async move {
                let u = TaskUpdate::new()
                    .status(TaskStatus::Complete)
                    .result_status(ResultStatus::Success);
                fx.store.update_task(fx.done, &u, None).await.map(drop)
            },
        ),
        row_naming(
            "update of a terminated task's retry",
            "conflict",
            |fx| fx.stopped,
            |fx| async move {
                let u = TaskUpdate::new().retry(1);
                fx.store.update_task(fx.stopped, &u, None).await.map(drop)
            },
        ),
        row_naming(
            "update queued -> running (only a claim runs a task)",
            "conflict",
            |fx| fx.root,
            |fx| async move {
                let u = TaskUpdate::new().status(TaskStatus::Running);
                fx.store.update_task(fx.root, &u, None).await.map(drop)
            },
        ),
        row_naming(
            "update running -> terminating, under the claim",
            "conflict",
            |fx| fx.claimed,
            |fx| async move {
                let u = TaskUpdate::new().status(TaskStatus::Terminating);
                fx.store
                    .update_task(fx.claimed, &u, Some(&fx.claim))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with a NUL: update",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                let u = TaskUpdate::new().retry(1);
                fx.store
                    .update_task(fx.claimed, &u, Some(&nul_guard(&fx)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with a NUL: set_status",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .set_status(fx.claimed, TaskStatus::Complete, Some(&nul_guard(&fx)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with a NUL: terminate",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .terminate_task(fx.claimed, "operator", Some(&nul_guard(&fx)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with a NUL: add_subtask",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .add_subtask(fx.claimed, fx.done, Some(&nul_guard(&fx)))
                    .await
            },
        ),
        row(
            "guard with a NUL: append_message",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .append_message(fx.claimed, &NewMessage::info("x"), Some(&nul_guard(&fx)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with a NUL: append_messages",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .append_messages(fx.claimed, &[NewMessage::info("x")], Some(&nul_guard(&fx)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with a NUL: record_build_data",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .record_build_data(
                        &build("n2", fx.claimed, "lshw", Some("x")),
                        Some(&nul_guard(&fx)),
                    )
                    .await
            },
        ),
        row_with(
            "guard of a later attempt: update",
            "lease_lost",
            |fx| format!("claimed by orch-a under term {} (attempt 1)", fx.term),
            |fx| async move {
                let u = TaskUpdate::new().status(TaskStatus::Complete);
                let g = stale(&fx, |c| c.attempt = 2);
                fx.store
                    .update_task(fx.claimed, &u, Some(&g))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard of another instance: set_status",
            "lease_lost",
            "not by orch-b",
            |fx| async move {
                let g = stale(&fx, |c| c.instance_id = "orch-b".into());
                fx.store
                    .set_status(fx.claimed, TaskStatus::Complete, Some(&g))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard without the claim's term: append_message",
            "lease_lost",
            "not by orch-a without a term",
            |fx| async move {
                let g = stale(&fx, |c| c.term = None);
                fx.store
                    .append_message(fx.claimed, &NewMessage::info("late"), Some(&g))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard with an older term: terminate",
            "lease_lost",
            "orch-a",
            |fx| async move {
                let g = stale(&fx, |c| c.term = c.term.map(|t| t - 1));
                fx.store
                    .terminate_task(fx.claimed, "operator", Some(&g))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard of an earlier attempt: append_messages, none stored",
            "lease_lost",
            "(attempt 1)",
            |fx| async move {
                let g = stale(&fx, |c| c.attempt = 0);
                let batch = [NewMessage::info("a"), NewMessage::info("b")];
                fx.store
                    .append_messages(fx.claimed, &batch, Some(&g))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard of another instance: record_build_data",
            "lease_lost",
            "orch-c",
            |fx| async move {
                let g = stale(&fx, |c| c.instance_id = "orch-c".into());
                fx.store
                    .record_build_data(&build("n2", fx.claimed, "lshw", Some("x")), Some(&g))
                    .await
            },
        ),
        row(
            "guard on a task that carries no claim: add_subtask",
            "lease_lost",
            "carries no claim",
            |fx| async move {
                fx.store
                    .add_subtask(fx.root, fx.done, Some(&fx.claim))
                    .await
            },
        ),
        row(
            "guard on a finished task that was never claimed: set_status",
            "lease_lost",
            "carries no claim",
            |fx| async move {
                fx.store
                    .set_status(fx.done, TaskStatus::Complete, Some(&fx.claim))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard on an unknown task: update",
            "not_found",
            "task",
            |fx| async move {
                let u = TaskUpdate::new().retry(1);
                fx.store
                    .update_task(TaskId::new(), &u, Some(&fx.claim))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guarded build data of an unknown task",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .record_build_data(
                        &build("n1", TaskId::new(), "lshw", Some("x")),
                        Some(&fx.claim),
                    )
                    .await
            },
        ),
        row_with(
            "claim id already naming another instance's claim",
            "conflict",
            |fx| fx.claim_id.to_string(),
            |fx| async move {
                fx.store
                    .claim_next(&ClaimRequest::new("orch-b").with_claim_id(fx.claim_id))
                    .await
                    .map(drop)
            },
        ),
        row(
            "claim id already naming another instance's claim, restricted to other actions",
            "conflict",
            "orch-a",
            |fx| async move {
                let request = ClaimRequest::new("orch-c")
                    .actions(["deploy_nodes"])
                    .with_claim_id(fx.claim_id);
                fx.store.claim_next(&request).await.map(drop)
            },
        ),
        row(
            "list by a claimant with a NUL",
            "invalid_input",
            "filter.claimed_by",
            |fx| async move {
                fx.store
                    .list_tasks(&TaskFilter {
                        claimed_by: Some("orch\0a".into()),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            },
        ),
        row_naming(
            "subtask under a terminated parent",
            "conflict",
            |fx| fx.stopped,
            |fx| async move { fx.store.add_subtask(fx.stopped, fx.done, None).await },
        ),
        row_naming(
            "subtask under a complete parent",
            "conflict",
            |fx| fx.done,
            |fx| async move { fx.store.add_subtask(fx.done, fx.root, None).await },
        ),
        row(
            "set_status complete -> queued",
            "conflict",
            "complete",
            |fx| async move {
                fx.store
                    .set_status(fx.done, TaskStatus::Queued, None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "set_status terminated -> running",
            "conflict",
            "terminated",
            |fx| async move {
                fx.store
                    .set_status(fx.stopped, TaskStatus::Running, None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "set_status terminated -> complete",
            "conflict",
            "terminated",
            |fx| async move {
                fx.store
                    .set_status(fx.stopped, TaskStatus::Complete, None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "set_status of an unknown task",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .set_status(TaskId::new(), TaskStatus::Queued, None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "add_subtask to an unknown parent",
            "not_found",
            "task",
            |fx| async move { fx.store.add_subtask(TaskId::new(), fx.root, None).await },
        ),
        row(
            "create_subtask under an unknown parent",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .create_subtask(TaskId::new(), &task("deploy_node"), None)
                    .await
                    .map(drop)
            },
        ),
        row_naming(
            "create_subtask under a terminated parent",
            "conflict",
            |fx| fx.stopped,
            |fx| async move {
                fx.store
                    .create_subtask(fx.stopped, &task("deploy_node"), None)
                    .await
                    .map(drop)
            },
        ),
        row_naming(
            "create_subtask under a complete parent",
            "conflict",
            |fx| fx.done,
            |fx| async move {
                fx.store
                    .create_subtask(fx.done, &task("deploy_node"), None)
                    .await
                    .map(drop)
            },
        ),
        row_naming(
            "create_subtask with a taken id",
            "already_exists",
            |fx| fx.done,
            |fx| async move {
                let t = with("deploy_node", |t| t.task_id = fx.done);
                fx.store.create_subtask(fx.root, &t, None).await.map(drop)
            },
        ),
        row(
            "create_subtask naming another parent",
            "invalid_input",
            "task.parent_task_id",
            |fx| async move {
                let t = task("deploy_node").with_parent(fx.done);
                fx.store.create_subtask(fx.root, &t, None).await.map(drop)
            },
        ),
        row(
            "create_subtask with an action with a NUL",
            "invalid_input",
            "task.action",
            |fx| async move {
                fx.store
                    .create_subtask(fx.root, &task("deploy\0node"), None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "create_subtask with a created_by with a NUL",
            "invalid_input",
            "task.created_by",
            |fx| async move {
                let t = with("deploy_node", |t| t.created_by = Some("a\0".into()));
                fx.store.create_subtask(fx.root, &t, None).await.map(drop)
            },
        ),
        row(
            "create_subtask created running",
            "invalid_input",
            "task.status",
            |fx| async move {
                let t = task("deploy_node").with_status(TaskStatus::Running);
                fx.store.create_subtask(fx.root, &t, None).await.map(drop)
            },
        ),
        row(
            "guard with a NUL: create_subtask",
            "invalid_input",
            "guard.instance_id",
            |fx| async move {
                fx.store
                    .create_subtask(fx.claimed, &task("deploy_node"), Some(&nul_guard(&fx)))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard of another instance: create_subtask",
            "lease_lost",
            "orch-b",
            |fx| async move {
                let g = stale(&fx, |c| c.instance_id = "orch-b".into());
                fx.store
                    .create_subtask(fx.claimed, &task("deploy_node"), Some(&g))
                    .await
                    .map(drop)
            },
        ),
        row(
            "guard on a parent that carries no claim: create_subtask",
            "lease_lost",
            "carries no claim",
            |fx| async move {
                fx.store
                    .create_subtask(fx.root, &task("deploy_node"), Some(&fx.claim))
                    .await
                    .map(drop)
            },
        ),
        row(
            "count by a claimant with a NUL",
            "invalid_input",
            "filter.claimed_by",
            |fx| async move {
                fx.store
                    .count_tasks(&TaskFilter {
                        claimed_by: Some("orch\0a".into()),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            },
        ),
        row(
            "subtasks of an unknown parent",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .subtasks(TaskId::new(), SubtaskFilter::All)
                    .await
                    .map(drop)
            },
        ),
        row(
            "terminate an unknown task",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .terminate_task(TaskId::new(), "operator", None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "terminated_by with a NUL",
            "invalid_input",
            "terminated_by",
            |fx| async move {
                fx.store
                    .terminate_task(fx.root, "oper\0ator", None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "message with a NUL",
            "invalid_input",
            "message.message",
            |fx| async move {
                fx.store
                    .append_message(fx.root, &NewMessage::info("a\0b"), None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "message context with a NUL",
            "invalid_input",
            "message.context",
            |fx| async move {
                let m = NewMessage::info("ok").with_context("node", "n\0");
                fx.store.append_message(fx.root, &m, None).await.map(drop)
            },
        ),
        row(
            "message extra with a NUL",
            "invalid_input",
            "message.extra",
            |fx| async move {
                let m = NewMessage {
                    extra: Some(json!({"k": "v\0"})),
                    ..NewMessage::info("ok")
                };
                fx.store.append_message(fx.root, &m, None).await.map(drop)
            },
        ),
        row(
            "batch with one bad message: none stored",
            "invalid_input",
            "message.message",
            |fx| async move {
                let batch = [
                    NewMessage::info("first"),
                    NewMessage::error("second\0"),
                    NewMessage::info("third"),
                ];
                fx.store
                    .append_messages(fx.root, &batch, None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "message to an unknown task",
            "not_found",
            "task",
            |fx| async move {
                fx.store
                    .append_message(TaskId::new(), &NewMessage::info("x"), None)
                    .await
                    .map(drop)
            },
        ),
        row(
            "build data without node",
            "invalid_input",
            "build_data.node_name",
            |fx| async move {
                fx.store
                    .record_build_data(&build("", fx.root, "lshw", Some("x")), None)
                    .await
            },
        ),
        row(
            "build data without generator",
            "invalid_input",
            "build_data.generator",
            |fx| async move {
                fx.store
                    .record_build_data(&build("n1", fx.root, "", Some("x")), None)
                    .await
            },
        ),
        row(
            "build data without format",
            "invalid_input",
            "build_data.data_format",
            |fx| async move {
                let mut b = build("n1", fx.root, "lshw", Some("x"));
                b.data_format.clear();
                fx.store.record_build_data(&b, None).await
            },
        ),
        row(
            "build data without element",
            "invalid_input",
            "build_data.data_element",
            |fx| async move {
                fx.store
                    .record_build_data(&build("n1", fx.root, "lshw", None), None)
                    .await
            },
        ),
        row(
            "build data element with a NUL",
            "invalid_input",
            "build_data.data_element",
            |fx| async move {
                fx.store
                    .record_build_data(&build("n1", fx.root, "lshw", Some("\0")), None)
                    .await
            },
        ),
        row(
            "build data node with a NUL",
            "invalid_input",
            "build_data.node_name",
            |fx| async move {
                fx.store
                    .record_build_data(&build("n1\0", fx.root, "lshw", Some("x")), None)
                    .await
            },
        ),
        row(
            "purge with zero retention",
            "invalid_input",
            "purge.older_than",
            |fx| async move { fx.store.purge(Duration::ZERO).await.map(drop) },
        ),
        row(
            "purge with a retention beyond the calendar",
            "invalid_input",
            "purge.older_than",
            |fx| async move { fx.store.purge(Duration::MAX).await.map(drop) },
        ),
        row(
            "lease instance with a NUL",
            "invalid_input",
            "instance_id",
            |fx| async move { fx.store.claim_lease("orch\0-b").await.map(drop) },
        ),
        row(
            "claim with a stale term",
            "lease_lost",
            "term",
            |fx| async move {
                fx.store
                    .claim_next(&ClaimRequest::new("orch-a").fenced(fx.term - 1))
                    .await
                    .map(drop)
            },
        ),
        row(
            "claim with a future term",
            "lease_lost",
            "term",
            |fx| async move {
                fx.store
                    .claim_next(&ClaimRequest::new("orch-a").fenced(fx.term + 1))
                    .await
                    .map(drop)
            },
        ),
        row(
            "claim with the holder's term by another instance",
            "lease_lost",
            "orch-b",
            |fx| async move {
                fx.store
                    .claim_next(&ClaimRequest::new("orch-b").fenced(fx.term))
                    .await
                    .map(drop)
            },
        ),
        row(
            "batch claim of zero tasks",
            "invalid_input",
            "claim.n",
            |fx| async move {
                fx.store
                    .claim_batch(&ClaimRequest::new("orch-a"), 0)
                    .await
                    .map(drop)
            },
        ),
        row(
            "batch claim above the largest batch",
            "invalid_input",
            "claim.n",
            |fx| async move {
                fx.store
                    .claim_batch(&ClaimRequest::new("orch-a"), MAX_CLAIM_BATCH + 1)
                    .await
                    .map(drop)
            },
        ),
        row(
            "batch claim with a stale term",
            "lease_lost",
            "term",
            |fx| async move {
                fx.store
                    .claim_batch(&ClaimRequest::new("orch-a").fenced(fx.term - 1), 5)
                    .await
                    .map(drop)
            },
        ),
        row(
            "batch claim by an instance id with a NUL",
            "invalid_input",
            "instance_id",
            |fx| async move {
                fx.store
                    .claim_batch(&ClaimRequest::new("orch\0"), 5)
                    .await
                    .map(drop)
            },
        ),
        row(
            "tree with a NUL in a subtask",
            "invalid_input",
            "task.created_by",
            |fx| async move {
                let bad = NewTask::new("deploy_node").with_created_by("a\0b");
                fx.store
                    .create_task_tree(&NewTask::new("deploy_nodes"), &[bad])
                    .await
                    .map(drop)
            },
        ),
        row(
            "tree naming one id twice",
            "invalid_input",
            "task.task_id",
            |fx| async move {
                let child = NewTask::new("deploy_node");
                fx.store
                    .create_task_tree(&NewTask::new("deploy_nodes"), &[child.clone(), child])
                    .await
                    .map(drop)
            },
        ),
        row(
            "tree whose subtask id is stored already",
            "already_exists",
            "task",
            |fx| async move {
                let mut child = NewTask::new("deploy_node");
                child.task_id = fx.done;
                fx.store
                    .create_task_tree(&NewTask::new("deploy_nodes"), &[child])
                    .await
                    .map(drop)
            },
        ),
        row(
            "batch update with a NUL in the result message",
            "invalid_input",
            "task.result.message",
            |fx| async move {
                let update = TaskUpdate::new().result_message(Some("a\0b"));
                first(
                    fx.store
                        .update_tasks(&[GuardedUpdate::new(fx.root, update, None)])
                        .await,
                )
            },
        ),
        row(
            "batch update of a finished task",
            "conflict",
            "complete",
            |fx| async move {
                first(
                    fx.store
                        .update_tasks(&[GuardedUpdate::new(
                            fx.done,
                            TaskUpdate::new().retry(1),
                            None,
                        )])
                        .await,
                )
            },
        ),
        row(
            "batch update with a stale guard",
            "lease_lost",
            "orch-a",
            |fx| async move {
                let stale = Claim::new("orch-a", Some(fx.term), fx.claim.attempt + 1);
                first(
                    fx.store
                        .update_tasks(&[GuardedUpdate::new(
                            fx.claimed,
                            TaskUpdate::new().retry(1),
                            Some(stale),
                        )])
                        .await,
                )
            },
        ),
        row(
            "batch update of an unknown task",
            "not_found",
            "task",
            |fx| async move {
                first(
                    fx.store
                        .update_tasks(&[GuardedUpdate::new(TaskId::new(), TaskUpdate::new(), None)])
                        .await,
                )
            },
        ),
        row(
            "claim by an instance id with a NUL",
            "invalid_input",
            "instance_id",
            |fx| async move {
                fx.store
                    .claim_next(&ClaimRequest::new("orch\0"))
                    .await
                    .map(drop)
            },
        ),
    ]
}

/// The outcome of the one update of an `update_tasks` call, for a catalogue row.
fn first(outcomes: Result<Vec<Result<Task>>>) -> Result<()> {
    let mut outcomes = outcomes?;
    assert_eq!(outcomes.len(), 1, "one outcome per update");
    outcomes.pop().expect("one outcome").map(drop)
}

/// Seeds a store with a little of everything, so "unchanged" means something.
async fn seed(store: Arc<dyn StateStore>) -> Fx {
    let root = NewTask::new("deploy_nodes")
        .with_status(TaskStatus::Queued)
        .with_design_ref("https://user:pw@design.example/site.yaml")
        .with_node_filter(json!({"filter_set_type": "union", "filter_set": []}));
    store.create_task(&root).await.unwrap();
    let child = NewTask::new("deploy_node").with_parent(root.task_id);
    store.create_task(&child).await.unwrap();
    store
        .add_subtask(root.task_id, child.task_id, None)
        .await
        .unwrap();
    let done = NewTask::new("prepare_site").with_status(TaskStatus::Complete);
    store.create_task(&done).await.unwrap();
    let stopped = NewTask::new("prepare_site").with_status(TaskStatus::Terminated);
    store.create_task(&stopped).await.unwrap();
    store
        .append_messages(
            root.task_id,
            &[NewMessage::info("started"), NewMessage::error("n1 failed")],
            None,
        )
        .await
        .unwrap();
    store
        .record_build_data(&build("n1", root.task_id, "lshw", Some("<xml/>")), None)
        .await
        .unwrap();
    let term = store
        .claim_lease("orch-a")
        .await
        .unwrap()
        .held()
        .expect("a fresh store's lease is free")
        .term;
    let inspect = NewTask::new("inspect_node").with_status(TaskStatus::Queued);
    store.create_task(&inspect).await.unwrap();
    let claim_id = uuid::Uuid::new_v4();
    let claimed = store
        .claim_next(
            &ClaimRequest::new("orch-a")
                .actions(["inspect_node"])
                .fenced(term)
                .with_claim_id(claim_id),
        )
        .await
        .unwrap()
        .expect("the inspect_node task is queued");
    assert_eq!(claimed.task_id, inspect.task_id);
    let claim = claimed.claim().expect("a claimed task carries its claim");
    assert_eq!(claim, Claim::new("orch-a", Some(term), 1));
    Fx {
        store,
        root: root.task_id,
        child: child.task_id,
        done: done.task_id,
        stopped: stopped.task_id,
        term,
        claimed: claimed.task_id,
        claim,
        claim_id,
    }
}

/// Every row of the catalogue on one seeded store: each input is refused with an error of its
/// kind naming its field (and never showing a password), and the store's observable state
/// (every task with its messages, all build data, the lease) is exactly what it was. The
/// failures name their rows.
pub async fn bad_input_is_refused_and_changes_nothing(factory: &dyn StoreFactory) {
    let fx = seed(factory.open(test_config()).await).await;
    let rows = store_rows();
    assert!(
        rows.len() >= 80,
        "the catalogue has {} store rows",
        rows.len()
    );
    let mut failures = Vec::new();
    for r in &rows {
        let before = snapshot(&*fx.store).await;
        let names = (r.names)(&fx);
        let result = (r.op)(fx.clone()).await;
        let after = snapshot(&*fx.store).await;
        match result {
            Ok(()) => failures.push(format!("{}: accepted", r.name)),
            Err(e) => {
                if kind(&e) != r.kind {
                    failures.push(format!(
                        "{}: expected {}, got {} ({e})",
                        r.name,
                        r.kind,
                        kind(&e)
                    ));
                } else if !e.to_string().contains(&names) {
                    failures.push(format!(
                        "{}: the error does not name `{names}`: {e}",
                        r.name
                    ));
                }
                if e.to_string().contains(":pw@") || format!("{e:?}").contains(":pw@") {
                    failures.push(format!("{}: the error shows a password: {e}", r.name));
                }
            }
        }
        if before != after {
            failures.push(format!(
                "{}: the store changed\nbefore: {before:?}\nafter:  {after:?}",
                r.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} of {} rows failed:\n{}",
        fx.store.backend_name(),
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Message text that would be an injection if it were ever spliced into SQL.
const INJECTION: &str = "'); DELETE FROM tasks; -- ";

const TEN_MB: usize = 10 * 1024 * 1024;

/// "A message of any length is stored whole": 10 MB of multi-byte text, as one message and in
/// a batch, and a 10 MB build-data element, read back byte for byte on every backend.
pub async fn ten_megabytes_stored_whole(factory: &dyn StoreFactory) {
    let store = factory.open(test_config()).await;
    let backend = store.backend_name();
    let t = NewTask::new("deploy_nodes");
    store.create_task(&t).await.unwrap();
    // Multi-byte characters and a tail that differs, so truncation anywhere shows.
    let mut big: String = "é🚀'%_\\".repeat(TEN_MB / 10);
    big.push_str("<the end>");
    assert!(big.len() >= TEN_MB);
    let stored = store
        .append_message(t.task_id, &NewMessage::info(big.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{backend}: a 10 MB message is refused: {e}"));
    assert_eq!(stored.message.len(), big.len());
    store
        .append_messages(
            t.task_id,
            &[NewMessage::error(big.clone()), NewMessage::info("small")],
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: a batch with a 10 MB message is refused: {e}"));
    let read = store.get_task(t.task_id).await.unwrap().unwrap();
    let list = &read.result.details.message_list;
    assert_eq!(list.len(), 3, "{backend}");
    assert!(
        list[0].message == big,
        "{backend}: the first 10 MB message changed (len {})",
        list[0].message.len()
    );
    assert!(
        list[1].message == big,
        "{backend}: the batched 10 MB message changed (len {})",
        list[1].message.len()
    );
    assert_eq!(read.result.details.error_count, 1);
    let again = store.messages(t.task_id).await.unwrap();
    assert!(again[0].message == big && again[1].message == big);

    store
        .record_build_data(&build("n1", t.task_id, "lshw", Some(&big)), None)
        .await
        .unwrap_or_else(|e| panic!("{backend}: a 10 MB build-data element is refused: {e}"));
    let rows = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        rows[0].data_element.as_deref() == Some(big.as_str()),
        "{backend}: the element changed"
    );
}

/// it verbatim, never as a pattern.
const METACHARACTERS: &[&str] = &[
    "x';DROP_TABLE_tasks;--",
    "%",
    "_",
    "a%",
    "\\",
    "\"",
    "$1",
    "?",
    "*",
    "[a-z]",
    "déploy_nœuds_🚀",
    "')||pg_sleep(1)--",
];

/// Text with SQL, LIKE and JSON-path metacharacters in every text field is stored verbatim, and
/// filters and claims match it verbatim, never as a pattern.
pub async fn metacharacters_stored_and_matched_verbatim(factory: &dyn StoreFactory) {
    let store = factory.open(test_config()).await;
    let backend = store.backend_name();
    let mut ids = Vec::new();
    for (i, action) in METACHARACTERS.iter().enumerate() {
        let mut t = NewTask::new(*action).with_status(TaskStatus::Queued);
        t.created = now() - chrono::Duration::seconds(100 - i as i64);
        t.created_by = Some(format!("{action} ' \" \\ %"));
        t.node_filter = Some(json!({"?": [action], "@>": {"'": action}}));
        store
            .create_task(&t)
            .await
            .unwrap_or_else(|e| panic!("{backend} {action:?}: {e}"));
        let text = format!("{INJECTION}{action}");
        store
            .append_message(
                t.task_id,
                &NewMessage::info(text.clone()).with_context("node", *action),
                None,
            )
            .await
            .unwrap();
        store
            .record_build_data(&build(action, t.task_id, action, Some(action)), None)
            .await
            .unwrap();
        let read = store.get_task(t.task_id).await.unwrap().unwrap();
        assert_eq!(read.action, *action);
        assert_eq!(read.created_by, t.created_by);
        assert_eq!(read.node_filter, t.node_filter);
        assert_eq!(read.result.details.message_list[0].message, text);
        assert_eq!(read.result.details.message_list[0].context, *action);
        ids.push(t.task_id);
    }
    for (action, id) in METACHARACTERS.iter().zip(&ids) {
        let found = store
            .list_tasks(&TaskFilter {
                action: Some(action.to_string()),
                ..Default::default()
            })
            .await
            .unwrap();
        let found: Vec<TaskId> = found.iter().map(|t| t.task_id).collect();
        assert_eq!(found, vec![*id], "{backend}: list by action {action:?}");
        let rows = store
            .build_data(&BuildDataQuery {
                node_name: Some(action.to_string()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{backend}: build data of node {action:?}");
        assert_eq!(rows[0].generator, *action);
    }
    // A claim restricted to `%` takes the `%` task only, though others are older.
    let claimed = store
        .claim_next(&ClaimRequest::new("orch-a").actions(["%"]))
        .await
        .unwrap()
        .expect("the % task is queued");
    assert_eq!(claimed.action, "%", "{backend}");
    assert!(store
        .claim_next(&ClaimRequest::new("orch-a").actions(["%%", "_%", "'%'"]))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .len(),
        METACHARACTERS.len()
    );
}

/// What a store answers to lookups with a NUL byte (filters, lease instance ids).
async fn nul_lookups(store: Arc<dyn StateStore>) -> Vec<(&'static str, String)> {
    let fx = seed(store).await;
    let backend = fx.store.backend_name();
    let s = &fx.store;
    let show = |r: Result<String>| r.unwrap_or_else(|e| format!("error {}", kind(&e)));
    let before = snapshot(&**s).await;
    let out = vec![
        (
            "list by action",
            show(
                s.list_tasks(&TaskFilter {
                    action: Some("deploy\0nodes".into()),
                    ..Default::default()
                })
                .await
                .map(|t| t.len().to_string()),
            ),
        ),
        (
            "build data by node",
            show(
                s.build_data(&BuildDataQuery {
                    node_name: Some("n1\0".into()),
                    ..Default::default()
                })
                .await
                .map(|b| b.len().to_string()),
            ),
        ),
        (
            "claim by action",
            show(
                s.claim_next(&ClaimRequest::new("orch-a").actions(["deploy_nodes\0"]))
                    .await
                    .map(|t| format!("{:?}", t.map(|t| t.action))),
            ),
        ),
        (
            "renew lease",
            show(
                s.renew_lease("orch-a\0")
                    .await
                    .map(|o| format!("held {}", o.held().is_some())),
            ),
        ),
        (
            "release lease",
            show(s.release_lease("orch-a\0").await.map(|b| b.to_string())),
        ),
        (
            "count by action",
            show(
                s.count_tasks(&TaskFilter {
                    action: Some("deploy\0nodes".into()),
                    ..Default::default()
                })
                .await
                .map(|n| n.to_string()),
            ),
        ),
        (
            "list by claimant",
            show(
                s.list_tasks(&TaskFilter {
                    claimed_by: Some("orch-a\0".into()),
                    status: Some(TaskStatus::Running),
                    ..Default::default()
                })
                .await
                .map(|t| t.len().to_string()),
            ),
        ),
    ];
    assert_eq!(
        before,
        snapshot(&**s).await,
        "{backend}: a lookup changed the store"
    );
    out
}

/// A NUL byte in what is only looked up (filters, lease instance ids) is answered as the
/// reference answers it (the in-memory store behind [`Checked`](crate::backend::Checked), as
/// every store is reached), and no lookup changes the store.
pub async fn nul_in_lookups_answered_as_the_reference_does(factory: &dyn StoreFactory) {
    let reference = nul_lookups(super::reference_store(&test_config())).await;
    let store = factory.open(test_config()).await;
    let backend = store.backend_name();
    assert_eq!(
        nul_lookups(store).await,
        reference,
        "{backend} differs from the reference"
    );
}

/// A claim by an instance id with a NUL byte is refused as invalid input naming
/// `instance_id`, and takes nothing. Found by the bad-input catalogue: the reference once
/// claimed a task for such an id (which PostgreSQL cannot store and SQLite refused).
pub async fn claim_by_an_instance_id_with_a_nul_is_refused(factory: &dyn StoreFactory) {
    let store = factory.open(test_config()).await;
    let task = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    store.create_task(&task).await.expect("create_task");
    let before = snapshot(&*store).await;
    let claimed = store.claim_next(&ClaimRequest::new("orch\0a")).await;
    assert_eq!(
        before,
        snapshot(&*store).await,
        "a refused claim took nothing"
    );
    match claimed {
        Err(e) if kind(&e) == "invalid_input" && e.to_string().contains("instance_id") => {}
        other => panic!("expected invalid input naming instance_id, got {other:?}"),
    }
}
