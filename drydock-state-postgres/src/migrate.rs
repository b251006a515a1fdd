//! Migrations of our schema (`database.schema`, default `drydock_state`), safe when several
//! instances start at once.
//!
//! The tables and their history live in the configured schema: our history table is
//! `<schema>._sqlx_migrations`, so an application that embeds drydock-state and runs its own
//! sqlx migrations (history in `public._sqlx_migrations`, or wherever its `search_path`
//! points) never sees ours, nor we its.
//!
//! sqlx 0.8 cannot be told where to put its history table, but it names the table without a
//! schema, so it lands in the first schema of the connection's `search_path`. We therefore run
//! the sqlx migrator on a connection of its own whose `search_path` is our schema alone (set
//! with a bound value, `set_config`), and close that connection afterwards. The migration files
//! name nothing with a schema, so they land there too; the pool's connections are opened with
//! the same `search_path` (see `crate::config`), so the store's unqualified statements find them.
//!
//! DDL takes no bind parameters, so the schema's name is never written into SQL: it is put in
//! the session setting `drydock_state.schema` and a static `DO` block quotes it (`%I`).
//!
//! Before creating the schema, migrate refuses a name that a database role has: that role's
//! default `search_path` (`"$user", public`) would resolve its unqualified table names to our
//! tables, as happened with Airship Drydock's role `drydock` and our old schema `drydock`. An
//! existing schema is never refused, so upgrades keep working.
//!
//! A database migrated before the schema was configurable has its tables in `drydock`. If the
//! configured schema does not exist and `drydock` holds our history, migrate renames it (tables,
//! sequences, indexes and the `notify_task_queued` trigger function move with it), then
//! restamps the history rows whose checksum is exactly that of an old migration file
//! ([`LEGACY_CHECKSUMS`]: the files then qualified every name with `drydock.`) with the current
//! file's checksum. Any other checksum is left for sqlx's check to refuse.
//!
//! `CREATE SCHEMA IF NOT EXISTS` is not safe against a concurrent twin (both can pass the
//! check; one fails on the catalog's unique index), so the checks, the rename, schema creation
//! and the migrations run under a session-level advisory lock of our own,
//! [`MIGRATION_LOCK_KEY`]. sqlx's own lock (keyed by database name) is kept too; it only
//! serialises us with other sqlx migrators.

use drydock_state_core::{Error, Result};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Connection, PgPool};

use crate::error::OrStore;
use crate::queries;

/// The migrations of this crate, embedded at compile time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The advisory lock key under which drydock-state migrates: the bytes of `"drydock\0"`.
pub const MIGRATION_LOCK_KEY: i64 = 0x6472_7964_6f63_6b00;

/// The schema drydock-state used before `database.schema` existed, upgraded by
/// [`crate::PgStore::migrate`].
pub const LEGACY_SCHEMA: &str = "drydock";

/// The checksums sqlx recorded (`_sqlx_migrations.checksum`, the SHA-384 of the file) for
/// migrations 1 to 6 as they were when every name in them was qualified with `drydock.`
/// (before `database.schema`; the files of commit 0fb33fd). Those files differ from today's
/// only by that prefix, so a history row with exactly one of these checksums is restamped with
/// the current file's checksum.
pub const LEGACY_CHECKSUMS: [(i64, &str); 6] = [
    (1, "4c8e12d7d99d6b62c45d5817e9864464ed7c4aeaab9ab28cfd00929d13cab95b5996977a7a5b15a8f24ab75c931bfb90"),
    (2, "4c3fbd8af1cc82afe768e95820a7db4a5743778790ab2bb14ad88b07876f25ac354f9e2be85d76021c86654e341d8899"),
    (3, "525f5f076c07d2e025577c0471b081cc3e5d1dbbc48ac0332a7da4a76c03b456dfb47d3416d64342031ce1b794c0ee6c"),
    (4, "9f98e0f7fec693c19bc3265faa6cc8bdf97167ab90669c26db764b0f9e9061fe10dcd77f8f809e4505ed2a8add74d074"),
    (5, "488a4f80754968e6fac6160aa351007e4e09dca3c9220d893aca8df47993d9293475b2a4eda2eb69b1b5e1a6b85d58ce"),
    (6, "713143df3827765cf6e79fdf4b8d257b2beb62a9d66f5d0ccffa3dde0d61754fc99870762d7ba4d73827133fc00fc61e"),
];

