//! How sqlx and PostgreSQL failures become [`drydock_state_core::Error`]s.
//!
//! Classified where they arise, by SQLSTATE and sqlx error kind, never by matching message
//! text, through one table, [`CLASSIFICATION`]: what trying again can fix is
//! [`Error::Unavailable`], everything else is permanent.
//!
//! No error keeps the `sqlx::Error` it came from: its `Debug` shows every field the server
//! sent, and PostgreSQL's DETAIL ("Failing row contains (...)") and HINT can hold a whole row,
//! a design reference and its password included. The source kept is a [`DatabaseFailure`]:
//! the SQLSTATE and the primary message only.

use drydock_state_core::error::DatabaseFailure;
use drydock_state_core::{Entity, Error};

/// What a failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Trying again may succeed: [`Error::Unavailable`].
    Transient,
    /// A unique violation: [`Error::Conflict`].
    Conflict,
    /// A foreign-key violation: [`Error::NotFound`] (a referenced task).
    MissingRow,
    /// Text PostgreSQL cannot store: [`Error::InvalidInput`] on the caller's field.
    UnstorableText,
    /// A table of ours is missing from the configured schema: [`Error::Backend`] telling the
    /// operator to run `drydock-state migrate`.
    Unmigrated,
    /// Retrying will not help: [`Error::Backend`].
    Permanent,
}

/// What a row of [`CLASSIFICATION`] matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum On {
    /// One SQLSTATE.
    State(&'static str),
    /// A SQLSTATE class: the first two characters.
    StateClass(&'static str),
    /// A sqlx error that did not come from the server.
    Sqlx(SqlxKind),
    /// Any SQLSTATE no other row matches.
    OtherState,
}

/// The sqlx errors that are not a server's answer, as [`CLASSIFICATION`] names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqlxKind {
    PoolTimedOut,
    PoolClosed,
    Io,
    Tls,
    Protocol,
    Configuration,
    WorkerCrashed,
    /// Decoding, a missing row or column, and every kind sqlx may add.
    Other,
}

/// The one classification table: what each failure is, and why. An exact SQLSTATE wins over
/// its class, a class over [`On::OtherState`].
pub(crate) const CLASSIFICATION: &[(On, Class, &str)] = &[
    // Server answers (SQLSTATE).
    (On::StateClass("08"), Class::Transient,
     "connection exception: the connection failed or was lost; a new one may work"),
    (On::State("40001"), Class::Transient,
     "serialization failure: the transaction lost a race; running it again can succeed"),
    (On::State("40P01"), Class::Transient,
     "deadlock detected: the server aborted this side; running it again can succeed"),
    (On::State("53300"), Class::Transient,
     "too many connections: another client's may close"),
    (On::State("57P01"), Class::Transient,
     "admin shutdown: the server is stopping (a restart or failover); the next one answers"),
    (On::State("57P02"), Class::Transient,
     "crash shutdown: another backend crashed and the server is restarting"),
    (On::State("57P03"), Class::Transient,
     "cannot connect now: the server is starting up or recovering"),
    (On::State("57014"), Class::Transient,
     "query canceled: statement_timeout (or a cancel request) stopped a statement that a       less loaded server finishes in time; nothing was changed"),
    (On::State("55P03"), Class::Transient,
     "lock not available: lock_timeout expired waiting for a lock another session holds;       it is released when that session's transaction ends"),
    (On::State("25006"), Class::Transient,
     "read-only transaction: the server is (now) a standby, as after a failover demotes the       old primary; a new connection through the same address reaches the new primary"),
    (On::State("23505"), Class::Conflict,
     "unique violation: the row already exists"),
    (On::State("23503"), Class::MissingRow,
     "foreign-key violation: the referenced task does not exist"),
    (On::State("22021"), Class::UnstorableText,
     "character not in repertoire: text the database encoding cannot hold"),
    (On::State("22P05"), Class::UnstorableText,
     "untranslatable character (a NUL byte in text)"),
    (On::State("42P01"), Class::Unmigrated,
     "undefined table: our tables are not in the configured schema (never migrated, or       migrated under the old schema name `drydock`); migrating creates or upgrades them"),
    (On::OtherState, Class::Permanent,
     "any other SQLSTATE: a refused statement, a missing object, an internal error; the same       call fails the same way"),
    // sqlx's own failures.
    (On::Sqlx(SqlxKind::PoolTimedOut), Class::Transient,
     "no connection within pool_timeout: the pool is busy or the server unreachable"),
    (On::Sqlx(SqlxKind::Io), Class::Transient,
     "an I/O error on the connection: a network failure; a new connection may work"),
    (On::Sqlx(SqlxKind::WorkerCrashed), Class::Transient,
     "a connection's background worker died; the pool replaces the connection"),
    (On::Sqlx(SqlxKind::PoolClosed), Class::Permanent,
     "the pool was closed (the store is shutting down); no retry reopens it"),
    (On::Sqlx(SqlxKind::Tls), Class::Permanent,
     "TLS failed: a bad certificate or CA file, a name or certificate that does not verify,       or a server without TLS; configuration, not a passing fault (network failures during       the handshake are I/O errors)"),
    (On::Sqlx(SqlxKind::Protocol), Class::Permanent,
     "the server broke the wire protocol: not something a retry fixes"),
    (On::Sqlx(SqlxKind::Configuration), Class::Permanent,
     "the connect options are wrong"),
    (On::Sqlx(SqlxKind::Other), Class::Permanent,
     "decoding a row, a missing row or column, or a kind of error sqlx added later"),
];

