//! Kit cases for [`crate::ImportStore::import`]: rows kept exactly as given, nothing imported
//! twice, dry runs that change nothing, and all-or-nothing batches.

use serde_json::json;

use super::support::{full_task, secs_ago, store};
use super::StoreFactory;
use crate::error::{Entity, Error};
use crate::model::*;
use crate::store::StateStore;

/// A site's worth of history in every shape an import carries: a finished root with links
/// and entities, a running subtask under a legacy claim (term 0), a queued task marked for
/// nothing, messages with sequence gaps and their own times, build data and boot actions.
fn history() -> ImportBatch {
    let mut root = full_task("deploy_nodes", secs_ago(7200)).to_task();
    root.status = TaskStatus::Complete;
    root.result.status = ResultStatus::PartialSuccess;
    root.result.message = Some("deployed 1 of 2".into());
    root.result.reason = Some("n2 failed".into());
    root.result.successes = vec!["n1".into()];
    root.result.failures = vec!["n2".into()];
    root.result.links = vec![Link {
        rel: "detail_logs".into(),
        href: "http://logs/1".into(),
    }];
    root.updated = Some(secs_ago(3600));
    root.retry = 2;
    let mut child = full_task("deploy_node", secs_ago(7100)).to_task();
    child.parent_task_id = Some(root.task_id);
    child.status = TaskStatus::Running;
    child.claimed_by = Some("drydock".into());
    child.claim_term = Some(0);
    child.claimed_at = Some(secs_ago(7000));
    child.attempt = 1;
    root.subtask_id_list = vec![child.task_id];
    let mut queued = full_task("prepare_site", secs_ago(60)).to_task();
    queued.status = TaskStatus::Queued;
    let message = |sequence, task: &Task, error, ts| ResultMessage {
        sequence,
        task_id: task.task_id,
        message: format!("message {sequence}"),
        error,
        context_type: "node".into(),
        context: "n1".into(),
        ts,
        extra: Some(json!({"z": 1, "a": [true, null]})),
    };
    let messages = vec![
        message(100, &root, false, secs_ago(7150)),
        message(101, &root, true, secs_ago(7140)),
        message(205, &child, false, secs_ago(7050)),
    ];
    let data = |generator: &str, secs| BuildData {
        node_name: "n1".into(),
        task_id: child.task_id,
        collected_date: Some(secs_ago(secs)),
        generator: generator.into(),
        data_format: "text/plain".into(),
        data_element: Some(format!("{generator} output")),
    };
    let action_id =
        BootActionId(*b"\x01\x8f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07");
    let key = IdentityKey([0xab; 32]);
    ImportBatch {
        tasks: vec![root.clone(), child.clone(), queued],
        messages,
        build_data: vec![data("lshw", 7000), data("lldp", 6900)],
        boot_contexts: vec![BootActionContext {
            node_name: "n1".into(),
            task_id: child.task_id,
            identity_key: key,
        }],
        boot_actions: vec![BootAction {
            action_id,
            node_name: "n1".into(),
            action_name: "promjoin".into(),
            task_id: child.task_id,
            identity_key: key,
            action_status: BootActionStatus::Incomplete,
        }],
    }
}

fn all_written(batch: &ImportBatch) -> ImportOutcome {
    let written = |n: usize| ImportCount {
        written: n as u64,
        present: 0,
    };
    ImportOutcome {
        tasks: written(batch.tasks.len()),
        messages: written(batch.messages.len()),
        build_data: written(batch.build_data.len()),
        boot_contexts: written(batch.boot_contexts.len()),
        boot_actions: written(batch.boot_actions.len()),
    }
}

/// Each task as the store should read it back: as imported, with its messages assembled.
fn expected(batch: &ImportBatch, task: &Task) -> Task {
    let mut task = task.clone();
    let messages: Vec<ResultMessage> = batch
        .messages
        .iter()
        .filter(|m| m.task_id == task.task_id)
        .cloned()
        .collect();
    task.result.details = ResultDetails {
        error_count: messages.iter().filter(|m| m.error).count() as u64,
        message_list: messages,
    };
    task
}

async fn everything(store: &dyn StateStore, batch: &ImportBatch) -> Vec<Option<Task>> {
    let mut out = Vec::new();
    for task in &batch.tasks {
        out.push(store.get_task(task.task_id).await.unwrap());
    }
    out
}

