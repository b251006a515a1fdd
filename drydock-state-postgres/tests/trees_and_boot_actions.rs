//! Task trees and boot actions beyond the conformance kit: the statements a task view costs
//! (counted from sqlx's `sqlx::query` tracing events), trees that match the reference store's
//! on random graphs with cycles, shared subtasks and missing ids, a graph whose paths are
//! exponentially many, ids and keys as stored, and a status reported after the task's purge.

mod common;

use std::cell::Cell;
use std::sync::Once;
use std::time::Duration;

use drydock_state_core::testkit::kit_config;
use drydock_state_core::*;
use rand::{Rng, SeedableRng};
use tracing::span;

// ---- statement counting -----------------------------------------------------------------
//
// sqlx reports every statement it runs as a tracing event with target `sqlx::query`. The
// tests run on tokio's current-thread runtime, where sqlx's PostgreSQL connections do their
// I/O in the polling task, so a thread-local count sees exactly the statements of the test
// that counts, whatever runs beside it.

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static STATEMENTS: Cell<u64> = const { Cell::new(0) };
}

struct StatementCounter;

impl tracing::Subscriber for StatementCounter {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "sqlx::query" && COUNTING.with(Cell::get)
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.with(|n| n.set(n.get() + 1));
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

async fn count_statements<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(StatementCounter).expect("one subscriber")
    });
    STATEMENTS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f.await;
    COUNTING.with(|c| c.set(false));
    (out, STATEMENTS.with(Cell::get))
}

/// A root with `children` subtasks, each with two of its own, every task with an error
/// message and build data: `1 + 3 * children` tasks.
async fn tree(store: &dyn StateStore, children: usize) -> TaskId {
    async fn put(store: &dyn StateStore, parent: Option<TaskId>) -> TaskId {
        let mut t = NewTask::new("deploy_nodes");
        t.parent_task_id = parent;
        let id = store.create_task(&t).await.unwrap().task_id;
        if let Some(p) = parent {
            store.add_subtask(p, id, None).await.unwrap();
        }
        store
            .append_message(id, &NewMessage::error("ipmi timeout"), None)
            .await
            .unwrap();
        store
            .record_build_data(
                &BuildData {
                    node_name: "n1".into(),
                    task_id: id,
                    collected_date: None,
                    generator: "lshw".into(),
                    data_format: "application/xml".into(),
                    data_element: Some("<node/>".into()),
                },
                None,
            )
            .await
            .unwrap();
        id
    }
    let root = put(store, None).await;
    for _ in 0..children {
        let child = put(store, Some(root)).await;
        for _ in 0..2 {
            put(store, Some(child)).await;
        }
    }
    root
}

/// The whole view of a tree (every layer, subtask errors, build data) is one `task_tree` and
/// one `build_data_of_tasks` statement, for 4 tasks as for 49.
#[tokio::test]
async fn a_task_view_costs_the_same_statements_for_any_tree() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let small = tree(&store, 1).await;
    let large = tree(&store, 16).await;
    let options = TaskViewOptions {
        layers: -1,
        subtask_errors: true,
        build_data: true,
    };
    // Once first, so nothing the first use of a connection costs is counted.
    task_view(&store, small, &options).await.unwrap().unwrap();
    let mut counts = Vec::new();
    for (root, tasks) in [(small, 4), (large, 49)] {
        let (view, statements) = count_statements(task_view(&store, root, &options)).await;
        let view = view.unwrap().unwrap();
        assert_eq!(view["subtask_errors"].as_object().unwrap().len(), tasks - 1);
        let (tree, tree_statements) = count_statements(store.task_tree(root, None)).await;
        assert_eq!(tree.unwrap().len(), tasks);
        let ids: Vec<TaskId> = store
            .task_tree(root, None)
            .await
            .unwrap()
            .iter()
            .map(|n| n.task_id)
            .collect();
        let (data, data_statements) =
            count_statements(store.build_data_of_tasks(&ids, Verbosity::Brief)).await;
        let data = data.unwrap();
        assert_eq!(data.len(), tasks);
        assert!(data.iter().all(|b| b.data_element.is_none()), "brief");
        counts.push((statements, tree_statements, data_statements));
    }
    assert_eq!(counts[0], counts[1], "(view, tree, build data) statements");
    assert_eq!(counts[0], (2, 1, 1), "(view, tree, build data) statements");
}

// ---- trees against the reference store --------------------------------------------------

type Shape = Vec<(u32, TaskId, Option<TaskId>)>;