/// The row of [`CLASSIFICATION`] for a SQLSTATE: its own row, else its class's, else
/// [`On::OtherState`].
pub(crate) fn row_for_state(code: &str) -> &'static (On, Class, &'static str) {
    let exact = |row: &&(On, Class, &str)| matches!(row.0, On::State(c) if c == code);
    let class = |row: &&(On, Class, &str)| matches!(row.0, On::StateClass(c) if code.len() == 5 && code.starts_with(c));
    let other = |row: &&(On, Class, &str)| row.0 == On::OtherState;
    CLASSIFICATION
        .iter()
        .find(exact)
        .or_else(|| CLASSIFICATION.iter().find(class))
        .or_else(|| CLASSIFICATION.iter().find(other))
        .expect("CLASSIFICATION has an OtherState row")
}

/// The row of [`CLASSIFICATION`] for a sqlx error that is not a server's answer.
pub(crate) fn row_for_sqlx(kind: SqlxKind) -> &'static (On, Class, &'static str) {
    CLASSIFICATION
        .iter()
        .find(|row| row.0 == On::Sqlx(kind))
        .expect("CLASSIFICATION has a row for every SqlxKind")
}

/// Which [`SqlxKind`] a sqlx error is (`None` for a server's answer).
fn sqlx_kind(e: &sqlx::Error) -> Option<SqlxKind> {
    Some(match e {
        sqlx::Error::Database(_) => return None,
        sqlx::Error::PoolTimedOut => SqlxKind::PoolTimedOut,
        sqlx::Error::PoolClosed => SqlxKind::PoolClosed,
        sqlx::Error::Io(_) => SqlxKind::Io,
        sqlx::Error::Tls(_) => SqlxKind::Tls,
        sqlx::Error::Protocol(_) => SqlxKind::Protocol,
        sqlx::Error::Configuration(_) => SqlxKind::Configuration,
        sqlx::Error::WorkerCrashed => SqlxKind::WorkerCrashed,
        _ => SqlxKind::Other,
    })
}

/// What is kept of a sqlx error: a server's SQLSTATE and primary message (never its DETAIL,
/// HINT or anything else), or sqlx's own one-line rendering of a failure of its own.
pub(crate) fn failure(e: &sqlx::Error) -> DatabaseFailure {
    match e {
        sqlx::Error::Database(db) => {
            DatabaseFailure::new("SQLSTATE", db.code().map(|c| c.into_owned()), db.message())
        }
        other => DatabaseFailure::new("SQLSTATE", None, other.to_string()),
    }
}

