//! The backend registers under `postgres` and `postgresql`, and opening through the registry
//! connects and migrates.

mod common;

use drydock_state_core::testkit::kit_config;
use drydock_state_core::{BackendRegistry, NewTask};

#[test]
fn registered_through_inventory_under_both_schemes() {
    let registry = BackendRegistry::from_inventory().unwrap();
    let schemes = registry.schemes();
    for scheme in drydock_state_postgres::URL_SCHEMES {
        assert!(
            schemes.contains(scheme),
            "{scheme} missing from {schemes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_by_url_connects_and_migrates() {
    let mut registry = BackendRegistry::default();
    registry
        .register(&drydock_state_postgres::REGISTRATION)
        .unwrap();
    let db = common::fresh_database().await;
    for url in [
        db.url.clone(),
        db.url.replacen("postgres://", "postgresql://", 1),
    ] {
        let store = registry.open(&url, &kit_config()).await.unwrap();
        assert_eq!(store.backend_name(), "postgres");
        let task = NewTask::new("deploy_nodes");
        store.create_task(&task).await.unwrap();
        assert!(store.get_task(task.task_id).await.unwrap().is_some());
    }
}
