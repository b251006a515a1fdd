//! SQL for the workspace's tests and benchmark, on the same terms as the backends: statements
//! are `&'static str` and nothing else (sqlx's own entry points are `disallowed-methods` in the
//! workspace's `clippy.toml`; see the backends' `sql` modules).
//!
//! [`database_ddl`] is the single documented exception, listed as such in `clippy.toml` and in
//! `tests/sql_hygiene.rs`: `CREATE DATABASE` and `DROP DATABASE` take no bind parameters, so
//! the name of a generated database is written into the statement, after checking that it is
//! a plain lower-case identifier.

use sqlx::postgres::{PgConnection, PgCopyIn};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, FromRow};

/// [`sqlx::query()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub fn query<'q, DB: Database>(
    sql: &'static str,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>> {
    sqlx::query(sql)
}

/// [`sqlx::query_as()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub fn query_as<'q, DB, O>(sql: &'static str) -> QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    O: for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_as(sql)
}

/// [`sqlx::query_scalar()`] for a static statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub fn query_scalar<'q, DB, O>(
    sql: &'static str,
) -> QueryScalar<'q, DB, O, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    (O,): for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query_scalar(sql)
}

/// [`sqlx::raw_sql()`] for a static script of several statements (a SQLite migration file
/// replayed by an upgrade test), run on `conn`.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the script is `&'static str`
pub async fn execute_script(
    conn: &mut sqlx::SqliteConnection,
    script: &'static str,
) -> sqlx::Result<()> {
    sqlx::raw_sql(script).execute(conn).await.map(|_| ())
}

/// [`sqlx::raw_sql()`] for a static PostgreSQL script of several statements (a foreign
/// schema a test recreates, such as [`crate::drydock::DRYDOCK_SCHEMA_SQL`]), run on `conn` in
/// the simple-query protocol, as one implicit transaction.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the script is `&'static str`
pub async fn execute_pg_script(conn: &mut PgConnection, script: &'static str) -> sqlx::Result<()> {
    sqlx::raw_sql(script).execute(conn).await.map(|_| ())
}

/// `PgConnection::copy_in_raw` for a static `COPY ... FROM STDIN` statement.
#[allow(clippy::disallowed_methods)] // the sanctioned wrapper: the statement is `&'static str`
pub async fn copy_in_raw<'c>(
    conn: &'c mut PgConnection,
    statement: &'static str,
) -> sqlx::Result<PgCopyIn<&'c mut PgConnection>> {
    conn.copy_in_raw(statement).await
}

/// What [`database_ddl`] does to a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseDdl {
    /// `CREATE DATABASE "<name>"`.
    Create,
    /// `DROP DATABASE IF EXISTS "<name>"`.
    DropIfExists,
    /// `DROP DATABASE IF EXISTS "<name>" WITH (FORCE)`, disconnecting its sessions first.
    DropIfExistsForce,
    /// `ALTER DATABASE "<name>" SET <setting>`: a session default for connections opened
    /// afterwards, the setting a literal of the test (`statement_timeout = '200ms'`).
    Set(&'static str),
}

/// Creates or drops the database `name` on `conn`'s server: the one statement of the workspace
/// whose text is built at run time (DDL takes no bind parameters). Panics unless `name` is a
/// plain identifier of lower-case ASCII letters, digits and underscores, not starting with a
/// digit, so nothing but a generated name can reach the statement.
pub async fn database_ddl(
    conn: &mut PgConnection,
    ddl: DatabaseDdl,
    name: &str,
) -> sqlx::Result<()> {
    check_name(name);
    let (verb, tail) = match ddl {
        DatabaseDdl::Create => ("CREATE DATABASE", String::new()),
        DatabaseDdl::DropIfExists => ("DROP DATABASE IF EXISTS", String::new()),
        DatabaseDdl::DropIfExistsForce => ("DROP DATABASE IF EXISTS", " WITH (FORCE)".into()),
        DatabaseDdl::Set(setting) => ("ALTER DATABASE", format!(" SET {setting}")),
    };
    // sql-hygiene: allow (the documented exception: DDL of a checked, generated database name)
    let text = format!("{verb} \"{name}\"{tail}");
    #[allow(clippy::disallowed_methods)] // the documented exception (clippy.toml): generated DDL
    sqlx::Executor::execute(conn, text.as_str()).await?;
    Ok(())
}

/// [`database_ddl`] on a MariaDB/MySQL server: `CREATE DATABASE` / `DROP DATABASE IF EXISTS`
/// of `name`, quoted with backticks, under the same rule (a generated, plain lower-case
/// identifier, or a panic). `DropIfExistsForce` is `DropIfExists` (MariaDB drops a database
/// whatever its sessions); `Set` is refused with a panic (no per-database session defaults).
pub async fn mysql_database_ddl(
    conn: &mut sqlx::MySqlConnection,
    ddl: DatabaseDdl,
    name: &str,
) -> sqlx::Result<()> {
    check_name(name);
    let verb = match ddl {
        DatabaseDdl::Create => "CREATE DATABASE",
        DatabaseDdl::DropIfExists | DatabaseDdl::DropIfExistsForce => "DROP DATABASE IF EXISTS",
        DatabaseDdl::Set(_) => panic!("MariaDB has no per-database session settings"),
    };
    // sql-hygiene: allow (the documented exception: DDL of a checked, generated database name)
    let text = format!("{verb} `{name}`");
    #[allow(clippy::disallowed_methods)] // the documented exception (clippy.toml): generated DDL
    sqlx::Executor::execute(conn, text.as_str()).await?;
    Ok(())
}

/// Panics unless `name` is a plain lower-case identifier (see [`database_ddl`]).
fn check_name(name: &str) {
    assert!(
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database_ddl takes generated names only, not {name:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_ddl_takes_only_plain_identifiers() {
        check_name("drydock_test_0123abcd");
        for bad in [
            "",
            "x\"; DROP TABLE t; --",
            "Upper",
            "1st",
            "a b",
            "a-b",
            "a\"b",
        ] {
            let refused = std::panic::catch_unwind(|| check_name(bad));
            assert!(refused.is_err(), "accepted {bad:?}");
        }
    }
}
