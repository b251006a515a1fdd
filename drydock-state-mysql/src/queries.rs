//! Every SQL statement the MariaDB/MySQL backend runs, each named after the operation it
//! serves.
//!
//! All statements are static and take their values as `?` bind parameters. Every time comes
//! from the database's clock (`UTC_TIMESTAMP(6)`), read in the transaction of the write, never
//! the caller's. A list of ids or actions is bound as one JSON array and read with
//! `JSON_TABLE` (MariaDB 10.6+, MySQL 8.0.4+), so no statement depends on a list's length.
//!
//! Guarded writes lock the task row (`FOR UPDATE`, or `LOCK IN SHARE MODE` for an insert
//! under the task) and, when the guard has a term, the lease row (`LOCK IN SHARE MODE`) in
//! the transaction of the write; see `guard.rs`.

// The statements below run only through these `&'static str` helpers (see `crate::sql`).
pub(crate) use crate::sql::{query, query_scalar};

/// The columns of a task row `t`, in the order `rows::task` reads them by name.
macro_rules! task_columns {
    () => {
        "t.task_id, t.parent_task_id, t.subtask_id_list, t.action, t.design_ref, t.status,
    t.result_status, t.result_message, t.result_reason, t.result_successes, t.result_failures,
    t.result_links, t.node_filter, t.created, t.created_by, t.updated, t.retry, t.`terminated`,
    t.terminated_by, t.`terminate`, t.request_context, t.claimed_by, t.claim_term, t.claimed_at,
    t.attempt, t.claim_id"
    };
}

/// The ids of a JSON array bound as one parameter, as a derived table `j` with column `id`.
macro_rules! json_ids {
    () => {
        "JSON_TABLE(?, '$[*]' COLUMNS (id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin PATH '$')) AS j"
    };
}

// ---- sessions ---------------------------------------------------------------------------

/// Run on every new connection: UTC, strict SQL mode (a value too long is an error, never
/// truncated), no engine substitution.
pub(crate) const SESSION_SETUP: &str = "SET time_zone = '+00:00', \
    sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

/// READ COMMITTED for every transaction of the session: locking reads lock the rows they
/// return and no gaps, so claimers skipping each other's rows never deadlock on gap locks.
pub(crate) const SESSION_ISOLATION: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// The database's clock.
pub(crate) const NOW: &str = "SELECT UTC_TIMESTAMP(6)";

/// The largest packet the server accepts: a bound value must fit in it.
pub(crate) const MAX_ALLOWED_PACKET: &str = "SELECT @@max_allowed_packet";

// ---- migrations -------------------------------------------------------------------------

/// Serialises concurrent migrations of one database: a named lock of the server, held by the
/// migrating session until released or disconnected. `?` is the wait in seconds; 1 when taken.
pub(crate) const MIGRATION_LOCK: &str =
    "SELECT GET_LOCK(CONCAT('drydock_state_migrate:', DATABASE()), ?)";

/// Releases [`MIGRATION_LOCK`].
pub(crate) const MIGRATION_UNLOCK: &str =
    "SELECT RELEASE_LOCK(CONCAT('drydock_state_migrate:', DATABASE()))";

/// The migration history.
pub(crate) const MIGRATION_HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS drydock_migrations (
    version     BIGINT NOT NULL,
    description VARCHAR(255) NOT NULL,
    checksum    CHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    applied_at  DATETIME(6) NOT NULL,
    PRIMARY KEY (version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin";

/// The migrations applied, oldest first.
pub(crate) const MIGRATION_APPLIED: &str =
    "SELECT version, checksum FROM drydock_migrations ORDER BY version";

/// Records a migration as applied.
pub(crate) const MIGRATION_RECORD: &str = "INSERT INTO drydock_migrations
    (version, description, checksum, applied_at) VALUES (?, ?, ?, UTC_TIMESTAMP(6))";

// ---- tasks ------------------------------------------------------------------------------

/// Whether a task exists (1 or 0).
pub(crate) const TASK_EXISTS: &str = "SELECT COUNT(*) FROM drydock_tasks WHERE task_id = ?";

/// Whether a task exists, share-locking its row so it cannot go until the transaction ends.
pub(crate) const TASK_EXISTS_LOCKED: &str =
    "SELECT COUNT(*) FROM drydock_tasks WHERE task_id = ? LOCK IN SHARE MODE";

/// A new task, every column given.
pub(crate) const INSERT_TASK: &str = "INSERT INTO drydock_tasks (task_id, parent_task_id,
    subtask_id_list, action, design_ref, status, result_status, result_message, result_reason,
    result_successes, result_failures, result_links, node_filter, created, created_by, updated,
    retry, `terminated`, terminated_by, `terminate`, request_context, claimed_by, claim_term,
    claimed_at, attempt, claim_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// A task as stored.
pub(crate) const GET_TASK: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t WHERE t.task_id = ?"
);

/// A task, its row locked for a write in this transaction.
pub(crate) const TASK_FOR_UPDATE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t WHERE t.task_id = ? FOR UPDATE"
);

