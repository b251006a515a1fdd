//! Reading an Airship Drydock database into core's [`DrydockSource`], for
//! [`drydock_state_core::adopt::plan`]: [`read_drydock`].
//!
//! Everything is read in one `REPEATABLE READ, READ ONLY` transaction (one consistent
//! snapshot; the source cannot be changed by it), after checking that the database holds
//! Drydock's tables in `public` at alembic head [`DRYDOCK_REVISION`], with every column read.
//!
//! Drydock wrote aware UTC times into `timestamp without time zone` columns, so the stored
//! naive values of task and message times are wall times in the `TimeZone` of the session
//! that wrote them: the server's default for Drydock's role and database. They are converted
//! in SQL (`AT TIME ZONE`) with that zone, found as PostgreSQL would have given it to
//! Drydock's sessions (see [`read_drydock`]), or the operator's `--time-zone`. Build data was
//! written as text in UTC and is read so.

use drydock_state_core::adopt::{
    DrydockBootAction, DrydockBootContext, DrydockBuildData, DrydockMessage, DrydockSource,
    DrydockTask, DRYDOCK_REVISION,
};
use drydock_state_core::{redact_uri, Config, Error, Result};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};

use crate::config::{connect_error, Target};
use crate::error::{decode_error, OrStore};
use crate::queries;

/// The field errors about the source name.
const FIELD: &str = "adopt.from";

/// Every column the reader selects, by table, with the type Drydock's schema gives it
/// (`udt_name`: a leading `_` is an array).
const REQUIRED: &[(&str, &[(&str, &str)])] = &[
    (
        "tasks",
        &[
            ("task_id", "bytea"),
            ("parent_task_id", "bytea"),
            ("subtask_id_list", "_bytea"),
            ("result_status", "varchar"),
            ("result_message", "varchar"),
            ("result_reason", "varchar"),
            ("result_error_count", "int4"),
            ("result_successes", "_varchar"),
            ("result_failures", "_varchar"),
            ("result_links", "json"),
            ("retry", "int4"),
            ("status", "varchar"),
            ("created", "timestamp"),
            ("created_by", "varchar"),
            ("updated", "timestamp"),
            ("design_ref", "varchar"),
            ("request_context", "json"),
            ("node_filter", "json"),
            ("action", "varchar"),
            ("terminated", "timestamp"),
            ("terminated_by", "varchar"),
            ("terminate", "bool"),
        ],
    ),
    (
        "result_message",
        &[
            ("sequence", "int4"),
            ("task_id", "bytea"),
            ("message", "varchar"),
            ("error", "bool"),
            ("context", "varchar"),
            ("context_type", "varchar"),
            ("ts", "timestamp"),
            ("extra", "json"),
        ],
    ),
    (
        "build_data",
        &[
            ("node_name", "varchar"),
            ("task_id", "bytea"),
            ("collected_date", "timestamp"),
            ("generator", "varchar"),
            ("data_format", "varchar"),
            ("data_element", "text"),
        ],
    ),
    (
        "boot_action",
        &[
            ("node_name", "varchar"),
            ("task_id", "bytea"),
            ("identity_key", "bytea"),
        ],
    ),
    (
        "boot_action_status",
        &[
            ("node_name", "varchar"),
            ("action_id", "bytea"),
            ("action_name", "varchar"),
            ("task_id", "bytea"),
            ("identity_key", "bytea"),
            ("action_status", "varchar"),
        ],
    ),
    ("active_instance", &[]),
    ("alembic_version", &[("version_num", "varchar")]),
];

