//! The cases of the conformance kit, one function per guarantee.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{kit_config, with_grace, StoreFactory};
use crate::backend::now;
use crate::error::Error;
use crate::model::*;
use crate::store::StateStore;

async fn store(factory: &dyn StoreFactory) -> Arc<dyn StateStore> {
    factory.open(kit_config()).await
}

fn secs_ago(secs: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(secs)
}

/// A task with every optional field set, created at `created`.
fn full_task(action: &str, created: DateTime<Utc>) -> NewTask {
    let mut t = NewTask::new(action)
        .with_design_ref("file:///etc/drydock/site.yaml")
        .with_node_filter(json!({"filter_set_type": "union", "filter_set": [{"filter_type": "intersection", "node_names": ["n1", "n2"]}]}));
    t.created = created;
    t.created_by = Some("conformance".into());
    t.request_context = Some(json!({"user": "shipyard", "request_id": "r-1"}));
    t
}

async fn create(store: &dyn StateStore, task: &NewTask) -> Task {
    store.create_task(task).await.expect("create_task")
}

async fn queued(store: &dyn StateStore, action: &str, created: DateTime<Utc>) -> NewTask {
    let mut t = NewTask::new(action).with_status(TaskStatus::Queued);
    t.created = created;
    create(store, &t).await;
    t
}

/// Creates `task` queued and claims it as `instance`, unfenced; it must be the only queued task
/// of its action.
async fn claimed(store: &dyn StateStore, task: NewTask, instance: &str) -> Task {
    let task = task.with_status(TaskStatus::Queued);
    create(store, &task).await;
    let claimed = store
        .claim_next(&ClaimRequest::new(instance).actions([task.action.clone()]))
        .await
        .expect("claim_next")
        .expect("the task just queued");
    assert_eq!(
        claimed.task_id, task.task_id,
        "the kit claims the only queued task of its action"
    );
    claimed
}

async fn get(store: &dyn StateStore, id: TaskId) -> Task {
    store
        .get_task(id)
        .await
        .expect("get_task")
        .expect("task exists")
}

/// Fields a store must return exactly as they were written.
fn assert_same_task(stored: &Task, expected: &Task) {
    assert_eq!(stored.task_id, expected.task_id);
    assert_eq!(stored.kind, "Task");
    assert_eq!(stored.api_version, "v1");
    assert_eq!(stored.action, expected.action);
    assert_eq!(stored.parent_task_id, expected.parent_task_id);
    assert_eq!(stored.design_ref, expected.design_ref);
    assert_eq!(stored.status, expected.status);
    assert_eq!(stored.result.status, expected.result.status);
    assert_eq!(stored.result.message, expected.result.message);
    assert_eq!(stored.result.reason, expected.result.reason);
    assert_eq!(stored.result.successes, expected.result.successes);
    assert_eq!(stored.result.failures, expected.result.failures);
    assert_eq!(stored.result.links, expected.result.links);
    assert_eq!(stored.node_filter, expected.node_filter);
    assert_eq!(stored.created, expected.created);
    assert_eq!(stored.created_by, expected.created_by);
    assert_eq!(stored.retry, expected.retry);
    assert_eq!(stored.terminate, expected.terminate);
    assert_eq!(stored.terminated_by, expected.terminated_by);
    assert_eq!(stored.request_context, expected.request_context);
}

fn assert_kind<T: std::fmt::Debug>(
    result: crate::Result<T>,
    what: &str,
    check: impl Fn(&Error) -> bool,
) {
    match result {
        Err(e) if check(&e) => {}
        other => panic!("{what}: unexpected outcome {other:?}"),
    }
}

/// A created task reads back with every field as written and no messages.
pub async fn task_create_and_get(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = full_task("deploy_nodes", secs_ago(5));
    let returned = create(&*store, &task).await;
    let stored = get(&*store, task.task_id).await;
    assert_same_task(&stored, &task.to_task());
    assert_same_task(&returned, &task.to_task());
    assert_eq!(stored.attempt, 0);
    assert_eq!(stored.claim(), None);
    assert!(stored.subtask_id_list.is_empty());
    assert_eq!(stored.result.details.error_count, 0);
    assert!(stored.result.details.message_list.is_empty());
}

/// A second task with the same id is a conflict and leaves the first unchanged.
pub async fn task_create_duplicate_is_conflict(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = full_task("deploy_nodes", secs_ago(5));
    create(&*store, &task).await;
    let mut twin = NewTask::new("prepare_site");
    twin.task_id = task.task_id;
    assert_kind(store.create_task(&twin).await, "duplicate id", |e| {
        matches!(e, Error::Conflict(_))
    });
    assert_same_task(&get(&*store, task.task_id).await, &task.to_task());
}

/// A subtask whose parent does not exist is refused.
pub async fn task_create_with_unknown_parent_is_not_found(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let orphan = NewTask::new("deploy_nodes").with_parent(TaskId::new());
    assert_kind(store.create_task(&orphan).await, "unknown parent", |e| {
        matches!(e, Error::NotFound { .. })
    });
    assert!(store.get_task(orphan.task_id).await.unwrap().is_none());
}

/// Reading an id that was never stored is `None`, not an error.
pub async fn task_get_unknown_is_none(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert!(store.get_task(TaskId::new()).await.unwrap().is_none());
}

/// A node filter of nested JSON comes back exactly as given.
pub async fn task_node_filter_round_trip(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let filter = json!({
        "filter_set_type": "intersection",
        "filter_set": [
            {"filter_type": "union", "node_names": ["compute01", "compute02"], "node_tags": ["high-memory"]},
            {"filter_type": "intersection", "rack_names": ["rack1"], "node_labels": {"zone": "a", "tier": "gold"}},
            {"filter_type": "union", "node_names": [], "unicode": "nœud-é", "n": 1.5, "nil": null}
        ]
    });
    let task = NewTask::new("deploy_nodes").with_node_filter(filter.clone());
    create(&*store, &task).await;
    assert_eq!(get(&*store, task.task_id).await.node_filter, Some(filter));
}