/// A task, its row share-locked: no claim, recovery or purge of it commits until this
/// transaction ends.
pub(crate) const TASK_FOR_SHARE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t WHERE t.task_id = ? LOCK IN SHARE MODE"
);

/// Writes back every column of a task a store operation may change (all but the id, action,
/// creation and request context), the row locked by [`TASK_FOR_UPDATE`] or a claim.
pub(crate) const WRITE_TASK: &str = "UPDATE drydock_tasks SET parent_task_id = ?,
    subtask_id_list = ?, design_ref = ?, status = ?, result_status = ?, result_message = ?,
    result_reason = ?, result_successes = ?, result_failures = ?, result_links = ?,
    node_filter = ?, updated = ?, retry = ?, `terminated` = ?, terminated_by = ?,
    `terminate` = ?, claimed_by = ?, claim_term = ?, claimed_at = ?, attempt = ?, claim_id = ?
    WHERE task_id = ?";

/// The conditions of a task filter on `drydock_tasks AS t`. Each condition is given twice:
/// NULL (no condition) or the value. The keyset `after` is given as its time (three times)
/// and id (`crate::tasks::bind_filter`).
macro_rules! task_filter {
    () => {
        "
    WHERE (? IS NULL OR t.status = ?)
      AND (? IS NULL OR t.action = ?)
      AND (? IS NULL OR t.parent_task_id = ?)
      AND (? IS NULL OR t.created >= ?)
      AND (? IS NULL OR t.created < ?)
      AND (? IS NULL OR t.created > ? OR (t.created = ? AND t.task_id > ?))
      AND (? IS NULL OR t.claimed_by = ?)
      AND (? IS NULL OR t.claim_term = ?)"
    };
}

/// Tasks matching a filter (`task_filter!`), by `(created, task_id)`, at most the last
/// parameter.
pub(crate) const LIST_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t",
    task_filter!(),
    "
    ORDER BY t.created, t.task_id
    LIMIT ?"
);

/// How many tasks match a filter (`task_filter!`), no row read.
pub(crate) const COUNT_TASKS: &str =
    concat!("SELECT COUNT(*) FROM drydock_tasks AS t", task_filter!());

/// The tasks whose ids are in the JSON array bound, in no particular order.
pub(crate) const TASKS_BY_IDS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t WHERE t.task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ")"
);

/// The tasks whose ids are in the JSON array bound, their rows locked.
pub(crate) const TASKS_BY_IDS_FOR_UPDATE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t WHERE t.task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ") ORDER BY t.task_id FOR UPDATE"
);

/// Every stored task reachable from the root `?` by following `subtask_id_list`, the root
/// included: one recursive statement, whatever the tree's size. `UNION` keeps each id once,
/// so a cycle ends. The reader orders them breadth first and applies the depth.
pub(crate) const TREE_TASKS: &str = concat!(
    "WITH RECURSIVE tree (id) AS (
    SELECT CAST(? AS CHAR(36) CHARACTER SET ascii) COLLATE ascii_bin
    UNION
    SELECT s.id FROM tree
    JOIN drydock_tasks AS p ON p.task_id = tree.id,
    JSON_TABLE(p.subtask_id_list, '$[*]' COLUMNS (id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin PATH '$')) AS s
)
SELECT ",
    task_columns!(),
    " FROM tree JOIN drydock_tasks AS t ON t.task_id = tree.id"
);

/// The ids of a task's subtree by parent link, the task included (each once).
pub(crate) const SUBTREE_IDS: &str = "WITH RECURSIVE tree (id) AS (
    SELECT CAST(? AS CHAR(36) CHARACTER SET ascii) COLLATE ascii_bin
    UNION
    SELECT c.task_id FROM drydock_tasks AS c JOIN tree ON c.parent_task_id = tree.id
)
SELECT id FROM tree";