/// Every row reads back exactly as imported (ids, statuses, claims, attempts, sequence
/// numbers, times, JSON); the next appended message is numbered above the imported ones; the
/// legacy claim is recovered by the first leader like any other.
pub async fn import_keeps_rows_as_given(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let batch = history();
    let outcome = store.import(&batch, ImportMode::Write).await.unwrap();
    assert_eq!(outcome, all_written(&batch));
    for task in &batch.tasks {
        let stored = store.get_task(task.task_id).await.unwrap();
        assert_eq!(
            stored,
            Some(expected(&batch, task)),
            "task {}",
            task.task_id
        );
    }
    let child = &batch.tasks[1];
    let built = store
        .build_data(&BuildDataQuery {
            node_name: Some("n1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Newest first.
    assert_eq!(
        built,
        vec![batch.build_data[1].clone(), batch.build_data[0].clone()]
    );
    assert_eq!(
        store.boot_action_context("n1").await.unwrap(),
        Some(batch.boot_contexts[0].clone())
    );
    assert_eq!(
        store
            .boot_action(batch.boot_actions[0].action_id)
            .await
            .unwrap(),
        Some(batch.boot_actions[0].clone())
    );
    let next = store
        .append_message(
            batch.tasks[0].task_id,
            &NewMessage::info("after the import"),
            None,
        )
        .await
        .unwrap();
    assert!(
        next.sequence > 205,
        "the next message must be numbered above every imported one, got {}",
        next.sequence
    );
    let lease = store.claim_lease("new-leader").await.unwrap();
    let term = lease.held().expect("the lease is free").term;
    let recovered = store
        .recover_orphans(term, OrphanPolicy::Requeue)
        .await
        .unwrap();
    assert_eq!(recovered, vec![child.task_id]);
}

/// Importing the same batch again writes nothing and counts every row as present; a third
/// import of a bigger batch writes only what is new.
pub async fn import_twice_writes_nothing_more(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let batch = history();
    store.import(&batch, ImportMode::Write).await.unwrap();
    let first = everything(&*store, &batch).await;
    let again = store.import(&batch, ImportMode::Write).await.unwrap();
    let present = |n: usize| ImportCount {
        written: 0,
        present: n as u64,
    };
    assert_eq!(
        again,
        ImportOutcome {
            tasks: present(3),
            messages: present(3),
            build_data: present(2),
            boot_contexts: present(1),
            boot_actions: present(1),
        }
    );
    assert_eq!(everything(&*store, &batch).await, first);
    let mut bigger = batch.clone();
    let extra = full_task("validate_design", secs_ago(30)).to_task();
    bigger.messages.push(ResultMessage {
        sequence: 300,
        task_id: extra.task_id,
        message: "new".into(),
        error: false,
        context_type: "task".into(),
        context: "t".into(),
        ts: secs_ago(20),
        extra: None,
    });
    bigger.tasks.push(extra);
    let third = store.import(&bigger, ImportMode::Write).await.unwrap();
    assert_eq!(
        third.tasks,
        ImportCount {
            written: 1,
            present: 3
        }
    );
    assert_eq!(
        third.messages,
        ImportCount {
            written: 1,
            present: 3
        }
    );
    assert_eq!(
        store.messages(batch.tasks[0].task_id).await.unwrap().len(),
        2,
        "nothing imported twice"
    );
}

/// A dry run reports what a real import would write, and changes nothing.
pub async fn import_dry_run_changes_nothing(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let batch = history();
    let dry = store.import(&batch, ImportMode::DryRun).await.unwrap();
    assert_eq!(dry, all_written(&batch));
    assert!(everything(&*store, &batch)
        .await
        .iter()
        .all(Option::is_none));
    assert!(store
        .build_data(&BuildDataQuery::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.boot_action_context("n1").await.unwrap(), None);
    assert_eq!(
        store.import(&batch, ImportMode::Write).await.unwrap(),
        dry,
        "a dry run counts what the real run writes"
    );
}

/// A batch that fails anywhere writes nothing: a message for a task neither imported nor
/// stored, a sequence number another task's message holds, a parent that does not exist.
pub async fn import_is_all_or_nothing(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let mut unknown_task = history();
    let stray = TaskId::new();
    unknown_task.messages.push(ResultMessage {
        sequence: 999,
        task_id: stray,
        ..unknown_task.messages[0].clone()
    });
    match store.import(&unknown_task, ImportMode::Write).await {
        Err(Error::NotFound { id, .. }) => assert_eq!(id, stray.to_string()),
        other => panic!("a message for an unknown task is NotFound, got {other:?}"),
    }
    assert!(everything(&*store, &unknown_task)
        .await
        .iter()
        .all(Option::is_none));
    assert!(store
        .build_data(&BuildDataQuery::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .boot_action(unknown_task.boot_actions[0].action_id)
            .await
            .unwrap(),
        None
    );

    // A stored message numbered like an imported one of another task.
    let own = store
        .create_task(&NewTask::new("verify_site"))
        .await
        .unwrap();
    let stored = store
        .append_message(own.task_id, &NewMessage::info("mine"), None)
        .await
        .unwrap();
    let mut clash = history();
    clash.messages = vec![ResultMessage {
        sequence: stored.sequence,
        ..clash.messages[0].clone()
    }];
    match store.import(&clash, ImportMode::Write).await {
        Err(Error::Conflict { entity, id, .. }) => {
            assert_eq!(entity, Entity::Message);
            assert_eq!(id, stored.sequence.to_string());
        }
        other => panic!("a sequence held by another task is a Conflict, got {other:?}"),
    }
    assert!(everything(&*store, &clash)
        .await
        .iter()
        .all(Option::is_none));
    assert_eq!(store.messages(own.task_id).await.unwrap(), vec![stored]);

    let mut orphan = history();
    let missing = TaskId::new();
    orphan.tasks[0].parent_task_id = Some(missing);
    match store.import(&orphan, ImportMode::Write).await {
        Err(Error::NotFound { id, .. }) => assert_eq!(id, missing.to_string()),
        other => panic!("a missing parent is NotFound, got {other:?}"),
    }
    assert!(everything(&*store, &orphan)
        .await
        .iter()
        .all(Option::is_none));
}

/// Build data has no key: identical elements are all kept, and counted with multiplicity on
/// the next import.
pub async fn import_build_data_by_content(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let base = history().build_data[0].clone();
    let other = BuildData {
        data_element: Some("another".into()),
        ..base.clone()
    };
    let batch = ImportBatch {
        build_data: vec![base.clone(), base.clone(), other.clone()],
        ..Default::default()
    };
    let first = store.import(&batch, ImportMode::Write).await.unwrap();
    assert_eq!(
        first.build_data,
        ImportCount {
            written: 3,
            present: 0
        }
    );
    let more = ImportBatch {
        build_data: vec![base.clone(), base.clone(), base.clone(), other],
        ..Default::default()
    };
    let second = store.import(&more, ImportMode::Write).await.unwrap();
    assert_eq!(
        second.build_data,
        ImportCount {
            written: 1,
            present: 3
        }
    );
    let stored = store.build_data(&BuildDataQuery::default()).await.unwrap();
    assert_eq!(stored.iter().filter(|d| **d == base).count(), 3);
    assert_eq!(stored.len(), 4);
}

/// A malformed batch is refused before anything is written: a child before its parent,
/// messages out of order, a task twice, a build element without its date.
pub async fn import_refuses_a_malformed_batch(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let base = history();
    let invalid = |result: crate::Result<ImportOutcome>, field: &str| match result {
        Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected invalid {field}, got {other:?}"),
    };
    let mut swapped = base.clone();
    swapped.tasks.swap(0, 1);
    invalid(
        store.import(&swapped, ImportMode::Write).await,
        "import.tasks",
    );
    let mut descending = base.clone();
    descending.messages.reverse();
    invalid(
        store.import(&descending, ImportMode::Write).await,
        "import.messages",
    );
    let mut twice = base.clone();
    twice.tasks.push(twice.tasks[2].clone());
    invalid(
        store.import(&twice, ImportMode::Write).await,
        "import.tasks",
    );
    let mut undated = base.clone();
    undated.build_data[0].collected_date = None;
    invalid(
        store.import(&undated, ImportMode::Write).await,
        "import.build_data",
    );
    let mut nul = base.clone();
    nul.messages[0].message = "a\0b".into();
    invalid(store.import(&nul, ImportMode::Write).await, "message.text");
    assert!(everything(&*store, &base).await.iter().all(Option::is_none));
}
