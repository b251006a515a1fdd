//! Kit cases for boot actions and the store's health check, including Drydock's own tests of
//! `post_boot_action`, `put_bootaction_status`, `get_boot_action` and boot-action signalling.

use super::{kit_config, StoreFactory};
use crate::error::{Entity, Error};
use crate::model::*;
use crate::store::StateStore;

async fn task(store: &dyn StateStore) -> Task {
    store
        .create_task(&NewTask::new("prepare_site").with_design_ref("http://test.com/design"))
        .await
        .expect("create_task")
}

async fn messages(store: &dyn StateStore, id: TaskId) -> Vec<ResultMessage> {
    store.messages(id).await.unwrap()
}

fn invalid<T: std::fmt::Debug>(result: crate::Result<T>, field: &str) {
    match result {
        Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

/// A node has one context: set, read back byte for byte, replaced by the next set; a task
/// that does not exist and a bad node name are refused.
pub async fn boot_action_context_is_one_per_node(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let first = task(&*store).await;
    let second = task(&*store).await;
    let ctx = BootActionContext {
        node_name: "compute01".into(),
        task_id: first.task_id,
        identity_key: IdentityKey::generate(),
    };
    store.set_boot_action_context(&ctx).await.unwrap();
    assert_eq!(
        store.boot_action_context("compute01").await.unwrap(),
        Some(ctx.clone())
    );
    let again = BootActionContext {
        task_id: second.task_id,
        identity_key: IdentityKey([0u8; 32]),
        ..ctx.clone()
    };
    store.set_boot_action_context(&again).await.unwrap();
    assert_eq!(
        store.boot_action_context("compute01").await.unwrap(),
        Some(again.clone())
    );
    assert_eq!(store.boot_action_context("Compute01").await.unwrap(), None);
    assert_eq!(store.boot_action_context("compute02").await.unwrap(), None);
    match store
        .set_boot_action_context(&BootActionContext {
            task_id: TaskId::new(),
            ..ctx.clone()
        })
        .await
    {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a missing task is NotFound, got {other:?}"),
    }
    for bad in ["", "n\u{0}1", &"n".repeat(MAX_NODE_NAME_LEN + 1)] {
        invalid(
            store
                .set_boot_action_context(&BootActionContext {
                    node_name: bad.to_string(),
                    ..ctx.clone()
                })
                .await,
            "boot_action.node_name",
        );
    }
    assert_eq!(
        store.boot_action_context("compute01").await.unwrap(),
        Some(again)
    );
}

/// Drydock's `test_bootaction_post`, `_put` and `_get`: a boot action is posted, its status
/// updated, and read back by id with its key byte for byte; the update leaves a message on
/// the task.
pub async fn boot_action_post_put_get(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = task(&*store).await;
    let key = IdentityKey::generate();
    let action = BootAction::new("testnode", "helloworld", t.task_id, key, true);
    store.add_boot_action(&action).await.unwrap();
    let stored = store.boot_action(action.action_id).await.unwrap().unwrap();
    assert_eq!(stored, action);
    assert_eq!(stored.identity_key.as_bytes(), key.as_bytes());
    assert_eq!(stored.action_status, BootActionStatus::Incomplete);
    let by_text: BootActionId = action.action_id.to_string().parse().unwrap();
    let updated = store
        .set_boot_action_status(by_text, BootActionStatus::Success, &[])
        .await
        .unwrap();
    assert_eq!(updated.action_status, BootActionStatus::Success);
    assert_eq!(
        store.boot_action(action.action_id).await.unwrap().unwrap(),
        BootAction {
            action_status: BootActionStatus::Success,
            ..action.clone()
        }
    );
    let notes = messages(&*store, t.task_id).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].context_type, "bootaction");
    assert_eq!(notes[0].context, action.action_id.to_string());
    assert!(!notes[0].error);
    match store
        .add_boot_action(&BootAction {
            action_name: "other".into(),
            ..action.clone()
        })
        .await
    {
        Err(Error::AlreadyExists {
            entity: Entity::BootAction,
            ..
        }) => {}
        other => panic!("a duplicate id is a conflict, got {other:?}"),
    }
    match store
        .add_boot_action(&BootAction::new("testnode", "x", TaskId::new(), key, true))
        .await
    {
        Err(Error::NotFound { .. }) => {}
        other => panic!("a missing task is NotFound, got {other:?}"),
    }
    for (bad, field) in [
        (
            BootAction {
                action_name: String::new(),
                ..BootAction::new("testnode", "x", t.task_id, key, true)
            },
            "boot_action.action_name",
        ),
        (
            BootAction::new(
                "testnode",
                "a".repeat(MAX_ACTION_NAME_LEN + 1),
                t.task_id,
                key,
                true,
            ),
            "boot_action.action_name",
        ),
        (
            BootAction::new("", "x", t.task_id, key, true),
            "boot_action.node_name",
        ),
    ] {
        invalid(store.add_boot_action(&bad).await, field);
        assert!(store.boot_action(bad.action_id).await.unwrap().is_none());
    }
}

