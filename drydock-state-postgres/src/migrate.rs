//! Migrations of the `drydock` schema, safe when several instances start at once.
//!
//! The tables and their history live in the schema `drydock`: our history table is
//! `drydock._sqlx_migrations`, so an application that embeds drydock-state and runs its own
//! sqlx migrations (history in `public._sqlx_migrations`, or wherever its `search_path`
//! points) never sees ours, nor we its.
//!
//! sqlx 0.8 cannot be told where to put its history table, but it names the table without a
//! schema, so it lands in the first schema of the connection's `search_path`. We therefore run
//! the sqlx migrator on a connection of its own whose `search_path` is `drydock` alone, and
//! close that connection afterwards so the setting never reaches the pool. The migration
//! files qualify every name with `drydock.` as well, so they do not depend on it.
//!
//! `CREATE SCHEMA IF NOT EXISTS` is not safe against a concurrent twin (both can pass the
//! check; one fails on the catalog's unique index), so schema creation and the migrations run
//! under a session-level advisory lock of our own, [`MIGRATION_LOCK_KEY`]. sqlx's own lock
//! (keyed by database name) is kept too; it only serialises us with other sqlx migrators.

use drydock_state_core::Result;
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgPool};

use crate::error::db_error;
use crate::queries;

/// The migrations of this crate, embedded at compile time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The advisory lock key under which drydock-state migrates: the bytes of `"drydock\0"`.
pub const MIGRATION_LOCK_KEY: i64 = 0x6472_7964_6f63_6b00;

/// Creates the schema `drydock` if needed and applies every pending migration.
pub(crate) async fn run(pool: &PgPool) -> Result<()> {
    // A connection of our own, taken out of the pool: its search_path is changed below and
    // it is closed afterwards, releasing the advisory lock with it even if we fail midway.
    let mut conn = pool
        .acquire()
        .await
        .map_err(db_error("migrate", "database"))?
        .detach();
    let outcome = migrate_on(&mut conn).await;
    let closed = conn.close().await;
    outcome?;
    closed.map_err(db_error("migrate", "database"))
}

async fn migrate_on(conn: &mut sqlx::PgConnection) -> Result<()> {
    queries::query(queries::MIGRATION_LOCK)
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(db_error("migrate: lock", "database"))?;
    queries::query(queries::MIGRATION_CREATE_SCHEMA)
        .execute(&mut *conn)
        .await
        .map_err(db_error("migrate: create schema", "database"))?;
    queries::query(queries::MIGRATION_SEARCH_PATH)
        .execute(&mut *conn)
        .await
        .map_err(db_error("migrate: search_path", "database"))?;
    MIGRATOR
        .run_direct(&mut *conn)
        .await
        .map_err(crate::error::migrate_error)?;
    queries::query(queries::MIGRATION_UNLOCK)
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(db_error("migrate: unlock", "database"))?;
    Ok(())
}
