//! Every SQL statement of the SQLite backend, each named after the operation it serves.
//!
//! Statements are static text with bind parameters; the shared fragments below are joined at
//! compile time with `concat!`, never at run time. Lists (ids, actions) are bound as one JSON
//! array and unpacked with `json_each`, so a statement's text never depends on a list's length.

// The statements below run only through these `&'static str` helpers (see `crate::sql`).
pub(crate) use crate::sql::{begin_immediate, execute_script, query, query_as, query_scalar};

/// The store's clock in microseconds since the Unix epoch. SQLite's `now` has millisecond
/// resolution; rounding to whole milliseconds keeps the float conversion exact. Every process
/// on one file reads the same clock, and `now` is constant within one statement.
macro_rules! now_us {
    () => {
        "(CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER) * 1000)"
    };
}

/// The task columns, in the order [`crate::codec::TaskRow`] names them.
macro_rules! task_columns {
    () => {
        "task_id, parent_task_id, action, design_ref, status, result_status, result_message, \
         result_reason, result_successes, result_failures, result_links, node_filter, \
         subtask_id_list, created, created_by, updated, retry, terminated, terminated_by, \
         terminate, request_context, claimed_by, claim_term, claimed_at, attempt, claim_id"
    };
}

/// Whether the instance bound at `$instance` holds the live lease with the term bound at
/// `$term`, by the database's clock (false when either is NULL).
macro_rules! lease_held {
    ($instance:literal, $term:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM drydock_active_instance WHERE instance_id = ",
            $instance,
            " AND term = ",
            $term,
            " AND expires_at > ",
            now_us!(),
            ")"
        )
    };
}

/// The message columns, in the order [`crate::codec::MessageRow`] names them.
macro_rules! message_columns {
    () => {
        "sequence, task_id, message, error, context_type, context, ts, extra"
    };
}

/// The lease columns, in the order [`crate::codec::LeaseRow`] names them.
macro_rules! lease_columns {
    () => {
        "instance_id, term, acquired_at, renewed_at, expires_at"
    };
}

/// The boot action columns, in the order [`crate::codec::BootActionRow`] names them.
macro_rules! boot_action_columns {
    () => {
        "action_id, node_name, action_name, task_id, identity_key, action_status"
    };
}

// ---------------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------------

/// Creates the migration history table if this file has none yet.
pub const MIGRATIONS_CREATE_HISTORY: &str = "\
CREATE TABLE IF NOT EXISTS drydock_schema_migrations (
    version     INTEGER NOT NULL PRIMARY KEY,
    description TEXT    NOT NULL,
    checksum    TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
) STRICT";

/// The migrations applied so far.
pub const MIGRATIONS_APPLIED: &str =
    "SELECT version, checksum FROM drydock_schema_migrations ORDER BY version";

/// Records one applied migration.
pub const MIGRATIONS_RECORD: &str = concat!(
    "INSERT INTO drydock_schema_migrations (version, description, checksum, applied_at) \
     VALUES (?1, ?2, ?3, ",
    now_us!(),
    ")"
);

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

/// `create_task`: a new task with an empty subtask list and no claim.
pub const CREATE_TASK: &str = concat!(
    "INSERT INTO drydock_tasks ( \
        task_id, parent_task_id, action, design_ref, status, result_status, node_filter, \
        created, created_by, retry, request_context) \
     VALUES (?1, ?2, ?3, ?4, ?5, 'incomplete', ?6, ?7, ?8, ?9, ?10) RETURNING ",
    task_columns!()
);

/// `get_task`: one task by id.
pub const GET_TASK: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks WHERE task_id = ?1"
);

/// Every guarded write, first statement of its `BEGIN IMMEDIATE` transaction: task `?1` as
/// stored, for the guard and the operation's rules (no row: no such task), and whether the
/// guard's instance `?2` holds the live lease with its term `?3`. SQLite lets one writer at a
/// time hold the write lock, taken when the transaction began, so neither the task nor the
/// lease can change between this check and the write that follows it.
pub const FENCE: &str = concat!(
    "SELECT ",
    task_columns!(),
    ", ",
    lease_held!("?2", "?3"),
    " AS lease_held FROM drydock_tasks WHERE task_id = ?1"
);