/// How a sqlx error is reported by the operation `op` (a store method name). A foreign-key
/// violation (23503) is reported as a missing task and a unique violation as a conflict;
/// callers that know which row name it with [`Named`].
pub(crate) fn classify(op: &'static str, e: sqlx::Error) -> Error {
    let class = match (&e, sqlx_kind(&e)) {
        (_, Some(kind)) => row_for_sqlx(kind).1,
        (sqlx::Error::Database(db), None) => row_for_state(db.code().as_deref().unwrap_or("")).1,
        (_, None) => Class::Permanent,
    };
    let failure = failure(&e);
    drop(e);
    let message = format!("{op}: {failure}");
    match class {
        Class::Transient => Error::unavailable(message, failure),
        Class::Conflict => Error::conflict(Entity::Row, format!("(in {op})"), failure.message()),
        Class::MissingRow => Error::not_found(Entity::Task, "(a referenced task)"),
        Class::UnstorableText => Error::invalid(
            "text",
            format!(
                "{op}: contains text PostgreSQL cannot store (a NUL byte or an untranslatable \
                 character)"
            ),
        ),
        Class::Unmigrated => Error::backend(
            format!(
                "{message} (the schema of database.schema is missing or not migrated: run \
                 `drydock-state migrate`, which also upgrades a database migrated under the old \
                 schema name `drydock`)"
            ),
            failure,
        ),
        Class::Permanent => Error::backend(message, failure),
    }
}

/// Classifies in place: a sqlx result gets `.or_store("create_task")`, its error
/// [`classify`]d for that operation.
pub(crate) trait OrStore<T> {
    /// The result with its sqlx error classified for operation `op`.
    fn or_store(self, op: &'static str) -> Result<T, Error>;
}

impl<T> OrStore<T> for Result<T, sqlx::Error> {
    fn or_store(self, op: &'static str) -> Result<T, Error> {
        self.map_err(|e| classify(op, e))
    }
}

/// Names what a classified failure is about, where the caller knows it better than the
/// database: a foreign-key violation becomes the missing entity the caller names, a unique
/// violation the entity that already exists (the constraint's name is ours, not the caller's
/// business). Any other error is returned as is.
pub(crate) trait Named<T> {
    /// A [`Error::NotFound`] (a foreign-key violation) as `entity` `id` not found.
    fn missing_as(self, entity: Entity, id: impl std::fmt::Display) -> Result<T, Error>;
    /// A [`Error::Conflict`] (a unique violation) as the error `exists` makes (one of core's
    /// constructors, such as [`drydock_state_core::backend::task_exists`]).
    fn duplicate_as(self, exists: impl FnOnce() -> Error) -> Result<T, Error>;
}

impl<T> Named<T> for Result<T, Error> {
    fn missing_as(self, entity: Entity, id: impl std::fmt::Display) -> Result<T, Error> {
        self.map_err(|e| match e {
            Error::NotFound { .. } => Error::not_found(entity, id),
            other => other,
        })
    }

    fn duplicate_as(self, exists: impl FnOnce() -> Error) -> Result<T, Error> {
        self.map_err(|e| match e {
            Error::Conflict { .. } => exists(),
            other => other,
        })
    }
}

/// A migration failure: one from the server is classified like any other; sqlx's own
/// (a changed or missing migration) is permanent. Neither keeps the sqlx error.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
            classify("migrate", inner)
        }
        other => Error::Backend {
            message: format!("migrate: {other}"),
            source: None,
        },
    }
}

/// A column that cannot be decoded: corrupt data or a schema this crate does not know. The
/// sqlx error is not kept (see the module's documentation).
pub(crate) fn decode_error(column: &str, e: &sqlx::Error) -> Error {
    Error::backend(format!("reading column {column}"), failure(e))
}

