//! Boot actions as SQLite stores them: ids and keys as BLOBs byte for byte, the newest of a
//! repeated name chosen by bytewise id order, the schema's own checks, and a status report
//! that outlives its purged task.

use std::time::Duration;

use drydock_state_core::{
    BootAction, BootActionId, BootActionStatus, BootActionStore, Config, IdentityKey, MessageStore,
    NewMessage, NewTask, TaskStore,
};
use drydock_state_sqlite::SqliteStore;
use drydock_state_testsupport::sql;

async fn store() -> SqliteStore {
    let store = SqliteStore::open("sqlite::memory:", &Config::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn ids_and_keys_are_blobs_and_the_newest_id_wins_bytewise() {
    let store = store().await;
    let task = NewTask::new("prepare_nodes");
    store.create_task(&task).await.unwrap();
    // Bytes a text column would mangle: NUL, 0xff, invalid UTF-8.
    let key = IdentityKey([0x00, 0xff, 0xc3, 0x28].repeat(8).try_into().unwrap());
    let low = BootAction {
        action_id: BootActionId([0x00; 16]),
        ..BootAction::new("n1", "hello", task.task_id, key, true)
    };
    let high = BootAction {
        action_id: BootActionId([0xff; 16]),
        ..low.clone()
    };
    // The higher id first, so insertion order cannot be what picks it.
    store.add_boot_action(&high).await.unwrap();
    store.add_boot_action(&low).await.unwrap();
    let stored: Vec<(String, i64, String, String)> = sql::query_as(
        "SELECT typeof(action_id), length(action_id), typeof(identity_key), hex(identity_key) \
         FROM drydock_boot_action_status ORDER BY action_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(stored.len(), 2);
    for (kind, len, key_kind, key_hex) in &stored {
        assert_eq!(
            (kind.as_str(), *len, key_kind.as_str()),
            ("blob", 16, "blob")
        );
        assert_eq!(key_hex.to_lowercase(), key.to_hex());
    }
    let actions = store.boot_actions_for_node("n1").await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions["hello"], high, "the highest id is the newest");
    assert_eq!(store.boot_action(low.action_id).await.unwrap(), Some(low));
}

#[tokio::test]
async fn the_schema_refuses_what_the_model_refuses() {
    let store = store().await;
    for statement in [
        // A 15-byte id, a 31-byte key, an unknown status, an id stored as text.
        "INSERT INTO drydock_boot_action_status VALUES \
         (zeroblob(15), 'n', 'a', 't', zeroblob(32), 'incomplete')",
        "INSERT INTO drydock_boot_action_status VALUES \
         (zeroblob(16), 'n', 'a', 't', zeroblob(31), 'incomplete')",
        "INSERT INTO drydock_boot_action_status VALUES \
         (zeroblob(16), 'n', 'a', 't', zeroblob(32), 'done')",
        "INSERT INTO drydock_boot_action_status VALUES \
         ('0123456789abcdef', 'n', 'a', 't', zeroblob(32), 'incomplete')",
        "INSERT INTO drydock_boot_action VALUES ('n', 't', zeroblob(16))",
    ] {
        assert!(
            sql::query(statement).execute(store.pool()).await.is_err(),
            "{statement}"
        );
    }
}

/// A report for an action whose task was purged meanwhile is recorded, without messages; a
/// new context or action for that task is refused.
#[tokio::test]
async fn a_status_report_outlives_its_purged_task() {
    let store = store().await;
    let old =
        NewTask::new("deploy_nodes").with_created(chrono::Utc::now() - chrono::Duration::days(2));
    store.create_task(&old).await.unwrap();
    let action = BootAction::new("n1", "hello", old.task_id, IdentityKey::generate(), true);
    store.add_boot_action(&action).await.unwrap();
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
    assert_eq!(
        store.boot_action(action.action_id).await.unwrap(),
        Some(updated)
    );
    assert!(store.messages(old.task_id).await.unwrap().is_empty());
    let again = BootAction::new("n1", "other", old.task_id, IdentityKey::generate(), true);
    assert!(matches!(
        store.add_boot_action(&again).await,
        Err(drydock_state_core::Error::NotFound {
            entity: drydock_state_core::Entity::Task,
            ..
        })
    ));
}
