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
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Connection, PgPool};

use crate::error::OrStore;
use crate::queries;

/// The migrations of this crate, embedded at compile time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The advisory lock key under which drydock-state migrates: the bytes of `"drydock\0"`.
pub const MIGRATION_LOCK_KEY: i64 = 0x6472_7964_6f63_6b00;

/// Creates the schema `drydock` if needed and applies every pending migration; returns how
/// many were applied.
pub(crate) async fn run(pool: &PgPool) -> Result<usize> {
    // A connection of our own, taken out of the pool: its search_path is changed below and
    // it is closed afterwards, releasing the advisory lock with it even if we fail midway.
    let mut conn = pool.acquire().await.or_store("migrate")?.detach();
    let outcome = migrate_on(&mut conn).await;
    let closed = conn.close().await;
    let applied = outcome?;
    closed.or_store("migrate")?;
    Ok(applied)
}

async fn migrate_on(conn: &mut sqlx::PgConnection) -> Result<usize> {
    queries::query(queries::MIGRATION_LOCK)
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .or_store("migrate: lock")?;
    queries::query(queries::MIGRATION_CREATE_SCHEMA)
        .execute(&mut *conn)
        .await
        .or_store("migrate: create schema")?;
    queries::query(queries::MIGRATION_SEARCH_PATH)
        .execute(&mut *conn)
        .await
        .or_store("migrate: search_path")?;
    // What was applied before and after, read under our lock: the difference is this run's.
    conn.ensure_migrations_table()
        .await
        .map_err(crate::error::migrate_error)?;
    let before = conn
        .list_applied_migrations()
        .await
        .map_err(crate::error::migrate_error)?
        .len();
    MIGRATOR
        .run_direct(&mut *conn)
        .await
        .map_err(crate::error::migrate_error)?;
    let after = conn
        .list_applied_migrations()
        .await
        .map_err(crate::error::migrate_error)?
        .len();
    queries::query(queries::MIGRATION_UNLOCK)
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .or_store("migrate: unlock")?;
    Ok(after.saturating_sub(before))
}
