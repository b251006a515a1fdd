//! Kit cases for the task tree and Drydock's task views, after Drydock's own
//! `test_api_tasks_unit.py`: the same tasks (ids `...111` to `...117`), stored for real.

use serde_json::Value;
use uuid::Uuid;

use super::{kit_config, StoreFactory};
use crate::backend::now;
use crate::model::*;
use crate::store::StateStore;
use crate::views::{task_view, TaskViewOptions};

fn id(n: u8) -> TaskId {
    TaskId(Uuid::parse_str(&format!("11111111-1111-1111-1111-1111111111{n:02}")).unwrap())
}

async fn put(store: &dyn StateStore, n: u8, parent: Option<u8>) {
    let mut t = NewTask::new("deploy_nodes");
    t.task_id = id(n);
    t.parent_task_id = parent.map(id);
    store.create_task(&t).await.unwrap();
    if let Some(p) = parent {
        store.add_subtask(id(p), id(n), None).await.unwrap();
    }
}

async fn fail(store: &dyn StateStore, n: u8) {
    store
        .append_message(
            id(n),
            &NewMessage::error("Test").with_context("N/A", "N/A"),
            None,
        )
        .await
        .unwrap();
    store
        .set_status(id(n), TaskStatus::Complete, None)
        .await
        .unwrap();
}

/// Drydock's fixture: 111 failed with an error message; 113 lists 114 and 115; 115 lists 116
/// (failed with an error) and 117, which does not exist; 111 has build data.
async fn drydock_fixture(store: &dyn StateStore) {
    put(store, 11, None).await;
    fail(store, 11).await;
    store
        .record_build_data(
            &BuildData {
                node_name: "n1".into(),
                task_id: id(11),
                collected_date: None,
                generator: "lshw".into(),
                data_format: "application/xml".into(),
                data_element: Some("<node/>".into()),
            },
            None,
        )
        .await
        .unwrap();
    put(store, 13, None).await;
    put(store, 14, Some(13)).await;
    put(store, 15, Some(13)).await;
    put(store, 16, Some(15)).await;
    fail(store, 16).await;
    store.add_subtask(id(15), id(17), None).await.unwrap();
}

async fn view(store: &dyn StateStore, n: u8, options: TaskViewOptions) -> Value {
    task_view(store, id(n), &options)
        .await
        .unwrap()
        .expect("the task exists")
}

fn key(n: u8) -> String {
    id(n).to_string()
}

/// The tree follows subtask lists breadth first, each id once, a listed but missing id as
/// `None`, down to the depth asked; a cycle does not loop.
pub async fn task_tree_follows_subtask_lists(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    drydock_fixture(&*store).await;
    let shape = |tree: Vec<TreeNode>| {
        tree.into_iter()
            .map(|n| (n.depth, n.task_id, n.task.map(|t| t.task_id)))
            .collect::<Vec<_>>()
    };
    let all = shape(store.task_tree(id(13), None).await.unwrap());
    assert_eq!(
        all,
        vec![
            (0, id(13), Some(id(13))),
            (1, id(14), Some(id(14))),
            (1, id(15), Some(id(15))),
            (2, id(16), Some(id(16))),
            (2, id(17), None),
        ]
    );
    assert_eq!(
        shape(store.task_tree(id(13), Some(1)).await.unwrap()),
        all[..3].to_vec()
    );
    assert_eq!(
        shape(store.task_tree(id(13), Some(0)).await.unwrap()),
        all[..1].to_vec()
    );
    assert!(store.task_tree(id(12), None).await.unwrap().is_empty());
    let tree = store.task_tree(id(15), None).await.unwrap();
    let t16 = tree.iter().find(|n| n.task_id == id(16)).unwrap();
    assert_eq!(
        t16.task.as_ref().unwrap().result.details.error_count,
        1,
        "tasks come with their messages"
    );
    // A cycle (14 lists 13, its parent) and a repeated id are shown once.
    store.add_subtask(id(14), id(13), None).await.unwrap();
    store.add_subtask(id(14), id(16), None).await.unwrap();
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.task_tree(id(13), None),
    )
    .await
    .expect("a cycle of subtask lists must not make the tree loop")
    .unwrap();
    let again = shape(again);
    assert_eq!(again, all, "each id once, at its first depth");
}

