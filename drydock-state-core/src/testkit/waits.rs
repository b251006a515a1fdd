//! Kit cases for `wait_for_queued`, the idle claimer's wait: it returns `Ok`, never an error,
//! whether work comes or not, and, for a backend that declares
//! [`Capabilities::wakes_on_queue`](super::Capabilities::wakes_on_queue), soon after a task is
//! queued rather than at `max_wait`.

use std::time::{Duration, Instant};

use super::{kit_config, StoreFactory};
use crate::model::{NewTask, TaskStatus};

/// How long a case waits for a waiter before failing; far below the 60 s `max_wait` of a
/// waiter that must be woken, far above any wake-up.
const PATIENCE: Duration = Duration::from_secs(30);

/// A waiter returns `Ok` once a task is queued: with `wakes_on_queue`, a waiter whose
/// `max_wait` is 60 s returns long before it (tasks are queued every half second until it
/// does, so a wake-up missed between the waiter's start and the first task does not matter);
/// without, a waiter whose `max_wait` is 200 ms returns `Ok` after it.
pub async fn wait_for_queued_returns_once_a_task_is_queued(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    let wakes = factory.capabilities().wakes_on_queue;
    let max_wait = if wakes {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(200)
    };
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_queued(max_wait).await })
    };
    let started = Instant::now();
    let mut queued = 0;
    while !waiter.is_finished() {
        assert!(
            started.elapsed() < PATIENCE,
            "a waiter with max_wait {max_wait:?} has not returned {PATIENCE:?} after the first \
             of {queued} tasks was queued{}",
            if wakes {
                " (the backend declares wakes_on_queue)"
            } else {
                ""
            }
        );
        store
            .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
            .await
            .expect("create_task");
        queued += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    waiter
        .await
        .expect("the waiter panicked")
        .expect("wait_for_queued returns Ok once a task is queued");
}

/// With nothing queued, a waiter returns `Ok` once `max_wait` has passed, for a zero wait and
/// a short one, and a store with queued work still returns `Ok` from a zero wait.
pub async fn wait_for_queued_without_work_returns_ok(factory: &dyn StoreFactory) {
    let store = factory.open(kit_config()).await;
    for max_wait in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(300),
    ] {
        let waited = tokio::time::timeout(PATIENCE, store.wait_for_queued(max_wait))
            .await
            .unwrap_or_else(|_| panic!("a waiter with max_wait {max_wait:?} never returned"));
        waited.unwrap_or_else(|e| {
            panic!("wait_for_queued({max_wait:?}) with nothing queued is an error: {e}")
        });
    }
    let t = NewTask::new("deploy_nodes").with_status(TaskStatus::Requested);
    store.create_task(&t).await.expect("create_task");
    tokio::time::timeout(PATIENCE, store.wait_for_queued(Duration::from_millis(100)))
        .await
        .expect("a waiter with a requested task in the store never returned")
        .expect("wait_for_queued with only a requested task returns Ok");
    store
        .create_task(&NewTask::new("deploy_nodes").with_status(TaskStatus::Queued))
        .await
        .expect("create_task");
    tokio::time::timeout(PATIENCE, store.wait_for_queued(Duration::ZERO))
        .await
        .expect("a zero wait with queued work never returned")
        .expect("wait_for_queued with queued work returns Ok");
}
