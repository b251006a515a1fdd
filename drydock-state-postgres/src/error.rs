//! How sqlx and PostgreSQL failures become [`drydock_state_core::Error`]s.
//!
//! Classified where they arise, by SQLSTATE and sqlx error kind, never by matching message
//! text: what trying again can fix is [`Error::Unavailable`], everything else is permanent.

use drydock_state_core::Error;

/// SQLSTATEs after which the same call may succeed: connection exceptions (class 08), the
/// server shutting down (57P01..57P03), serialization failure and deadlock (40001, 40P01)
/// and too many connections (53300).
fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
        )
}

/// Maps a failure of operation `op`. `field` names the input a refusal of text (22021, 22P05)
/// is blamed on. A foreign-key violation (23503) is reported as a missing task; callers that
/// know which one override it with [`missing`].
pub(crate) fn db_error(op: &'static str, field: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| classify(op, field, e)
}

fn classify(op: &'static str, field: &'static str, e: sqlx::Error) -> Error {
    let message = format!("{op}: {e}");
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Error::unavailable(message, e),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                c if is_transient(c) => Error::unavailable(message, e),
                "23505" => Error::Conflict(format!("{op}: {}", db.message())),
                "23503" => Error::not_found("task", "(a referenced task)"),
                "22021" | "22P05" => Error::invalid(
                    field,
                    "contains text PostgreSQL cannot store (a NUL byte or an untranslatable character)",
                ),
                _ => Error::backend(message, e),
            }
        }
        _ => Error::backend(message, e),
    }
}

/// Replaces the generic "referenced task not found" of a foreign-key violation with the
/// entity and id the caller knows; any other error is returned as is.
pub(crate) fn missing(entity: &'static str, id: impl std::fmt::Display) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::NotFound { .. } => Error::not_found(entity, &id),
        other => other,
    }
}

/// Replaces the database's wording of a unique violation with the entity and id the caller
/// knows (the constraint name is ours, not the caller's business); any other error is
/// returned as is.
pub(crate) fn duplicate(
    entity: &'static str,
    id: impl std::fmt::Display,
) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::Conflict(_) => Error::Conflict(format!("{entity} {id} already exists")),
        other => other,
    }
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
    use super::*;

    #[test]
    fn transient_codes() {
        for code in [
            "08000", "08006", "08P01", "57P01", "57P02", "57P03", "40001", "40P01",
        ] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "23503", "22021", "42P01", "XX000"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn pool_timeout_is_retryable() {
        let e = classify("get_task", "task", sqlx::Error::PoolTimedOut);
        assert!(e.is_retryable(), "{e}");
        assert!(matches!(e, Error::Unavailable { .. }));
    }

    #[test]
    fn decode_failure_is_permanent() {
        let e = classify("get_task", "task", sqlx::Error::RowNotFound);
        assert!(matches!(e, Error::Backend { .. }), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn missing_names_the_entity() {
        let e = missing("parent task", "abc")(Error::not_found("task", "x"));
        assert_eq!(e.to_string(), "parent task not found: abc");
        let e = missing("parent task", "abc")(Error::Conflict("c".into()));
        assert!(matches!(e, Error::Conflict(_)));
    }
}
