//! Migrations of the `drydock_...` tables, with a history of their own, safe when several
//! instances start at once.
//!
//! sqlx 0.8's migrator keeps its history in a table named `_sqlx_migrations`, a name it does
//! not let us change; an application with its own sqlx migrations in the same database would
//! share it with us. So this backend has its own small runner and history table,
//! `drydock_migrations` (version, description, checksum, applied_at):
//!
//! * the runner takes a named server lock for the database (`GET_LOCK`) on a connection of
//!   its own, so two processes migrating at once apply each migration once: the second waits,
//!   then finds it applied;
//! * each migration of [`MIGRATIONS`] not in the history is applied, in version order, one
//!   statement at a time, then recorded with its checksum;
//! * a recorded migration whose checksum differs from this build's, or a recorded version this
//!   build does not know (a newer drydock-state migrated the database), stops the run with an
//!   [`Error::Backend`] that says so, before anything is changed.
//!
//! MariaDB and MySQL commit DDL implicitly: a migration cannot be rolled back as a whole, and
//! a failure midway leaves the statements before it applied. Every statement of a migration
//! is therefore written to be run again safely (`CREATE TABLE IF NOT EXISTS`, `INSERT IGNORE`,
//! `ADD COLUMN IF NOT EXISTS`), and an interrupted migration, not yet recorded, is completed
//! by the next run.

use drydock_state_core::{Error, Result};
use sqlx::{Connection, MySqlConnection, MySqlPool};

use crate::error::db_error;
use crate::queries;

/// One migration: its version, what it does, and its statements (a file of
/// `migrations/`, statements separated by a `;` at the end of a line).
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The version, ascending from 1.
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// The file's text, embedded at compile time.
    pub script: &'static str,
}

impl Migration {
    /// The statements of the script, in order, each without its final `;`.
    pub fn statements(&self) -> impl Iterator<Item = &'static str> {
        let script: &'static str = self.script;
        script
            .split(";\n")
            .map(strip_comments)
            .filter(|s| !s.is_empty())
    }

    /// The checksum recorded in the history: FNV-1a (64 bits) of the script, in hex. It
    /// detects a migration edited after it was applied; it is no security measure.
    pub fn checksum(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.script.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

/// A statement without the comment lines before it and surrounding blanks.
fn strip_comments(statement: &'static str) -> &'static str {
    let mut rest = statement.trim();
    while rest.starts_with("--") {
        rest = rest.split_once('\n').map_or("", |(_, after)| after).trim();
    }
    rest.trim_end_matches(';').trim()
}

/// Every migration of this crate, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "initial schema",
    script: include_str!("../migrations/0001_initial_schema.sql"),
}];

/// The name of the history table.
pub const HISTORY_TABLE: &str = "drydock_migrations";

/// How long a migration waits for another process's to finish, in seconds.
const LOCK_WAIT_SECONDS: i64 = 300;

/// Applies every pending migration; returns how many were applied.
pub(crate) async fn run(pool: &MySqlPool) -> Result<usize> {
    // A connection of our own, taken out of the pool: it holds the named lock, and closing it
    // releases the lock even if we fail midway.
    let mut conn = pool
        .acquire()
        .await
        .map_err(db_error("migrate", "database"))?
        .detach();
    let outcome = migrate_on(&mut conn).await;
    let closed = conn.close().await;
    let applied = outcome?;
    closed.map_err(db_error("migrate", "database"))?;
    Ok(applied)
}

async fn migrate_on(conn: &mut MySqlConnection) -> Result<usize> {
    let locked: Option<i64> = queries::query_scalar(queries::MIGRATION_LOCK)
        .bind(LOCK_WAIT_SECONDS)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error("migrate: lock", "database"))?;
    if locked != Some(1) {
        return Err(Error::Unavailable {
            message: format!(
                "migrate: another process has been migrating this database for more than \
                 {LOCK_WAIT_SECONDS} s; try again when it is done"
            ),
            source: None,
        });
    }
    let applied = apply_pending(conn).await;
    let unlocked = queries::query(queries::MIGRATION_UNLOCK)
        .execute(&mut *conn)
        .await
        .map_err(db_error("migrate: unlock", "database"));
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply_pending(conn: &mut MySqlConnection) -> Result<usize> {
    queries::query(queries::MIGRATION_HISTORY_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(db_error("migrate: history table", "database"))?;
    let recorded: Vec<(i64, String)> = {
        use sqlx::Row;
        let rows = queries::query(queries::MIGRATION_APPLIED)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error("migrate: history", "database"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get_unchecked::<i64, _>("version")
                        .map_err(|e| crate::error::decode_error("version", &e))?,
                    r.try_get_unchecked::<String, _>("checksum")
                        .map_err(|e| crate::error::decode_error("checksum", &e))?,
                ))
            })
            .collect::<Result<_>>()?
    };
    for (version, checksum) in &recorded {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(Error::Backend {
                    message: format!(
                        "migrate: the database has migration {version}, which this build of \
                         drydock-state-mysql does not know (a newer version migrated it); \
                         upgrade drydock-state"
                    ),
                    source: None,
                })
            }
            Some(m) if m.checksum() != *checksum => {
                return Err(Error::Backend {
                    message: format!(
                        "migrate: migration {version} ({}) was changed after it was applied \
                         (checksum {checksum} recorded, {} in this build)",
                        m.description,
                        m.checksum()
                    ),
                    source: None,
                })
            }
            Some(_) => {}
        }
    }
    let mut applied = 0;
    for migration in MIGRATIONS {
        if recorded.iter().any(|(v, _)| *v == migration.version) {
            continue;
        }
        for statement in migration.statements() {
            queries::query(statement)
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    let e = crate::error::classify("migrate", "database", &e);
                    Error::Backend {
                        message: format!(
                            "migration {} ({}) failed; the statements before the failing one \
                             are applied (DDL commits at once) and the next migrate completes \
                             it: {e}",
                            migration.version, migration.description
                        ),
                        source: Some(Box::new(e)),
                    }
                })?;
        }
        queries::query(queries::MIGRATION_RECORD)
            .bind(migration.version)
            .bind(migration.description)
            .bind(migration.checksum())
            .execute(&mut *conn)
            .await
            .map_err(db_error("migrate: record", "database"))?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_scripts_split_into_statements() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        let first: Vec<&str> = MIGRATIONS[0].statements().collect();
        assert!(first.len() >= 7, "{first:?}");
        assert!(first
            .iter()
            .all(|s| !s.starts_with("--") && !s.ends_with(';')));
    }
}