/// An update writes the fields it sets, keeps the others, the subtask list and the messages,
/// and sets `updated`.
pub async fn task_update_writes_what_it_sets(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = full_task("deploy_nodes", secs_ago(60));
    create(&*store, &task).await;
    let child = NewTask::new("deploy_node").with_parent(task.task_id);
    create(&*store, &child).await;
    store
        .add_subtask(task.task_id, child.task_id, None)
        .await
        .unwrap();
    store
        .append_message(task.task_id, &NewMessage::info("started"), None)
        .await
        .unwrap();

    let update = TaskUpdate::new()
        .status(TaskStatus::Queued)
        .result_status(ResultStatus::PartialSuccess)
        .result_message(Some("1 of 2 nodes deployed"))
        .result_reason(Some("compute02 failed to PXE boot"))
        .successes(["compute01"])
        .failures(["compute02"])
        .links([Link {
            rel: "detail_logs".into(),
            href: "http://logs/1".into(),
        }])
        .retry(2)
        .design_ref(Some("https://designs.example/site.yaml"));
    let mut next = get(&*store, task.task_id).await;
    next.status = TaskStatus::Queued;
    next.result.status = ResultStatus::PartialSuccess;
    next.result.message = Some("1 of 2 nodes deployed".into());
    next.result.reason = Some("compute02 failed to PXE boot".into());
    next.result.successes = vec!["compute01".into()];
    next.result.failures = vec!["compute02".into()];
    next.result.links = vec![Link {
        rel: "detail_logs".into(),
        href: "http://logs/1".into(),
    }];
    next.retry = 2;
    next.design_ref = Some("https://designs.example/site.yaml".into());
    let returned = store
        .update_task(task.task_id, &update, None)
        .await
        .unwrap();
    let stored = get(&*store, task.task_id).await;
    assert_same_task(&stored, &next);
    assert_same_task(&returned, &next);
    assert_eq!(
        stored.node_filter, task.node_filter,
        "a field the update does not set is kept"
    );
    assert_eq!(stored.created_by, task.created_by);
    assert_eq!(stored.subtask_id_list, vec![child.task_id]);
    assert_eq!(stored.result.details.message_list.len(), 1);
    assert!(stored.updated.is_some_and(|u| u >= task.created));
}