/// `update_task`, after [`FENCE`] and the status rule: writes the fields the update sets. A
/// NULL keeps the stored value; for nullable fields a flag says whether the value (possibly
/// NULL) is written. `?17` ends the claim (a move back to requested or queued); the attempt
/// is kept. An unknown parent fails the foreign key.
pub const UPDATE_TASK: &str = concat!(
    "UPDATE drydock_tasks SET \
        status = COALESCE(?2, status), \
        result_status = COALESCE(?3, result_status), \
        result_message = CASE WHEN ?4 THEN ?5 ELSE result_message END, \
        result_reason = CASE WHEN ?6 THEN ?7 ELSE result_reason END, \
        result_successes = COALESCE(?8, result_successes), \
        result_failures = COALESCE(?9, result_failures), \
        result_links = COALESCE(?10, result_links), \
        retry = COALESCE(?11, retry), \
        node_filter = CASE WHEN ?12 THEN ?13 ELSE node_filter END, \
        design_ref = CASE WHEN ?14 THEN ?15 ELSE design_ref END, \
        parent_task_id = CASE WHEN ?16 THEN ?18 ELSE parent_task_id END, \
        claimed_by = CASE WHEN ?17 THEN NULL ELSE claimed_by END, \
        claim_term = CASE WHEN ?17 THEN NULL ELSE claim_term END, \
        claimed_at = CASE WHEN ?17 THEN NULL ELSE claimed_at END, \
        claim_id = CASE WHEN ?17 THEN NULL ELSE claim_id END, \
        updated = ",
    now_us!(),
    " WHERE task_id = ?1 RETURNING ",
    task_columns!()
);

/// The conditions of a task filter, every one optional (NULL = any) but the keyset: status
/// `?1`, action `?2`, parent `?3`, created in `[?4, ?5)`, the keyset condition `$keyset` on
/// `(?6, ?7)`, claimant `?8`, term `?9` (`crate::tasks::bind_filter`).
macro_rules! task_filter {
    ($keyset:literal) => {
        concat!(
            " WHERE (?1 IS NULL OR status = ?1) \
       AND (?2 IS NULL OR action = ?2) \
       AND (?3 IS NULL OR parent_task_id = ?3) \
       AND (?4 IS NULL OR created >= ?4) \
       AND (?5 IS NULL OR created < ?5) \
       AND ",
            $keyset,
            " AND (?8 IS NULL OR claimed_by = ?8) \
       AND (?9 IS NULL OR claim_term = ?9)"
        )
    };
}

/// `list_tasks`: the tasks `task_filter!` keeps after the keyset `(?6, ?7)` (the smallest
/// integer and `''` for the first page, which every task is after), in `(created, task_id)`
/// order, at most `?10` (-1: all). The keyset is written as a range, `created >= ?6` bounding
/// it, so that SQLite starts the walk of `drydock_tasks_created` at the page instead of at the
/// oldest task (`(?6 IS NULL OR (created, task_id) > (?6, ?7))` hides the range behind the
/// `OR`); the rest breaks ties, as `(created, task_id) > (?6, ?7)` would.
pub const LIST_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks",
    task_filter!("created >= ?6 AND (created > ?6 OR task_id > ?7)"),
    " ORDER BY created, task_id LIMIT ?10"
);

/// `count_tasks`: how many tasks `task_filter!` keeps, no row read; the keyset `(?6, ?7)` is
/// optional here (NULL: none). Without one, SQLite counts in one pass over the table, which a
/// range on `drydock_tasks_created` (as [`LIST_TASKS`] has) would turn into an index walk
/// with a table lookup per task.
pub const COUNT_TASKS: &str = concat!(
    "SELECT count(*) FROM drydock_tasks",
    task_filter!("(?6 IS NULL OR (created, task_id) > (?6, ?7))")
);

/// `add_subtask`, after [`FENCE`] and the no-new-work rule: appends the child id unless it is
/// already listed.
pub const ADD_SUBTASK: &str = "\
UPDATE drydock_tasks SET subtask_id_list = json_insert(subtask_id_list, '$[#]', ?2)
WHERE task_id = ?1
  AND NOT EXISTS (SELECT 1 FROM json_each(drydock_tasks.subtask_id_list) WHERE value = ?2)";

