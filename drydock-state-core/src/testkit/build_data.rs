//! Kit cases for build data: dates, selection by node and task, `latest` and brief rows.

use chrono::{DateTime, Utc};

use super::support::*;
use super::StoreFactory;
use crate::backend::now;
use crate::error::Error;
use crate::model::*;

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