/// Reads the Drydock database at `url` (a `postgres://` URL; its password never shows in an
/// error) into a [`DrydockSource`], in one read-only snapshot.
///
/// Refuses, with [`Error::InvalidInput`] on `adopt.from` naming every missing table, column
/// and the revision, a database that is not Drydock's schema at [`DRYDOCK_REVISION`].
///
/// Naive task and message times are read as wall times of `time_zone` when given (origin
/// `--time-zone`); otherwise of the zone Drydock's sessions got from the server: the
/// `TimeZone` set for this connection's role in this database, else for the role, else for
/// the database (`pg_db_role_setting`), else the server's configuration files
/// (`pg_file_settings`, readable by superusers and `pg_read_all_settings`), else the server's
/// built-in default. When the configuration files cannot be read and nothing else sets it,
/// the zone cannot be known and the read is refused, asking for `--time-zone`. (sqlx sets
/// `TimeZone=UTC` at connect, so this session's own setting says nothing.) Connect as
/// Drydock's own role, or pass `--time-zone`: settings for another role do not apply. The
/// zone is checked by PostgreSQL; one it does not know is refused, named.
pub async fn read_drydock(url: &str, time_zone: Option<&str>) -> Result<DrydockSource> {
    let target = Target::from_url(url, &Config::default()).map_err(|e| match e {
        Error::InvalidInput { reason, .. } => Error::invalid(FIELD, reason),
        other => other,
    })?;
    let mut conn = PgConnection::connect_with(&target.connect)
        .await
        .or_store("adopt: connect")
        .map_err(|e| connect_error(url, e))?;
    tracing::debug!(url = %redact_uri(url), "reading a Drydock database");
    let read = read_snapshot(&mut conn, time_zone).await;
    let _ = conn.close().await;
    read
}

async fn read_snapshot(conn: &mut PgConnection, time_zone: Option<&str>) -> Result<DrydockSource> {
    queries::query(queries::ADOPT_BEGIN)
        .execute(&mut *conn)
        .await
        .or_store("adopt: begin")?;
    let source = read_all(conn, time_zone).await;
    // Read only: ending it changes nothing either way.
    let end = queries::query(queries::ADOPT_END)
        .execute(&mut *conn)
        .await
        .or_store("adopt: end");
    let source = source?;
    end?;
    Ok(source)
}

async fn read_all(conn: &mut PgConnection, time_zone: Option<&str>) -> Result<DrydockSource> {
    let revision = check_schema(conn).await?;
    let (zone, origin) = match time_zone {
        Some(zone) => (zone.to_string(), "--time-zone".to_string()),
        None => server_time_zone(conn).await?,
    };
    check_time_zone(conn, &zone, &origin).await?;
    let tasks = queries::query(queries::ADOPT_TASKS)
        .bind(&zone)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read tasks")?
        .iter()
        .map(task)
        .collect::<Result<Vec<_>>>()?;
    let messages = queries::query(queries::ADOPT_MESSAGES)
        .bind(&zone)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read result_message")?
        .iter()
        .map(message)
        .collect::<Result<Vec<_>>>()?;
    let build_data = queries::query(queries::ADOPT_BUILD_DATA)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read build_data")?
        .iter()
        .map(build_data)
        .collect::<Result<Vec<_>>>()?;
    let boot_contexts = queries::query(queries::ADOPT_BOOT_CONTEXTS)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read boot_action")?
        .iter()
        .map(boot_context)
        .collect::<Result<Vec<_>>>()?;
    let boot_actions = queries::query(queries::ADOPT_BOOT_ACTIONS)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read boot_action_status")?
        .iter()
        .map(boot_action)
        .collect::<Result<Vec<_>>>()?;
    let active: i64 = queries::query_scalar(queries::ADOPT_ACTIVE_INSTANCES)
        .fetch_one(&mut *conn)
        .await
        .or_store("adopt: read active_instance")?;
    Ok(DrydockSource {
        tasks,
        messages,
        build_data,
        boot_contexts,
        boot_actions,
        active_instances: u64::try_from(active).unwrap_or(0),
        time_zone: zone,
        time_zone_origin: origin,
        revision,
    })
}