/// `create_task_tree`: the new parent `?1`'s subtask list, `?2` (a JSON array of ids).
pub const SET_SUBTASK_LIST: &str =
    "UPDATE drydock_tasks SET subtask_id_list = ?2 WHERE task_id = ?1";

/// `subtasks`, step one: the parent's subtask list (no row: unknown parent).
pub const SUBTASK_LIST: &str = "SELECT subtask_id_list FROM drydock_tasks WHERE task_id = ?1";

/// `subtasks`, step two: the listed tasks in list order; `?2` is 0 for all, 1 for active
/// (not terminal), 2 for complete (terminal).
pub const SUBTASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM json_each(?1) AS listed JOIN drydock_tasks ON task_id = listed.value \
     WHERE ?2 = 0 \
        OR (?2 = 1 AND status NOT IN ('complete', 'terminated')) \
        OR (?2 = 2 AND status IN ('complete', 'terminated')) \
     ORDER BY listed.key"
);

/// `task_tree`, step one: the ids of the tree rooted at `?1` (no row when it does not exist),
/// each with its depth, in breadth-first order, down `?2` levels (NULL: all). One row per
/// level: `frontier` is the level's ids in order (a JSON array), `before` every id of the
/// levels above it. The next level is the ids listed in the `subtask_id_list` of the
/// frontier's stored tasks (a listed id with no task is shown, not followed), each once, at
/// its first listing (by position of the listing task in the level, then in its list), and
/// none already in `before` or `frontier`: so a repeated id or a cycle is shown once, and the
/// walk ends when a level comes out empty, whatever the lists say. The levels are unpacked
/// into `(depth, task_id)` rows in order.
pub const TASK_TREE: &str = "\
WITH RECURSIVE level (depth, frontier, before) AS (
    SELECT 0, json_array(task_id), '[]' FROM drydock_tasks WHERE task_id = ?1
    UNION ALL
    SELECT level.depth + 1,
        (SELECT json_group_array(id ORDER BY first) FROM (
            SELECT listed.value AS id, min(parent.key * 4294967296 + listed.key) AS first
            FROM json_each(level.frontier) AS parent
            JOIN drydock_tasks AS t ON t.task_id = parent.value
            JOIN json_each(t.subtask_id_list) AS listed
            WHERE listed.value NOT IN (
                SELECT value FROM json_each(level.before)
                UNION ALL SELECT value FROM json_each(level.frontier))
            GROUP BY listed.value)),
        (SELECT json_group_array(value) FROM (
            SELECT value FROM json_each(level.before)
            UNION ALL SELECT value FROM json_each(level.frontier)))
    FROM level
    WHERE level.frontier <> '[]' AND (?2 IS NULL OR level.depth < ?2)
)
SELECT level.depth, member.value AS task_id
FROM level, json_each(level.frontier) AS member
ORDER BY level.depth, member.key";

/// `task_tree`, step two: the stored tasks among the ids in `?1` (a JSON array), in any
/// order; their messages follow with [`MESSAGES_OF_TASKS`].
pub const TASKS_BY_IDS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks WHERE task_id IN (SELECT value FROM json_each(?1))"
);

/// Whether `?1` holds the live lease with term `?2`: a fenced claim's check, first statement
/// of its `BEGIN IMMEDIATE` transaction.
pub const HOLDS_LEASE: &str = concat!("SELECT ", lease_held!("?1", "?2"));

/// `claim_next`: queued tasks of the allowed actions (`?1`, a JSON array, or NULL for any)
/// that are marked for termination take status `?2` (terminated, by core's rule) instead of
/// being handed out.
pub const TERMINATE_MARKED_QUEUED: &str = concat!(
    "UPDATE drydock_tasks SET status = ?2, updated = ",
    now_us!(),
    " WHERE status = 'queued' AND terminate = 1 \
       AND (?1 IS NULL OR action IN (SELECT value FROM json_each(?1)))"
);

/// A claim with claim ids (`claim_next`: its own; `claim_batch`: the batch's derived ids):
/// the tasks already carrying one of them (`?1`, a JSON array), oldest first.
pub const CLAIMED_UNDER_IDS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks WHERE claim_id IN (SELECT value FROM json_each(?1)) \
     ORDER BY created, task_id"
);

