//! Migrations: concurrent starts, coexistence with an application's own sqlx migrations, and
//! the pool left as it was.

mod common;

use std::time::Duration;

use drydock_state_core::testkit::kit_config;
use drydock_state_postgres::migrate::MIGRATOR;
use drydock_state_postgres::PgStore;
use drydock_state_testsupport::sql;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

async fn our_history(pool: &sqlx::PgPool) -> Vec<(i64, String)> {
    sql::query_as(
        "SELECT version, description FROM drydock_state._sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn expected_history() -> Vec<(i64, String)> {
    MIGRATOR
        .iter()
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

/// Four instances migrating a fresh database at once all succeed, and the schema is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_on_a_fresh_database_all_succeed() {
    let db = common::fresh_database().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(PgStore::connect(&db.url, &kit_config()).await.unwrap());
    }
    let outcomes =
        futures::future::join_all(stores.iter().map(|s| async move { s.migrate().await })).await;
    for outcome in outcomes {
        outcome.expect("every concurrent migration succeeds");
    }
    let pool = stores[0].pool();
    assert_eq!(our_history(pool).await, expected_history());
    let public_history: Option<String> =
        sql::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        public_history, None,
        "no history table outside schema drydock_state"
    );
    let tables: i64 = sql::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'drydock_state' \
         AND tablename IN ('tasks', 'result_message', 'build_data', 'active_instance', \
         'boot_action', 'boot_action_status')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(tables, 6);
}

/// An application's own sqlx migrations in `public` (whose version 1 clashes with ours) and
/// ours run in any order, again and again, and neither history table sees the other's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_migrations_in_public_are_untouched() {
    let db = common::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_app_things.sql"),
        "CREATE TABLE public.app_things (id integer PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("2_app_more.sql"),
        "INSERT INTO public.app_things VALUES (1), (2);",
    )
    .unwrap();
    let app = Migrator::new(dir.path()).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&db.url)
        .await
        .unwrap();
    let store = PgStore::from_pool(pool.clone(), &kit_config()).unwrap();

    app.run(&pool)
        .await
        .expect("the application migrates first");
    assert_eq!(
        store.migrate().await.expect("then we migrate"),
        MIGRATOR.iter().count(),
        "the first run applies every migration, and says so"
    );
    app.run(&pool)
        .await
        .expect("the application migrates again");
    assert_eq!(
        store
            .migrate()
            .await
            .expect("we migrate again (idempotent)"),
        0,
        "a second run applies nothing"
    );

    let app_history: Vec<(i64, String)> =
        sql::query_as("SELECT version, description FROM public._sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        app_history,
        vec![(1, "app things".to_string()), (2, "app more".to_string())]
    );
    assert_eq!(our_history(&pool).await, expected_history());
    let things: i64 = sql::query_scalar("SELECT count(*) FROM public.app_things")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(things, 2, "the application's migrations ran once each");

    // The migration's search_path never reaches the pool's connections.
    for _ in 0..3 {
        let path: String = sql::query_scalar("SHOW search_path")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(
            !path.contains("drydock"),
            "pool connection has search_path {path}"
        );
    }
}

/// A store over a database migrated by an application first works normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_works_after_migrating_beside_an_application() {
    use drydock_state_core::{NewTask, TaskStore};
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let task = NewTask::new("deploy_nodes");
    store.create_task(&task).await.unwrap();
    assert!(store.get_task(task.task_id).await.unwrap().is_some());
    store
        .migrate()
        .await
        .expect("migrating a migrated database is a no-op");
    assert!(store.get_task(task.task_id).await.unwrap().is_some());
}

/// After migration 4 the JSON columns a caller writes are `json` (text kept as given), and
/// `result_links`, which the store writes from its own structs, is still `jsonb`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_json_columns_are_json() {
    let (store, _db) = common::fresh_store(&kit_config()).await;
    let types: Vec<(String, String, String)> = drydock_state_testsupport::sql::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
         FROM information_schema.columns
         WHERE table_schema = 'drydock_state'
           AND column_name IN ('node_filter', 'request_context', 'extra', 'result_links')
         ORDER BY table_name, column_name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected = [
        ("result_message", "extra", "json"),
        ("tasks", "node_filter", "json"),
        ("tasks", "request_context", "json"),
        ("tasks", "result_links", "jsonb"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(t, c, d)| (t.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(types, expected);
}