/// A claim's first step: every queued task marked for termination whose action the claim
/// allows (`?` the JSON array of actions, twice; empty allows all) becomes `terminated`
/// (updated `?`), as Drydock's orchestrator skipped them.
pub(crate) const TERMINATE_MARKED_QUEUED: &str = "UPDATE drydock_tasks
    SET status = 'terminated', updated = ?
    WHERE status = 'queued' AND `terminate`
      AND (JSON_LENGTH(?) = 0 OR action IN (SELECT a.action FROM JSON_TABLE(?, '$[*]'
          COLUMNS (action VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin PATH '$')) AS a))";

/// `claim_next` and `claim_batch`: the `?` oldest queued tasks (the JSON array of actions
/// twice, then the count), not marked for termination, whose action the claim allows,
/// locked; rows other claimers hold are skipped, so no two claimers wait on, or take, the
/// same task.
pub(crate) const NEXT_QUEUED: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t
    WHERE t.status = 'queued' AND NOT t.`terminate`
      AND (JSON_LENGTH(?) = 0 OR t.action IN (SELECT a.action FROM JSON_TABLE(?, '$[*]'
          COLUMNS (action VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin PATH '$')) AS a))
    ORDER BY t.created, t.task_id
    LIMIT ?
    FOR UPDATE SKIP LOCKED"
);

/// A claim with a claim id: the tasks carrying one of its claim ids (`?`, a JSON array),
/// oldest first, locked.
pub(crate) const TASKS_BY_CLAIM_IDS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t WHERE t.claim_id IN (SELECT j.id FROM ",
    json_ids!(),
    ") ORDER BY t.created, t.task_id FOR UPDATE"
);

/// Live tasks claimed under a term lower than `?`, oldest first, locked.
pub(crate) const ORPHANS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks AS t
    WHERE t.status IN ('running', 'terminating') AND t.claim_term < ?
    ORDER BY t.created, t.task_id
    FOR UPDATE"
);

// ---- purge ------------------------------------------------------------------------------

/// The purge cutoff: the database's now less `?` microseconds.
pub(crate) const PURGE_CUTOFF: &str = "SELECT UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND";

/// Up to `?` roots (no parent, or a parent no longer stored) created before the cutoff `?`,
/// after the keyset `(created ?, ?, task_id ?)`, oldest first.
pub(crate) const PURGE_ROOTS: &str = "SELECT t.task_id, t.created FROM drydock_tasks AS t
    WHERE t.created < ?
      AND (t.parent_task_id IS NULL
           OR NOT EXISTS (SELECT 1 FROM drydock_tasks AS p WHERE p.task_id = t.parent_task_id))
      AND (t.created > ? OR (t.created = ? AND t.task_id > ?))
    ORDER BY t.created, t.task_id
    LIMIT ?";

/// Each task of the trees of the roots in the JSON array bound (by parent link), with its
/// root and status, the rows locked so none starts running before the purge decides.
pub(crate) const PURGE_TREES: &str = concat!(
    "WITH RECURSIVE tree (root, id) AS (
    SELECT j.id, j.id FROM ",
    json_ids!(),
    "
    UNION
    SELECT tree.root, c.task_id FROM drydock_tasks AS c JOIN tree ON c.parent_task_id = tree.id
)
SELECT tree.root, tree.id, t.status FROM tree JOIN drydock_tasks AS t ON t.task_id = tree.id
FOR UPDATE"
);

/// Deletes the messages of the tasks in the JSON array bound.
pub(crate) const PURGE_MESSAGES: &str = concat!(
    "DELETE FROM drydock_result_message WHERE task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ")"
);

/// Deletes the tasks in the JSON array bound.
pub(crate) const PURGE_TASKS: &str = concat!(
    "DELETE FROM drydock_tasks WHERE task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ")"
);

// ---- messages ---------------------------------------------------------------------------

/// Appends a message; its sequence is the insert id.
pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO drydock_result_message
    (task_id, message, error, context_type, context, ts, extra) VALUES (?, ?, ?, ?, ?, ?, ?)";

/// A task's messages in sequence order.
pub(crate) const MESSAGES_OF_TASK: &str = "SELECT m.sequence, m.task_id, m.message, m.error,
    m.context_type, m.context, m.ts, m.extra
    FROM drydock_result_message AS m WHERE m.task_id = ? ORDER BY m.sequence";