/// `claim_next` and `claim_batch`: moves the `?5` oldest unmarked queued tasks of the allowed
/// actions (`?3`, a JSON array, or NULL for any) to running, recording the claim (instance
/// `?1`, term `?2`) and raising each attempt by one, the `i`-th (from 0, oldest first)
/// recording claim id `?4[i]` (`?4` a JSON array; NULL without a claim id). Runs in the claim's `BEGIN IMMEDIATE` transaction, after
/// the lease check; the rows come back in no particular order.
pub const CLAIM_BATCH: &str = concat!(
    "WITH next AS ( \
         SELECT task_id, row_number() OVER (ORDER BY created, task_id) - 1 AS i \
         FROM drydock_tasks \
         WHERE status = 'queued' AND terminate = 0 \
           AND (?3 IS NULL OR action IN (SELECT value FROM json_each(?3))) \
         ORDER BY created, task_id LIMIT ?5) \
     UPDATE drydock_tasks SET status = 'running', claimed_by = ?1, claim_term = ?2, \
        claim_id = (SELECT j.value FROM next, json_each(?4) AS j \
                    WHERE next.task_id = drydock_tasks.task_id AND j.key = next.i), \
        attempt = attempt + 1, claimed_at = ",
    now_us!(),
    ", updated = ",
    now_us!(),
    " WHERE task_id IN (SELECT task_id FROM next) \
     RETURNING ",
    task_columns!()
);

/// `recover_orphans`, step one: running and terminating tasks claimed under an older term,
/// oldest first. The unary `+` keeps SQLite from walking the whole history in creation order
/// to avoid a sort: the few live tasks come from the partial index `drydock_tasks_live` and
/// are sorted.
pub const ORPHANS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM drydock_tasks WHERE status IN ('running', 'terminating') AND claim_term < ?1 \
     ORDER BY +created, +task_id"
);

/// `recover_orphans`, once per kind of recovery: the tasks in `?1` (a JSON array of ids) move
/// to status `?2`; with `?3`, finished as a failure with reason `?4`. Their claim ends (the
/// attempt is kept).
pub const RECOVER_ORPHANS: &str = concat!(
    "UPDATE drydock_tasks SET status = ?2, \
        result_status = CASE WHEN ?3 THEN 'failure' ELSE result_status END, \
        result_reason = CASE WHEN ?3 THEN ?4 ELSE result_reason END, \
        claimed_by = NULL, claim_term = NULL, claimed_at = NULL, claim_id = NULL, updated = ",
    now_us!(),
    " WHERE task_id IN (SELECT value FROM json_each(?1))"
);

/// `terminate_task`, after [`FENCE`] on the root: marks task `?1` and its whole subtree (by
/// parent link; `UNION` ends the walk should links form a cycle) with who (`?2`) and when.
/// Each member's new status is bound per stored status (`?3` requested, `?4` queued, `?5`
/// running, `?6` terminating, `?7` terminated, `?8` complete), as core's rule gives it.
pub const TERMINATE_SUBTREE: &str = concat!(
    "WITH RECURSIVE tree (task_id) AS ( \
         SELECT ?1 \
         UNION \
         SELECT child.task_id FROM drydock_tasks AS child \
         JOIN tree ON child.parent_task_id = tree.task_id) \
     UPDATE drydock_tasks SET terminate = 1, terminated_by = ?2, terminated = ",
    now_us!(),
    ", updated = ",
    now_us!(),
    ", status = CASE status WHEN 'requested' THEN ?3 WHEN 'queued' THEN ?4 \
                     WHEN 'running' THEN ?5 WHEN 'terminating' THEN ?6 \
                     WHEN 'terminated' THEN ?7 WHEN 'complete' THEN ?8 END \
     WHERE task_id IN (SELECT task_id FROM tree)"
);

/// `purge`, one batch, read before the batch's write transaction: up to `?2` roots created
/// before `?1`, in `(created, task_id)` order after the keyset `(?3, ?4)` (the smallest
/// integer and `''` for the first batch), so that trees kept or skipped by an earlier batch
/// are not looked at again. `created >= ?3` bounds the index range; the rest breaks ties. The
/// unary `+` keeps SQLite off `drydock_tasks_parent` (every root of the history, then sorted):
/// it walks `drydock_tasks_created` from the keyset, in order, and stops at `?2` roots.
pub const PURGE_ROOTS: &str = "\
SELECT created, task_id FROM drydock_tasks
WHERE +parent_task_id IS NULL AND created < ?1
  AND created >= ?3 AND (created > ?3 OR task_id > ?4)
