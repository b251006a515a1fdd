//! The store judges time by the database's clock in `timestamptz`, whatever the session's
//! `TimeZone`: here every connection runs at UTC+13:45.

mod common;

use std::time::Duration;

use drydock_state_core::backend::now;
use drydock_state_core::testkit::with_grace;
use drydock_state_core::*;
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::sql;
use sqlx::postgres::PgPoolOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_tasks_and_purge_are_right_in_a_far_time_zone() {
    let db = common::fresh_database().await;
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sql::query("SET TIME ZONE 'Pacific/Chatham'")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect(&db.url)
        .await
        .unwrap();
    let zone: String = sql::query_scalar("SHOW TimeZone")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(zone, "Pacific/Chatham");
    let grace = Duration::from_secs(90);
    let store = PgStore::from_pool(pool, &with_grace(grace)).unwrap();
    store.migrate().await.unwrap();

    // The lease: stamped with the database's now, lasting exactly the grace period.
    let before = now() - chrono::Duration::seconds(5);
    let lease = store.claim_lease("instance-a").await.unwrap();
    let lease = lease.held().unwrap().clone();
    let after = now() + chrono::Duration::seconds(5);
    assert!(
        lease.acquired_at > before && lease.acquired_at < after,
        "{lease:?}"
    );
    assert_eq!(
        lease.expires_at - lease.renewed_at,
        chrono::Duration::from_std(grace).unwrap()
    );
    assert_eq!(store.current_lease().await.unwrap(), Some(lease.clone()));
    assert!(store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .is_none());

    // Instants round-trip unchanged.
    let old = NewTask::new("deploy_nodes").with_created(now() - chrono::Duration::hours(2));
    let young = NewTask::new("deploy_nodes").with_created(now() - chrono::Duration::minutes(30));
    store.create_task(&old).await.unwrap();
    store.create_task(&young).await.unwrap();
    assert_eq!(
        store.get_task(old.task_id).await.unwrap().unwrap().created,
        old.created
    );

    // Purge's cutoff is an instant too: one hour ago removes the two-hour-old task only.
    let report = store.purge(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.tasks, 1);
    assert!(store.get_task(old.task_id).await.unwrap().is_none());
    assert!(store.get_task(young.task_id).await.unwrap().is_some());
}