/// The messages of the tasks in the JSON array bound, by task and sequence.
pub(crate) const MESSAGES_OF_TASKS: &str = concat!(
    "SELECT m.sequence, m.task_id, m.message, m.error, m.context_type, m.context, m.ts, m.extra
    FROM drydock_result_message AS m WHERE m.task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ") ORDER BY m.task_id, m.sequence"
);

// ---- build data -------------------------------------------------------------------------

/// Records a build-data element (collected date `?`, the database's now when not given).
pub(crate) const INSERT_BUILD_DATA: &str = "INSERT INTO drydock_build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
    VALUES (?, ?, ?, ?, ?, ?)";

/// Build data by node (`?` twice) and task (`?` twice), newest first; with latest (`?` 1),
/// only the newest of each node and generator.
pub(crate) const BUILD_DATA_FULL: &str = "SELECT r.node_name, r.task_id, r.collected_date,
    r.generator, r.data_format, r.data_element
    FROM (SELECT b.id, b.node_name, b.task_id, b.collected_date, b.generator, b.data_format,
                 b.data_element,
                 ROW_NUMBER() OVER (PARTITION BY b.node_name, b.generator
                                    ORDER BY b.collected_date DESC, b.id DESC) AS rn
          FROM drydock_build_data AS b
          WHERE (? IS NULL OR b.node_name = ?) AND (? IS NULL OR b.task_id = ?)) AS r
    WHERE (? = 0 OR r.rn = 1)
    ORDER BY r.collected_date DESC, r.id DESC";

/// [`BUILD_DATA_FULL`] without reading the element.
pub(crate) const BUILD_DATA_BRIEF: &str = "SELECT r.node_name, r.task_id, r.collected_date,
    r.generator, r.data_format, NULL AS data_element
    FROM (SELECT b.id, b.node_name, b.task_id, b.collected_date, b.generator, b.data_format,
                 ROW_NUMBER() OVER (PARTITION BY b.node_name, b.generator
                                    ORDER BY b.collected_date DESC, b.id DESC) AS rn
          FROM drydock_build_data AS b
          WHERE (? IS NULL OR b.node_name = ?) AND (? IS NULL OR b.task_id = ?)) AS r
    WHERE (? = 0 OR r.rn = 1)
    ORDER BY r.collected_date DESC, r.id DESC";

/// The build data of the tasks in the JSON array bound: newest first, then by task id, then
/// the later recorded first.
pub(crate) const BUILD_DATA_OF_TASKS_FULL: &str = concat!(
    "SELECT b.node_name, b.task_id, b.collected_date, b.generator, b.data_format, b.data_element
    FROM drydock_build_data AS b WHERE b.task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ") ORDER BY b.collected_date DESC, b.task_id, b.id DESC"
);

