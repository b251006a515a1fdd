//! Owns the schema's migration history: versioned SQL files embedded at compile time, applied
//! once each, in order, under SQLite's write lock.
//!
//! The history lives in `drydock_schema_migrations`, not sqlx's `_sqlx_migrations`, so an
//! application that keeps its own sqlx migrations in the same file never collides with ours.
//! The whole run is one `BEGIN IMMEDIATE` transaction: two processes starting at once
//! serialize on the write lock, and the second finds everything applied.

use drydock_state_core::{Error, Result};
use sqlx::SqlitePool;

use crate::error::OrStore;
use crate::queries;

/// One schema migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its version; applied in increasing order.
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// The SQL, one or more statements.
    pub sql: &'static str,
}

/// Every migration of this backend, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "tasks, result messages, build data, leader lease",
    sql: include_str!("../migrations/0001_initial.sql"),
}];

/// A stable fingerprint of a migration's text (64-bit FNV-1a), to notice a migration that was
/// edited after it was applied. Not a security measure.
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Applies the migrations `pool`'s database lacks; returns how many were applied.
pub(crate) async fn run(pool: &SqlitePool) -> Result<usize> {
    let mut tx = queries::begin_immediate(pool).await.or_store("migrate")?;
    queries::query(queries::MIGRATIONS_CREATE_HISTORY)
        .execute(&mut *tx)
        .await
        .or_store("migrate")?;
    let applied: Vec<(i64, String)> = queries::query_as(queries::MIGRATIONS_APPLIED)
        .fetch_all(&mut *tx)
        .await
        .or_store("migrate")?;
    for (version, sum) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(Error::Backend {
                    message: format!(
                        "sqlite migrate: the database has migration {version}, which this build \
                         does not know; it was written by a newer drydock-state"
                    ),
                    source: None,
                })
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(Error::Backend {
                    message: format!(
                        "sqlite migrate: migration {version} was changed after it was applied"
                    ),
                    source: None,
                })
            }
            Some(_) => {}
        }
    }
    let mut count = 0;
    for m in MIGRATIONS {
        if applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        tracing::info!(
            version = m.version,
            description = m.description,
            "applying migration"
        );
        // Through `Executor::execute`, whose future is `Send` (see `execute_script`).
        queries::execute_script(&mut *tx, m.sql)
            .await
            .or_store("migrate")?;
        queries::query(queries::MIGRATIONS_RECORD)
            .bind(m.version)
            .bind(m.description)
            .bind(checksum(m.sql))
            .execute(&mut *tx)
            .await
            .or_store("migrate")?;
        count += 1;
    }
    tx.commit().await.or_store("migrate")?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_checksums_are_stable() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(checksum("abc"), checksum("abc"));
        assert_ne!(checksum("abc"), checksum("abd"));
    }
}
