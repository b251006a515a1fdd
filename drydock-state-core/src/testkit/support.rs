//! Helpers the kit's cases share: opening a store, making and claiming tasks, holding the
//! lease, comparing tasks and errors.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use std::time::Duration;

use super::{kit_config, with_grace, StoreFactory};
use crate::backend::now;
use crate::config::Config;
use crate::error::Error;
use crate::model::*;
use crate::store::StateStore;

pub(crate) async fn store(factory: &dyn StoreFactory) -> Arc<dyn StateStore> {
    factory.open(kit_config()).await
}

pub(crate) fn secs_ago(secs: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(secs)
}

/// A task with every optional field set, created at `created`.
pub(crate) fn full_task(action: &str, created: DateTime<Utc>) -> NewTask {
    let mut t = NewTask::new(action)
        .with_design_ref("file:///etc/drydock/site.yaml")
        .with_node_filter(json!({"filter_set_type": "union", "filter_set": [{"filter_type": "intersection", "node_names": ["n1", "n2"]}]}));
    t.created = created;
    t.created_by = Some("conformance".into());
    t.request_context = Some(json!({"user": "shipyard", "request_id": "r-1"}));
    t
}

pub(crate) async fn create(store: &dyn StateStore, task: &NewTask) -> Task {
    store.create_task(task).await.expect("create_task")
}

pub(crate) async fn queued(
    store: &dyn StateStore,
    action: &str,
    created: DateTime<Utc>,
) -> NewTask {
    let mut t = NewTask::new(action).with_status(TaskStatus::Queued);
    t.created = created;
    create(store, &t).await;
    t
}

/// Creates `task` queued and claims it as `instance`, unfenced; it must be the only queued task
/// of its action.
pub(crate) async fn claimed(store: &dyn StateStore, task: NewTask, instance: &str) -> Task {
    let task = task.with_status(TaskStatus::Queued);
    create(store, &task).await;
    let claimed = store
        .claim_next(&ClaimRequest::new(instance).actions([task.action.clone()]))
        .await
        .expect("claim_next")
        .expect("the task just queued");
    assert_eq!(
        claimed.task_id, task.task_id,
        "the kit claims the only queued task of its action"
    );
    claimed
}

pub(crate) async fn get(store: &dyn StateStore, id: TaskId) -> Task {
    store
        .get_task(id)
        .await
        .expect("get_task")
        .expect("task exists")
}

/// Fields a store must return exactly as they were written.
pub(crate) fn assert_same_task(stored: &Task, expected: &Task) {
    assert_eq!(stored.task_id, expected.task_id);
    assert_eq!(stored.kind, "Task");
    assert_eq!(stored.api_version, "v1");
    assert_eq!(stored.action, expected.action);
    assert_eq!(stored.parent_task_id, expected.parent_task_id);
    assert_eq!(stored.design_ref, expected.design_ref);
    assert_eq!(stored.status, expected.status);
    assert_eq!(stored.result.status, expected.result.status);
    assert_eq!(stored.result.message, expected.result.message);
    assert_eq!(stored.result.reason, expected.result.reason);
    assert_eq!(stored.result.successes, expected.result.successes);
    assert_eq!(stored.result.failures, expected.result.failures);
    assert_eq!(stored.result.links, expected.result.links);
    assert_eq!(stored.node_filter, expected.node_filter);
    assert_eq!(stored.created, expected.created);
    assert_eq!(stored.created_by, expected.created_by);
    assert_eq!(stored.retry, expected.retry);
    assert_eq!(stored.terminate, expected.terminate);
    assert_eq!(stored.terminated_by, expected.terminated_by);
    assert_eq!(stored.request_context, expected.request_context);
}

pub(crate) fn assert_kind<T: std::fmt::Debug>(
    result: crate::Result<T>,
    what: &str,
    check: impl Fn(&Error) -> bool,
) {
    match result {
        Err(e) if check(&e) => {}
        other => panic!("{what}: unexpected outcome {other:?}"),
    }
}

/// Claims the lease as `instance`, which must get it: the lease it now holds.
pub(crate) async fn held(store: &dyn StateStore, instance: &str) -> Lease {
    store
        .claim_lease(instance)
        .await
        .expect("claim_lease")
        .held()
        .unwrap_or_else(|| panic!("{instance} takes the free lease"))
        .clone()
}

/// Claims the lease as `instance`, which must get it: its term.
pub(crate) async fn held_term(store: &dyn StateStore, instance: &str) -> i64 {
    held(store, instance).await.term
}

/// The configuration of the catalogue and the model: a lease that never lapses during a case.
pub(crate) fn test_config() -> Config {
    with_grace(Duration::from_secs(3600))
}

/// Everything a caller can observe of a store: every task (messages assembled), all build
/// data (full), and the live lease.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) tasks: Vec<Task>,
    pub(crate) build_data: Vec<BuildData>,
    pub(crate) lease: Option<Lease>,
}

/// The [`Snapshot`] of `store` now.
pub(crate) async fn snapshot(store: &dyn StateStore) -> Snapshot {
    Snapshot {
        tasks: store
            .list_tasks(&TaskFilter::default())
            .await
            .expect("list every task"),
        build_data: store
            .build_data(&BuildDataQuery::default())
            .await
            .expect("read all build data"),
        lease: store.current_lease().await.expect("read the lease"),
    }
}

/// The kind of an error, for comparing stores whose texts legitimately differ.
pub(crate) fn kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::AlreadyExists { .. } => "already_exists",
        Error::Conflict { .. } => "conflict",
        Error::InvalidInput { .. } => "invalid_input",
        Error::Config { .. } => "config",
        Error::UnknownScheme { .. } => "unknown_scheme",
        Error::FeatureDisabled { .. } => "feature_disabled",
        Error::DuplicateScheme { .. } => "duplicate_scheme",
        Error::DesignFetch { .. } => "design_fetch",
        Error::Unavailable { .. } => "unavailable",
        Error::LeaseLost(_) => "lease_lost",
        Error::Backend { .. } => "backend",
    }
}