/// Checks every table and column the reader needs, and the revision; returns the revision.
async fn check_schema(conn: &mut PgConnection) -> Result<String> {
    let tables: Vec<String> = REQUIRED.iter().map(|(t, _)| t.to_string()).collect();
    let found: Vec<(String, String, String)> = queries::query_as(queries::ADOPT_COLUMNS)
        .bind(&tables)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read the schema")?;
    let mut missing = Vec::new();
    for (table, columns) in REQUIRED {
        if !found.iter().any(|(t, _, _)| t == table) {
            missing.push(format!("public.{table}"));
            continue;
        }
        for (column, udt) in *columns {
            match found.iter().find(|(t, c, _)| t == table && c == column) {
                None => missing.push(format!("public.{table}.{column}")),
                Some((_, _, found_udt)) if found_udt != udt => missing.push(format!(
                    "public.{table}.{column} of type {udt} (it is {found_udt})"
                )),
                Some(_) => {}
            }
        }
    }
    let mut revision = String::new();
    if found
        .iter()
        .any(|(t, c, _)| t == "alembic_version" && c == "version_num")
    {
        let revisions: Vec<String> = queries::query_scalar(queries::ADOPT_REVISION)
            .fetch_all(&mut *conn)
            .await
            .or_store("adopt: read alembic_version")?;
        match revisions.as_slice() {
            [one] if one == DRYDOCK_REVISION => revision = one.clone(),
            [] => missing.push("the alembic revision (alembic_version is empty)".into()),
            other => missing.push(format!(
                "alembic revision {DRYDOCK_REVISION} (it is {})",
                other.join(", ")
            )),
        }
    }
    if missing.is_empty() {
        return Ok(revision);
    }
    Err(Error::invalid(
        FIELD,
        format!(
            "not a Drydock database: missing {} (Drydock's tables in schema public at alembic \
             head {DRYDOCK_REVISION} are needed, readable by this role)",
            missing.join(", ")
        ),
    ))
}

/// The value of a `TimeZone=...` setting entry (any case, quotes stripped).
fn setting_value(entry: &str) -> Option<String> {
    let (name, value) = entry.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("timezone") {
        return None;
    }
    let value = value.trim().trim_matches('\'').trim_matches('"');
    (!value.is_empty()).then(|| value.to_string())
}

/// The zone Drydock's sessions got from the server, and where it came from.
async fn server_time_zone(conn: &mut PgConnection) -> Result<(String, String)> {
    let settings: Vec<(bool, bool, String)> = queries::query_as(queries::ADOPT_ROLE_DB_TIME_ZONE)
        .fetch_all(&mut *conn)
        .await
        .or_store("adopt: read pg_db_role_setting")?;
    // PostgreSQL's precedence: role in database, then role, then database.
    for (want_role, want_db, origin) in [
        (
            true,
            true,
            "the server's setting for this role in this database",
        ),
        (true, false, "the server's setting for this role"),
        (false, true, "the server's setting for this database"),
    ] {
        let hit = settings
            .iter()
            .filter(|(r, d, _)| *r == want_role && *d == want_db)
            .find_map(|(_, _, entry)| setting_value(entry));
        if let Some(zone) = hit {
            return Ok((zone, format!("{origin} (pg_db_role_setting)")));
        }
    }
    let readable: bool = queries::query_scalar(queries::ADOPT_CAN_READ_FILE_SETTINGS)
        .fetch_one(&mut *conn)
        .await
        .or_store("adopt: check pg_file_settings")?;
    if !readable {
        return Err(Error::invalid(
            "adopt.time_zone",
            "the zone Drydock wrote its times in cannot be known: no TimeZone is set for this \
             role or database, and this role may not read the server's configuration \
             (pg_file_settings needs pg_read_all_settings); pass --time-zone (the server's \
             `SHOW timezone` in a plain psql session)",
        ));
    }
    let file: Option<(String, String, i32)> = queries::query_as(queries::ADOPT_FILE_TIME_ZONE)
        .fetch_optional(&mut *conn)
        .await
        .or_store("adopt: read pg_file_settings")?;
    if let Some((zone, file, line)) = file {
        let zone = zone.trim_matches('\'').to_string();
        return Ok((
            zone,
            format!("the server's configuration ({file} line {line})"),
        ));
    }
    let boot: String = queries::query_scalar(queries::ADOPT_BOOT_TIME_ZONE)
        .fetch_one(&mut *conn)
        .await
        .or_store("adopt: read pg_settings")?;
    Ok((
        boot,
        "the server's built-in default (no configuration file sets timezone; a PGTZ or \
         command-line setting of the server cannot be seen: pass --time-zone if it has one)"
            .into(),
    ))
}