/// The bytes of a checksum written in hex (as [`LEGACY_CHECKSUMS`] are).
fn unhex(hex: &str) -> Vec<u8> {
    hex.as_bytes()
        .chunks(2)
        .filter_map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

/// Brings `schema` up to date: upgrades a legacy `drydock` schema (renaming it to `schema`),
/// or creates `schema` if needed (refusing a name a role has), restamps legacy checksums, and
/// applies every pending migration; returns how many were applied.
pub(crate) async fn run(pool: &PgPool, schema: &str) -> Result<usize> {
    // A connection of our own, taken out of the pool: its settings are changed below and
    // it is closed afterwards, releasing the advisory lock with it even if we fail midway.
    let mut conn = pool.acquire().await.or_store("migrate")?.detach();
    let outcome = migrate_on(&mut conn, schema).await;
    let closed = conn.close().await;
    let applied = outcome?;
    closed.or_store("migrate")?;
    Ok(applied)
}

async fn migrate_on(conn: &mut sqlx::PgConnection, schema: &str) -> Result<usize> {
    queries::query(queries::MIGRATION_LOCK)
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .or_store("migrate: lock")?;
    queries::query(queries::MIGRATION_SET_SCHEMA_NAME)
        .bind(schema)
        .execute(&mut *conn)
        .await
        .or_store("migrate: schema name")?;
    let exists: bool = queries::query_scalar(queries::MIGRATION_SCHEMA_EXISTS)
        .bind(schema)
        .fetch_one(&mut *conn)
        .await
        .or_store("migrate: schema exists")?;
    if !exists {
        refuse_role_name(conn, schema).await?;
        if schema != LEGACY_SCHEMA && legacy_schema_is_ours(conn).await? {
            tracing::info!(
                from = LEGACY_SCHEMA,
                to = schema,
                "renaming the legacy schema"
            );
            queries::query(queries::MIGRATION_RENAME_LEGACY)
                .execute(&mut *conn)
                .await
                .or_store("migrate: rename legacy schema")?;
        } else {
            queries::query(queries::MIGRATION_CREATE_SCHEMA)
                .execute(&mut *conn)
                .await
                .or_store("migrate: create schema")?;
        }
    }
    queries::query(queries::MIGRATION_SEARCH_PATH)
        .bind(schema)
        .execute(&mut *conn)
        .await
        .or_store("migrate: search_path")?;
    // What was applied before and after, read under our lock: the difference is this run's.
    conn.ensure_migrations_table()
        .await
        .map_err(crate::error::migrate_error)?;
    restamp_legacy_checksums(conn).await?;
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

/// Refuses to create (or rename into) a schema named like a role.
async fn refuse_role_name(conn: &mut sqlx::PgConnection, schema: &str) -> Result<()> {
    let role: bool = queries::query_scalar(queries::MIGRATION_ROLE_EXISTS)
        .bind(schema)
        .fetch_one(&mut *conn)
        .await
        .or_store("migrate: role exists")?;
    if role {
        return Err(Error::Config {
            key: "database.schema".into(),
            origin: "configuration".into(),
            reason: format!(
                "a database role is named {schema:?}: its default search_path (\"$user\", \
                 public) would resolve its unqualified table names to drydock-state's tables \
                 instead of its own; pick another schema name"
            ),
        });
    }
    Ok(())
}

/// Whether the legacy schema `drydock` exists with our tables and our migration history.
async fn legacy_schema_is_ours(conn: &mut sqlx::PgConnection) -> Result<bool> {
    let tables: Option<bool> = queries::query_scalar(queries::MIGRATION_LEGACY_TABLES)
        .fetch_one(&mut *conn)
        .await
        .or_store("migrate: legacy schema")?;
    if tables != Some(true) {
        return Ok(false);
    }
    let current = MIGRATOR
        .iter()
        .find(|m| m.version == 1)
        .map(|m| m.checksum.to_vec())
        .unwrap_or_default();
    queries::query_scalar(queries::MIGRATION_LEGACY_HISTORY)
        .bind(unhex(LEGACY_CHECKSUMS[0].1))
        .bind(current)
        .fetch_one(&mut *conn)
        .await
        .or_store("migrate: legacy history")
}

/// Restamps every history row that has exactly its migration's legacy checksum with the
/// current file's checksum.
async fn restamp_legacy_checksums(conn: &mut sqlx::PgConnection) -> Result<()> {
    for (version, legacy) in LEGACY_CHECKSUMS {
        let Some(current) = MIGRATOR.iter().find(|m| m.version == version) else {
            continue;
        };
        let restamped = queries::query(queries::MIGRATION_RESTAMP)
            .bind(version)
            .bind(unhex(legacy))
            .bind(current.checksum.to_vec())
            .execute(&mut *conn)
            .await
            .or_store("migrate: restamp checksums")?
            .rows_affected();
        if restamped > 0 {
            tracing::info!(version, "restamped a legacy migration checksum");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every legacy checksum is 48 bytes, and none is a current file's (they differ by the
    /// `drydock.` prefix), so restamping is needed and never a no-op by accident.
    #[test]
    fn legacy_checksums_are_sha384_and_differ_from_the_files() {
        for (version, hex) in LEGACY_CHECKSUMS {
            let legacy = unhex(hex);
            assert_eq!(legacy.len(), 48, "version {version}");
            let current = MIGRATOR.iter().find(|m| m.version == version).unwrap();
            assert_ne!(&*current.checksum, legacy.as_slice(), "version {version}");
        }
    }
}