/// Updating a task that does not exist is `NotFound`, and does not create it.
pub async fn task_update_unknown_is_not_found(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let ghost = NewTask::new("deploy_nodes");
    assert_kind(
        store
            .update_task(ghost.task_id, &TaskUpdate::new().retry(1), None)
            .await,
        "update unknown",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert_kind(
        store
            .set_status(ghost.task_id, TaskStatus::Queued, None)
            .await,
        "set_status unknown",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert!(store.get_task(ghost.task_id).await.unwrap().is_none());
}

/// A complete or terminated task takes no further write, guarded or not: no status, not even
/// the same one, and no other field.
pub async fn task_terminal_status_is_final(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    for terminal in [TaskStatus::Complete, TaskStatus::Terminated] {
        let task = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
        create(&*store, &task).await;
        store
            .set_status(task.task_id, terminal, None)
            .await
            .unwrap();
        for next in [
            TaskStatus::Running,
            TaskStatus::Queued,
            TaskStatus::Requested,
            terminal,
        ] {
            assert_kind(
                store.set_status(task.task_id, next, None).await,
                "set_status from terminal",
                |e| matches!(e, Error::Conflict(_)),
            );
            assert_eq!(get(&*store, task.task_id).await.status, terminal);
        }
        assert_kind(
            store
                .update_task(task.task_id, &TaskUpdate::new().retry(3), None)
                .await,
            "update of a field of a terminal task",
            |e| matches!(e, Error::Conflict(_)),
        );
        assert_eq!(get(&*store, task.task_id).await.retry, 0);
    }
}

/// A task runs only once claimed and stops only once terminated: neither a new task nor an
/// update may put it into `running` or `terminating`.
pub async fn task_running_only_by_a_claim(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    for live in [TaskStatus::Running, TaskStatus::Terminating] {
        let new = NewTask::new("deploy_nodes").with_status(live);
        assert_kind(store.create_task(&new).await, "create live", |e| {
            matches!(e, Error::InvalidInput { .. })
        });
        assert!(store.get_task(new.task_id).await.unwrap().is_none());
        let task = queued(&*store, "deploy_nodes", now()).await;
        assert_kind(
            store.set_status(task.task_id, live, None).await,
            "set_status into a live status",
            |e| matches!(e, Error::Conflict(_)),
        );
        assert_eq!(get(&*store, task.task_id).await.status, TaskStatus::Queued);
    }
}

/// Text a backend cannot hold (NUL), empty or odd actions and relative design references are
/// refused with the field named, and nothing is stored.
pub async fn task_invalid_input_is_refused_and_nothing_stored(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let mut cases: Vec<(NewTask, &str)> = vec![
        (NewTask::new(""), "task.action"),
        (NewTask::new("deploy nodes"), "task.action"),
        (NewTask::new("deploy\u{7}nodes"), "task.action"),
        (NewTask::new("a".repeat(MAX_ACTION_LEN + 1)), "task.action"),
        (
            NewTask::new("deploy_nodes").with_design_ref("relative/site.yaml"),
            "design_ref",
        ),
        (
            NewTask::new("deploy_nodes").with_created_by("bad\0actor"),
            "task.created_by",
        ),
        (
            NewTask::new("deploy_nodes").with_node_filter(json!({"node_names": ["a\u{0}b"]})),
            "task.node_filter",
        ),
    ];
    let mut t = NewTask::new("deploy_nodes");
    t.request_context = Some(json!({"user": "nul\u{0}"}));
    cases.push((t, "task.request_context"));
    let mut t = NewTask::new("deploy_nodes");
    t.retry = -1;
    cases.push((t, "task.retry"));
    for (task, field) in cases {
        match store.create_task(&task).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
        assert!(store.get_task(task.task_id).await.unwrap().is_none());
    }
    let good = NewTask::new("deploy_nodes");
    create(&*store, &good).await;
    let bad_updates = [
        (
            TaskUpdate::new().result_message(Some("nul\0inside")),
            "task.result.message",
        ),
        (
            TaskUpdate::new().successes(["n\u{0}1"]),
            "task.result.successes",
        ),
        (TaskUpdate::new().retry(-2), "task.retry"),
        (
            TaskUpdate::new().parent(Some(good.task_id)),
            "task.parent_task_id",
        ),
        (
            TaskUpdate::new().design_ref(Some("relative/site.yaml")),
            "design_ref",
        ),
    ];
    for (update, field) in bad_updates {
        match store.update_task(good.task_id, &update, None).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    let stored = get(&*store, good.task_id).await;
    assert_eq!(stored.result.message, None);
    assert_eq!(stored.retry, 0);
    assert_eq!(stored.updated, None, "a refused update writes nothing");
    assert_eq!(
        store
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Quotes, backslashes, comment markers and wildcards are data, stored and matched verbatim.
pub async fn task_sql_metacharacters_stored_verbatim(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let nasty = "x'); DROP TABLE tasks; -- \\ % _ \" ` $1 ?";
    let task = NewTask::new("deploy_nodes'--").with_created_by(nasty);
    create(&*store, &task).await;
    store
        .append_message(
            task.task_id,
            &NewMessage::info(nasty).with_context("node", nasty),
            None,
        )
        .await
        .unwrap();
    let stored = get(&*store, task.task_id).await;
    assert_eq!(stored.created_by.as_deref(), Some(nasty));
    assert_eq!(stored.result.details.message_list[0].message, nasty);
    assert_eq!(stored.result.details.message_list[0].context, nasty);
    let by_action = store
        .list_tasks(&TaskFilter {
            action: Some("deploy_nodes'--".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_action.len(), 1);
    let wildcard = store
        .list_tasks(&TaskFilter {
            action: Some("%".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(wildcard.is_empty(), "an action filter is not a pattern");
}

/// Listing filters by status, action, parent and creation range, all at once.
pub async fn task_list_filters(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let root = full_task("deploy_nodes", secs_ago(300));
    create(&*store, &root).await;
    let mut a = NewTask::new("prepare_nodes")
        .with_parent(root.task_id)
        .with_status(TaskStatus::Queued);
    a.created = secs_ago(200);
    create(&*store, &a).await;
    let b = NewTask::new("prepare_nodes_b")
        .with_parent(root.task_id)
        .with_created(secs_ago(100));
    let b = claimed(&*store, b, "kit").await;
    let mut c = NewTask::new("deploy_nodes").with_status(TaskStatus::Queued);
    c.created = secs_ago(50);
    create(&*store, &c).await;
    let ids = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
    let list = |f: TaskFilter| {
        let store = store.clone();
        async move { ids(store.list_tasks(&f).await.unwrap()) }
    };
    assert_eq!(
        list(TaskFilter::default()).await,
        vec![root.task_id, a.task_id, b.task_id, c.task_id]
    );
    assert_eq!(
        list(TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await,
        vec![a.task_id, c.task_id]
    );
    assert_eq!(
        list(TaskFilter {
            action: Some("prepare_nodes".into()),
            ..Default::default()
        })
        .await,
        vec![a.task_id]
    );
    assert_eq!(
        list(TaskFilter {
            parent: Some(root.task_id),
            status: Some(TaskStatus::Running),
            ..Default::default()
        })
        .await,
        vec![b.task_id]
    );
    assert_eq!(
        list(TaskFilter {
            created_after: Some(a.created),
            created_before: Some(c.created),
            ..Default::default()
        })
        .await,
        vec![a.task_id, b.task_id]
    );
    assert_eq!(
        list(TaskFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await,
        vec![root.task_id, a.task_id]
    );
}

/// Keyset pages cover every task once, in order, even when creation times tie.
pub async fn task_list_keyset_pagination(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let tie = secs_ago(30);
    let mut expected = Vec::new();
    for i in 0..25 {
        let mut t = NewTask::new("deploy_nodes");
        t.created = if i % 5 == 0 { tie } else { secs_ago(100 - i) };
        create(&*store, &t).await;
        expected.push((t.created, t.task_id));
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_tasks(&TaskFilter {
                after,
                limit: Some(10),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        let last = page.last().unwrap();
        after = Some((last.created, last.task_id));
        seen.extend(page.iter().map(|t| (t.created, t.task_id)));
    }
    assert_eq!(seen, expected);
}

/// Listed tasks carry their messages and error counts.
pub async fn task_list_assembles_messages(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = NewTask::new("deploy_nodes");
        create(&*store, &t).await;
        for j in 0..i {
            let m = if j % 2 == 0 {
                NewMessage::error(format!("e{j}"))
            } else {
                NewMessage::info(format!("i{j}"))
            };
            store.append_message(t.task_id, &m, None).await.unwrap();
        }
        ids.push((t.task_id, i as u64));
    }
    let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.len(), 5);
    for (id, n) in ids {
        let t = tasks.iter().find(|t| t.task_id == id).unwrap();
        assert_eq!(t.result.details.message_list.len(), n as usize);
        assert_eq!(t.result.details.error_count, n.div_ceil(2));
    }
}

/// A task read from the store serializes to the JSON Drydock's API clients read.
pub async fn task_json_shape_from_store(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = full_task("deploy_nodes", secs_ago(1));
    create(&*store, &task).await;
    store
        .append_message(
            task.task_id,
            &NewMessage::error("boom").with_context("node", "n1"),
            None,
        )
        .await
        .unwrap();
    let v = serde_json::to_value(get(&*store, task.task_id).await).unwrap();
    assert_eq!(v["kind"], "Task");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["task_id"], task.task_id.to_string());
    assert_eq!(v["status"], "requested");
    assert_eq!(v["result"]["status"], "incomplete");
    assert_eq!(v["result"]["details"]["errorCount"], 1);
    assert_eq!(v["result"]["details"]["messageList"][0]["message"], "boom");
    assert_eq!(v["result"]["details"]["messageList"][0]["context"], "n1");
    assert_eq!(v["node_filter"]["filter_set_type"], "union");
    assert_eq!(v["design_ref"], "file:///etc/drydock/site.yaml");
    assert!(v["subtask_id_list"].as_array().unwrap().is_empty());
}

/// Concurrent subtask appends are all kept, once each; a repeated append is a no-op.
pub async fn subtask_append_is_atomic(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let parent = NewTask::new("deploy_nodes");
    create(&*store, &parent).await;
    let mut children = Vec::new();
    for _ in 0..40 {
        let c = NewTask::new("deploy_node").with_parent(parent.task_id);
        create(&*store, &c).await;
        children.push(c.task_id);
    }
    let mut handles = Vec::new();
    for chunk in children.chunks(5) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        let parent = parent.task_id;
        handles.push(tokio::spawn(async move {
            for c in chunk {
                store.add_subtask(parent, c, None).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    store
        .add_subtask(parent.task_id, children[0], None)
        .await
        .unwrap();
    let stored = get(&*store, parent.task_id).await.subtask_id_list;
    assert_eq!(stored.len(), children.len(), "every append kept once");
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        children.iter().collect::<HashSet<_>>()
    );
}

/// Active subtasks are the unfinished ones; complete ones are those in a terminal status.
pub async fn subtasks_active_vs_complete(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let parent = NewTask::new("deploy_nodes");
    create(&*store, &parent).await;
    let statuses = [
        TaskStatus::Requested,
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Terminating,
        TaskStatus::Terminated,
        TaskStatus::Complete,
    ];
    let mut ids = Vec::new();
    for s in statuses {
        let c = NewTask::new(format!("deploy_node_{s}")).with_parent(parent.task_id);
        let id = c.task_id;
        match s {
            TaskStatus::Running => {
                claimed(&*store, c, "kit").await;
            }
            TaskStatus::Terminating => {
                claimed(&*store, c, "kit").await;
                store.terminate_task(id, "kit", None).await.unwrap();
            }
            _ => {
                create(&*store, &c.with_status(TaskStatus::Queued)).await;
                store.set_status(id, s, None).await.unwrap();
            }
        }
        assert_eq!(get(&*store, id).await.status, s);
        store.add_subtask(parent.task_id, id, None).await.unwrap();
        ids.push(id);
    }
    let pick = |which| {
        let store = store.clone();
        async move {
            store
                .subtasks(parent.task_id, which)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.task_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(pick(crate::SubtaskFilter::All).await, ids);
    assert_eq!(pick(crate::SubtaskFilter::Active).await, ids[..4].to_vec());
    assert_eq!(
        pick(crate::SubtaskFilter::Complete).await,
        ids[4..].to_vec()
    );
}

/// Subtask operations on an unknown parent are `NotFound`.
pub async fn subtask_of_unknown_parent_is_not_found(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let ghost = TaskId::new();
    assert_kind(
        store.add_subtask(ghost, TaskId::new(), None).await,
        "add_subtask",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert_kind(
        store.subtasks(ghost, crate::SubtaskFilter::All).await,
        "subtasks",
        |e| matches!(e, Error::NotFound { .. }),
    );
}

/// Terminating records who and when; a running task becomes terminated, a finished one keeps
/// Termination records who asked and when, and moves each task as Drydock did: a waiting task
/// is terminated at once, a running one becomes `terminating` (its worker finishes it), a
/// finished one only records the request.
pub async fn terminate_task_records_who_and_when(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let running = claimed(&*store, NewTask::new("deploy_nodes"), "kit").await;
    let waiting = queued(&*store, "prepare_site", now()).await;
    let done = NewTask::new("deploy_nodes").with_status(TaskStatus::Complete);
    create(&*store, &done).await;
    let t = store
        .terminate_task(running.task_id, "operator", None)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Terminating);
    let stored = get(&*store, running.task_id).await;
    assert_eq!(stored.status, TaskStatus::Terminating);
    assert!(stored.terminate);
    assert_eq!(stored.terminated_by.as_deref(), Some("operator"));
    assert!(stored.terminated.is_some());
    assert_eq!(
        stored.claim(),
        running.claim(),
        "the worker keeps its claim"
    );
    let t = store
        .terminate_task(waiting.task_id, "operator", None)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Terminated);
    assert!(t.terminate);
    store
        .terminate_task(done.task_id, "operator", None)
        .await
        .unwrap();
    let stored = get(&*store, done.task_id).await;
    assert_eq!(stored.status, TaskStatus::Complete);
    assert!(stored.terminate);
    assert_kind(
        store.terminate_task(TaskId::new(), "x", None).await,
        "unknown",
        |e| matches!(e, Error::NotFound { .. }),
    );
}

/// Purge removes old trees with their subtasks and messages, and leaves younger ones whole.
pub async fn purge_removes_old_trees_keeps_young(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let day = 86_400;
    let old_root = full_task("deploy_nodes", secs_ago(40 * day));
    create(&*store, &old_root).await;
    let mut old_child = NewTask::new("deploy_node").with_parent(old_root.task_id);
    old_child.created = secs_ago(40 * day - 10);
    create(&*store, &old_child).await;
    let young_grandchild = NewTask::new("deploy_node").with_parent(old_child.task_id);
    create(&*store, &young_grandchild).await;
    store
        .add_subtask(old_root.task_id, old_child.task_id, None)
        .await
        .unwrap();
    for id in [
        old_root.task_id,
        old_child.task_id,
        young_grandchild.task_id,
    ] {
        store
            .append_messages(id, &[NewMessage::info("a"), NewMessage::error("b")], None)
            .await
            .unwrap();
    }
    let young_root = full_task("deploy_nodes", secs_ago(day));
    create(&*store, &young_root).await;
    let young_child = NewTask::new("deploy_node").with_parent(young_root.task_id);
    create(&*store, &young_child).await;
    store
        .append_message(young_root.task_id, &NewMessage::info("keep me"), None)
        .await
        .unwrap();

    let report = store
        .purge(Duration::from_secs(30 * day as u64))
        .await
        .unwrap();
    assert_eq!(report.tasks, 3);
    assert_eq!(report.messages, 6);
    for gone in [
        old_root.task_id,
        old_child.task_id,
        young_grandchild.task_id,
    ] {
        assert!(store.get_task(gone).await.unwrap().is_none());
        assert!(store.messages(gone).await.unwrap().is_empty());
    }
    assert_eq!(
        get(&*store, young_root.task_id)
            .await
            .result
            .details
            .message_list
            .len(),
        1
    );
    assert!(store.get_task(young_child.task_id).await.unwrap().is_some());
    let again = store
        .purge(Duration::from_secs(30 * day as u64))
        .await
        .unwrap();
    assert_eq!(again, PurgeReport::default());
}

/// A zero retention is refused rather than deleting everything.
pub async fn purge_zero_retention_is_invalid(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = NewTask::new("deploy_nodes");
    create(&*store, &t).await;
    assert_kind(store.purge(Duration::ZERO).await, "zero retention", |e| {
        matches!(e, Error::InvalidInput { .. })
    });
    assert!(store.get_task(t.task_id).await.unwrap().is_some());
}

/// The error count is the number of error messages, and every message is kept.
pub async fn messages_error_count(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = NewTask::new("deploy_nodes");
    create(&*store, &t).await;
    for i in 0..7 {
        let m = if i % 3 == 0 {
            NewMessage::error(format!("error {i}"))
        } else {
            NewMessage::info(format!("info {i}"))
        };
        store
            .append_message(t.task_id, &m.with_context("node", format!("n{i}")), None)
            .await
            .unwrap();
    }
    let stored = get(&*store, t.task_id).await;
    assert_eq!(stored.result.details.error_count, 3);
    assert_eq!(stored.result.details.message_list.len(), 7);
    assert_eq!(stored.result.details.message_list[3].context, "n3");
    assert_eq!(stored.result.details.message_list[3].context_type, "node");
    assert!(stored.result.details.message_list[3].error);
}

/// A long message (5,000 characters, multibyte included) and a 1 MiB one are stored whole.
pub async fn message_5000_chars_stored_whole(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = NewTask::new("deploy_nodes");
    create(&*store, &t).await;
    let long: String = "é✓x".chars().cycle().take(5000).collect();
    let huge = "y".repeat(1 << 20);
    let mut m = NewMessage::info(long.clone());
    m.extra = Some(json!({"detail": long.clone()}));
    let stored = store.append_message(t.task_id, &m, None).await.unwrap();
    assert_eq!(stored.message.chars().count(), 5000);
    store
        .append_message(t.task_id, &NewMessage::info(huge.clone()), None)
        .await
        .unwrap();
    let read = store.messages(t.task_id).await.unwrap();
    assert_eq!(read[0].message, long);
    assert_eq!(read[0].extra, Some(json!({"detail": long})));
    assert_eq!(read[1].message.len(), huge.len());
}

/// Messages come back in the order appended, single and batched, however they interleave.
pub async fn messages_in_sequence_order(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let a = NewTask::new("deploy_nodes");
    let b = NewTask::new("deploy_nodes");
    create(&*store, &a).await;
    create(&*store, &b).await;
    let mut expected = Vec::new();
    for i in 0..30 {
        store
            .append_message(a.task_id, &NewMessage::info(format!("a{i}")), None)
            .await
            .unwrap();
        store
            .append_message(b.task_id, &NewMessage::info(format!("b{i}")), None)
            .await
            .unwrap();
        expected.push(format!("a{i}"));
        if i % 10 == 9 {
            let batch: Vec<NewMessage> = (0..5)
                .map(|j| NewMessage::info(format!("a{i}-batch{j}")))
                .collect();
            let stored = store
                .append_messages(a.task_id, &batch, None)
                .await
                .unwrap();
            assert_eq!(stored.len(), 5);
            assert!(stored.windows(2).all(|w| w[0].sequence < w[1].sequence));
            expected.extend(batch.into_iter().map(|m| m.message));
        }
    }
    let read = store.messages(a.task_id).await.unwrap();
    assert_eq!(
        read.iter().map(|m| m.message.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(read.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(read.iter().all(|m| m.task_id == a.task_id));
    assert_eq!(
        get(&*store, a.task_id).await.result.details.message_list,
        read
    );
}

/// Appending to a task that does not exist is `NotFound`.
pub async fn message_to_unknown_task_is_not_found(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let ghost = TaskId::new();
    assert_kind(
        store
            .append_message(ghost, &NewMessage::info("x"), None)
            .await,
        "append",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert_kind(
        store
            .append_messages(ghost, &[NewMessage::info("x")], None)
            .await,
        "append batch",
        |e| matches!(e, Error::NotFound { .. }),
    );
    assert!(store.messages(ghost).await.unwrap().is_empty());
}

/// A batch with one bad message stores none of them.
pub async fn message_batch_is_all_or_nothing(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = NewTask::new("deploy_nodes");
    create(&*store, &t).await;
    let batch = vec![
        NewMessage::info("fine"),
        NewMessage::info("bad\0"),
        NewMessage::info("fine too"),
    ];
    match store.append_messages(t.task_id, &batch, None).await {
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "message.message"),
        other => panic!("expected invalid message.message, got {other:?}"),
    }
    assert!(store.messages(t.task_id).await.unwrap().is_empty());
    assert!(store
        .append_messages(t.task_id, &[], None)
        .await
        .unwrap()
        .is_empty());
}

fn element(
    node: &str,
    task: TaskId,
    generator: &str,
    collected: Option<DateTime<Utc>>,
    data: &str,
) -> BuildData {
    BuildData {
        node_name: node.into(),
        task_id: task,
        collected_date: collected,
        generator: generator.into(),
        data_format: "text/plain".into(),
        data_element: Some(data.into()),
    }
}

/// Build data recorded with a collected date keeps it; without one, the store's now is used.
pub async fn build_data_with_and_without_collected_date(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = TaskId::new();
    let dated = secs_ago(3600);
    let before = now() - chrono::Duration::seconds(5);
    store
        .record_build_data(&element("n1", task, "lshw", Some(dated), "<xml/>"), None)
        .await
        .unwrap();
    store
        .record_build_data(&element("n1", task, "lldp", None, "lldp data"), None)
        .await
        .unwrap();
    let rows = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].generator, "lldp", "newest first");
    assert!(rows[0]
        .collected_date
        .is_some_and(|d| d >= before && d <= now() + chrono::Duration::seconds(5)));
    assert_eq!(rows[1].collected_date, Some(dated));
    assert_eq!(rows[1].data_element.as_deref(), Some("<xml/>"));
    let big = "z".repeat(64 * 1024);
    store
        .record_build_data(&element("n2", task, "lshw", None, &big), None)
        .await
        .unwrap();
    let rows = store
        .build_data(&BuildDataQuery {
            node_name: Some("n2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows[0].data_element.as_deref(), Some(big.as_str()));
    let mut missing = element("n3", task, "lshw", None, "");
    missing.data_element = None;
    assert_kind(
        store.record_build_data(&missing, None).await,
        "no element",
        |e| matches!(e, Error::InvalidInput { .. }),
    );
}

/// Build data can be selected by node, by task, and by node AND task.
pub async fn build_data_by_node_task_and_both(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let (t1, t2) = (TaskId::new(), TaskId::new());
    for (node, task) in [("n1", t1), ("n1", t2), ("n2", t1), ("n2", t2), ("n2", t2)] {
        store
            .record_build_data(&element(node, task, "lshw", None, "x"), None)
            .await
            .unwrap();
    }
    let count = |node: Option<&str>, task: Option<TaskId>| {
        let store = store.clone();
        let q = BuildDataQuery {
            node_name: node.map(str::to_string),
            task_id: task,
            ..Default::default()
        };
        async move { store.build_data(&q).await.unwrap().len() }
    };
    assert_eq!(count(Some("n1"), None).await, 2);
    assert_eq!(count(None, Some(t2)).await, 3);
    assert_eq!(count(Some("n2"), Some(t2)).await, 2);
    assert_eq!(count(Some("n1"), Some(t1)).await, 1);
    assert_eq!(count(None, None).await, 5);
    assert_eq!(count(Some("n9"), None).await, 0);
}

/// `latest` for a node gives one row per generator: the newest.
pub async fn build_data_latest_per_generator(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = TaskId::new();
    for (i, generator) in ["lshw", "lldp", "lshw", "maas", "lldp", "lshw"]
        .iter()
        .enumerate()
    {
        let collected = secs_ago(1000 - i as i64 * 10);
        store
            .record_build_data(
                &element("n1", task, generator, Some(collected), &format!("v{i}")),
                None,
            )
            .await
            .unwrap();
    }
    store
        .record_build_data(&element("n2", task, "lshw", None, "other node"), None)
        .await
        .unwrap();
    let rows = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            latest: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got: Vec<(String, String)> = rows
        .into_iter()
        .map(|b| (b.generator, b.data_element.unwrap()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("lldp".into(), "v4".into()),
            ("lshw".into(), "v5".into()),
            ("maas".into(), "v3".into())
        ]
    );
}

/// `latest` without a node gives the newest row per node and generator (Drydock gave one per
/// generator across all nodes).
pub async fn build_data_latest_without_node_filter(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = TaskId::new();
    for node in ["n1", "n2", "n3"] {
        for (i, generator) in ["lshw", "lldp", "lshw"].iter().enumerate() {
            let collected = secs_ago(500 - i as i64);
            store
                .record_build_data(
                    &element(
                        node,
                        task,
                        generator,
                        Some(collected),
                        &format!("{node}-{i}"),
                    ),
                    None,
                )
                .await
                .unwrap();
        }
    }
    let rows = store
        .build_data(&BuildDataQuery {
            latest: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    for node in ["n1", "n2", "n3"] {
        let lshw = rows
            .iter()
            .find(|b| b.node_name == node && b.generator == "lshw")
            .unwrap();
        assert_eq!(
            lshw.data_element.as_deref(),
            Some(format!("{node}-2").as_str())
        );
    }
}

/// Brief verbosity returns the metadata without the element.
pub async fn build_data_brief_omits_element(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let task = TaskId::new();
    store
        .record_build_data(&element("n1", task, "lshw", None, "big"), None)
        .await
        .unwrap();
    let rows = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            verbosity: Verbosity::Brief,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].data_element, None);
    assert_eq!(rows[0].generator, "lshw");
    assert_eq!(rows[0].data_format, "text/plain");
    assert_eq!(rows[0].task_id, task);
}

/// The first claimant gets the lease; a second is denied while it lives and is told who holds it.
pub async fn lease_claim_and_deny(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert_eq!(store.current_lease().await.unwrap(), None);
    let a = store.claim_lease("instance-a").await.unwrap();
    let held = a.held().expect("a holds the lease").clone();
    assert_eq!(held.instance_id, "instance-a");
    assert!(held.expires_at > held.renewed_at);
    match store.claim_lease("instance-b").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => {
            assert_eq!(holder.instance_id, "instance-a");
            assert_eq!(holder.term, held.term);
        }
        other => panic!("b should be denied, got {other:?}"),
    }
    assert_eq!(
        store.current_lease().await.unwrap().unwrap().instance_id,
        "instance-a"
    );
    // Claiming again as the holder keeps the term.
    assert_eq!(
        store
            .claim_lease("instance-a")
            .await
            .unwrap()
            .held()
            .unwrap()
            .term,
        held.term
    );
}

/// After the grace period without renewal, another instance takes the lease with a higher term.
pub async fn lease_usurp_after_grace(factory: &dyn StoreFactory) {
    let store = factory.open(with_grace(Duration::from_millis(1500))).await;
    let a = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert!(store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .is_none());
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(store.current_lease().await.unwrap(), None, "lapsed");
    let b = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert_eq!(b.instance_id, "instance-b");
    assert!(b.term > a.term, "term must rise with a new holder");
    assert!(
        store
            .renew_lease("instance-a")
            .await
            .unwrap()
            .held()
            .is_none(),
        "the deposed holder cannot renew"
    );
    assert_eq!(
        store.current_lease().await.unwrap().unwrap().instance_id,
        "instance-b"
    );
}

/// Renewal extends the holder's lease with the same term; others cannot renew.
pub async fn lease_renew_keeps_term_and_denies_others(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert!(matches!(
        store.renew_lease("instance-a").await.unwrap(),
        LeaseOutcome::Denied(None)
    ));
    let first = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let renewed = store
        .renew_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert_eq!(renewed.term, first.term);
    assert_eq!(renewed.acquired_at, first.acquired_at);
    assert!(renewed.expires_at > first.expires_at);
    match store.renew_lease("instance-b").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => assert_eq!(holder.instance_id, "instance-a"),
        other => panic!("b must not renew a's lease: {other:?}"),
    }
}

/// Releasing frees the lease at once; the next holder's term is higher.
pub async fn lease_release_lets_another_claim_with_higher_term(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let a = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert!(
        !store.release_lease("instance-b").await.unwrap(),
        "b holds nothing"
    );
    assert!(store.release_lease("instance-a").await.unwrap());
    assert_eq!(store.current_lease().await.unwrap(), None);
    let b = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert!(b.term > a.term);
    let a2 = {
        store.release_lease("instance-b").await.unwrap();
        store
            .claim_lease("instance-a")
            .await
            .unwrap()
            .held()
            .unwrap()
            .clone()
    };
    assert!(
        a2.term > b.term,
        "returning to an old holder is still a change of holder"
    );
}

/// Claims take the oldest queued task first and record who claimed it.
pub async fn claim_oldest_queued_first(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let newer = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    let older = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let mut requested = NewTask::new("deploy_nodes");
    requested.created = secs_ago(30);
    create(&*store, &requested).await;
    let req = ClaimRequest::new("instance-a");
    let first = store.claim_next(&req).await.unwrap().expect("a task");
    assert_eq!(first.task_id, older.task_id);
    assert_eq!(first.status, TaskStatus::Running);
    assert_eq!(first.claimed_by.as_deref(), Some("instance-a"));
    assert!(first.claimed_at.is_some());
    let stored = get(&*store, older.task_id).await;
    assert_eq!(stored.status, TaskStatus::Running);
    assert_eq!(stored.claimed_by.as_deref(), Some("instance-a"));
    assert_eq!(
        store.claim_next(&req).await.unwrap().unwrap().task_id,
        newer.task_id
    );
    assert!(
        store.claim_next(&req).await.unwrap().is_none(),
        "requested tasks are not claimable"
    );
}

/// Claims only take tasks whose action is allowed.
pub async fn claim_respects_actions(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let deploy = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let prepare = queued(&*store, "prepare_site", secs_ago(10)).await;
    let only_prepare = ClaimRequest::new("i").actions(["prepare_site", "validate_design"]);
    assert_eq!(
        store
            .claim_next(&only_prepare)
            .await
            .unwrap()
            .unwrap()
            .task_id,
        prepare.task_id
    );
    assert!(store.claim_next(&only_prepare).await.unwrap().is_none());
    assert_eq!(
        get(&*store, deploy.task_id).await.status,
        TaskStatus::Queued
    );
}

/// With nothing queued a claim returns `None` and changes nothing.
pub async fn claim_nothing_queued_is_none(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert!(store
        .claim_next(&ClaimRequest::new("i"))
        .await
        .unwrap()
        .is_none());
    claimed(&*store, NewTask::new("deploy_nodes"), "i").await;
    assert!(store
        .claim_next(&ClaimRequest::new("i"))
        .await
        .unwrap()
        .is_none());
}

/// A fenced claim succeeds only for the live holder with its current term.
pub async fn claim_fenced_with_stale_term_is_refused(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t1 = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let t2 = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    let a = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    let claimed = store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.task_id, t1.task_id);
    assert_eq!(claimed.claim_term, Some(a.term));
    assert_kind(
        store
            .claim_next(&ClaimRequest::new("instance-b").fenced(a.term))
            .await,
        "non-holder",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    store.release_lease("instance-a").await.unwrap();
    let b = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert_kind(
        store
            .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
            .await,
        "deposed",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    assert_kind(
        store
            .claim_next(&ClaimRequest::new("instance-b").fenced(a.term))
            .await,
        "stale term",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    assert_eq!(
        get(&*store, t2.task_id).await.status,
        TaskStatus::Queued,
        "a refused claim takes nothing"
    );
    let ok = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(b.term))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.task_id, t2.task_id);
}

/// Eight concurrent claimers draining 200 tasks claim each exactly once.
pub async fn claim_concurrent_exactly_once(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let mut all = HashSet::new();
    for i in 0..200 {
        let t = queued(&*store, "deploy_nodes", secs_ago(1000 - i)).await;
        all.insert(t.task_id);
    }
    let mut handles = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let req = ClaimRequest::new(format!("worker-{w}"));
            let mut mine = Vec::new();
            while let Some(t) = store.claim_next(&req).await.unwrap() {
                mine.push(t.task_id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.await.unwrap());
    }
    let unique: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "a task was claimed twice");
    assert_eq!(unique, all, "every task claimed");
}

/// After a change of leader, tasks running under the old term are requeued once, each with a
/// message saying why; tasks of the current term are left alone.
pub async fn recover_orphans_requeues_with_message(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t1 = queued(&*store, "deploy_nodes", secs_ago(30)).await;
    let t2 = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let unfenced = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    let a = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    store
        .claim_next(&ClaimRequest::new("instance-a"))
        .await
        .unwrap()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let b = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    let mut recovered = store
        .recover_orphans(b.term, OrphanPolicy::Requeue)
        .await
        .unwrap();
    recovered.sort();
    let mut expected = vec![t1.task_id, t2.task_id];
    expected.sort();
    assert_eq!(recovered, expected);
    for id in [t1.task_id, t2.task_id] {
        let t = get(&*store, id).await;
        assert_eq!(t.status, TaskStatus::Queued);
        assert_eq!(t.claimed_by, None);
        let msgs = &t.result.details.message_list;
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].message.contains("instance-a"),
            "{}",
            msgs[0].message
        );
        assert!(
            msgs[0].message.contains(&format!("term {}", b.term)),
            "{}",
            msgs[0].message
        );
    }
    assert_eq!(
        get(&*store, unfenced.task_id).await.status,
        TaskStatus::Running
    );
    assert!(
        store
            .recover_orphans(b.term, OrphanPolicy::Requeue)
            .await
            .unwrap()
            .is_empty(),
        "recovered once"
    );
    // The new leader can claim the requeued work under its own term, which is not orphaned.
    let again = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(b.term))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.task_id, t1.task_id);
    assert!(store
        .recover_orphans(b.term, OrphanPolicy::Requeue)
        .await
        .unwrap()
        .is_empty());
}

/// Under the fail policy, orphans are finished as failures with an error message.
pub async fn recover_orphans_fail_policy(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = queued(&*store, "deploy_nodes", secs_ago(30)).await;
    let a = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let b = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert_eq!(
        store
            .recover_orphans(b.term, OrphanPolicy::Fail)
            .await
            .unwrap(),
        vec![t.task_id]
    );
    let stored = get(&*store, t.task_id).await;
    assert_eq!(stored.status, TaskStatus::Complete);
    assert_eq!(stored.result.status, ResultStatus::Failure);
    assert_eq!(stored.result.details.error_count, 1);
    assert!(store
        .recover_orphans(b.term, OrphanPolicy::Fail)
        .await
        .unwrap()
        .is_empty());
}

/// A leader that stops renewing past the grace period loses the lease to another with a
/// higher term; its renewal and fenced claims are refused and take nothing; its running tasks
/// are recovered exactly once, by two recoveries racing and a repeat.
pub async fn stalled_leader_is_fenced_out_and_recovered_once(factory: &dyn StoreFactory) {
    // Long enough that four claims fit in it on a loaded machine; the case waits it out once.
    let grace = Duration::from_secs(3);
    let store = factory.open(with_grace(grace)).await;
    for i in 0..6 {
        queued(&*store, "deploy_nodes", secs_ago(600 - i)).await;
    }
    let ta = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    let fenced_a = ClaimRequest::new("instance-a").fenced(ta.term);
    let mut running_a = Vec::new();
    for _ in 0..4 {
        running_a.push(store.claim_next(&fenced_a).await.unwrap().unwrap().task_id);
    }
    tokio::time::sleep(grace + Duration::from_millis(200)).await;
    let tb = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .expect("b takes the lapsed lease")
        .clone();
    assert!(tb.term > ta.term);
    match store.renew_lease("instance-a").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => assert_eq!(
            (holder.instance_id.as_str(), holder.term),
            ("instance-b", tb.term)
        ),
        other => panic!("a stale renewal must be denied, naming the new holder: {other:?}"),
    }
    assert!(store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .is_none());
    let queued_before = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    for _ in 0..3 {
        assert_kind(
            store.claim_next(&fenced_a).await,
            "stale fenced claim",
            |e| matches!(e, Error::LeaseLost(_)),
        );
    }
    let queued_after = store
        .list_tasks(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(queued_before, queued_after, "refused claims took nothing");
    let (r1, r2) = tokio::join!(
        store.recover_orphans(tb.term, OrphanPolicy::Requeue),
        store.recover_orphans(tb.term, OrphanPolicy::Requeue)
    );
    let mut recovered: Vec<TaskId> = r1.unwrap().into_iter().chain(r2.unwrap()).collect();
    recovered.sort();
    running_a.sort();
    assert_eq!(recovered, running_a, "each task recovered exactly once");
    assert!(store
        .recover_orphans(tb.term, OrphanPolicy::Requeue)
        .await
        .unwrap()
        .is_empty());
    for id in running_a {
        let t = get(&*store, id).await;
        assert_eq!(t.status, TaskStatus::Queued);
        assert_eq!(
            t.result.details.message_list.len(),
            1,
            "one recovery message"
        );
    }
}

/// A write from a copy whose claim is no longer the stored one (the task was recovered, or
/// claimed again by a new leader) is refused with `LeaseLost` and writes nothing; the current
/// claimant's write goes through. A copy without a claim is not refused for this.
pub async fn late_write_with_a_stale_claim_is_refused(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t = queued(&*store, "deploy_nodes", secs_ago(60)).await;
    let ta = store
        .claim_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    let claimed_a = store
        .claim_next(&ClaimRequest::new("instance-a").fenced(ta.term))
        .await
        .unwrap()
        .unwrap();
    store.release_lease("instance-a").await.unwrap();
    let tb = store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    store
        .recover_orphans(tb.term, OrphanPolicy::Requeue)
        .await
        .unwrap();

    // Recovered, not yet claimed again: a's late finish is refused.
    let guard_a = claimed_a.claim().expect("a claimed task carries its claim");
    let finish = TaskUpdate::new()
        .status(TaskStatus::Complete)
        .result_status(ResultStatus::Success);
    assert_kind(
        store.update_task(t.task_id, &finish, Some(&guard_a)).await,
        "late write after recovery",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Queued);

    // Claimed again by b: a's late finish is still refused, b's own goes through.
    let claimed_b = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(tb.term))
        .await
        .unwrap()
        .unwrap();
    assert_kind(
        store.update_task(t.task_id, &finish, Some(&guard_a)).await,
        "late write after re-claim",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    let stored = get(&*store, t.task_id).await;
    assert_eq!(
        (
            stored.status,
            stored.claimed_by.as_deref(),
            stored.claim_term
        ),
        (TaskStatus::Running, Some("instance-b"), Some(tb.term))
    );
    let guard_b = claimed_b.claim().unwrap();
    store
        .update_task(t.task_id, &finish, Some(&guard_b))
        .await
        .unwrap();
    assert_eq!(get(&*store, t.task_id).await.status, TaskStatus::Complete);

    // An unguarded write is judged by status alone.
    let other = queued(&*store, "deploy_nodes", secs_ago(30)).await;
    store
        .update_task(other.task_id, &TaskUpdate::new().retry(3), None)
        .await
        .unwrap();
    assert_eq!(get(&*store, other.task_id).await.retry, 3);
}
