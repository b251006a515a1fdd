//! The MariaDB/MySQL store: its connection pool, opening it from a URL, the helpers every
//! operation shares, and the [`StateStore`] glue. The traits themselves are implemented in
//! `tasks.rs`, `messages.rs`, `build_data.rs`, `lease.rs`, `boot_actions.rs` and `import.rs`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_state_core::{
    Config, Error, NewMessage, Result, ResultMessage, StateStore, Task, TaskId,
};
use sqlx::{MySqlConnection, MySqlPool};

use crate::error::db_error;
use crate::{queries, rows};

/// How many times a transaction the server rolled back to break a deadlock (or a lock wait
/// timeout) is run again before the error is returned (it is retryable).
pub(crate) const RACE_ATTEMPTS: usize = 5;

/// Runs `$op` (an expression ending in `.await`) again while it fails with a lost race (see
/// [`crate::error::lost_race`]), at most [`RACE_ATTEMPTS`] times in all.
macro_rules! retry_races {
    ($op:expr) => {{
        let mut attempt = 1;
        loop {
            match $op {
                Err(e) if crate::error::lost_race(&e) && attempt < crate::store::RACE_ATTEMPTS => {
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_races;

/// All six drydock-state stores in a MariaDB or MySQL database, in tables named
/// `drydock_...` beside whatever else the database holds.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct MySqlStore {
    pub(crate) pool: MySqlPool,
    /// The lease's grace period in microseconds.
    pub(crate) grace_micros: i64,
    /// The server's `max_allowed_packet` when the store was opened: a statement carrying
    /// more than this is refused before it is sent.
    pub(crate) max_packet: u64,
}

impl fmt::Debug for MySqlStore {
    // The pool's connect options hold the password; print only what is safe.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlStore")
            .field("pool_size", &self.pool.size())
            .field("grace_micros", &self.grace_micros)
            .field("max_packet", &self.max_packet)
            .finish()
    }
}

impl MySqlStore {
    /// Connects to the database at `url` (`mysql://` or `mariadb://`, naming the database)
    /// with a pool shaped by `config.database` (see the crate documentation). The lease lasts
    /// `config.leader.grace_period`.
    ///
    /// Does not migrate; call [`MySqlStore::migrate`] (the registered backend does both). An
    /// unreachable server is a retryable [`Error::Unavailable`] once `pool_timeout` has
    /// passed; a URL that is not a MySQL URL is [`Error::InvalidInput`] naming `database.url`.
    /// No error carries the URL's password.
    pub async fn connect(url: &str, config: &Config) -> Result<MySqlStore> {
        let grace_micros = crate::config::grace_micros(config)?;
        let pool = crate::config::pool(url, config).await?;
        tracing::debug!(url = %drydock_state_core::redact_uri(url), "connected");
        MySqlStore::from_pool(pool, grace_micros).await
    }

    async fn from_pool(pool: MySqlPool, grace_micros: i64) -> Result<MySqlStore> {
        let max_packet: u64 = queries::query_scalar(queries::MAX_ALLOWED_PACKET)
            .fetch_one(&pool)
            .await
            .map_err(db_error("connect", "database"))?;
        Ok(MySqlStore {
            pool,
            grace_micros,
            max_packet,
        })
    }

    /// The connection pool, for an application that shares it.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Brings the `drydock_...` tables up to date and returns how many migrations were
    /// applied; see [`crate::migrate`].
    pub async fn migrate(&self) -> Result<usize> {
        crate::migrate::run(&self.pool).await
    }

    /// Refuses a statement whose values (`bytes` in all) the server would not accept in one
    /// packet, naming `field`: the value is too large for this server, and nothing is cut.
    pub(crate) fn check_size(&self, field: &str, bytes: usize) -> Result<()> {
        // Room for the statement's own text and the packet's framing.
        const OVERHEAD: u64 = 64 * 1024;
        if (bytes as u64).saturating_add(OVERHEAD) > self.max_packet {
            return Err(Error::invalid(
                field,
                format!(
                    "is {bytes} bytes, more than this server accepts in one statement \
                     (max_allowed_packet is {} bytes); raise max_allowed_packet to store it",
                    self.max_packet
                ),
            ));
        }
        Ok(())
    }
}

/// The database's clock, read on `conn` (in its transaction, if any).
pub(crate) async fn db_now(conn: &mut MySqlConnection, op: &'static str) -> Result<DateTime<Utc>> {
    queries::query_scalar(queries::NOW)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error(op, "database"))
}

/// A task read with `statement` (one of the locking reads of `id`), `None` if not stored.
pub(crate) async fn read_task(
    conn: &mut MySqlConnection,
    op: &'static str,
    statement: &'static str,
    id: TaskId,
) -> Result<Option<Task>> {
    let row = queries::query(statement)
        .bind(rows::id_text(id))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error(op, "task_id"))?;
    row.as_ref().map(rows::task).transpose()
}

/// Writes back a task read with a lock in this transaction.
pub(crate) async fn write_task(
    conn: &mut MySqlConnection,
    op: &'static str,
    task: &Task,
) -> Result<()> {
    rows::bind_write_task(queries::query(queries::WRITE_TASK), task)
        .execute(&mut *conn)
        .await
        .map_err(db_error(op, "task"))?;
    Ok(())
}

/// Attaches to `tasks` their messages, in one statement whatever their number.
pub(crate) async fn with_messages(
    conn: &mut MySqlConnection,
    op: &'static str,
    mut tasks: Vec<Task>,
) -> Result<Vec<Task>> {
    if tasks.is_empty() {
        return Ok(tasks);
    }
    let ids = rows::id_array(tasks.iter().map(|t| t.task_id));
    let messages = queries::query(queries::MESSAGES_OF_TASKS)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error(op, "task_id"))?;
    rows::attach_messages(&mut tasks, &messages)?;
    Ok(tasks)
}

/// Appends one message to `task` with timestamp `ts` and returns it as stored.
pub(crate) async fn append(
    conn: &mut MySqlConnection,
    op: &'static str,
    task: TaskId,
    message: &NewMessage,
    ts: DateTime<Utc>,
) -> Result<ResultMessage> {
    let done = queries::query(queries::INSERT_MESSAGE)
        .bind(rows::id_text(task))
        .bind(message.message.as_str())
        .bind(message.error)
        .bind(message.context_type.as_str())
        .bind(message.context.as_str())
        .bind(ts.naive_utc())
        .bind(message.extra.as_ref().map(rows::json_text))
        .execute(&mut *conn)
        .await
        .map_err(db_error(op, "message.message"))?;
    let sequence = i64::try_from(done.last_insert_id())
        .map_err(|e| crate::error::corrupt("result_message.sequence", e))?;
    Ok(ResultMessage {
        sequence,
        task_id: task,
        message: message.message.clone(),
        error: message.error,
        context_type: message.context_type.clone(),
        context: message.context.clone(),
        ts,
        extra: message.extra.clone(),
    })
}

/// The bytes a message puts in its insert.
pub(crate) fn message_bytes(message: &NewMessage) -> usize {
    message.message.len()
        + message.context_type.len()
        + message.context.len()
        + message
            .extra
            .as_ref()
            .map_or(0, |e| rows::json_text(e).len())
}

#[async_trait]
impl StateStore for MySqlStore {
    fn backend_name(&self) -> &'static str {
        "mysql"
    }

    /// `SELECT UTC_TIMESTAMP(6)`: the database's clock; an unreachable server is a retryable
    /// [`Error::Unavailable`], as for every call.
    async fn ping(&self) -> Result<DateTime<Utc>> {
        queries::query_scalar(queries::NOW)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("ping", "database"))
    }
}

/// Opens, migrates and hands out a store, as [`crate::REGISTRATION`] does.
pub(crate) async fn open(url: String, config: Config) -> Result<Arc<dyn StateStore>> {
    let store = MySqlStore::connect(&url, &config).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}