ORDER BY created, task_id
LIMIT ?2";

/// `purge`, one batch, first statement of its `BEGIN IMMEDIATE` transaction: of the roots
/// [`PURGE_ROOTS`] found (`?1`, a JSON array of ids), those still stored, still roots and
/// still created before `?2`. A root read before the write lock may since have been deleted
/// (by another purge) or given a parent (its tree is then its new root's); the statuses are
/// read again with `PURGE_TREE`, under the lock.
pub const PURGE_ROOTS_RECHECK: &str = "\
SELECT task_id FROM drydock_tasks
WHERE task_id IN (SELECT value FROM json_each(?1))
  AND +parent_task_id IS NULL AND created < ?2";

/// `purge`, one tree: every task of the tree rooted at `?1` with its depth (the root is 0)
/// and status, deepest first. The recursion is a queue, not nested calls, so any depth works.
/// `CROSS JOIN` keeps the tree the outer loop (SQLite does not reorder it): left to itself,
/// the planner (3.46, no statistics) scanned every task of the history against a bloom filter
/// of the tree, once per tree purged.
pub const PURGE_TREE: &str = "\
WITH RECURSIVE tree (task_id, depth) AS (
    SELECT ?1, 0
    UNION
    SELECT child.task_id, tree.depth + 1
    FROM drydock_tasks AS child JOIN tree ON child.parent_task_id = tree.task_id
)
SELECT tree.task_id, tree.depth, t.status
FROM tree CROSS JOIN drydock_tasks AS t ON t.task_id = tree.task_id
ORDER BY tree.depth DESC";

/// `purge`, one tree: deletes the messages of the tasks in `?1` (a JSON array); the count of
/// rows deleted is the report's.
pub const PURGE_DELETE_MESSAGES: &str = "\
DELETE FROM drydock_result_messages WHERE task_id IN (SELECT value FROM json_each(?1))";

/// `purge`, one level of a tree: deletes the tasks in `?1` (a JSON array). Run deepest level
/// first, so that no delete cascades: a cascade through a deep tree nests one trigger level
/// per tree level and fails past `SQLITE_MAX_TRIGGER_DEPTH` (1,000).
pub const PURGE_DELETE_TASKS: &str = "\
DELETE FROM drydock_tasks WHERE task_id IN (SELECT value FROM json_each(?1))";

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// `append_message` / `append_messages`: one message, stamped with the store's clock.
pub const APPEND_MESSAGE: &str = concat!(
    "INSERT INTO drydock_result_messages (task_id, message, error, context_type, context, ts, \
        extra) VALUES (?1, ?2, ?3, ?4, ?5, ",
    now_us!(),
    ", ?6) RETURNING ",
    message_columns!()
);

/// `append_messages`: a whole batch in one statement. `?2` is a JSON array of objects
/// `{"m": message, "e": error, "ct": context_type, "c": context, "x": extra-or-null}` (`x`
/// holds the extra's JSON text, stored as is); rows are inserted, and so sequenced, in array
/// order, all with one timestamp.
pub const APPEND_MESSAGES: &str = concat!(
    "INSERT INTO drydock_result_messages (task_id, message, error, context_type, context, ts, \
        extra) \
     SELECT ?1, json_extract(value, '$.m'), json_extract(value, '$.e'), \
            json_extract(value, '$.ct'), json_extract(value, '$.c'), ",
    now_us!(),
    ", json_extract(value, '$.x') \
     FROM json_each(?2) ORDER BY key RETURNING ",
    message_columns!()
);

/// `messages`: one task's messages in sequence order.
pub const MESSAGES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM drydock_result_messages WHERE task_id = ?1 ORDER BY sequence"
);

/// Assembling tasks: the messages of every task in `?1` (a JSON array of ids), in sequence
/// order per task, in one query whatever the number of tasks. Ordered by task first, so the
/// `(task_id, sequence)` index delivers the rows in order (by `sequence` alone, SQLite sorts
/// every message of the page in a temporary B-tree).
pub const MESSAGES_OF_TASKS: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM drydock_result_messages WHERE task_id IN (SELECT value FROM json_each(?1)) \
     ORDER BY task_id, sequence"
);