/// A stored value this crate cannot read back: corrupt data or a schema it does not know.
pub(crate) fn corrupt(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Backend {
        message: format!("stored {what} cannot be read: {reason}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A server answer with a SQLSTATE, a primary message and a DETAIL holding a secret, as
    /// PostgreSQL's "Failing row contains (...)" can.
    #[derive(Debug)]
    struct ServerAnswer {
        code: String,
        detail: &'static str,
    }

    const SECRET_DETAIL: &str = "Failing row contains (https://u:Pw-Unit-9@h/site.yaml)";

    impl std::fmt::Display for ServerAnswer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused ({})", self.detail)
        }
    }

    impl std::error::Error for ServerAnswer {}

    impl sqlx::error::DatabaseError for ServerAnswer {
        fn message(&self) -> &str {
            "refused"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.code.as_str().into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn answer(code: &str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerAnswer {
            code: code.into(),
            detail: SECRET_DETAIL,
        }))
    }

    /// An example sqlx error of each kind that is not a server's answer.
    fn example(kind: SqlxKind) -> sqlx::Error {
        match kind {
            SqlxKind::PoolTimedOut => sqlx::Error::PoolTimedOut,
            SqlxKind::PoolClosed => sqlx::Error::PoolClosed,
            SqlxKind::Io => sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
            SqlxKind::Tls => sqlx::Error::Tls("invalid peer certificate: UnknownIssuer".into()),
            SqlxKind::Protocol => sqlx::Error::Protocol("unexpected message".into()),
            SqlxKind::Configuration => sqlx::Error::Configuration("bad sslmode".into()),
            SqlxKind::WorkerCrashed => sqlx::Error::WorkerCrashed,
            SqlxKind::Other => sqlx::Error::RowNotFound,
        }
    }

    const ALL_KINDS: [SqlxKind; 8] = [
        SqlxKind::PoolTimedOut,
        SqlxKind::PoolClosed,
        SqlxKind::Io,
        SqlxKind::Tls,
        SqlxKind::Protocol,
        SqlxKind::Configuration,
        SqlxKind::WorkerCrashed,
        SqlxKind::Other,
    ];

    /// Display, Debug and every source, as one string.
    fn whole_chain(e: &Error) -> String {
        let mut out = format!("{e} | {e:?}");
        let mut source = e.source();
        while let Some(s) = source {
            out.push_str(&format!(" | {s} | {s:?}"));
            source = s.source();
        }
        out
    }

    /// That `e` is what `class` promises.
    fn assert_class(e: &Error, class: Class, what: &str) {
        let ok = match class {
            Class::Transient => matches!(e, Error::Unavailable { .. }) && e.is_retryable(),
            Class::Conflict => matches!(e, Error::Conflict { .. }) && !e.is_retryable(),
            Class::MissingRow => matches!(e, Error::NotFound { .. }) && !e.is_retryable(),
            Class::UnstorableText => {
                matches!(e, Error::InvalidInput { field, .. } if field == "text")
                    && !e.is_retryable()
            }
            Class::Unmigrated => {
                matches!(e, Error::Backend { .. })
                    && !e.is_retryable()
                    && e.to_string().contains("drydock-state migrate")
            }
            Class::Permanent => matches!(e, Error::Backend { .. }) && !e.is_retryable(),
        };
        assert!(ok, "{what}: expected {class:?}, got {e:?}");
    }

    /// Row by row: a real sqlx error the row matches is found by the lookup at that very row
    /// and becomes the error its class promises; no source in the chain is sqlx's.
    #[test]
    fn every_row_classifies_an_error_it_matches() {
        for row @ (on, class, why) in CLASSIFICATION {
            assert!(!why.is_empty(), "{on:?} says why");
            let (found, e) = match *on {
                On::State(code) => (row_for_state(code), answer(code)),
                On::StateClass(prefix) => {
                    let code = format!("{prefix}999");
                    (row_for_state(&code), answer(&code))
                }
                On::OtherState => (row_for_state("42P02"), answer("42P02")),
                On::Sqlx(kind) => (row_for_sqlx(kind), example(kind)),
            };
            assert_eq!(found, row, "{on:?}");
            let e = classify("op", e);
            assert_class(&e, *class, &format!("{on:?}"));
            let mut source = e.source();
            while let Some(s) = source {
                assert!(s.downcast_ref::<sqlx::Error>().is_none(), "{on:?}: {s:?}");
                source = s.source();
            }
        }
    }

    /// The table has one row per thing it matches, and one for every sqlx kind.
    #[test]
    fn rows_are_unique_and_every_kind_has_one() {
        for (i, row) in CLASSIFICATION.iter().enumerate() {
            assert!(
                CLASSIFICATION[i + 1..].iter().all(|other| other.0 != row.0),
                "{:?} twice",
                row.0
            );
            match row.0 {
                On::State(code) => assert_eq!(code.len(), 5, "{code}"),
                On::StateClass(class) => assert_eq!(class.len(), 2, "{class}"),
                _ => {}
            }
        }
        for kind in ALL_KINDS {
            assert!(
                CLASSIFICATION.iter().any(|row| row.0 == On::Sqlx(kind)),
                "{kind:?}"
            );
        }
    }

    /// The codes issue 10 names, and the neighbours they must not drag along.
    #[test]
    fn timeouts_and_read_only_are_transient_tls_and_closed_pool_are_not() {
        for code in [
            "57014", "55P03", "25006", "08000", "08006", "08P01", "57P01", "57P02", "57P03",
            "40001", "40P01", "53300",
        ] {
            assert_eq!(row_for_state(code).1, Class::Transient, "{code}");
            assert!(classify("op", answer(code)).is_retryable(), "{code}");
        }
        for code in [
            "23505", "23503", "22021", "42P01", "XX000", "25P02", "55000", "57000", "", "08",
        ] {
            assert_ne!(row_for_state(code).1, Class::Transient, "{code}");
            assert!(!classify("op", answer(code)).is_retryable(), "{code}");
        }
        for kind in [SqlxKind::PoolClosed, SqlxKind::Tls] {
            let e = classify("op", example(kind));
            assert!(
                matches!(e, Error::Backend { .. }) && !e.is_retryable(),
                "{e:?}"
            );
        }
        assert!(classify("op", sqlx::Error::PoolTimedOut).is_retryable());
    }

    /// What is kept of a server's answer is its SQLSTATE and primary message: never the
    /// DETAIL, in Display, Debug or any source.
    #[test]
    fn the_detail_is_never_kept() {
        for code in ["23514", "57014", "23505", "P0001"] {
            let e = classify("create_task", answer(code));
            let chain = whole_chain(&e);
            assert!(!chain.contains("Pw-Unit-9"), "{code}: {chain}");
            if !matches!(e, Error::Conflict { .. } | Error::NotFound { .. }) {
                assert!(chain.contains(code) && chain.contains("refused"), "{chain}");
            }
        }
        let failure = failure(&answer("23514"));
        assert_eq!(failure.code(), Some("23514"));
        assert_eq!(failure.message(), "refused");
    }

    #[test]
    fn named_errors_name_the_entity() {
        let missing = || Err::<(), _>(classify("op", answer("23503")));
        let e = missing().missing_as(Entity::ParentTask, "abc").unwrap_err();
        assert_eq!(e.to_string(), "parent task not found: abc");
        let e = Err::<(), _>(classify("op", answer("23505")));
        assert!(matches!(
            e.missing_as(Entity::ParentTask, "abc"),
            Err(Error::Conflict { .. })
        ));
        let e = Err::<(), _>(classify("op", answer("23505")));
        assert_eq!(
            e.duplicate_as(|| drydock_state_core::backend::task_exists("abc"))
                .unwrap_err()
                .to_string(),
            "task abc already exists"
        );
        let e = Err::<(), _>(classify("op", answer("23503")));
        assert!(matches!(
            e.duplicate_as(|| drydock_state_core::backend::task_exists("abc")),
            Err(Error::NotFound { .. })
        ));
    }
}