/// Drydock's plain, `subtaskerrors` and `builddata` views of one task.
pub async fn task_view_of_one_task(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    drydock_fixture(&*store).await;
    let plain = view(&*store, 11, TaskViewOptions::default()).await;
    assert_eq!(plain["task_id"], key(11));
    assert!(plain.get("build_data").is_none());
    assert!(plain.get("subtask_errors").is_none());
    assert!(plain.get("request_context").is_none());
    assert_eq!(plain["result"]["kind"], "Status");
    let errors = view(
        &*store,
        11,
        TaskViewOptions {
            subtask_errors: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(errors["subtask_errors"], serde_json::json!({}));
    let deep = view(
        &*store,
        13,
        TaskViewOptions {
            subtask_errors: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(deep["task_id"], key(13));
    assert_eq!(
        deep["subtask_errors"][key(16)]["details"]["errorCount"],
        1,
        "errors are found at any depth: {deep}"
    );
    assert_eq!(deep["subtask_errors"][key(16)]["task_id"], key(16));
    assert_eq!(deep["subtask_errors"].as_object().unwrap().len(), 1);
    let build = view(
        &*store,
        11,
        TaskViewOptions {
            build_data: true,
            ..Default::default()
        },
    )
    .await;
    let list = build["build_data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["generator"], "lshw");
    assert_eq!(list[0]["data_element"], "<node/>");
    assert!(build.get("subtask_errors").is_none());
    let both = view(
        &*store,
        11,
        TaskViewOptions {
            build_data: true,
            subtask_errors: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(both["build_data"].as_array().unwrap().len(), 1);
    assert_eq!(both["subtask_errors"], serde_json::json!({}));
    assert!(task_view(&*store, id(12), &TaskViewOptions::default())
        .await
        .unwrap()
        .is_none());
}

/// Drydock's `layers` views: `layers=2` shows the task and its subtasks, `layers=-1` the whole
/// tree with `null` for a listed id that does not exist, and `subtaskerrors` adds the errors.
pub async fn task_view_layers(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    drydock_fixture(&*store).await;
    let two = view(
        &*store,
        13,
        TaskViewOptions {
            layers: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(two["init_task_id"], key(13));
    for n in [13, 14, 15] {
        assert_eq!(two[key(n)]["task_id"], key(n));
    }
    assert!(two.get(key(16)).is_none());
    assert_eq!(two.as_object().unwrap().len(), 4);
    let all = view(
        &*store,
        13,
        TaskViewOptions {
            layers: -1,
            ..Default::default()
        },
    )
    .await;
    for n in [13, 14, 15, 16] {
        assert_eq!(all[key(n)]["task_id"], key(n));
    }
    assert!(all.get(key(17)).is_some_and(Value::is_null), "{all}");
    assert!(all.get("subtask_errors").is_none());
    let with_errors = view(
        &*store,
        13,
        TaskViewOptions {
            layers: -1,
            subtask_errors: true,
            build_data: true,
        },
    )
    .await;
    assert_eq!(
        with_errors["subtask_errors"][key(16)]["details"]["errorCount"],
        1
    );
    assert!(with_errors[key(14)]["build_data"].is_array());
    let one = view(
        &*store,
        13,
        TaskViewOptions {
            layers: 1,
            subtask_errors: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        one.as_object().unwrap().len(),
        3,
        "init, 113, subtask_errors: {one}"
    );
    assert_eq!(one["subtask_errors"][key(16)]["task_id"], key(16));
}

/// The order of a tree is the memory store's everywhere: breadth first, each level in the order
/// its tasks were reached and each task's list in its own order, whatever the ids' order.
pub async fn task_tree_order_follows_the_lists_not_the_ids(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    // Ids chosen so that list order is neither ascending nor descending.
    put(&*store, 50, None).await;
    for (child, parent) in [(47, 50), (42, 50), (49, 50)] {
        put(&*store, child, Some(parent)).await;
    }
    // Grandchildren: 49's come before 42's in id order, but 42 is listed before 49.
    for (child, parent) in [(45, 42), (41, 42), (44, 49), (43, 49), (48, 47)] {
        put(&*store, child, Some(parent)).await;
    }
    let order: Vec<(u32, TaskId)> = store
        .task_tree(id(50), None)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.depth, n.task_id))
        .collect();
    let want = [
        (0, 50),
        (1, 47),
        (1, 42),
        (1, 49),
        (2, 48),
        (2, 45),
        (2, 41),
        (2, 44),
        (2, 43),
    ]
    .map(|(d, n)| (d, id(n)));
    assert_eq!(order, want.to_vec());
}

/// Build data of several tasks comes newest first; of equal dates, by task id, then the later
/// recorded first: the same order on every backend.
pub async fn build_data_of_tasks_orders_ties_alike(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    for n in [61, 62, 63] {
        put(&*store, n, None).await;
    }
    let at = now() - chrono::Duration::seconds(60);
    let later = at + chrono::Duration::seconds(1);
    let mut recorded = 0;
    for (n, when) in [(63, at), (61, at), (62, later), (61, at), (63, at)] {
        recorded += 1;
        store
            .record_build_data(
                &BuildData {
                    node_name: "n1".into(),
                    task_id: id(n),
                    collected_date: Some(when),
                    generator: format!("g{recorded}"),
                    data_format: "text/plain".into(),
                    data_element: Some("x".into()),
                },
                None,
            )
            .await
            .unwrap();
    }
    let got: Vec<(TaskId, String)> = store
        .build_data_of_tasks(&[id(63), id(61), id(62), id(64)], Verbosity::Brief)
        .await
        .unwrap()
        .into_iter()
        .map(|b| {
            assert!(b.data_element.is_none(), "brief omits the element");
            (b.task_id, b.generator)
        })
        .collect();
    let want = [(62, "g3"), (61, "g4"), (61, "g2"), (63, "g5"), (63, "g1")]
        .map(|(n, g)| (id(n), g.to_string()));
    assert_eq!(got, want.to_vec());
}