// ---------------------------------------------------------------------------------------------
// Build data
// ---------------------------------------------------------------------------------------------

/// `record_build_data`: a missing collected date becomes the store's now.
pub const RECORD_BUILD_DATA: &str = concat!(
    "INSERT INTO drydock_build_data (node_name, task_id, collected_date, generator, \
        data_format, data_element) VALUES (?1, ?2, COALESCE(?3, ",
    now_us!(),
    "), ?4, ?5, ?6)"
);

/// The build-data columns a `build_data` statement returns; the element only when the
/// parameter `$full` is true (else NULL, and the element is never read).
macro_rules! build_data_columns {
    ($full:literal) => {
        concat!(
            "node_name, task_id, collected_date, generator, data_format, \
             CASE WHEN ",
            $full,
            " THEN data_element END AS data_element"
        )
    };
}

/// The `build_data` rows `$filter` (a `WHERE` condition) keeps, newest first (later insertion
/// wins a tie), with the element when `$full` is true.
macro_rules! build_data {
    ($filter:literal, $full:literal) => {
        concat!(
            "SELECT ",
            build_data_columns!($full),
            " FROM drydock_build_data WHERE ",
            $filter,
            " ORDER BY collected_date DESC, id DESC"
        )
    };
}

/// With `latest`: of the rows `$filter` (a `WHERE` condition) keeps, the newest per node and
/// generator, newest first, with the element when `$full` is true.
macro_rules! build_data_latest {
    ($filter:literal, $full:literal) => {
        concat!(
            "SELECT ",
            build_data_columns!($full),
            " FROM drydock_build_data \
             WHERE id IN ( \
                 SELECT id FROM ( \
                     SELECT id, row_number() OVER ( \
                         PARTITION BY node_name, generator \
                         ORDER BY collected_date DESC, id DESC) AS newest \
                     FROM drydock_build_data WHERE ",
            $filter,
            ") WHERE newest = 1) \
             ORDER BY collected_date DESC, id DESC"
        )
    };
}

// `build_data` has one statement per shape of its query (node given, with or without a task;
// task alone; neither), so that the filter given is a plain equality SQLite can search its
// index with: `?1 IS NULL OR node_name = ?1` would hide it behind the `OR` and scan the table.

/// `build_data` by node `?1` (and task `?2`, when it is not NULL), newest first (later
/// insertion wins a tie); the element only when `?3` is true. Searches
/// `drydock_build_data_node`.
pub const BUILD_DATA_BY_NODE: &str =
    build_data!("node_name = ?1 AND (?2 IS NULL OR task_id = ?2)", "?3");

/// `build_data` by task `?1`, newest first (later insertion wins a tie); the element only
/// when `?2` is true. Searches `drydock_build_data_task`.
pub const BUILD_DATA_BY_TASK: &str = build_data!("task_id = ?1", "?2");

/// `build_data` of every node, newest first (later insertion wins a tie); the element only
/// when `?1` is true.
pub const BUILD_DATA_ALL: &str = build_data!("1", "?1");

/// `build_data` with `latest`, by node `?1` (and task `?2`, when it is not NULL): the newest
/// row per generator, newest first; the element only when `?3` is true. Searches
/// `drydock_build_data_node`.
pub const BUILD_DATA_LATEST_BY_NODE: &str =
    build_data_latest!("node_name = ?1 AND (?2 IS NULL OR task_id = ?2)", "?3");

/// `build_data` with `latest`, by task `?1`: of its rows, the newest per node and generator,
/// newest first; the element only when `?2` is true. Searches `drydock_build_data_task`.
pub const BUILD_DATA_LATEST_BY_TASK: &str = build_data_latest!("task_id = ?1", "?2");

/// `build_data` with `latest`, of every node: the newest row per node and generator, newest
/// first; the element only when `?1` is true.
pub const BUILD_DATA_LATEST_ALL: &str = build_data_latest!("1", "?1");

