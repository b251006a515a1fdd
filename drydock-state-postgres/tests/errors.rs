//! Error mapping: unreachable servers are retryable, passwords never show, a dropped
//! connection is retryable and the pool recovers.

mod common;

use std::error::Error as _;
use std::time::Duration;

use drydock_state_core::testkit::kit_config;
use drydock_state_core::{Config, Error, Task, TaskStore};
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::sql;

/// Display, Debug and every source of an error, as one string.
fn whole_chain(e: &Error) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    out
}

fn quick_config() -> Config {
    let mut config = kit_config();
    config.database.pool_timeout = Duration::from_secs(1);
    config
}

/// Nothing listens on port 1: the connect fails as retryable, without the password.
#[tokio::test]
async fn unreachable_server_is_unavailable_and_hides_the_password() {
    let e = PgStore::connect("postgres://postgres:hunter2@127.0.0.1:1/x", &quick_config())
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.is_retryable());
    let chain = whole_chain(&e);
    assert!(!chain.contains("hunter2"), "password leaked: {chain}");
    assert!(chain.contains("127.0.0.1:1"), "says where: {chain}");
}

/// A URL PostgreSQL cannot use is invalid input naming `database.url`, without the password.
#[tokio::test]
async fn malformed_url_names_the_key_and_hides_the_password() {
    let e = PgStore::connect(
        "postgres://postgres:hunter2@127.0.0.1:notaport/x",
        &quick_config(),
    )
    .await
    .expect_err("the port is not a number");
    match &e {
        Error::InvalidInput { field, .. } => assert_eq!(field, "database.url"),
        other => panic!("expected invalid database.url, got {other:?}"),
    }
    assert!(!whole_chain(&e).contains("hunter2"), "{}", whole_chain(&e));
}

/// A database that does not exist is a permanent error, without the password.
#[tokio::test]
async fn missing_database_is_permanent_and_hides_the_password() {
    let mut url = url::Url::parse(&common::server_url().await).unwrap();
    url.set_password(Some("hunter2")).unwrap();
    url.set_path("drydock_no_such_database");
    let e = PgStore::connect(url.as_str(), &quick_config())
        .await
        .expect_err("no such database");
    assert!(matches!(e, Error::Backend { .. }), "{e:?}");
    assert!(!e.is_retryable());
    let chain = whole_chain(&e);
    assert!(!chain.contains("hunter2"), "password leaked: {chain}");
    assert!(
        chain.contains("3D000") || chain.contains("does not exist"),
        "{chain}"
    );
}

/// A connection the server kills under the store fails its next use as retryable; the pool
/// then replaces it and the store carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_is_unavailable_then_recovers() {
    let mut config = kit_config();
    config.database.pool_size = 1;
    config.database.pool_overflow = 0;
    let (store, db) = common::fresh_store(&config).await;
    let task = Task::new("deploy_nodes");
    store.create_task(&task).await.unwrap();

    let admin = sqlx::PgPool::connect(&common::server_url().await)
        .await
        .unwrap();
    let killed: i64 = sql::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) AS k",
    )
    .bind(&db.name)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(killed >= 1, "the store's connection was there to kill");
    admin.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let first = store.get_task(task.task_id).await;
    match &first {
        Err(e) => assert!(e.is_retryable(), "a killed connection is retryable: {e:?}"),
        Ok(_) => panic!("the killed connection should fail its next use"),
    }
    let again = store
        .get_task(task.task_id)
        .await
        .expect("the pool reconnects");
    assert!(again.is_some());
}