/// Lets PostgreSQL check the zone; one it does not know is refused, named.
async fn check_time_zone(conn: &mut PgConnection, zone: &str, origin: &str) -> Result<()> {
    let known = queries::query(queries::ADOPT_CHECK_TIME_ZONE)
        .bind(zone)
        .execute(&mut *conn)
        .await;
    match known {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("22023") => {
            Err(Error::invalid(
                "adopt.time_zone",
                format!("{zone:?} (from {origin}) is not a time zone PostgreSQL knows"),
            ))
        }
        Err(e) => Err(crate::error::classify("adopt: check the time zone", e)),
    }
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|e| decode_error(column, &e))
}

fn task(row: &PgRow) -> Result<DrydockTask> {
    Ok(DrydockTask {
        task_id: get(row, "task_id")?,
        parent_task_id: get(row, "parent_task_id")?,
        subtask_id_list: get(row, "subtask_id_list")?,
        result_status: get(row, "result_status")?,
        result_message: get(row, "result_message")?,
        result_reason: get(row, "result_reason")?,
        result_error_count: get(row, "result_error_count")?,
        result_successes: get(row, "result_successes")?,
        result_failures: get(row, "result_failures")?,
        result_links: get(row, "result_links")?,
        retry: get(row, "retry")?,
        status: get(row, "status")?,
        created: get(row, "created")?,
        created_by: get(row, "created_by")?,
        updated: get(row, "updated")?,
        design_ref: get(row, "design_ref")?,
        request_context: get(row, "request_context")?,
        node_filter: get(row, "node_filter")?,
        action: get(row, "action")?,
        terminated: get(row, "terminated")?,
        terminated_by: get(row, "terminated_by")?,
        terminate: get(row, "terminate")?,
    })
}

fn message(row: &PgRow) -> Result<DrydockMessage> {
    Ok(DrydockMessage {
        sequence: get(row, "sequence")?,
        task_id: get(row, "task_id")?,
        message: get(row, "message")?,
        error: get(row, "error")?,
        context: get(row, "context")?,
        context_type: get(row, "context_type")?,
        ts: get(row, "ts")?,
        extra: get(row, "extra")?,
    })
}

fn build_data(row: &PgRow) -> Result<DrydockBuildData> {
    Ok(DrydockBuildData {
        node_name: get(row, "node_name")?,
        task_id: get(row, "task_id")?,
        collected_date: get(row, "collected_date")?,
        generator: get(row, "generator")?,
        data_format: get(row, "data_format")?,
        data_element: get(row, "data_element")?,
    })
}

fn boot_context(row: &PgRow) -> Result<DrydockBootContext> {
    Ok(DrydockBootContext {
        node_name: get(row, "node_name")?,
        task_id: get(row, "task_id")?,
        identity_key: get(row, "identity_key")?,
    })
}

fn boot_action(row: &PgRow) -> Result<DrydockBootAction> {
    Ok(DrydockBootAction {
        node_name: get(row, "node_name")?,
        action_id: get(row, "action_id")?,
        action_name: get(row, "action_name")?,
        task_id: get(row, "task_id")?,
        identity_key: get(row, "identity_key")?,
        action_status: get(row, "action_status")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_entries_are_read_in_any_case() {
        assert_eq!(
            setting_value("TimeZone=America/New_York").as_deref(),
            Some("America/New_York")
        );
        assert_eq!(setting_value("timezone='UTC'").as_deref(), Some("UTC"));
        assert_eq!(
            setting_value("TIMEZONE=Europe/Berlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(setting_value("search_path=public"), None);
        assert_eq!(setting_value("timezone="), None);
    }
}