async fn shape(store: &dyn StateStore, root: TaskId, depth: Option<u32>) -> Shape {
    let tree = tokio::time::timeout(Duration::from_secs(60), store.task_tree(root, depth))
        .await
        .expect("the tree terminates")
        .unwrap();
    tree.into_iter()
        .map(|n| (n.depth, n.task_id, n.task.map(|t| t.task_id)))
        .collect()
}

/// Random graphs of subtask lists (cycles, self-loops, ids listed by several tasks, ids of
/// tasks that do not exist), stored in both stores: every tree, at every depth limit, is the
/// reference store's, in its order.
#[tokio::test]
async fn trees_match_the_reference_store_on_random_graphs() {
    let config = kit_config();
    let (pg, _db) = common::fresh_store(&config).await;
    let memory = MemoryStore::new(&config);
    let stores: [&dyn StateStore; 2] = [&pg, &memory];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _graph in 0..6 {
        let n = rng.gen_range(5..25);
        let ids: Vec<TaskId> = (0..n).map(|_| TaskId::new()).collect();
        let ghosts: Vec<TaskId> = (0..3).map(|_| TaskId::new()).collect();
        for store in stores {
            for id in &ids {
                let mut t = NewTask::new("deploy_nodes");
                t.task_id = *id;
                store.create_task(&t).await.unwrap();
            }
        }
        for parent in &ids {
            for _ in 0..rng.gen_range(0..5) {
                let child = if rng.gen_bool(0.1) {
                    ghosts[rng.gen_range(0..ghosts.len())]
                } else {
                    ids[rng.gen_range(0..n)]
                };
                for store in stores {
                    store.add_subtask(*parent, child, None).await.unwrap();
                }
            }
        }
        for root in ids.iter().take(4).chain(ghosts.first()) {
            for depth in [None, Some(0), Some(1), Some(2), Some(3)] {
                let want = shape(&memory, *root, depth).await;
                let got = shape(&pg, *root, depth).await;
                assert_eq!(got, want, "tree of {root} down {depth:?}");
            }
        }
    }
}

/// A ladder of diamonds (each rung's task lists two that both list the next rung) has 2^24
/// paths from its root; the tree is its 73 tasks, each once, at once.
#[tokio::test]
async fn a_graph_with_exponentially_many_paths_is_walked_once_per_task() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let rungs = 24;
    let mut rung = store
        .create_task(&NewTask::new("deploy_nodes"))
        .await
        .unwrap()
        .task_id;
    let root = rung;
    for _ in 0..rungs {
        let next = store
            .create_task(&NewTask::new("deploy_nodes"))
            .await
            .unwrap()
            .task_id;
        for _ in 0..2 {
            let side = store
                .create_task(&NewTask::new("deploy_nodes"))
                .await
                .unwrap()
                .task_id;
            store.add_subtask(rung, side, None).await.unwrap();
            store.add_subtask(side, next, None).await.unwrap();
        }
        rung = next;
    }
    let started = std::time::Instant::now();
    let tree = shape(&store, root, None).await;
    assert_eq!(tree.len(), 1 + 3 * rungs);
    assert_eq!(tree.last().unwrap().0, 2 * rungs as u32);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Build data of several tasks with tied collected dates comes in the reference store's
/// order (newest first; among equal dates by task id, then the later row first), briefly
/// without the element.
#[tokio::test]
async fn build_data_of_tasks_matches_the_reference_store() {
    let config = kit_config();
    let (pg, _db) = common::fresh_store(&config).await;
    let memory = MemoryStore::new(&config);
    let stores: [&dyn StateStore; 2] = [&pg, &memory];
    let tasks: Vec<TaskId> = (0..4).map(|_| TaskId::new()).collect();
    // Whole seconds: PostgreSQL keeps microseconds, the reference store nanoseconds.
    let day = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 86_400, 0).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..40 {
        let data = BuildData {
            node_name: format!("n{}", i % 3),
            task_id: tasks[rng.gen_range(0..tasks.len())],
            collected_date: Some(day + chrono::Duration::seconds(rng.gen_range(0..4))),
            generator: "lshw".into(),
            data_format: "text/plain".into(),
            data_element: Some(format!("element {i}")),
        };
        for store in stores {
            store.record_build_data(&data, None).await.unwrap();
        }
    }
    let asked = [tasks[2], tasks[0], tasks[2], tasks[3], TaskId::new()];
    for verbosity in [Verbosity::Full, Verbosity::Brief] {
        let want = memory.build_data_of_tasks(&asked, verbosity).await.unwrap();
        let got = pg.build_data_of_tasks(&asked, verbosity).await.unwrap();
        assert!(want.len() > 20);
        assert_eq!(got, want, "{verbosity:?}");
    }
    assert!(pg
        .build_data_of_tasks(&[], Verbosity::Full)
        .await
        .unwrap()
        .is_empty());
}