/// `build_data_of_tasks`: the build data of any task in `?1` (a JSON array of ids), full rows,
/// newest first; a tie goes by task id, then the later insertion first.
pub const BUILD_DATA_OF_TASKS_FULL: &str = "\
SELECT node_name, task_id, collected_date, generator, data_format, data_element
FROM drydock_build_data
WHERE task_id IN (SELECT value FROM json_each(?1))
ORDER BY collected_date DESC, task_id, id DESC";

/// `build_data_of_tasks` with brief verbosity: the element is never read.
pub const BUILD_DATA_OF_TASKS_BRIEF: &str = "\
SELECT node_name, task_id, collected_date, generator, data_format, NULL AS data_element
FROM drydock_build_data
WHERE task_id IN (SELECT value FROM json_each(?1))
ORDER BY collected_date DESC, task_id, id DESC";

// ---------------------------------------------------------------------------------------------
// Leader lease
// ---------------------------------------------------------------------------------------------

/// `claim_lease`: takes the lease if it is free, lapsed or ours, in one statement. The same
/// live holder keeps its term and acquisition time; anyone else gets the term one higher.
/// No row comes back when another instance holds a live lease.
pub const CLAIM_LEASE: &str = concat!(
    "INSERT INTO drydock_active_instance AS held \
        (singleton, instance_id, term, acquired_at, renewed_at, expires_at) \
     VALUES (1, ?1, 1, ",
    now_us!(),
    ", ",
    now_us!(),
    ", ",
    now_us!(),
    " + ?2) \
     ON CONFLICT (singleton) DO UPDATE SET \
        term = CASE WHEN held.instance_id = excluded.instance_id \
                         AND held.expires_at > excluded.renewed_at \
                    THEN held.term ELSE held.term + 1 END, \
        acquired_at = CASE WHEN held.instance_id = excluded.instance_id \
                                AND held.expires_at > excluded.renewed_at \
                           THEN held.acquired_at ELSE excluded.acquired_at END, \
        instance_id = excluded.instance_id, \
        renewed_at = excluded.renewed_at, \
        expires_at = excluded.expires_at \
     WHERE held.instance_id = excluded.instance_id OR held.expires_at <= excluded.renewed_at \
     RETURNING ",
    lease_columns!()
);

/// `renew_lease`: extends the lease only for its live holder.
pub const RENEW_LEASE: &str = concat!(
    "UPDATE drydock_active_instance SET renewed_at = ",
    now_us!(),
    ", expires_at = ",
    now_us!(),
    " + ?2 WHERE instance_id = ?1 AND expires_at > ",
    now_us!(),
    " RETURNING ",
    lease_columns!()
);

/// `release_lease`: lapses the holder's lease now; the row (and its term) stays.
pub const RELEASE_LEASE: &str = concat!(
    "UPDATE drydock_active_instance SET expires_at = ",
    now_us!(),
    " WHERE instance_id = ?1 AND expires_at > ",
    now_us!()
);

/// `current_lease`: the lease if it is live.
pub const CURRENT_LEASE: &str = concat!(
    "SELECT ",
    lease_columns!(),
    " FROM drydock_active_instance WHERE expires_at > ",
    now_us!()
);

// ---------------------------------------------------------------------------------------------
// Boot actions
// ---------------------------------------------------------------------------------------------

/// `set_boot_action_context`, after [`FENCE`] on the task (the boot-action tables have no
/// foreign key, so that a report outlives a purged task): node `?1`'s context, replacing the one it
/// had.
pub const SET_BOOT_ACTION_CONTEXT: &str = "\
INSERT INTO drydock_boot_action (node_name, task_id, identity_key) VALUES (?1, ?2, ?3)
ON CONFLICT (node_name) DO UPDATE SET
    task_id = excluded.task_id, identity_key = excluded.identity_key";

/// `boot_action_context`: node `?1`'s context.
pub const BOOT_ACTION_CONTEXT: &str =
    "SELECT node_name, task_id, identity_key FROM drydock_boot_action WHERE node_name = ?1";

/// `add_boot_action`, first statement of its `BEGIN IMMEDIATE` transaction: whether action id
/// `?1` is taken and whether task `?2` exists, in the memory store's order of refusal.
pub const BOOT_ACTION_ADD_CHECK: &str = "\
SELECT EXISTS (SELECT 1 FROM drydock_boot_action_status WHERE action_id = ?1) AS id_taken,
       EXISTS (SELECT 1 FROM drydock_tasks WHERE task_id = ?2) AS task_exists";