/// [`BUILD_DATA_OF_TASKS_FULL`] without reading the element.
pub(crate) const BUILD_DATA_OF_TASKS_BRIEF: &str = concat!(
    "SELECT b.node_name, b.task_id, b.collected_date, b.generator, b.data_format,
    NULL AS data_element
    FROM drydock_build_data AS b WHERE b.task_id IN (SELECT j.id FROM ",
    json_ids!(),
    ") ORDER BY b.collected_date DESC, b.task_id, b.id DESC"
);

// ---- import -----------------------------------------------------------------------------

/// `import`: the stored message numbered `?`, if any (whose task it is decides whether an
/// imported message of that number is present or a conflict).
pub(crate) const MESSAGE_BY_SEQUENCE: &str = "SELECT m.sequence, m.task_id, m.message, m.error,
    m.context_type, m.context, m.ts, m.extra
    FROM drydock_result_message AS m WHERE m.sequence = ?";

/// `import`: a message with its own sequence number and time. InnoDB moves the
/// `AUTO_INCREMENT` counter past an explicit value larger than it, so the next appended
/// message is numbered above every imported one.
pub(crate) const IMPORT_MESSAGE: &str = "INSERT INTO drydock_result_message
    (sequence, task_id, message, error, context_type, context, ts, extra)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

/// `import`: how many stored build-data rows hold exactly this content (node, task, date,
/// generator, format, element), read before the import writes any.
pub(crate) const IMPORT_BUILD_DATA_COUNT: &str = "SELECT COUNT(*) FROM drydock_build_data AS b
    WHERE b.node_name = ? AND b.task_id = ? AND b.collected_date = ? AND b.generator = ?
      AND b.data_format = ? AND b.data_element = ?";

/// `import`: whether a node has a boot-action context (1 or 0).
pub(crate) const BOOT_CONTEXT_EXISTS: &str =
    "SELECT COUNT(*) FROM drydock_boot_action WHERE node_name = ?";

/// `import`: a node's boot-action context, the node having none.
pub(crate) const INSERT_BOOT_CONTEXT: &str = "INSERT INTO drydock_boot_action
    (node_name, task_id, identity_key) VALUES (?, ?, ?)";

// ---- lease ------------------------------------------------------------------------------

/// The lease row, locked for a change, with the database's now.
pub(crate) const LEASE_FOR_UPDATE: &str = "SELECT instance_id, term, acquired_at, renewed_at,
    expires_at, UTC_TIMESTAMP(6) AS now FROM drydock_active_instance WHERE singleton = 1
    FOR UPDATE";

/// The lease row, share-locked (the fence of guarded writes and fenced claims), with the
/// database's now.
pub(crate) const LEASE_FOR_SHARE: &str = "SELECT instance_id, term, acquired_at, renewed_at,
    expires_at, UTC_TIMESTAMP(6) AS now FROM drydock_active_instance WHERE singleton = 1
    LOCK IN SHARE MODE";

/// Writes the lease row.
pub(crate) const WRITE_LEASE: &str = "UPDATE drydock_active_instance
    SET instance_id = ?, term = ?, acquired_at = ?, renewed_at = ?, expires_at = ?
    WHERE singleton = 1";

/// The live lease, if any.
pub(crate) const CURRENT_LEASE: &str = "SELECT instance_id, term, acquired_at, renewed_at,
    expires_at, UTC_TIMESTAMP(6) AS now FROM drydock_active_instance
    WHERE singleton = 1 AND term > 0 AND expires_at > UTC_TIMESTAMP(6)";

/// Ends the live lease of instance `?` now (the term is kept).
pub(crate) const RELEASE_LEASE: &str = "UPDATE drydock_active_instance
    SET expires_at = UTC_TIMESTAMP(6)
    WHERE singleton = 1 AND instance_id = ? AND term > 0 AND expires_at > UTC_TIMESTAMP(6)";

// ---- boot actions -----------------------------------------------------------------------

/// Sets a node's boot-action context, replacing the one it had.
pub(crate) const UPSERT_BOOT_CONTEXT: &str = "INSERT INTO drydock_boot_action
    (node_name, task_id, identity_key) VALUES (?, ?, ?)
    ON DUPLICATE KEY UPDATE task_id = VALUES(task_id), identity_key = VALUES(identity_key)";

/// A node's boot-action context.
pub(crate) const BOOT_CONTEXT: &str = "SELECT node_name, task_id, identity_key
    FROM drydock_boot_action WHERE node_name = ?";

/// Records a boot action.
pub(crate) const INSERT_BOOT_ACTION: &str = "INSERT INTO drydock_boot_action_status
    (action_id, node_name, action_name, task_id, identity_key, action_status)
    VALUES (?, ?, ?, ?, ?, ?)";

/// Whether a boot action id exists (1 or 0).
pub(crate) const BOOT_ACTION_EXISTS: &str =
    "SELECT COUNT(*) FROM drydock_boot_action_status WHERE action_id = ?";

/// One boot action.
pub(crate) const BOOT_ACTION: &str = "SELECT action_id, node_name, action_name, task_id,
    identity_key, action_status FROM drydock_boot_action_status WHERE action_id = ?";

/// One boot action, locked for a status change.
pub(crate) const BOOT_ACTION_FOR_UPDATE: &str = "SELECT action_id, node_name, action_name,
    task_id, identity_key, action_status FROM drydock_boot_action_status WHERE action_id = ?
    FOR UPDATE";

/// Sets a boot action's status.
pub(crate) const SET_BOOT_ACTION_STATUS: &str =
    "UPDATE drydock_boot_action_status SET action_status = ? WHERE action_id = ?";

/// A node's boot actions, oldest id first.
pub(crate) const BOOT_ACTIONS_OF_NODE: &str = "SELECT action_id, node_name, action_name,
    task_id, identity_key, action_status FROM drydock_boot_action_status
    WHERE node_name = ? ORDER BY action_id";