// ---- boot actions -----------------------------------------------------------------------

/// Ids and keys are stored as the 16 and 32 bytes they are, and the columns refuse others.
#[tokio::test]
async fn ids_and_keys_are_stored_byte_for_byte() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let task = store
        .create_task(&NewTask::new("prepare_site"))
        .await
        .unwrap();
    let mut key = [0u8; 32];
    key[0] = 0xff;
    key[31] = 0x00;
    key[7] = 0x80;
    let action = BootAction::new("n1", "hello", task.task_id, IdentityKey(key), true);
    store.add_boot_action(&action).await.unwrap();
    store
        .set_boot_action_context(&BootActionContext {
            node_name: "n1".into(),
            task_id: task.task_id,
            identity_key: IdentityKey(key),
        })
        .await
        .unwrap();
    let (id, stored_key): (Vec<u8>, Vec<u8>) = drydock_state_testsupport::sql::query_as(
        "SELECT action_id, identity_key FROM drydock_state.boot_action_status",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(id, action.action_id.as_bytes());
    assert_eq!(stored_key, key);
    let context_key: Vec<u8> = drydock_state_testsupport::sql::query_scalar(
        "SELECT identity_key FROM drydock_state.boot_action",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(context_key, key);
    let short = drydock_state_testsupport::sql::query(
        "INSERT INTO drydock_state.boot_action (node_name, task_id, identity_key)
         VALUES ('n2', gen_random_uuid(), '\\x00')",
    )
    .execute(store.pool())
    .await;
    assert!(short.is_err(), "a key of one byte is refused");
    // A taken id is a conflict even when the task is missing too (the reference's order).
    match store
        .add_boot_action(&BootAction {
            task_id: TaskId::new(),
            ..action.clone()
        })
        .await
    {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a taken id is a conflict, got {other:?}"),
    }
}

/// A status reported after the action's task was purged is still recorded, without
/// messages; the action and the node's context outlive the task.
#[tokio::test]
async fn a_status_reported_after_the_purge_is_recorded() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let mut old = NewTask::new("deploy_nodes");
    old.created = chrono::Utc::now() - chrono::Duration::days(3);
    let task = store.create_task(&old).await.unwrap();
    let action = BootAction::new("n1", "hello", task.task_id, IdentityKey::generate(), true);
    store.add_boot_action(&action).await.unwrap();
    let context = BootActionContext {
        node_name: "n1".into(),
        task_id: task.task_id,
        identity_key: IdentityKey::generate(),
    };
    store.set_boot_action_context(&context).await.unwrap();
    let report = store.purge(Duration::from_secs(86_400)).await.unwrap();
    assert_eq!(report.tasks, 1);
    let updated = store
        .set_boot_action_status(
            action.action_id,
            BootActionStatus::Success,
            &[NewMessage::info("done")],
        )
        .await
        .unwrap();
    assert_eq!(updated.action_status, BootActionStatus::Success);
    assert!(store.messages(task.task_id).await.unwrap().is_empty());
    assert_eq!(
        store.boot_action_context("n1").await.unwrap(),
        Some(context)
    );
    assert!(matches!(
        store
            .set_boot_action_status(action.action_id, BootActionStatus::Failure, &[])
            .await,
        Err(Error::Conflict { .. })
    ));
}

/// Concurrent reports of one action: exactly one final status wins, the others are refused,
/// and the task has one status message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_final_reports_of_one_action_one_wins() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let task = store
        .create_task(&NewTask::new("deploy_nodes"))
        .await
        .unwrap();
    let action = BootAction::new("n1", "hello", task.task_id, IdentityKey::generate(), true);
    store.add_boot_action(&action).await.unwrap();
    let reports = (0..8).map(|i| {
        let store = store.clone();
        let status = if i % 2 == 0 {
            BootActionStatus::Success
        } else {
            BootActionStatus::Failure
        };
        tokio::spawn(async move {
            store
                .set_boot_action_status(action.action_id, status, &[])
                .await
        })
    });
    let outcomes = futures::future::join_all(reports).await;
    let won: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.unwrap())
        .filter_map(|o| match o {
            Ok(a) => Some(a),
            Err(Error::Conflict { .. }) => None,
            Err(e) => panic!("{e}"),
        })
        .collect();
    assert_eq!(won.len(), 1);
    assert_eq!(store.messages(task.task_id).await.unwrap().len(), 1);
    assert_eq!(
        store
            .boot_action(action.action_id)
            .await
            .unwrap()
            .unwrap()
            .action_status,
        won[0].action_status
    );
}
