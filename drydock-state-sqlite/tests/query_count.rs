//! Reading tasks costs a constant number of statements, whatever the number of tasks: the
//! tasks query and one messages query, never one per task; a task tree adds one recursive
//! query for its ids, and the build data of a tree's tasks is one statement. Statements are counted through
//! sqlx's `sqlx::query` log events, with a process-wide subscriber (so this file holds a
//! single test).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use drydock_state_core::{
    BuildData, BuildStore, Config, MessageStore, NewMessage, NewTask, SubtaskFilter, TaskFilter,
    TaskId, TaskStore, Verbosity,
};
use drydock_state_sqlite::SqliteStore;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

struct CountStatements(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn tree(store: &SqliteStore, children: usize) -> TaskId {
    let root = NewTask::new("deploy_nodes");
    store.create_task(&root).await.unwrap();
    for i in 0..children {
        let child = NewTask::new("deploy_node").with_parent(root.task_id);
        store.create_task(&child).await.unwrap();
        store
            .add_subtask(root.task_id, child.task_id, None)
            .await
            .unwrap();
        store
            .append_messages(
                child.task_id,
                &[NewMessage::info(format!("m{i}")), NewMessage::error("e")],
                None,
            )
            .await
            .unwrap();
    }
    root.task_id
}

/// A tree of `size` tasks, three subtasks to a task (so several levels deep), each with
/// messages and one build-data element; returns the root and every id.
async fn wide_tree(store: &SqliteStore, size: usize) -> (TaskId, Vec<TaskId>) {
    let mut ids: Vec<TaskId> = Vec::with_capacity(size);
    for i in 0..size {
        let parent = (i > 0).then(|| ids[(i - 1) / 3]);
        let mut task = NewTask::new("deploy_node");
        if let Some(p) = parent {
            task = task.with_parent(p);
        }
        store.create_task(&task).await.unwrap();
        if let Some(p) = parent {
            store.add_subtask(p, task.task_id, None).await.unwrap();
        }
        store
            .append_messages(
                task.task_id,
                &[NewMessage::info(format!("m{i}")), NewMessage::error("e")],
                None,
            )
            .await
            .unwrap();
        store
            .record_build_data(
                &BuildData {
                    node_name: format!("n{i}"),
                    task_id: task.task_id,
                    collected_date: None,
                    generator: "lshw".into(),
                    data_format: "application/xml".into(),
                    data_element: Some("<node/>".into()),
                },
                None,
            )
            .await
            .unwrap();
        ids.push(task.task_id);
    }
    (ids[0], ids)
}

#[tokio::test]
async fn reads_cost_a_constant_number_of_statements() {
    let count = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(CountStatements(count.clone())),
    )
    .expect("the only subscriber of this test binary");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url, &Config::default()).await.unwrap();
    store.migrate().await.unwrap();
    let small = tree(&store, 2).await;
    let large = tree(&store, 60).await;

    // Statements run while `$read` is awaited, and what it returned.
    macro_rules! statements {
        ($read:expr) => {{
            let before = count.load(Ordering::SeqCst);
            let out = $read.await.unwrap();
            (count.load(Ordering::SeqCst) - before, out)
        }};
    }
    let page = |limit| TaskFilter {
        limit: Some(limit),
        ..Default::default()
    };

    // Warm up the connection so its setup is not counted.
    statements!(store.list_tasks(&page(1)));

    let (few, tasks) = statements!(store.subtasks(small, SubtaskFilter::All));
    assert_eq!(tasks.len(), 2);
    let (many, tasks) = statements!(store.subtasks(large, SubtaskFilter::All));
    assert_eq!(tasks.len(), 60);
    assert!(tasks
        .iter()
        .all(|t| t.result.details.message_list.len() == 2));
    assert!(few >= 2, "the counter sees sqlx's statements ({few})");
    assert_eq!(
        few, many,
        "subtasks: statements grow with the number of tasks"
    );
    assert!(many <= 5, "subtasks took {many} statements");
    let subtasks = many;

    let (few, tasks) = statements!(store.list_tasks(&page(3)));
    assert_eq!(tasks.len(), 3);
    let (many, tasks) = statements!(store.list_tasks(&page(50)));
    assert_eq!(tasks.len(), 50);
    assert_eq!(few, many, "list_tasks: statements grow with the page size");
    assert!(many <= 4, "list_tasks took {many} statements");
    let listing = many;

    let (one, task) = statements!(store.get_task(large));
    assert!(task.is_some());
    assert!(one <= 4, "get_task took {one} statements");

    // A task view: the tree (a recursive query, not one per task or level) and its build data.
    let (small_root, small_ids) = wide_tree(&store, 5).await;
    let (large_root, large_ids) = wide_tree(&store, 50).await;
    let (few, tree) = statements!(store.task_tree(small_root, None));
    assert_eq!(tree.len(), 5);
    let (many, tree) = statements!(store.task_tree(large_root, None));
    assert_eq!(tree.len(), 50);
    assert!(tree.iter().all(|n| n.task.as_ref().is_some_and(|t| t
        .result
        .details
        .message_list
        .len()
        == 2)));
    assert!(tree.last().unwrap().depth >= 3, "several levels deep");
    assert_eq!(few, many, "task_tree: statements grow with the tree");
    assert!(many <= 5, "task_tree took {many} statements");
    let tree_statements = many;
    let (few, data) = statements!(store.build_data_of_tasks(&small_ids, Verbosity::Full));
    assert_eq!(data.len(), 5);
    let (many, data) = statements!(store.build_data_of_tasks(&large_ids, Verbosity::Full));
    assert_eq!(data.len(), 50);
    assert_eq!(
        few, many,
        "build_data_of_tasks: statements grow with the tasks"
    );
    assert_eq!(many, 1, "build_data_of_tasks is one statement");
    println!(
        "statements per read: subtasks {subtasks}, list_tasks {listing}, get_task {one}, \
         task_tree {tree_statements}, build_data_of_tasks {many}"
    );
}
