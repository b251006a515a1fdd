//! Kit cases for tasks: creation, reads, updates and the status rules, refused input,
//! listing and keyset pages, and the JSON a stored task serializes to.

use serde_json::json;

use super::support::*;
use super::StoreFactory;
use crate::backend::now;
use crate::error::{Entity, Error};
use crate::model::*;

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
        matches!(
            e,
            Error::AlreadyExists {
                entity: Entity::Task,
                ..
            }
        )
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
                |e| matches!(e, Error::Conflict { .. }),
            );
            assert_eq!(get(&*store, task.task_id).await.status, terminal);
        }
        assert_kind(
            store
                .update_task(task.task_id, &TaskUpdate::new().retry(3), None)
                .await,
            "update of a field of a terminal task",
            |e| matches!(e, Error::Conflict { .. }),
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
            |e| matches!(e, Error::Conflict { .. }),
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

/// `count_tasks` counts what `list_tasks` lists for the same filter, every condition but the
/// limit applied (the keyset included): on a store where each filter below matches a count of
/// its own, so a condition left out, or bound in another's place, changes the count.
pub async fn task_count_matches_list(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert_eq!(
        store.count_tasks(&TaskFilter::default()).await.unwrap(),
        0,
        "an empty store"
    );
    // 1 root, 4 subtasks (3 queued prepare_node, 1 requested boot_node), 6 queued
    // deploy_node of which w1 claims 2 under its term and w2 claims 1: 11 tasks.
    let root = NewTask::new("deploy_nodes").with_created(secs_ago(600));
    create(&*store, &root).await;
    for i in 0..4 {
        let child = if i < 3 {
            NewTask::new("prepare_node").with_status(TaskStatus::Queued)
        } else {
            NewTask::new("boot_node")
        };
        store
            .create_subtask(root.task_id, &child.with_created(secs_ago(500 - i)), None)
            .await
            .expect("create_subtask");
    }
    for i in 0..6 {
        let t = NewTask::new("deploy_node")
            .with_status(TaskStatus::Queued)
            .with_created(secs_ago(400 - i));
        create(&*store, &t).await;
    }
    let term = held_term(&*store, "w1").await;
    for (who, term) in [("w1", Some(term)), ("w1", Some(term)), ("w2", None)] {
        let mut request = ClaimRequest::new(who).actions(["deploy_node"]);
        request.term = term;
        store
            .claim_next(&request)
            .await
            .unwrap()
            .expect("a queued deploy_node");
    }
    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    let after = Some((all[2].created, all[2].task_id));
    let filters = [
        ("no filter", TaskFilter::default(), 11),
        (
            "status",
            TaskFilter {
                status: Some(TaskStatus::Queued),
                ..Default::default()
            },
            6,
        ),
        (
            "action",
            TaskFilter {
                action: Some("prepare_node".into()),
                ..Default::default()
            },
            3,
        ),
        (
            "parent",
            TaskFilter {
                parent: Some(root.task_id),
                ..Default::default()
            },
            4,
        ),
        (
            "claimed_by",
            TaskFilter {
                claimed_by: Some("w1".into()),
                ..Default::default()
            },
            2,
        ),
        (
            "claim_term",
            TaskFilter {
                claim_term: Some(term),
                ..Default::default()
            },
            2,
        ),
        (
            "claimed_by w2",
            TaskFilter {
                claimed_by: Some("w2".into()),
                status: Some(TaskStatus::Running),
                ..Default::default()
            },
            1,
        ),
        (
            "status and parent",
            TaskFilter {
                status: Some(TaskStatus::Requested),
                parent: Some(root.task_id),
                ..Default::default()
            },
            1,
        ),
        (
            "created window",
            TaskFilter {
                created_after: Some(secs_ago(550)),
                created_before: Some(secs_ago(450)),
                ..Default::default()
            },
            4,
        ),
        (
            "after",
            TaskFilter {
                after,
                ..Default::default()
            },
            8,
        ),
        (
            "after and action",
            TaskFilter {
                after,
                action: Some("prepare_node".into()),
                ..Default::default()
            },
            1,
        ),
        (
            "limit is ignored",
            TaskFilter {
                limit: Some(2),
                ..Default::default()
            },
            11,
        ),
        (
            "nothing matches",
            TaskFilter {
                action: Some("no_such_action".into()),
                ..Default::default()
            },
            0,
        ),
    ];
    for (what, filter, expected) in filters {
        let listed = store
            .list_tasks(&TaskFilter {
                limit: None,
                ..filter.clone()
            })
            .await
            .unwrap()
            .len() as u64;
        let counted = store.count_tasks(&filter).await.unwrap();
        assert_eq!(listed, expected, "{what}: list_tasks");
        assert_eq!(counted, expected, "{what}: count_tasks");
    }
}