/// A final status (`success`, `failure`) never changes again, and a refused update writes
/// nothing, messages included; `incomplete` and `unreported` may still change.
pub async fn boot_action_final_status_never_changes(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = task(&*store).await;
    for final_status in [BootActionStatus::Success, BootActionStatus::Failure] {
        let action = BootAction::new("n1", "a", t.task_id, IdentityKey::generate(), false);
        store.add_boot_action(&action).await.unwrap();
        store
            .set_boot_action_status(action.action_id, BootActionStatus::Incomplete, &[])
            .await
            .expect("unreported may change");
        store
            .set_boot_action_status(action.action_id, final_status, &[])
            .await
            .unwrap();
        let before = messages(&*store, t.task_id).await.len();
        for next in BootActionStatus::ALL {
            match store
                .set_boot_action_status(action.action_id, *next, &[NewMessage::info("late")])
                .await
            {
                Err(Error::Conflict { .. }) => {}
                other => panic!("{final_status} is final, got {other:?} for {next}"),
            }
        }
        assert_eq!(
            store
                .boot_action(action.action_id)
                .await
                .unwrap()
                .unwrap()
                .action_status,
            final_status
        );
        assert_eq!(messages(&*store, t.task_id).await.len(), before);
    }
}

/// An id nobody posted is `NotFound` (Drydock silently said yes) and writes nothing; an id
/// that is not a ULID is invalid input.
pub async fn boot_action_unknown_id_is_not_found(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = task(&*store).await;
    let ghost = BootActionId::new();
    match store
        .set_boot_action_status(ghost, BootActionStatus::Success, &[])
        .await
    {
        Err(Error::NotFound { .. }) => {}
        other => panic!("an unknown id is NotFound, got {other:?}"),
    }
    assert!(store.boot_action(ghost).await.unwrap().is_none());
    assert!(messages(&*store, t.task_id).await.is_empty());
    invalid(
        "not-a-ulid".parse::<BootActionId>(),
        "boot_action.action_id",
    );
}

/// Drydock's signalling test: of a node's two boot actions, the one with signalling on is
/// `incomplete`, the one with it off `unreported`; a node's actions are keyed by name (the
/// newest of a repeated name) and no other node's are included.
pub async fn boot_actions_of_a_node_keyed_by_name(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = task(&*store).await;
    let key = IdentityKey::generate();
    let signals = BootAction::new("compute01", "hello", t.task_id, key, true);
    let quiet = BootAction::new("compute01", "quiet", t.task_id, key, false);
    let elsewhere = BootAction::new("compute02", "hello", t.task_id, key, true);
    for a in [&signals, &quiet, &elsewhere] {
        store.add_boot_action(a).await.unwrap();
    }
    let actions = store.boot_actions_for_node("compute01").await.unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions["hello"], signals);
    assert_eq!(actions["quiet"], quiet);
    let reported = actions
        .values()
        .filter(|a| a.action_status == BootActionStatus::Incomplete)
        .count();
    let unreported = actions
        .values()
        .filter(|a| a.action_status == BootActionStatus::Unreported)
        .count();
    assert_eq!((reported, unreported), (1, 1));
    // A redeploy posts the same name again, with a newer id; the older one is not lost.
    let mut redeployed = BootAction::new("compute01", "hello", t.task_id, key, true);
    std::thread::sleep(std::time::Duration::from_millis(2));
    redeployed.action_id = BootActionId::new();
    store.add_boot_action(&redeployed).await.unwrap();
    let actions = store.boot_actions_for_node("compute01").await.unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions["hello"].action_id, redeployed.action_id);
    assert_eq!(
        store.boot_action(signals.action_id).await.unwrap(),
        Some(signals)
    );
    assert!(store
        .boot_actions_for_node("compute03")
        .await
        .unwrap()
        .is_empty());
}

/// A node's report attaches its details to the task after the status message, in order, in
/// the same operation.
pub async fn boot_action_status_details_go_to_the_task(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = task(&*store).await;
    let action = BootAction::new("n1", "hello", t.task_id, IdentityKey::generate(), true);
    store.add_boot_action(&action).await.unwrap();
    let details = [
        NewMessage::info("unit started").with_context("bootaction", action.action_id.to_string()),
        NewMessage::error("unit failed").with_context("bootaction", action.action_id.to_string()),
    ];
    store
        .set_boot_action_status(action.action_id, BootActionStatus::Failure, &details)
        .await
        .unwrap();
    let got = messages(&*store, t.task_id).await;
    let texts: Vec<(&str, bool)> = got.iter().map(|m| (m.message.as_str(), m.error)).collect();
    assert_eq!(texts.len(), 3);
    assert!(texts[0].0.contains("hello") && texts[0].0.contains("failure"));
    assert!(texts[0].1, "a failure report is an error");
    assert_eq!(
        &texts[1..],
        &[("unit started", false), ("unit failed", true)]
    );
    assert_eq!(
        store
            .get_task(t.task_id)
            .await
            .unwrap()
            .unwrap()
            .result
            .details
            .error_count,
        2
    );
    let bad = [NewMessage::info("nul\u{0}")];
    let other = BootAction::new("n1", "other", t.task_id, IdentityKey::generate(), true);
    store.add_boot_action(&other).await.unwrap();
    invalid(
        store
            .set_boot_action_status(other.action_id, BootActionStatus::Success, &bad)
            .await,
        "message.message",
    );
    assert_eq!(
        store
            .boot_action(other.action_id)
            .await
            .unwrap()
            .unwrap()
            .action_status,
        BootActionStatus::Incomplete,
        "a refused report writes nothing"
    );
}

/// `ping` answers with the store's clock: the same clock that stamps messages.
pub async fn ping_returns_the_store_clock(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let t = task(&*store).await;
    let before = store.ping().await.unwrap();
    let m = store
        .append_message(t.task_id, &NewMessage::info("tick"), None)
        .await
        .unwrap();
    let after = store.ping().await.unwrap();
    assert!(
        before <= m.ts && m.ts <= after,
        "{before} <= {} <= {after}",
        m.ts
    );
}
