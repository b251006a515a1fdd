//! The only door from this backend to sqlx for SQL text: every statement goes through these
//! helpers, which take `&'static str` and nothing else, so a statement assembled at run time
//! (`format!`, `+`, `push_str`, `write!`, `.concat()`, `String::as_str`, `QueryBuilder`) cannot
//! be handed to the database. sqlx's own entry points (`sqlx::query`, `query_as`,
//! `query_scalar`, the `*_with` variants, `raw_sql`, the `Executor` methods, `QueryBuilder`,
//! `begin_with`, ...) are `disallowed-methods` in the workspace's `clippy.toml`, and CI runs
//! clippy with `-D warnings`; each helper below is the one allowed call of its sqlx function.
//!
//! The signatures are sqlx's, but for the lifetime of the text: the bound values may borrow
//! for `'q`, the statement lives forever.

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, FromRow};

/// [`sqlx::query()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub(crate) fn query<'q, DB: Database>(
    sql: &'static str,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>> {
    sqlx::query(sql)
}

/// [`sqlx::query_as()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub(crate) fn query_as<'q, DB, O>(
    sql: &'static str,
) -> QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    O: for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_as(sql)
}

/// [`sqlx::query_scalar()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub(crate) fn query_scalar<'q, DB, O>(
    sql: &'static str,
) -> QueryScalar<'q, DB, O, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    (O,): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_scalar(sql)
}
