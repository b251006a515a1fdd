//! Every SQL statement the PostgreSQL backend runs, each named after the operation it serves.
//!
//! All statements are static and take their values as bind parameters. Table names are
//! qualified with the `drydock` schema, so they work whatever the session's `search_path`.
//! Every time comes from the database's clock (`now()`), never the caller's, and every column
//! is `timestamptz`, so the session's `TimeZone` does not matter. JSON a caller gives
//! (`node_filter`, `request_context`, message `extra`) is bound as text and cast
//! `::text::json` into `json` columns, and read back as text, so its key order is kept.

// The statements below run only through these `&'static str` helpers (see `crate::sql`).
pub(crate) use crate::sql::{query, query_as, query_scalar};

/// The messages of the task row `t`, as parallel arrays in sequence order (all NULL when it
/// has none): joined to every statement that returns tasks, so a task comes back with its
/// messages in the same round trip. The ordered subquery walks `result_message_task_idx`, so
/// no sort is needed; the reader re-checks the order anyway.
macro_rules! with_messages {
    () => {
        " LEFT JOIN LATERAL (
    SELECT array_agg(m.sequence) AS msg_sequence, array_agg(m.message) AS msg_message,
           array_agg(m.error) AS msg_error, array_agg(m.context_type) AS msg_context_type,
           array_agg(m.context) AS msg_context, array_agg(m.ts) AS msg_ts,
           array_agg(m.extra::text) AS msg_extra
    FROM (SELECT * FROM drydock.result_message AS r
          WHERE r.task_id = t.task_id ORDER BY r.sequence) AS m
) AS msgs ON true"
    };
}

// ---- migrations -------------------------------------------------------------------------

/// Serialises concurrent migrations (session-level advisory lock, key [`crate::migrate`]).
pub const MIGRATION_LOCK: &str = "SELECT pg_advisory_lock($1)";

/// Releases [`MIGRATION_LOCK`].
pub const MIGRATION_UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

/// Our own schema; creating it concurrently can fail, hence [`MIGRATION_LOCK`].
pub const MIGRATION_CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS drydock";

/// Points the migration connection at our schema, so sqlx keeps its history table there.
pub const MIGRATION_SEARCH_PATH: &str = "SET search_path TO drydock";

// ---- tasks ------------------------------------------------------------------------------

/// `create_task`: a new task with an empty subtask list.
pub const CREATE_TASK: &str = "
INSERT INTO drydock.tasks (
    task_id, parent_task_id, action, design_ref, status,
    result_status, result_message, result_reason, result_successes, result_failures,
    result_links, node_filter, created, created_by, updated,
    retry, terminated, terminated_by, terminate, request_context,
    claimed_by, claim_term, claimed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::json, $13, $14, $15,
        $16, $17, $18, $19, $20::text::json, $21, $22, $23)";

/// `get_task`: one task with its messages, in one round trip.
pub const GET_TASK: &str = concat!(
    "SELECT t.*, msgs.* FROM drydock.tasks AS t",
    with_messages!(),
    " WHERE t.task_id = $1"
);

/// Whether a task exists; only asked to tell "not found" from "nothing to do".
pub const TASK_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM drydock.tasks WHERE task_id = $1)";

/// A task's stored status; only asked to explain a refused update.
pub const TASK_STATUS: &str = "SELECT status FROM drydock.tasks WHERE task_id = $1";

/// `update_task`: a whole put of the writable fields, refused (no row) when the stored status
/// is terminal and the new one differs, or when the written claim (`$19`, `$20`) is not the
/// stored one; returns the task with its messages.
pub const UPDATE_TASK: &str = concat!(
    "WITH t AS (
UPDATE drydock.tasks SET
    parent_task_id = $2, action = $3, design_ref = $4, status = $5,
    result_status = $6, result_message = $7, result_reason = $8,
    result_successes = $9, result_failures = $10, result_links = $11,
    node_filter = $12::text::json, created_by = $13, retry = $14, terminated = $15,
    terminated_by = $16, terminate = $17, request_context = $18::text::json, updated = now()
WHERE task_id = $1 AND (status = $5 OR status NOT IN ('complete', 'terminated'))
  AND ($19::text IS NULL OR (claimed_by IS NOT DISTINCT FROM $19 AND claim_term IS NOT DISTINCT FROM $20::bigint))
RETURNING *)
SELECT t.*, msgs.* FROM t",
    with_messages!()
);

