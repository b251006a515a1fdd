//! The migration history of drydock-state-mysql: its own table, every table named
//! `drydock_...`, each migration applied once (concurrent runs included), an edited migration
//! refused, and an application's own tables left alone.

mod common;

use drydock_state_core::{Config, Error};
use drydock_state_mysql::migrate::{HISTORY_TABLE, MIGRATIONS};
use drydock_state_mysql::MySqlStore;
use drydock_state_testsupport::sql;
use sqlx::MySqlPool;

const TABLES: &str = "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
    WHERE table_schema = DATABASE() ORDER BY table_name";
const HISTORY: &str = "SELECT version FROM drydock_migrations ORDER BY version";
const APP_TABLE: &str =
    "CREATE TABLE app_orders (id BIGINT PRIMARY KEY, note VARCHAR(64)) ENGINE = InnoDB";
const APP_ROW: &str = "INSERT INTO app_orders (id, note) VALUES (1, 'kept')";
const APP_READ: &str = "SELECT CAST(note AS CHAR) FROM app_orders WHERE id = 1";
const EDIT_CHECKSUM: &str =
    "UPDATE drydock_migrations SET checksum = '0000000000000000' WHERE version = 1";

async fn tables(pool: &MySqlPool) -> Vec<String> {
    sql::query_scalar(TABLES).fetch_all(pool).await.unwrap()
}

async fn connect(url: &str) -> MySqlStore {
    MySqlStore::connect(url, &Config::default())
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_fresh_database_gets_every_migration_once() {
    let db = common::fresh_database().await;
    let store = connect(&db.url).await;
    assert_eq!(store.migrate().await.unwrap(), MIGRATIONS.len());
    let versions: Vec<i64> = sql::query_scalar(HISTORY)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let expected: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "a second run applies none"
    );
    assert_eq!(
        connect(&db.url).await.migrate().await.unwrap(),
        0,
        "nor does another store's"
    );
}

#[tokio::test]
async fn every_table_it_creates_is_named_drydock() {
    let db = common::fresh_database().await;
    let store = connect(&db.url).await;
    store.migrate().await.unwrap();
    let names = tables(store.pool()).await;
    assert!(names.contains(&HISTORY_TABLE.to_string()), "{names:?}");
    assert!(names.contains(&"drydock_tasks".to_string()), "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("drydock_")),
        "tables not named drydock_...: {names:?}"
    );
    assert!(!names.iter().any(|n| n == "_sqlx_migrations"), "{names:?}");
}

#[tokio::test]
async fn an_applications_tables_are_left_alone() {
    let db = common::fresh_database().await;
    let app = MySqlPool::connect_lazy(&db.url).unwrap();
    sql::query(APP_TABLE).execute(&app).await.unwrap();
    sql::query(APP_ROW).execute(&app).await.unwrap();
    let store = connect(&db.url).await;
    assert_eq!(store.migrate().await.unwrap(), MIGRATIONS.len());
    let names = tables(store.pool()).await;
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| !n.starts_with("drydock_"))
        .collect();
    assert_eq!(
        foreign,
        vec!["app_orders"],
        "only the application's own table"
    );
    let note: String = sql::query_scalar(APP_READ).fetch_one(&app).await.unwrap();
    assert_eq!(note, "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_each_migration_once() {
    let db = common::fresh_database().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let store = connect(&db.url).await;
        runs.push(tokio::spawn(async move { store.migrate().await }));
    }
    let mut applied = 0;
    for run in runs {
        applied += run
            .await
            .unwrap()
            .expect("every concurrent migrate succeeds");
    }
    assert_eq!(
        applied,
        MIGRATIONS.len(),
        "each migration applied by one run"
    );
    let store = connect(&db.url).await;
    let versions: Vec<i64> = sql::query_scalar(HISTORY)
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(versions.len(), MIGRATIONS.len());
}

#[tokio::test]
async fn an_edited_migration_stops_the_run_loudly() {
    let db = common::fresh_database().await;
    let store = connect(&db.url).await;
    store.migrate().await.unwrap();
    sql::query(EDIT_CHECKSUM)
        .execute(store.pool())
        .await
        .unwrap();
    match store.migrate().await {
        Err(Error::Backend { message, .. }) => {
            assert!(
                message.contains("changed after it was applied"),
                "{message}"
            )
        }
        other => panic!("expected a Backend error, got {other:?}"),
    }
}
