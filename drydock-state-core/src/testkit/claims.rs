//! Kit cases for claiming queued work: order, actions, an empty queue and fenced claims.
//! The exactly-once drains are in [`super::drains`].

use super::support::*;
use super::StoreFactory;
use crate::error::Error;
use crate::model::*;

/// Claims take the oldest queued task first and record who claimed it.
pub async fn claim_oldest_queued_first(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let newer = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    let older = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let mut requested = NewTask::new("deploy_nodes");
    requested.created = secs_ago(30);
    create(&*store, &requested).await;
    let req = ClaimRequest::new("instance-a");
    let first = store.claim_next(&req).await.unwrap().expect("a task");
    assert_eq!(first.task_id, older.task_id);
    assert_eq!(first.status, TaskStatus::Running);
    assert_eq!(first.claimed_by.as_deref(), Some("instance-a"));
    assert!(first.claimed_at.is_some());
    let stored = get(&*store, older.task_id).await;
    assert_eq!(stored.status, TaskStatus::Running);
    assert_eq!(stored.claimed_by.as_deref(), Some("instance-a"));
    assert_eq!(
        store.claim_next(&req).await.unwrap().unwrap().task_id,
        newer.task_id
    );
    assert!(
        store.claim_next(&req).await.unwrap().is_none(),
        "requested tasks are not claimable"
    );
}

/// Claims only take tasks whose action is allowed.
pub async fn claim_respects_actions(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let deploy = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let prepare = queued(&*store, "prepare_site", secs_ago(10)).await;
    let only_prepare = ClaimRequest::new("i").actions(["prepare_site", "validate_design"]);
    assert_eq!(
        store
            .claim_next(&only_prepare)
            .await
            .unwrap()
            .unwrap()
            .task_id,
        prepare.task_id
    );
    assert!(store.claim_next(&only_prepare).await.unwrap().is_none());
    assert_eq!(
        get(&*store, deploy.task_id).await.status,
        TaskStatus::Queued
    );
}

/// With nothing queued a claim returns `None` and changes nothing.
pub async fn claim_nothing_queued_is_none(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert!(store
        .claim_next(&ClaimRequest::new("i"))
        .await
        .unwrap()
        .is_none());
    claimed(&*store, NewTask::new("deploy_nodes"), "i").await;
    assert!(store
        .claim_next(&ClaimRequest::new("i"))
        .await
        .unwrap()
        .is_none());
}

/// A fenced claim succeeds only for the live holder with its current term.
pub async fn claim_fenced_with_stale_term_is_refused(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let t1 = queued(&*store, "deploy_nodes", secs_ago(20)).await;
    let t2 = queued(&*store, "deploy_nodes", secs_ago(10)).await;
    let a = held(&*store, "instance-a").await;
    let claimed = store
        .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.task_id, t1.task_id);
    assert_eq!(claimed.claim_term, Some(a.term));
    assert_kind(
        store
            .claim_next(&ClaimRequest::new("instance-b").fenced(a.term))
            .await,
        "non-holder",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    store.release_lease("instance-a").await.unwrap();
    let b = held(&*store, "instance-b").await;
    assert_kind(
        store
            .claim_next(&ClaimRequest::new("instance-a").fenced(a.term))
            .await,
        "deposed",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    assert_kind(
        store
            .claim_next(&ClaimRequest::new("instance-b").fenced(a.term))
            .await,
        "stale term",
        |e| matches!(e, Error::LeaseLost(_)),
    );
    assert_eq!(
        get(&*store, t2.task_id).await.status,
        TaskStatus::Queued,
        "a refused claim takes nothing"
    );
    let ok = store
        .claim_next(&ClaimRequest::new("instance-b").fenced(b.term))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.task_id, t2.task_id);
}
