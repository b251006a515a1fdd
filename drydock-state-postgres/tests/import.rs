//! A site's worth of history imported in one batch: 20,000 tasks (trees of ten, parents
//! first, across statement chunks) with five messages each. Prints how long the import and a
//! second, all-present import took (run with `--nocapture` to see the figures); checks the
//! counts, a task read back as imported, and the next message numbered above the imported.

mod common;

use std::time::Instant;

use drydock_state_core::testkit::kit_config;
use drydock_state_core::*;
use serde_json::json;

const TASKS: usize = 20_000;
const MESSAGES_PER_TASK: usize = 5;

/// The batch: roots every tenth task, each followed by nine children listed as its subtasks;
/// messages numbered from 1,000 with a gap between tasks, in ascending order.
fn site() -> ImportBatch {
    let base = drydock_state_core::backend::now() - chrono::Duration::days(30);
    let mut tasks: Vec<Task> = Vec::with_capacity(TASKS);
    let mut root = 0;
    for i in 0..TASKS {
        let created = base + chrono::Duration::seconds(i as i64);
        let mut task = NewTask::new(if i % 10 == 0 {
            "deploy_nodes"
        } else {
            "deploy_node"
        })
        .with_created(created)
        .with_design_ref("deckhand+http://deckhand/api/v1.0/revisions/7/rendered-documents")
        .with_node_filter(
            json!({"filter_set_type": "union", "filter_set": [{"node_names": [format!("n{i}")]}]}),
        )
        .to_task();
        task.status = TaskStatus::Complete;
        task.result.status = ResultStatus::Success;
        task.result.successes = vec![format!("n{i}")];
        task.updated = Some(created + chrono::Duration::seconds(5));
        task.claimed_by = Some("drydock".into());
        task.claim_term = Some(0);
        task.claimed_at = Some(created + chrono::Duration::seconds(1));
        task.attempt = 1;
        if i % 10 == 0 {
            root = i;
        } else {
            task.parent_task_id = Some(tasks[root].task_id);
            let id = task.task_id;
            tasks[root].subtask_id_list.push(id);
        }
        tasks.push(task);
    }
    let mut messages = Vec::with_capacity(TASKS * MESSAGES_PER_TASK);
    let mut sequence = 1_000;
    for task in &tasks {
        for k in 0..MESSAGES_PER_TASK {
            messages.push(ResultMessage {
                sequence,
                task_id: task.task_id,
                message: format!("step {k}"),
                error: k == 4,
                context_type: "node".into(),
                context: "n1".into(),
                ts: task.created + chrono::Duration::milliseconds(k as i64),
                extra: Some(json!({"z": k, "a": null})),
            });
            sequence += 1;
        }
        sequence += 3;
    }
    ImportBatch {
        tasks,
        messages,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_tasks_with_their_messages_in_one_batch() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let batch = site();
    let started = Instant::now();
    let outcome = store.import(&batch, ImportMode::Write).await.unwrap();
    let took = started.elapsed();
    eprintln!(
        "imported {} tasks and {} messages in {took:?}",
        batch.tasks.len(),
        batch.messages.len()
    );
    let all = |n: usize| ImportCount {
        written: n as u64,
        present: 0,
    };
    assert_eq!(outcome.tasks, all(TASKS));
    assert_eq!(outcome.messages, all(TASKS * MESSAGES_PER_TASK));

    let started = Instant::now();
    let again = store.import(&batch, ImportMode::Write).await.unwrap();
    eprintln!(
        "re-imported the same batch (all present) in {:?}",
        started.elapsed()
    );
    let present = |n: usize| ImportCount {
        written: 0,
        present: n as u64,
    };
    assert_eq!(again.tasks, present(TASKS));
    assert_eq!(again.messages, present(TASKS * MESSAGES_PER_TASK));

    // A root with its subtasks in order, and the last task of the batch, as imported.
    for task in [&batch.tasks[10_000], &batch.tasks[TASKS - 1]] {
        let stored = store.get_task(task.task_id).await.unwrap().unwrap();
        let messages: Vec<ResultMessage> = batch
            .messages
            .iter()
            .filter(|m| m.task_id == task.task_id)
            .cloned()
            .collect();
        let mut expected = task.clone();
        expected.result.details = ResultDetails {
            error_count: 1,
            message_list: messages,
        };
        assert_eq!(stored, expected);
    }
    let children = store
        .subtasks(batch.tasks[10_000].task_id, SubtaskFilter::All)
        .await
        .unwrap();
    assert_eq!(children.len(), 9);

    let highest = batch.messages.last().unwrap().sequence;
    let next = store
        .append_message(batch.tasks[0].task_id, &NewMessage::info("after"), None)
        .await
        .unwrap();
    assert!(
        next.sequence > highest,
        "the next message ({}) must be numbered above the imported ones ({highest})",
        next.sequence
    );
}
