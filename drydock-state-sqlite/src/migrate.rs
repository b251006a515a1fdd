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
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tasks, result messages, build data, leader lease",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "claim attempt and claim id; queue, marked-queue and live-claim indexes",
        sql: include_str!("../migrations/0002_claim_attempt.sql"),
    },
];

impl Migration {
    /// The fingerprint of its text recorded in the history when it is applied; a recorded
    /// fingerprint that differs means the migration was edited after it was applied.
    pub fn checksum(&self) -> String {
        checksum(self.sql)
    }
}

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
    fn versions_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }

    /// The checksum is 64-bit FNV-1a: the published test vectors (`""`, `"a"`, `"foobar"`).
    #[test]
    fn checksum_is_fnv1a_64() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_eq!(checksum("a"), "af63dc4c8601ec8c");
        assert_eq!(checksum("foobar"), "85944171f73967e8");
    }

    /// Applied migrations are never edited: the checksum of each shipped migration is pinned
    /// (a database that applied the old text would refuse to start), and changing any one byte
    /// of it changes the checksum.
    #[test]
    fn shipped_migrations_are_pinned_and_every_byte_counts() {
        let pinned = [(1, "0f0570b23cd51436"), (2, "3e2ea893ba449c88")];
        assert_eq!(
            MIGRATIONS.len(),
            pinned.len(),
            "pin the new migration's checksum"
        );
        for (m, (version, sum)) in MIGRATIONS.iter().zip(pinned) {
            assert_eq!(m.version, version);
            assert_eq!(checksum(m.sql), sum, "migration {version} was edited");
            let original = checksum(m.sql);
            let mut bytes = m.sql.as_bytes().to_vec();
            for i in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
                bytes[i] ^= 0x01;
                let changed = String::from_utf8_lossy(&bytes).into_owned();
                assert_ne!(
                    checksum(&changed),
                    original,
                    "byte {i} of migration {version}"
                );
                bytes[i] ^= 0x01;
            }
        }
    }

    /// A database whose recorded checksum differs from the migration's text is refused, and
    /// one that records a migration this build does not know is refused too.
    #[tokio::test]
    async fn a_stored_checksum_mismatch_is_refused() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        assert_eq!(run(&pool).await.unwrap(), MIGRATIONS.len());
        assert_eq!(run(&pool).await.unwrap(), 0, "a second run applies nothing");

        crate::queries::query(
            "UPDATE drydock_schema_migrations SET checksum = ?1 WHERE version = 1",
        )
        .bind(checksum(&format!("{} ", MIGRATIONS[0].sql)))
        .execute(&pool)
        .await
        .unwrap();
        let e = run(&pool)
            .await
            .expect_err("an edited migration is refused");
        assert!(matches!(e, Error::Backend { .. }), "{e:?}");
        assert!(e.to_string().contains("migration 1 was changed"), "{e}");

        crate::queries::query(
            "UPDATE drydock_schema_migrations SET checksum = ?1 WHERE version = 1",
        )
        .bind(checksum(MIGRATIONS[0].sql))
        .execute(&pool)
        .await
        .unwrap();
        crate::queries::query(
            "INSERT INTO drydock_schema_migrations (version, description, checksum, applied_at) \
             VALUES (9999, 'future', '0', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let e = run(&pool)
            .await
            .expect_err("an unknown migration is refused");
        assert!(e.to_string().contains("migration 9999"), "{e}");
    }
}
