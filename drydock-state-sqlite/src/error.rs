//! Classification of sqlx and SQLite failures into [`drydock_state_core::Error`].
//!
//! Classified by result code where the failure arises, never by matching message text:
//! a busy or locked database, a pool timeout or an I/O failure may succeed if tried again
//! (`Unavailable`); a unique violation is a `Conflict`; a missing referenced row is `NotFound`;
//! everything else is a permanent `Backend` error.

use drydock_state_core::Error;
use sqlx::error::ErrorKind;

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_IOERR: i64 = 10;

/// How a sqlx error is reported by the operation `op` (a store method name).
pub(crate) fn classify(op: &'static str, e: sqlx::Error) -> Error {
    let message = format!("sqlite {op}: {e}");
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => Error::unavailable(message, e),
        sqlx::Error::Database(db) => match (db.kind(), primary_code(db.as_ref())) {
            (_, Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR)) => Error::unavailable(message, e),
            (ErrorKind::UniqueViolation, _) => Error::Conflict(message),
            (ErrorKind::ForeignKeyViolation, _) => Error::NotFound {
                entity: "referenced row",
                id: format!("(in {op})"),
            },
            _ => Error::backend(message, e),
        },
        _ => Error::backend(message, e),
    }
}

/// The primary SQLite result code of a database error (the low byte of its extended code).
fn primary_code(db: &dyn sqlx::error::DatabaseError) -> Option<i64> {
    db.code()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff)
}

/// Whether `e` is SQLite refusing a lock (`SQLITE_BUSY`, `SQLITE_LOCKED`).
pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(primary_code(db.as_ref()), Some(SQLITE_BUSY | SQLITE_LOCKED)))
}

/// Whether `e` is a foreign-key failure, which an operation reports as its own `NotFound`.
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation)
}

/// Whether `e` is a unique violation, which an operation reports as its own `Conflict`.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

/// Extension to classify in place: `.map_err(classify("create_task"))` reads poorly with
/// closures, so results get `.or_store("create_task")`.
pub(crate) trait OrStore<T> {
    /// The result with its sqlx error classified for operation `op`.
    fn or_store(self, op: &'static str) -> drydock_state_core::Result<T>;
}

impl<T> OrStore<T> for Result<T, sqlx::Error> {
    fn or_store(self, op: &'static str) -> drydock_state_core::Result<T> {
        self.map_err(|e| classify(op, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeout_and_io_are_retryable() {
        assert!(classify("x", sqlx::Error::PoolTimedOut).is_retryable());
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        assert!(classify("x", sqlx::Error::Io(io)).is_retryable());
        assert!(!classify("x", sqlx::Error::RowNotFound).is_retryable());
    }
}
