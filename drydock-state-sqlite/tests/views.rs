//! What task views read, on SQLite against the reference, the memory store: `task_tree` over
//! the same graphs of subtask lists (repeated ids, cycles, ids listed with no task, several
//! parents listing one child), every root and several depths, and `build_data_of_tasks` with
//! tied dates, must come out in exactly the same order.

use drydock_state_core::{
    BuildData, BuildStore, Config, MemoryStore, NewTask, TaskId, TaskStore, TreeNode, Verbosity,
};
use drydock_state_sqlite::SqliteStore;

/// A small deterministic generator (no dependency): 64-bit LCG, high bits.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

fn shape(tree: Vec<TreeNode>) -> Vec<(u32, TaskId, Option<TaskId>, usize)> {
    tree.into_iter()
        .map(|n| {
            let messages = n
                .task
                .as_ref()
                .map_or(0, |t| t.result.details.message_list.len());
            (n.depth, n.task_id, n.task.map(|t| t.task_id), messages)
        })
        .collect()
}

#[tokio::test]
async fn task_tree_matches_the_memory_store_on_tangled_lists() {
    let config = Config::default();
    let memory = MemoryStore::new(&config);
    let sqlite = SqliteStore::open("sqlite::memory:", &config).await.unwrap();
    sqlite.migrate().await.unwrap();
    let stores: [&dyn TaskStore; 2] = [&memory, &sqlite];

    let mut rng = Lcg(0x5eed);
    let tasks: Vec<TaskId> = (0..40).map(|_| TaskId::new()).collect();
    let ghosts: Vec<TaskId> = (0..5).map(|_| TaskId::new()).collect();
    for id in &tasks {
        let mut task = NewTask::new("deploy_node");
        task.task_id = *id;
        for store in stores {
            store.create_task(&task).await.unwrap();
        }
    }
    // Mostly a tree (each task listed by an earlier one), plus tangles: any task listing any
    // other (cycles, several parents), ids listed twice, and ids with no task.
    let mut lists = Vec::new();
    for (i, id) in tasks.iter().enumerate().skip(1) {
        lists.push((tasks[rng.below(i)], *id));
    }
    for _ in 0..30 {
        let parent = tasks[rng.below(tasks.len())];
        let child = if rng.below(6) == 0 {
            ghosts[rng.below(ghosts.len())]
        } else {
            tasks[rng.below(tasks.len())]
        };
        lists.push((parent, child));
    }
    for (parent, child) in lists {
        for store in stores {
            store.add_subtask(parent, child, None).await.unwrap();
        }
    }
    for root in tasks.iter().step_by(3).chain(ghosts.iter().take(1)) {
        for depth in [None, Some(0), Some(1), Some(2), Some(5)] {
            let expected = shape(memory.task_tree(*root, depth).await.unwrap());
            let got = shape(sqlite.task_tree(*root, depth).await.unwrap());
            assert_eq!(got, expected, "root {root}, depth {depth:?}");
        }
    }
    let whole = sqlite.task_tree(tasks[0], None).await.unwrap();
    assert_eq!(
        whole.iter().filter(|n| n.task.is_some()).count(),
        tasks.len(),
        "every task hangs off the first"
    );
}

#[tokio::test]
async fn build_data_of_tasks_matches_the_memory_store() {
    let config = Config::default();
    let memory = MemoryStore::new(&config);
    let sqlite = SqliteStore::open("sqlite::memory:", &config).await.unwrap();
    sqlite.migrate().await.unwrap();
    let stores: [&dyn BuildStore; 2] = [&memory, &sqlite];
    let tasks: Vec<TaskId> = (0..4).map(|_| TaskId::new()).collect();
    let base = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
    let mut rng = Lcg(7);
    for i in 0..40 {
        // Few distinct dates, so many ties within and across tasks.
        let data = BuildData {
            node_name: format!("n{}", rng.below(3)),
            task_id: tasks[rng.below(tasks.len())],
            collected_date: Some(base + chrono::Duration::seconds(rng.below(4) as i64)),
            generator: format!("g{i}"),
            data_format: "text/plain".into(),
            data_element: Some(format!("element {i}")),
        };
        for store in stores {
            store.record_build_data(&data, None).await.unwrap();
        }
    }
    let asked = [tasks[2], tasks[0], tasks[2], tasks[3]];
    for verbosity in [Verbosity::Full, Verbosity::Brief] {
        let expected = memory.build_data_of_tasks(&asked, verbosity).await.unwrap();
        let got = sqlite.build_data_of_tasks(&asked, verbosity).await.unwrap();
        assert!(expected.len() > 20, "enough rows to tie");
        assert_eq!(got, expected, "{verbosity:?}");
        assert_eq!(
            got.iter().all(|b| b.data_element.is_none()),
            verbosity == Verbosity::Brief
        );
    }
    assert!(sqlite
        .build_data_of_tasks(&[], Verbosity::Full)
        .await
        .unwrap()
        .is_empty());
}