/// Why `update_task` changed nothing: the stored status and claim.
pub const TASK_STATUS_AND_CLAIM: &str =
    "SELECT status, claimed_by, claim_term FROM drydock.tasks WHERE task_id = $1";

/// `set_status`: under the same rule as [`UPDATE_TASK`]; returns the task with its messages.
pub const SET_STATUS: &str = concat!(
    "WITH t AS (
UPDATE drydock.tasks SET status = $2, updated = now()
WHERE task_id = $1 AND (status = $2 OR status NOT IN ('complete', 'terminated'))
RETURNING *)
SELECT t.*, msgs.* FROM t",
    with_messages!()
);

/// `list_tasks`: every filter optional (NULL = any), keyset after `($6, $7)`, `LIMIT NULL` = all;
/// the page of tasks and all their messages in one statement.
pub const LIST_TASKS: &str = concat!(
    "SELECT t.*, msgs.* FROM (
    SELECT * FROM drydock.tasks
    WHERE ($1::text IS NULL OR status = $1)
      AND ($2::text IS NULL OR action = $2)
      AND ($3::uuid IS NULL OR parent_task_id = $3)
      AND ($4::timestamptz IS NULL OR created >= $4)
      AND ($5::timestamptz IS NULL OR created < $5)
      AND ($6::timestamptz IS NULL OR (created, task_id) > ($6, $7::uuid))
    ORDER BY created, task_id
    LIMIT $8) AS t",
    with_messages!(),
    " ORDER BY t.created, t.task_id"
);

/// `add_subtask`: appends in one statement; the row lock makes concurrent appends queue up
/// and re-check, so all are kept and a repeated id is a no-op (no row).
pub const ADD_SUBTASK: &str = "
UPDATE drydock.tasks SET subtask_id_list = array_append(subtask_id_list, $2)
WHERE task_id = $1 AND NOT ($2 = ANY (subtask_id_list))";

/// `subtasks`: the parent's listed subtasks in list order; `$2` NULL = all, true = finished
/// ones, false = unfinished ones.
pub const SUBTASKS: &str = concat!(
    "SELECT t.*, msgs.* FROM drydock.tasks AS p
CROSS JOIN LATERAL unnest(p.subtask_id_list) WITH ORDINALITY AS s(task_id, ord)
JOIN drydock.tasks AS t ON t.task_id = s.task_id",
    with_messages!(),
    " WHERE p.task_id = $1
  AND ($2::boolean IS NULL OR (t.status IN ('complete', 'terminated')) = $2)
ORDER BY s.ord"
);

/// `claim_next`, in one statement: the fence (`$3` NULL = unfenced) share-locks the lease row
/// so no change of holder can commit between the check and the claim; the oldest queued task
/// of the allowed actions (`$1` empty = any) is locked, skipping those other claimers hold,
/// and moved to running with the claim recorded on the database's clock. The claimed task
/// comes back with its messages.
pub const CLAIM_NEXT: &str = concat!(
    "WITH fence AS MATERIALIZED (
    SELECT 1 FROM drydock.active_instance
    WHERE $3::bigint IS NOT NULL AND instance_id = $2 AND term = $3 AND expires_at > now()
    FOR SHARE
), next AS MATERIALIZED (
    SELECT task_id FROM drydock.tasks
    WHERE status = 'queued'
      AND (cardinality($1::text[]) = 0 OR action = ANY ($1::text[]))
      AND ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))
    ORDER BY created, task_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), t AS (
    UPDATE drydock.tasks AS c
    SET status = 'running', claimed_by = $2, claim_term = $3, claimed_at = now(), updated = now()
    FROM next
    WHERE c.task_id = next.task_id
    RETURNING c.*
)
SELECT t.*, msgs.* FROM t",
    with_messages!()
);

/// Whether `$1` holds the live lease with term `$2`; asked only when a fenced claim found
/// nothing, to tell "fenced out" from "nothing queued".
pub const LEASE_HELD_WITH_TERM: &str = "
SELECT EXISTS (
    SELECT 1 FROM drydock.active_instance
    WHERE instance_id = $1 AND term = $2 AND expires_at > now())";

/// `recover_orphans`: the running tasks claimed under a term older than `$1`, locked.
pub const RECOVER_ORPHANS_LOCK: &str = "
SELECT * FROM drydock.tasks
WHERE status = 'running' AND claim_term < $1
ORDER BY created, task_id
FOR UPDATE";

/// `recover_orphans` with the requeue policy.
pub const RECOVER_ORPHANS_REQUEUE: &str = "
UPDATE drydock.tasks
SET status = 'queued', claimed_by = NULL, claim_term = NULL, claimed_at = NULL, updated = now()
WHERE task_id = ANY ($1)";