/// `add_boot_action`, after [`BOOT_ACTION_ADD_CHECK`]: the new action.
pub const ADD_BOOT_ACTION: &str = concat!(
    "INSERT INTO drydock_boot_action_status (",
    boot_action_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
);

/// `set_boot_action_status`, first statement of its `BEGIN IMMEDIATE` transaction: action
/// `?1` as stored (no row: unknown id) and whether its task still exists (else the status is
/// recorded without messages).
pub const BOOT_ACTION_FOR_STATUS: &str = concat!(
    "SELECT ",
    boot_action_columns!(),
    ", EXISTS (SELECT 1 FROM drydock_tasks AS t WHERE t.task_id = stored.task_id) \
        AS task_exists \
     FROM drydock_boot_action_status AS stored WHERE action_id = ?1"
);

/// `set_boot_action_status`, after [`BOOT_ACTION_FOR_STATUS`] and the finality rule: the new
/// status `?2` of action `?1`; the task's messages follow with [`APPEND_MESSAGES`].
pub const SET_BOOT_ACTION_STATUS: &str =
    "UPDATE drydock_boot_action_status SET action_status = ?2 WHERE action_id = ?1";

/// `boot_actions_for_node`: node `?1`'s actions, oldest id first (BLOBs compare bytewise and
/// ULIDs sort by time), so that of a repeated name the newest comes last.
pub const BOOT_ACTIONS_FOR_NODE: &str = concat!(
    "SELECT ",
    boot_action_columns!(),
    " FROM drydock_boot_action_status WHERE node_name = ?1 ORDER BY action_id"
);

/// `boot_action`: one action by id.
pub const BOOT_ACTION: &str = concat!(
    "SELECT ",
    boot_action_columns!(),
    " FROM drydock_boot_action_status WHERE action_id = ?1"
);

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

/// `import`: task `?1` with every column as given (the task column list, in order), unless a
/// task of that id is stored: then nothing is written and no row is changed (present). An
/// unknown parent fails the foreign key; a parent imported earlier in the same transaction
/// is found.
pub const IMPORT_TASK: &str = concat!(
    "INSERT INTO drydock_tasks (",
    task_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
        ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26) \
     ON CONFLICT (task_id) DO NOTHING"
);

/// `import`: message `?1` with its own sequence number and time (the message column list, in
/// order), unless that sequence is stored: then no row is changed, and [`MESSAGE_OWNER`]
/// says whose it is. `sequence` is the rowid (`INTEGER PRIMARY KEY AUTOINCREMENT`): an
/// explicit one larger than any seen raises `sqlite_sequence`, so the next appended message
/// is numbered above it. An unknown task fails the foreign key.
pub const IMPORT_MESSAGE: &str = concat!(
    "INSERT INTO drydock_result_messages (",
    message_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (sequence) DO NOTHING"
);

/// `import`: the task of the stored message numbered `?1`, if any.
pub const MESSAGE_OWNER: &str = "SELECT task_id FROM drydock_result_messages WHERE sequence = ?1";

/// `import`: how many stored build-data rows hold exactly this content (node `?1`, task `?2`,
/// date `?3`, generator `?4`, format `?5`, element `?6`), read before the import writes any.
pub const IMPORT_BUILD_DATA_COUNT: &str = "\
SELECT COUNT(*) FROM drydock_build_data
WHERE node_name = ?1 AND generator = ?4 AND collected_date = ?3
  AND task_id = ?2 AND data_format = ?5 AND data_element = ?6";

/// `import`: node `?1`'s boot-action context, unless the node has one (then it is kept).
pub const IMPORT_BOOT_ACTION_CONTEXT: &str = "\
INSERT INTO drydock_boot_action (node_name, task_id, identity_key) VALUES (?1, ?2, ?3)
ON CONFLICT (node_name) DO NOTHING";

/// `import`: boot action `?1` as given, unless its id is stored (then it is kept).
pub const IMPORT_BOOT_ACTION: &str = concat!(
    "INSERT INTO drydock_boot_action_status (",
    boot_action_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (action_id) DO NOTHING"
);

// ---------------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------------

/// `ping`: the store's clock, as every other statement stamps times.
pub const PING: &str = concat!("SELECT ", now_us!());
