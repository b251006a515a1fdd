//! The only door from this backend to sqlx for SQL text: every statement goes through these
//! helpers, which take `&'static str` and nothing else, so a statement assembled at run time
//! cannot be handed to the database. sqlx's own entry points are `disallowed-methods` in the
//! workspace's `clippy.toml`; each helper below is the one allowed call of its sqlx function.

use sqlx::mysql::{MySql, MySqlArguments};
use sqlx::query::{Query, QueryScalar};
use sqlx::FromRow;

/// [`sqlx::query()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub(crate) fn query<'q>(sql: &'static str) -> Query<'q, MySql, MySqlArguments> {
    sqlx::query(sql)
}

/// [`sqlx::query_scalar()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub(crate) fn query_scalar<'q, O>(sql: &'static str) -> QueryScalar<'q, MySql, O, MySqlArguments>
where
    (O,): for<'r> FromRow<'r, sqlx::mysql::MySqlRow>,
{
    sqlx::query_scalar(sql)
}
