//! What the SQLite store's errors keep: the result code and SQLite's message, never the sqlx
//! error (issue 10, item 9), and a busy database stays retryable (item 10).

use std::error::Error as _;
use std::time::Duration;

use drydock_state_core::error::DatabaseFailure;
use drydock_state_core::{Config, Error, NewTask, TaskStore};
use drydock_state_sqlite::SqliteStore;
use sqlx::Connection;

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

/// A migrated store on a fresh file, its URL and the directory that holds it.
async fn fresh_store(config: &Config) -> (SqliteStore, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url, config).await.unwrap();
    store.migrate().await.unwrap();
    (store, url, dir)
}

/// A trigger refusing a task whose design reference is on https: the error keeps SQLite's
/// message and extended result code (SQLITE_CONSTRAINT_TRIGGER, 1811) in a
/// [`DatabaseFailure`], with no `sqlx::Error` anywhere in its chain and no password.
#[tokio::test]
async fn a_refusal_keeps_the_code_and_message_only() {
    let (store, url, _dir) = fresh_store(&Config::default()).await;
    let mut admin = sqlx::SqliteConnection::connect(&url).await.unwrap();
    drydock_state_testsupport::sql::query::<sqlx::Sqlite>(
        "CREATE TRIGGER refuse_https BEFORE INSERT ON drydock_tasks \
         WHEN NEW.design_ref LIKE 'https://%' \
         BEGIN SELECT RAISE(ABORT, 'tasks are frozen'); END",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();

    let task =
        NewTask::new("deploy_nodes").with_design_ref("https://user:Pw-Sqlite-9@design.example/x");
    let e = store
        .create_task(&task)
        .await
        .expect_err("the trigger refuses");
    let chain = whole_chain(&e);
    assert!(!chain.contains("Pw-Sqlite-9"), "{chain}");
    assert!(
        matches!(e, Error::Backend { .. }) && !e.is_retryable(),
        "{chain}"
    );
    let mut source = e.source();
    let mut kept = None;
    while let Some(s) = source {
        assert!(
            s.downcast_ref::<sqlx::Error>().is_none(),
            "a sqlx::Error is kept as a source: {s:?}"
        );
        kept = kept.or(s.downcast_ref::<DatabaseFailure>());
        source = s.source();
    }
    let kept = kept.expect("the source is a DatabaseFailure");
    assert_eq!(kept.code(), Some("1811"), "{kept:?}");
    assert_eq!(kept.message(), "tasks are frozen");
}

/// A database another connection holds the write lock of is SQLITE_BUSY: retryable, and the
/// source is ours.
#[tokio::test]
async fn busy_is_retryable_with_our_source() {
    let mut config = Config::default();
    config.database.pool_timeout = Duration::from_millis(200);
    let (store, url, _dir) = fresh_store(&config).await;
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    drydock_state_testsupport::sql::query::<sqlx::Sqlite>("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let e = store
        .create_task(&NewTask::new("deploy_nodes"))
        .await
        .expect_err("busy");
    drydock_state_testsupport::sql::query::<sqlx::Sqlite>("ROLLBACK")
        .execute(&mut other)
        .await
        .unwrap();
    assert!(
        matches!(e, Error::Unavailable { .. }) && e.is_retryable(),
        "{e:?}"
    );
    let source = e.source().expect("a source");
    let kept = source
        .downcast_ref::<DatabaseFailure>()
        .unwrap_or_else(|| panic!("not a DatabaseFailure: {source:?}"));
    assert_eq!(kept.code(), Some("5"), "{kept:?}");
}
