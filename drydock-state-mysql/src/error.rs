//! How sqlx and MariaDB/MySQL failures become [`drydock_state_core::Error`]s.
//!
//! Classified where they arise, by the server's error number and sqlx's error kind, never by
//! message text, through one table, [`CLASSIFICATION`]: what trying again can fix is
//! [`Error::Unavailable`], everything else is permanent.
//!
//! No error keeps the `sqlx::Error` it came from: the source kept is a [`DatabaseFailure`],
//! the server's error number and its primary message only, so nothing the server echoes of a
//! row (a design reference with a password, say) travels further.

use drydock_state_core::error::DatabaseFailure;
use drydock_state_core::Entity;
use drydock_state_core::Error;
use sqlx::mysql::MySqlDatabaseError;

/// What a failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Trying again may succeed: [`Error::Unavailable`].
    Transient,
    /// A duplicate key: [`Error::Conflict`].
    Conflict,
    /// A value the column cannot hold: [`Error::InvalidInput`] on the caller's field.
    Unstorable,
    /// Retrying will not help: [`Error::Backend`].
    Permanent,
}

/// The one classification table of server error numbers: what each is, and why. A number not
/// listed is [`Class::Permanent`].
pub(crate) const CLASSIFICATION: &[(u16, Class, &str)] = &[
    (1062, Class::Conflict, "duplicate entry: the key exists"),
    (1213, Class::Transient, "deadlock found: the server rolled this transaction back; running it again can succeed"),
    (1205, Class::Transient, "lock wait timeout: another session held a lock too long; it is released when that session's transaction ends"),
    (1040, Class::Transient, "too many connections: another client's may close"),
    (1053, Class::Transient, "server shutdown in progress: the next server answers"),
    (1927, Class::Transient, "connection killed: a new connection may work"),
    (4031, Class::Transient, "disconnected for inactivity: a new connection works"),
    (1290, Class::Transient, "the server runs with --read-only (a replica, or a primary being demoted); a new connection may reach the new primary"),
    (1153, Class::Unstorable, "a packet larger than max_allowed_packet: the value is too big for this server's setting"),
    (1406, Class::Unstorable, "data too long for the column"),
    (1366, Class::Unstorable, "a string the column's character set cannot hold"),
    (3988, Class::Unstorable, "a string the column's character set cannot hold"),
];

/// The class of a server error number.
pub(crate) fn class_of(number: u16) -> Class {
    CLASSIFICATION
        .iter()
        .find(|(n, _, _)| *n == number)
        .map_or(Class::Permanent, |(_, class, _)| *class)
}

/// The failure to keep as a source: error number and primary message only.
fn failure(e: &sqlx::Error) -> DatabaseFailure {
    match e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(|m| m.number().to_string());
            DatabaseFailure::new("MySQL error", number, db.message())
        }
        other => DatabaseFailure::new("sqlx", None, sqlx_kind(other)),
    }
}

/// A description of a sqlx error that did not come from the server, without its payload.
fn sqlx_kind(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection from the pool".into(),
        sqlx::Error::PoolClosed => "the connection pool is closed".into(),
        sqlx::Error::Io(io) => format!("i/o error: {}", io.kind()),
        sqlx::Error::Tls(_) => "TLS error".into(),
        sqlx::Error::Protocol(_) => "protocol error".into(),
        // Its text is about the options (the connect path scrubs the password from it).
        sqlx::Error::Configuration(e) => format!("configuration error: {e}"),
        sqlx::Error::WorkerCrashed => "connection worker crashed".into(),
        sqlx::Error::RowNotFound => "no row".into(),
        sqlx::Error::ColumnNotFound(c) => format!("no column {c}"),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::Decode(_) => "cannot decode a value".into(),
        _ => "database driver error".into(),
    }
}

/// Maps a failure of operation `op`, whose input is the field `field`, to an [`Error`].
pub(crate) fn db_error(op: &'static str, field: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| classify(op, field, &e)
}

/// [`db_error`] applied now.
pub(crate) fn classify(op: &str, field: &str, e: &sqlx::Error) -> Error {
    let source = failure(e);
    let class = match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map_or(Class::Permanent, |m| class_of(m.number())),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => Class::Transient,
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => Class::Transient,
        sqlx::Error::Configuration(_) => {
            return Error::invalid(field, format!("{op}: {source}"));
        }
        _ => Class::Permanent,
    };
    match class {
        Class::Transient => Error::Unavailable {
            message: format!("{op}: {source}"),
            source: Some(Box::new(source)),
        },
        Class::Conflict => Error::conflict(Entity::Row, format!("(in {op})"), source.message()),
        Class::Unstorable => Error::invalid(field, format!("{op}: {source}")),
        Class::Permanent => Error::Backend {
            message: format!("{op}: {source}"),
            source: Some(Box::new(source)),
        },
    }
}

/// Whether `e` is a race the server resolved by rolling this transaction back (deadlock, lock
/// wait timeout): the transaction may simply be run again.
pub(crate) fn lost_race(e: &Error) -> bool {
    let Error::Unavailable {
        source: Some(source),
        ..
    } = e
    else {
        return false;
    };
    source
        .downcast_ref::<DatabaseFailure>()
        .and_then(DatabaseFailure::code)
        .is_some_and(|code| code == "1213" || code == "1205")
}

/// A stored value that cannot be read back as the model says it should.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        message: format!("corrupt {what} in the database: {e}"),
        source: None,
    }
}

/// A column that does not decode.
pub(crate) fn decode_error(column: &str, e: &sqlx::Error) -> Error {
    Error::Backend {
        message: format!("cannot read column {column}: {}", failure(e)),
        source: Some(Box::new(failure(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_numbers_are_permanent_and_races_transient() {
        assert_eq!(class_of(1), Class::Permanent);
        assert_eq!(class_of(1213), Class::Transient);
        assert_eq!(class_of(1062), Class::Conflict);
    }

    #[test]
    fn pool_timeout_is_retryable() {
        let e = classify("ping", "database", &sqlx::Error::PoolTimedOut);
        assert!(e.is_retryable(), "{e}");
    }
}