/// `recover_orphans` with the fail policy; `$2` is the reason.
pub const RECOVER_ORPHANS_FAIL: &str = "
UPDATE drydock.tasks
SET status = 'complete', result_status = 'failure', result_reason = $2, updated = now()
WHERE task_id = ANY ($1)";

/// `terminate_task`: records the request; a non-terminal task becomes terminated. Returns the
/// task with its messages.
pub const TERMINATE_TASK: &str = concat!(
    "WITH t AS (
UPDATE drydock.tasks SET
    terminate = true, terminated = now(), terminated_by = $2, updated = now(),
    status = CASE WHEN status IN ('complete', 'terminated') THEN status ELSE 'terminated' END
WHERE task_id = $1
RETURNING *)
SELECT t.*, msgs.* FROM t",
    with_messages!()
);

/// `purge`: the cutoff, `$1` microseconds before the database's now.
pub const PURGE_CUTOFF: &str = "SELECT now() - $1::bigint * interval '1 microsecond'";

/// `purge`, one batch: locks the oldest `$2` roots created before `$1`, after the keyset
/// `($3, $4)` (NULL for the first batch), with their status. The root and age conditions are
/// in this locking statement's own `WHERE`, so PostgreSQL re-checks them on the newest row
/// version once a lock it waited for is granted: a root that got a parent meanwhile is
/// passed over. The keyset moves past trees kept for their live work.
pub const PURGE_LOCK_ROOTS: &str = "
SELECT task_id, created, status FROM drydock.tasks
WHERE parent_task_id IS NULL AND created < $1
  AND (created, task_id) > (COALESCE($3::timestamptz, '-infinity'),
                            COALESCE($4::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY created, task_id
LIMIT $2
FOR UPDATE";

/// `purge`, one level of the locked trees: locks the children of the tasks in `$1` (the
/// level above, already locked), with their parent and status. `parent_task_id = ANY ($1)` is
/// re-checked on the newest row version after a wait, so a task moved out of the tree while
/// the purge waited is not taken; and since every task of the tree is locked before the next
/// level is read, no task can be moved or inserted under it (that needs a key-share lock on
/// the parent), so the levels read are the whole tree.
pub const PURGE_LOCK_LEVEL: &str = "
SELECT task_id, parent_task_id, status FROM drydock.tasks
WHERE parent_task_id = ANY ($1)
FOR UPDATE";

/// `purge`: deletes the messages of the locked tasks in `$1`; the rows deleted are the
/// report's count.
pub const PURGE_DELETE_MESSAGES: &str =
    "DELETE FROM drydock.result_message WHERE task_id = ANY ($1)";

/// `purge`: deletes the locked tasks in `$1`, whole trees; the rows deleted are the report's
/// count (every descendant is in `$1`, so the cascade finds nothing more).
pub const PURGE_DELETE_TASKS: &str = "DELETE FROM drydock.tasks WHERE task_id = ANY ($1)";

// ---- messages ---------------------------------------------------------------------------

/// `append_message`: one message, stamped and sequenced by the database.
pub const APPEND_MESSAGE: &str = "
INSERT INTO drydock.result_message (task_id, message, error, context_type, context, extra)
VALUES ($1, $2, $3, $4, $5, $6::text::json)
RETURNING *";

/// `append_messages` (and `recover_orphans`): many messages in one statement, sequenced in
/// array order (the ordered subquery is evaluated before the `bigserial` default).
pub const APPEND_MESSAGES: &str = "
INSERT INTO drydock.result_message (task_id, message, error, context_type, context, extra)
SELECT m.task_id, m.message, m.error, m.context_type, m.context, m.extra::json
FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS m(task_id, message, error, context_type, context, extra, ord)
ORDER BY m.ord
RETURNING *";

/// `messages`: one task's messages in sequence order.
pub const MESSAGES_OF_TASK: &str =
    "SELECT * FROM drydock.result_message WHERE task_id = $1 ORDER BY sequence";

// ---- build data -------------------------------------------------------------------------

/// `record_build_data`: a missing collected date becomes the database's now.
pub const RECORD_BUILD_DATA: &str = "
INSERT INTO drydock.build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
VALUES ($1, $2, COALESCE($3, now()), $4, $5, $6)";

/// `build_data` by node (and task, when `$2` is not NULL), newest first. With `$3` false the
/// element is not read.
pub const BUILD_DATA_BY_NODE: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $3 THEN data_element END AS data_element
FROM drydock.build_data
WHERE node_name = $1 AND ($2::uuid IS NULL OR task_id = $2)
ORDER BY collected_date DESC, id DESC";

/// `build_data` by task, newest first.
pub const BUILD_DATA_BY_TASK: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $2 THEN data_element END AS data_element
FROM drydock.build_data
WHERE task_id = $1
ORDER BY collected_date DESC, id DESC";

/// `build_data` of every node, newest first.
pub const BUILD_DATA_ALL: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $1 THEN data_element END AS data_element
FROM drydock.build_data
ORDER BY collected_date DESC, id DESC";

/// `build_data` latest, by node (and task): the newest row per generator.
pub const BUILD_DATA_LATEST_BY_NODE: &str = "
SELECT node_name, task_id, collected_date, generator, data_format, data_element FROM (
    SELECT DISTINCT ON (node_name, generator)
           id, node_name, task_id, collected_date, generator, data_format,
           CASE WHEN $3 THEN data_element END AS data_element
    FROM drydock.build_data
    WHERE node_name = $1 AND ($2::uuid IS NULL OR task_id = $2)
    ORDER BY node_name, generator, collected_date DESC, id DESC
) AS latest
ORDER BY collected_date DESC, id DESC";

/// `build_data` latest, by task: the newest row per node and generator.
pub const BUILD_DATA_LATEST_BY_TASK: &str = "
SELECT node_name, task_id, collected_date, generator, data_format, data_element FROM (
    SELECT DISTINCT ON (node_name, generator)
           id, node_name, task_id, collected_date, generator, data_format,
           CASE WHEN $2 THEN data_element END AS data_element
    FROM drydock.build_data
    WHERE task_id = $1
    ORDER BY node_name, generator, collected_date DESC, id DESC
) AS latest
ORDER BY collected_date DESC, id DESC";

/// `build_data` latest of every node: the newest row per node and generator.
pub const BUILD_DATA_LATEST_ALL: &str = "
SELECT node_name, task_id, collected_date, generator, data_format, data_element FROM (
    SELECT DISTINCT ON (node_name, generator)
           id, node_name, task_id, collected_date, generator, data_format,
           CASE WHEN $1 THEN data_element END AS data_element
    FROM drydock.build_data
    ORDER BY node_name, generator, collected_date DESC, id DESC
) AS latest
ORDER BY collected_date DESC, id DESC";

// ---- the lease --------------------------------------------------------------------------

/// `claim_lease`, in one statement judged by the database's clock: takes the row when it is
/// ours and live (renewal: same term, same acquisition time) or lapsed (a new holding: term
/// one higher); otherwise no row. `$2` is the grace period in microseconds.
pub const CLAIM_LEASE: &str = "
INSERT INTO drydock.active_instance AS a
    (singleton, instance_id, term, acquired_at, renewed_at, expires_at)
VALUES (true, $1, 1, now(), now(), now() + $2::bigint * interval '1 microsecond')
ON CONFLICT (singleton) DO UPDATE SET
    term = CASE WHEN a.instance_id = excluded.instance_id AND a.expires_at > now()
                THEN a.term ELSE a.term + 1 END,
    acquired_at = CASE WHEN a.instance_id = excluded.instance_id AND a.expires_at > now()
                       THEN a.acquired_at ELSE now() END,
    instance_id = excluded.instance_id,
    renewed_at = now(),
    expires_at = excluded.expires_at
WHERE (a.instance_id = excluded.instance_id AND a.expires_at > now()) OR a.expires_at <= now()
RETURNING instance_id, term, acquired_at, renewed_at, expires_at";

/// `renew_lease`: extends the lease if `$1` holds it and it has not lapsed.
pub const RENEW_LEASE: &str = "
UPDATE drydock.active_instance
SET renewed_at = now(), expires_at = now() + $2::bigint * interval '1 microsecond'
WHERE instance_id = $1 AND expires_at > now()
RETURNING instance_id, term, acquired_at, renewed_at, expires_at";

/// `release_lease`: lapses the lease now if `$1` holds it; the row and its term stay.
pub const RELEASE_LEASE: &str = "
UPDATE drydock.active_instance SET expires_at = now()
WHERE instance_id = $1 AND expires_at > now()";

/// `current_lease`: the live lease, if any.
pub const CURRENT_LEASE: &str = "
SELECT instance_id, term, acquired_at, renewed_at, expires_at
FROM drydock.active_instance
WHERE expires_at > now()";
