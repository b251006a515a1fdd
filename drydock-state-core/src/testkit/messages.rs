//! Kit cases for result messages: order, length, error counts and all-or-nothing batches.

use serde_json::json;

use super::support::*;
use super::StoreFactory;
use crate::error::Error;
use crate::model::*;

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
