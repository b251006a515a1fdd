//! Every SQL statement the PostgreSQL backend runs, each named after the operation it serves.
//!
//! All statements are static and take their values as bind parameters. Table names are
//! unqualified: every pooled connection's `search_path` is the configured schema alone
//! (`database.schema`, see `crate::config`), and so is the migration connection's.
//! Every time comes from the database's clock (`now()`), never the caller's, and every column
//! is `timestamptz`, so the session's `TimeZone` does not matter.
//!
//! A write that takes a claim guard checks it in its own statement: the `*_GUARDED`
//! statements and [`UPDATE_TASKS`], [`ADD_SUBTASK`] and [`TERMINATE_TASK`] take the guard's
//! instance (NULL = unguarded), term and attempt, require the task's stored claim to be
//! exactly that one and, when the guard has a term, key-share-lock the live lease row of that
//! instance and term (as [`CLAIM_BATCH`] does), so no change of holder (which raises the
//! term, a key of the row) commits between the check and the write, while renewals, which
//! change no key, do not wait. A guarded insert also share-locks the task row, so a recovery
//! or a new claim of the task commits either before the check (and is seen) or after the
//! insert. Such a statement changes no row when a check fails; [`WRITE_REFUSED`] then says
//! why.
//!
//! JSON a caller gives
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
    FROM (SELECT * FROM result_message AS r
          WHERE r.task_id = t.task_id ORDER BY r.sequence) AS m
) AS msgs ON true"
    };
}

// ---- migrations -------------------------------------------------------------------------

/// Serialises concurrent migrations (session-level advisory lock, key [`crate::migrate`]).
pub const MIGRATION_LOCK: &str = "SELECT pg_advisory_lock($1)";

/// Releases [`MIGRATION_LOCK`].
pub const MIGRATION_UNLOCK: &str = "SELECT pg_advisory_unlock($1)";

/// Puts the configured schema's name (`$1`) in the session setting `drydock_state.schema`,
/// where [`MIGRATION_CREATE_SCHEMA`] and [`MIGRATION_RENAME_LEGACY`] read it: DDL takes no
/// bind parameters, so the name travels as a value and is quoted by the server (`%I`).
pub const MIGRATION_SET_SCHEMA_NAME: &str = "SELECT set_config('drydock_state.schema', $1, false)";

/// Whether a schema named `$1` exists.
pub const MIGRATION_SCHEMA_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)";

/// Whether a role named `$1` exists: its default `search_path` (`"$user", public`) would
/// resolve to a schema of the same name.
pub const MIGRATION_ROLE_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)";

/// Whether the schema `drydock` (the name drydock-state used before `database.schema`)
/// holds our tables and a history table: then [`MIGRATION_LEGACY_HISTORY`] says whether the
/// history is ours.
pub const MIGRATION_LEGACY_TABLES: &str = "
SELECT to_regclass('drydock._sqlx_migrations') IS NOT NULL
   AND to_regclass('drydock.tasks') IS NOT NULL
   AND to_regclass('drydock.result_message') IS NOT NULL
   AND to_regclass('drydock.build_data') IS NOT NULL
   AND to_regclass('drydock.active_instance') IS NOT NULL";

/// Whether the legacy schema's history records our migration 1 (`$1`, its checksum before
/// the rename, or `$2`, its checksum now). Run only once [`MIGRATION_LEGACY_TABLES`] is true.
pub const MIGRATION_LEGACY_HISTORY: &str = "
SELECT EXISTS (SELECT 1 FROM drydock._sqlx_migrations
               WHERE version = 1 AND checksum IN ($1, $2))";

/// Renames the legacy schema `drydock` to the configured one (from the session setting, see
/// [`MIGRATION_SET_SCHEMA_NAME`]); its tables, indexes, sequences, functions and the
/// `notify_task_queued` trigger function move with it.
pub const MIGRATION_RENAME_LEGACY: &str = "
DO $$ BEGIN
    EXECUTE format('ALTER SCHEMA %I RENAME TO %I', 'drydock',
                   current_setting('drydock_state.schema'));
END $$";

/// Our own schema, named by the session setting (see [`MIGRATION_SET_SCHEMA_NAME`]); creating
/// it concurrently can fail, hence [`MIGRATION_LOCK`].
pub const MIGRATION_CREATE_SCHEMA: &str = "
DO $$ BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', current_setting('drydock_state.schema'));
END $$";

/// Points the migration connection at our schema (`$1`) alone, so sqlx keeps its history
/// table there and the migrations' unqualified names land there.
pub const MIGRATION_SEARCH_PATH: &str = "SELECT set_config('search_path', $1, false)";

/// Restamps migration `$1` of the history (in the schema of [`MIGRATION_SEARCH_PATH`]) with
/// its current checksum `$3` if it still has exactly the legacy checksum `$2` (see
/// `crate::migrate::LEGACY_CHECKSUMS`).
pub const MIGRATION_RESTAMP: &str =
    "UPDATE _sqlx_migrations SET checksum = $3 WHERE version = $1 AND checksum = $2";

/// The fence of a guarded write whose guard names instance `$by` and term `$term`: the live
/// lease row of that instance and term, key-share-locked, so that no change of holder can
/// commit between the check and the write (a takeover waits for the write, or the write waits
/// for the takeover and then finds the lease gone). The term is a key of the row (migration
/// `0007_fencing_key`) and every takeover raises it, so a takeover's update conflicts with
/// the lock; a renewal ([`RENEW_LEASE`]) changes no key column and does not wait for fenced
/// writes. Empty when the guard has no term.
macro_rules! fence {
    ($by:literal, $term:literal) => {
        concat!(
            "fence AS MATERIALIZED (
    SELECT 1 FROM active_instance
    WHERE $",
            $by,
            "::text IS NOT NULL AND $",
            $term,
            "::bigint IS NOT NULL
      AND instance_id = $",
            $by,
            " AND term = $",
            $term,
            " AND expires_at > now()
    FOR KEY SHARE)"
        )
    };
}

/// The guard condition on the task row `t`: no guard (`$by` NULL), or the stored claim is
/// exactly the guard's (instance, term, attempt) and, when the guard has a term, the
/// `fence!` found that instance's live lease with that term.
macro_rules! guard {
    ($by:literal, $term:literal, $attempt:literal) => {
        concat!(
            "($",
            $by,
            "::text IS NULL OR (t.claimed_by = $",
            $by,
            " AND t.claim_term IS NOT DISTINCT FROM $",
            $term,
            "::bigint",
            " AND t.attempt = $",
            $attempt,
            "::bigint",
            " AND ($",
            $term,
            "::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))))"
        )
    };
}

/// The task row a guarded insert (a message, build data) belongs to, share-locked when the
/// guard holds: a recovery or a new claim of the task commits before the check (and is seen)
/// or after the insert. `$task` is the task, the guard as in `guard!`.
macro_rules! holder {
    ($task:literal, $by:literal, $term:literal, $attempt:literal) => {
        concat!(
            "holder AS MATERIALIZED (
    SELECT 1 FROM tasks AS t
    WHERE t.task_id = $",
            $task,
            " AND ",
            guard!($by, $term, $attempt),
            "
    FOR SHARE)"
        )
    };
}

// ---- tasks ------------------------------------------------------------------------------

/// The columns a new task is written with, and their values `$1` to `$10` (id, parent,
/// action, design reference, status, node filter, created, created by, retry, request
/// context; `crate::tasks::bind_new_task`): no claim, no subtasks, result incomplete.
macro_rules! new_task {
    () => {
        "INSERT INTO tasks (
    task_id, parent_task_id, action, design_ref, status, result_status,
    node_filter, created, created_by, retry, request_context)
SELECT $1, $2, $3, $4, $5, 'incomplete', $6::text::json, $7, $8, $9, $10::text::json"
    };
}

/// `create_task`: a new task (`new_task!`); returns the row.
pub const CREATE_TASK: &str = concat!(new_task!(), " RETURNING *");

/// `create_subtask`, in one statement: appends the child `$1` to the parent `$2`'s
/// `subtask_id_list` (unless already listed) and inserts the child (`new_task!`, its parent
/// `$2`) only if the parent row was updated, which it is not when the parent is finished,
/// terminating or marked for termination, or the guard (`$11` instance, `$12` term, `$13`
/// attempt; `guard!`) does not hold; then no row, nothing written, and [`WRITE_REFUSED`]
/// says why. A child id already taken fails the primary key, and the whole statement with
/// it. The parent's row stays locked by the update until the statement commits. Returns the
/// child.
pub const CREATE_SUBTASK: &str = concat!(
    "WITH ",
    fence!(11, 12),
    ", parent AS (
UPDATE tasks AS t SET subtask_id_list = CASE WHEN $1 = ANY (t.subtask_id_list)
    THEN t.subtask_id_list ELSE array_append(t.subtask_id_list, $1) END
WHERE t.task_id = $2
  AND t.status NOT IN ('complete', 'terminated', 'terminating') AND NOT t.terminate
  AND ",
    guard!(11, 12, 13),
    "
RETURNING t.task_id)
",
    new_task!(),
    " FROM parent RETURNING *"
);

/// `create_task_tree`: the new parent `$1`'s subtask list, `$2`.
pub const SET_SUBTASK_LIST: &str = "UPDATE tasks SET subtask_id_list = $2 WHERE task_id = $1";

/// `get_task`: one task with its messages, in one round trip.
pub const GET_TASK: &str = concat!(
    "SELECT t.*, msgs.* FROM tasks AS t",
    with_messages!(),
    " WHERE t.task_id = $1"
);

/// Whether a task exists; only asked to tell "not found" from "nothing to do".
pub const TASK_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = $1)";

/// Why a guarded write changed nothing, asked only then: the task as stored (no row: it does
/// not exist) and whether the guard's instance `$2` holds the live lease with term `$3`.
pub const WRITE_REFUSED: &str = "
SELECT t.*,
       EXISTS (SELECT 1 FROM active_instance
               WHERE instance_id = $2 AND term = $3 AND expires_at > now()) AS lease_held
FROM tasks AS t
WHERE t.task_id = $1";

/// `update_tasks`, and `update_task` (a batch of one), in one statement. `$1` to `$20` are
/// parallel arrays, one element per update (`crate::tasks::UpdateColumns`): the task, then
/// its fields, then its guard. Each update writes the fields set (`NULL` keeps a plain field;
/// a `true` flag writes the value beside it, NULL included; the successes and failures come
/// as JSON array text), ends the claim (not the attempt) on a move back to `requested` or
/// `queued`. Returns each task written with its messages; an update writes nothing, and has
/// no row, when its task is terminal, the move is into `running` or `terminating` from
/// elsewhere, or its guard does not hold: the stored claim is exactly the guard's (instance,
/// term, attempt) and, when the guard has a term, `fence` found that instance's live lease
/// with that term (key-share-locked, as `fence!` does, once for every guard of the batch). A
/// parent that does not exist fails the foreign key, and the whole statement with it. The
/// tasks must be distinct (PostgreSQL updates a row once per statement).
pub const UPDATE_TASKS: &str = concat!(
    "WITH u AS MATERIALIZED (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::boolean[], $5::text[],
                         $6::boolean[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::integer[], $12::boolean[], $13::text[], $14::boolean[],
                         $15::text[], $16::boolean[], $17::uuid[], $18::text[],
                         $19::bigint[], $20::bigint[])
        AS u (task_id, status, result_status, set_message, message, set_reason, reason,
              successes, failures, links, retry, set_filter, filter, set_design, design,
              set_parent, parent, guard_by, guard_term, guard_attempt)
), fence AS MATERIALIZED (
    SELECT a.instance_id, a.term FROM active_instance AS a
    WHERE a.expires_at > now()
      AND EXISTS (SELECT 1 FROM u WHERE u.guard_by = a.instance_id AND u.guard_term = a.term)
    FOR KEY SHARE OF a
), t AS (
UPDATE tasks AS t SET
    status = COALESCE(u.status, t.status),
    result_status = COALESCE(u.result_status, t.result_status),
    result_message = CASE WHEN u.set_message THEN u.message ELSE t.result_message END,
    result_reason = CASE WHEN u.set_reason THEN u.reason ELSE t.result_reason END,
    result_successes = CASE WHEN u.successes IS NULL THEN t.result_successes
        ELSE ARRAY(SELECT json_array_elements_text(u.successes::json)) END,
    result_failures = CASE WHEN u.failures IS NULL THEN t.result_failures
        ELSE ARRAY(SELECT json_array_elements_text(u.failures::json)) END,
    result_links = COALESCE(u.links::jsonb, t.result_links),
    retry = COALESCE(u.retry, t.retry),
    node_filter = CASE WHEN u.set_filter THEN u.filter::json ELSE t.node_filter END,
    design_ref = CASE WHEN u.set_design THEN u.design ELSE t.design_ref END,
    parent_task_id = CASE WHEN u.set_parent THEN u.parent ELSE t.parent_task_id END,
    claimed_by = CASE WHEN u.status IN ('requested', 'queued') THEN NULL ELSE t.claimed_by END,
    claim_term = CASE WHEN u.status IN ('requested', 'queued') THEN NULL ELSE t.claim_term END,
    claimed_at = CASE WHEN u.status IN ('requested', 'queued') THEN NULL ELSE t.claimed_at END,
    claim_id = CASE WHEN u.status IN ('requested', 'queued') THEN NULL ELSE t.claim_id END,
    updated = now()
FROM u
WHERE t.task_id = u.task_id
  AND t.status NOT IN ('complete', 'terminated')
  AND (u.status IS NULL OR u.status = t.status OR u.status NOT IN ('running', 'terminating'))
  AND (u.guard_by IS NULL OR (t.claimed_by = u.guard_by
       AND t.claim_term IS NOT DISTINCT FROM u.guard_term
       AND t.attempt = u.guard_attempt
       AND (u.guard_term IS NULL OR EXISTS (
           SELECT 1 FROM fence AS f
           WHERE f.instance_id = u.guard_by AND f.term = u.guard_term))))
RETURNING t.*)
SELECT t.*, msgs.* FROM t",
    with_messages!()
);

/// The conditions of a task filter on `tasks`, every one optional (NULL = any): status `$1`,
/// action `$2`, parent `$3`, created in `[$4, $5)`, keyset after `($6, $7)`, claimant `$8`,
/// term `$9` (`crate::tasks::bind_filter`).
macro_rules! task_filter {
    () => {
        " WHERE ($1::text IS NULL OR status = $1)
      AND ($2::text IS NULL OR action = $2)
      AND ($3::uuid IS NULL OR parent_task_id = $3)
      AND ($4::timestamptz IS NULL OR created >= $4)
      AND ($5::timestamptz IS NULL OR created < $5)
      AND ($6::timestamptz IS NULL OR (created, task_id) > ($6, $7::uuid))
      AND ($8::text IS NULL OR claimed_by = $8)
      AND ($9::bigint IS NULL OR claim_term = $9)"
    };
}

/// `list_tasks`: the tasks `task_filter!` keeps, `LIMIT $10` (NULL = all); the page of tasks
/// and all their messages in one statement.
pub const LIST_TASKS: &str = concat!(
    "SELECT t.*, msgs.* FROM (
    SELECT * FROM tasks",
    task_filter!(),
    "
    ORDER BY created, task_id
    LIMIT $10) AS t",
    with_messages!(),
    " ORDER BY t.created, t.task_id"
);

/// `count_tasks`: how many tasks `task_filter!` keeps, no row read.
pub const COUNT_TASKS: &str = concat!("SELECT count(*) FROM tasks", task_filter!());

/// `add_subtask`: appends in one statement; the row lock makes concurrent appends queue up
/// and re-check, so all are kept. No row when the id is already listed (a no-op), the parent
/// is finished, terminating or marked for termination, or the guard (`$3` instance, `$4`
/// term, `$5` attempt; `guard!`) does not hold.
pub const ADD_SUBTASK: &str = concat!(
    "WITH ",
    fence!(3, 4),
    "
UPDATE tasks AS t SET subtask_id_list = array_append(t.subtask_id_list, $2)
WHERE t.task_id = $1 AND NOT ($2 = ANY (t.subtask_id_list))
  AND t.status NOT IN ('complete', 'terminated', 'terminating') AND NOT t.terminate
  AND ",
    guard!(3, 4, 5)
);

/// `subtasks`: the parent's listed subtasks in list order; `$2` NULL = all, true = finished
/// ones, false = unfinished ones.
pub const SUBTASKS: &str = concat!(
    "SELECT t.*, msgs.* FROM tasks AS p
CROSS JOIN LATERAL unnest(p.subtask_id_list) WITH ORDINALITY AS s(task_id, ord)
JOIN tasks AS t ON t.task_id = s.task_id",
    with_messages!(),
    " WHERE p.task_id = $1
  AND ($2::boolean IS NULL OR (t.status IN ('complete', 'terminated')) = $2)
ORDER BY s.ord"
);

/// `task_tree`, in one statement: the tree under `$1`, breadth first, down `$2` levels
/// (NULL = all). Each row of the recursive `level` is one whole level: its ids in order and
/// every id seen so far. The next level lists, for each task of this one in order, its
/// `subtask_id_list` in order, keeping only the first mention of an id and no id already
/// seen, as the reference store's walk does; so a cycle or a repeated id ends the walk
/// (each id is seen once) and the rows are exactly the tree, never more. An id listed but
/// not stored lists nothing. Returns each id with its depth and position in its level
/// (`tree_depth`, `tree_id`, `tree_pos`, in that order), its task row `LEFT JOIN`ed (all
/// NULL when it is missing) and the task's messages. No row when `$1` does not exist.
pub const TASK_TREE: &str = concat!(
    "WITH RECURSIVE level(depth, ids, seen) AS (
    SELECT 0, ARRAY[r.task_id], ARRAY[r.task_id]
    FROM tasks AS r WHERE r.task_id = $1
  UNION ALL
    SELECT l.depth + 1, n.ids, l.seen || n.ids
    FROM level AS l
    CROSS JOIN LATERAL (
        SELECT array_agg(f.id ORDER BY f.pos, f.ord) AS ids
        FROM (
            SELECT DISTINCT ON (s.id) s.id, p.pos, s.ord
            FROM unnest(l.ids) WITH ORDINALITY AS p(id, pos)
            JOIN tasks AS t ON t.task_id = p.id
            CROSS JOIN LATERAL unnest(t.subtask_id_list) WITH ORDINALITY AS s(id, ord)
            WHERE s.id <> ALL (l.seen)
            ORDER BY s.id, p.pos, s.ord
        ) AS f
    ) AS n
    WHERE ($2::bigint IS NULL OR l.depth < $2) AND n.ids IS NOT NULL
)
SELECT l.depth AS tree_depth, x.tree_id, x.tree_pos, t.*, msgs.*
FROM level AS l
CROSS JOIN LATERAL unnest(l.ids) WITH ORDINALITY AS x(tree_id, tree_pos)
LEFT JOIN tasks AS t ON t.task_id = x.tree_id",
    with_messages!(),
    " ORDER BY l.depth, x.tree_pos"
);

/// `claim_next` and `claim_batch`, in one statement: up to `$limit` tasks. The fence
/// (`fence!`; `$3` NULL = unfenced) key-share-locks the lease row so no change of holder can
/// commit between the check and the claim; nothing happens unless it holds. `$4` holds the claim ids the
/// claimed tasks record (`claim_next`: its claim id; `claim_batch`: the batch's derived ids;
/// empty without a claim id): when a task already carries one of them, the request is a
/// re-sent one and those tasks come back as they are (the caller tells its own re-sent
/// claim from another instance's ids), and nothing is claimed. Otherwise the queued tasks of
/// the allowed actions (`$1` empty = any) that are marked for termination become
/// `terminated`, never handed out, and the `$limit` oldest unmarked ones are locked (skipping
/// rows other claimers hold) and moved to running with the claim recorded (one more
/// attempt) on the database's clock, the `i`-th (from 1, oldest first) with claim id `$4[i]`
/// (NULL without one). The tasks come back with their messages, oldest first. `$limit` is
/// the `LIMIT`: a bind parameter or a constant.
macro_rules! claim {
    ($limit:literal) => {
        concat!(
            "WITH ",
            fence!(2, 3),
            ", go AS MATERIALIZED (
    SELECT ($3::bigint IS NULL OR EXISTS (SELECT 1 FROM fence)) AS fenced,
           EXISTS (SELECT 1 FROM tasks WHERE claim_id = ANY ($4::uuid[])) AS resent
), doomed AS (
    UPDATE tasks AS d SET status = 'terminated', updated = now()
    WHERE d.task_id IN (
        SELECT task_id FROM tasks
        WHERE status = 'queued' AND terminate
          AND (cardinality($1::text[]) = 0 OR action = ANY ($1::text[]))
          AND (SELECT fenced AND NOT resent FROM go)
        FOR UPDATE SKIP LOCKED)
), next AS MATERIALIZED (
    SELECT task_id, created FROM tasks
    WHERE status = 'queued' AND NOT terminate
      AND (cardinality($1::text[]) = 0 OR action = ANY ($1::text[]))
      AND (SELECT fenced AND NOT resent FROM go)
    ORDER BY created, task_id
    LIMIT ",
            $limit,
            "
    FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT task_id, row_number() OVER (ORDER BY created, task_id) AS i FROM next
), claimed AS (
    UPDATE tasks AS c
    SET status = 'running', claimed_by = $2, claim_term = $3,
        claim_id = ($4::uuid[])[numbered.i],
        claimed_at = now(), attempt = c.attempt + 1, updated = now()
    FROM numbered
    WHERE c.task_id = numbered.task_id
    RETURNING c.*
), t AS (
    SELECT * FROM claimed
    UNION ALL
    SELECT * FROM tasks
    WHERE claim_id = ANY ($4::uuid[]) AND (SELECT fenced FROM go)
)
SELECT t.*, msgs.* FROM t",
            with_messages!(),
            " ORDER BY t.created, t.task_id"
        )
    };
}

/// `claim_batch`: `claim!` of the `$5` oldest queued tasks. PostgreSQL plans it afresh on
/// every call (a generic plan cannot know how many rows `LIMIT $5` keeps, so it looks
/// dearer than a custom one), which a batch pays once for many tasks.
pub const CLAIM_BATCH: &str = claim!("$5");

/// `claim_next`: `claim!` of the oldest queued task, `$1` to `$4` as [`CLAIM_BATCH`]. The
/// constant limit lets PostgreSQL switch to one generic plan after five calls, so a claim of
/// one does not pay a planning per task (0.22 ms a call instead of 0.75 ms on this machine,
/// each form `EXECUTE`d in a rolled-back transaction from psql, 100,000 tasks queued).
pub const CLAIM_NEXT: &str = claim!("1");

/// Whether `$1` holds the live lease with term `$2`; asked only when a fenced claim found
/// nothing, to tell "fenced out" from "nothing queued".
pub const LEASE_HELD_WITH_TERM: &str = "
SELECT EXISTS (
    SELECT 1 FROM active_instance
    WHERE instance_id = $1 AND term = $2 AND expires_at > now())";

/// `recover_orphans`: the running and terminating tasks claimed under a term older than
/// `$1`, locked (a concurrent recovery waits, then finds them recovered).
pub const RECOVER_ORPHANS_LOCK: &str = "
SELECT * FROM tasks
WHERE status IN ('running', 'terminating') AND claim_term < $1
ORDER BY created, task_id
FOR UPDATE";

/// `recover_orphans`: moves each locked orphan (`$1`) to its recovery's status (`$2`), failing
/// those whose flag (`$3`) says so with the reason `$4`, and ends every claim (the attempt
/// count stays).
pub const RECOVER_ORPHANS_APPLY: &str = "
UPDATE tasks AS t SET
    status = r.status,
    result_status = CASE WHEN r.fail THEN 'failure' ELSE t.result_status END,
    result_reason = CASE WHEN r.fail THEN $4 ELSE t.result_reason END,
    claimed_by = NULL, claim_term = NULL, claimed_at = NULL, claim_id = NULL,
    updated = now()
FROM unnest($1::uuid[], $2::text[], $3::boolean[]) AS r(task_id, status, fail)
WHERE t.task_id = r.task_id";

/// `terminate_task`, in one statement: the task `$1`, if the guard (`$3` instance, `$4` term,
/// `$5` attempt; `guard!`) holds, locked, and its whole subtree by parent link are marked
/// (`terminate`, `terminated`, `terminated_by` = `$2`); waiting tasks become terminated,
/// running ones terminating, finished ones keep their status. Returns the task `$1` with its
/// messages; no row when it does not exist or the guard does not hold. `UNION` so that a
/// parent cycle made by an update still terminates.
pub const TERMINATE_TASK: &str = concat!(
    "WITH RECURSIVE ",
    fence!(3, 4),
    ", root AS MATERIALIZED (
    SELECT t.task_id FROM tasks AS t
    WHERE t.task_id = $1 AND ",
    guard!(3, 4, 5),
    "
    FOR UPDATE
), tree(task_id) AS (
    SELECT task_id FROM root
    UNION
    SELECT c.task_id FROM tasks AS c JOIN tree ON c.parent_task_id = tree.task_id
), t AS (
    UPDATE tasks AS m SET
        terminate = true, terminated = now(), terminated_by = $2, updated = now(),
        status = CASE WHEN m.status IN ('requested', 'queued') THEN 'terminated'
                      WHEN m.status IN ('running', 'terminating') THEN 'terminating'
                      ELSE m.status END
    WHERE m.task_id IN (SELECT task_id FROM tree)
    RETURNING m.*
)
SELECT t.*, msgs.* FROM t",
    with_messages!(),
    " WHERE t.task_id = $1"
);

/// `purge`: the cutoff, `$1` microseconds before the database's now.
pub const PURGE_CUTOFF: &str = "SELECT now() - $1::bigint * interval '1 microsecond'";

/// `purge`, one batch: locks the oldest `$2` roots created before `$1`, after the keyset
/// `($3, $4)` (NULL for the first batch), with their status. The root and age conditions are
/// in this locking statement's own `WHERE`, so PostgreSQL re-checks them on the newest row
/// version once a lock it waited for is granted: a root that got a parent meanwhile is
/// passed over. The keyset moves past trees kept for their live work.
pub const PURGE_LOCK_ROOTS: &str = "
SELECT task_id, created, status FROM tasks
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
SELECT task_id, parent_task_id, status FROM tasks
WHERE parent_task_id = ANY ($1)
FOR UPDATE";

/// `purge`: deletes the messages of the locked tasks in `$1`; the rows deleted are the
/// report's count.
pub const PURGE_DELETE_MESSAGES: &str = "DELETE FROM result_message WHERE task_id = ANY ($1)";

/// `purge`: deletes the locked tasks in `$1`, whole trees; the rows deleted are the report's
/// count (every descendant is in `$1`, so the cascade finds nothing more).
pub const PURGE_DELETE_TASKS: &str = "DELETE FROM tasks WHERE task_id = ANY ($1)";

/// The insert of a batch of messages bound as parallel arrays (`$1` task ids, `$2` texts, `$3`
/// error flags, `$4` context types, `$5` contexts, `$6` extras as JSON text), to be followed
/// by its `WHERE` (if any), `ORDER BY m.ord` and `RETURNING *`: rows are sequenced in array
/// order (the ordered subquery is evaluated before the `bigserial` default).
macro_rules! insert_messages {
    () => {
        "
INSERT INTO result_message (task_id, message, error, context_type, context, extra)
SELECT m.task_id, m.message, m.error, m.context_type, m.context, m.extra::json
FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS m(task_id, message, error, context_type, context, extra, ord)"
    };
}

// ---- messages ---------------------------------------------------------------------------

/// `append_message`: one message, stamped and sequenced by the database.
pub const APPEND_MESSAGE: &str = "
INSERT INTO result_message (task_id, message, error, context_type, context, extra)
VALUES ($1, $2, $3, $4, $5, $6::text::json)
RETURNING *";

/// `append_messages` (and `recover_orphans`): many messages in one statement, sequenced in
/// array order (the ordered subquery is evaluated before the `bigserial` default).
pub const APPEND_MESSAGES: &str = concat!(
    insert_messages!(),
    "
ORDER BY m.ord
RETURNING *"
);

/// `append_message` with a guard (`$7` instance, `$8` term, `$9` attempt; `holder!`):
/// inserted only if the task carries that claim; no row otherwise.
pub const APPEND_MESSAGE_GUARDED: &str = concat!(
    "WITH ",
    fence!(7, 8),
    ", ",
    holder!(1, 7, 8, 9),
    "
INSERT INTO result_message (task_id, message, error, context_type, context, extra)
SELECT $1, $2, $3, $4, $5, $6::text::json WHERE EXISTS (SELECT 1 FROM holder)
RETURNING *"
);

/// `append_messages` with a guard: the messages of [`APPEND_MESSAGES`], all for task `$7`,
/// inserted only if it carries the claim (`$8` instance, `$9` term, `$10` attempt); no rows
/// otherwise.
pub const APPEND_MESSAGES_GUARDED: &str = concat!(
    "WITH ",
    fence!(8, 9),
    ", ",
    holder!(7, 8, 9, 10),
    insert_messages!(),
    "
WHERE EXISTS (SELECT 1 FROM holder)
ORDER BY m.ord
RETURNING *"
);

/// `set_boot_action_status`: the messages of [`APPEND_MESSAGES`], all for task `$7`, inserted
/// only if it exists, key-share-locked (as the foreign key would) so that a purge cannot delete
/// it before the transaction commits; no rows when it does not exist (purged meanwhile).
pub const APPEND_MESSAGES_IF_TASK: &str = concat!(
    "
WITH task AS MATERIALIZED (
    SELECT 1 FROM tasks WHERE task_id = $7 FOR KEY SHARE)",
    insert_messages!(),
    "
WHERE EXISTS (SELECT 1 FROM task)
ORDER BY m.ord
RETURNING *"
);

/// `messages`: one task's messages in sequence order.
pub const MESSAGES_OF_TASK: &str =
    "SELECT * FROM result_message WHERE task_id = $1 ORDER BY sequence";

// ---- build data -------------------------------------------------------------------------

/// `record_build_data`: a missing collected date becomes the database's now.
pub const RECORD_BUILD_DATA: &str = "
INSERT INTO build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
VALUES ($1, $2, COALESCE($3, now()), $4, $5, $6)";

/// `record_build_data` with a guard (`$7` instance, `$8` term, `$9` attempt; `holder!`):
/// inserted only if the task `$2` carries that claim; no row otherwise.
pub const RECORD_BUILD_DATA_GUARDED: &str = concat!(
    "WITH ",
    fence!(7, 8),
    ", ",
    holder!(2, 7, 8, 9),
    "
INSERT INTO build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
SELECT $1, $2, COALESCE($3, now()), $4, $5, $6 WHERE EXISTS (SELECT 1 FROM holder)"
);

/// `build_data` by node (and task, when `$2` is not NULL), newest first. With `$3` false the
/// element is not read.
pub const BUILD_DATA_BY_NODE: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $3 THEN data_element END AS data_element
FROM build_data
WHERE node_name = $1 AND ($2::uuid IS NULL OR task_id = $2)
ORDER BY collected_date DESC, id DESC";

/// `build_data` by task, newest first.
pub const BUILD_DATA_BY_TASK: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $2 THEN data_element END AS data_element
FROM build_data
WHERE task_id = $1
ORDER BY collected_date DESC, id DESC";

/// `build_data` of every node, newest first.
pub const BUILD_DATA_ALL: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $1 THEN data_element END AS data_element
FROM build_data
ORDER BY collected_date DESC, id DESC";

/// `build_data_of_tasks`: the build data of any of the tasks `$1`, newest first (among equal
/// dates by task id, then the later row first, as the reference store orders them). With
/// `$2` false the element is not read.
pub const BUILD_DATA_OF_TASKS: &str = "
SELECT node_name, task_id, collected_date, generator, data_format,
       CASE WHEN $2 THEN data_element END AS data_element
FROM build_data
WHERE task_id = ANY ($1)
ORDER BY collected_date DESC, task_id, id DESC";

/// `build_data` latest, by node (and task): the newest row per generator.
pub const BUILD_DATA_LATEST_BY_NODE: &str = "
SELECT node_name, task_id, collected_date, generator, data_format, data_element FROM (
    SELECT DISTINCT ON (node_name, generator)
           id, node_name, task_id, collected_date, generator, data_format,
           CASE WHEN $3 THEN data_element END AS data_element
    FROM build_data
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
    FROM build_data
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
    FROM build_data
    ORDER BY node_name, generator, collected_date DESC, id DESC
) AS latest
ORDER BY collected_date DESC, id DESC";

// ---- the lease --------------------------------------------------------------------------

/// `claim_lease`, in one statement judged by the database's clock, after [`RENEW_LEASE`]
/// found the lease not ours and live: takes the row when it is ours and live (renewal: same
/// term, same acquisition time; a renewal that raced this one) or lapsed (a new holding: term
/// one higher); otherwise no row. `$2` is the grace period in microseconds. Its upsert locks
/// the row as an update of the term would (`FOR UPDATE`), so it waits for fenced writes in
/// flight; renewals go through [`RENEW_LEASE`], which does not.
pub const CLAIM_LEASE: &str = "
INSERT INTO active_instance AS a
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

/// `renew_lease`, and `claim_lease`'s first try: extends the lease if `$1` holds it and it
/// has not lapsed. It writes no key column (the term is one, migration `0007_fencing_key`),
/// so it does not wait for the fenced writes that key-share-lock the row.
pub const RENEW_LEASE: &str = "
UPDATE active_instance
SET renewed_at = now(), expires_at = now() + $2::bigint * interval '1 microsecond'
WHERE instance_id = $1 AND expires_at > now()
RETURNING instance_id, term, acquired_at, renewed_at, expires_at";

/// `release_lease`: lapses the lease now if `$1` holds it; the row and its term stay.
pub const RELEASE_LEASE: &str = "
UPDATE active_instance SET expires_at = now()
WHERE instance_id = $1 AND expires_at > now()";

/// `current_lease`: the live lease, if any.
pub const CURRENT_LEASE: &str = "
SELECT instance_id, term, acquired_at, renewed_at, expires_at
FROM active_instance
WHERE expires_at > now()";

// ---- boot actions -----------------------------------------------------------------------

/// `set_boot_action_context`: sets node `$1`'s context (task `$2`, key `$3`), replacing the
/// one it had, only if the task exists (key-share-locked, as a foreign key would, until the
/// statement commits); no row written when it does not.
pub const SET_BOOT_ACTION_CONTEXT: &str = "
WITH task AS MATERIALIZED (
    SELECT 1 FROM tasks WHERE task_id = $2 FOR KEY SHARE)
INSERT INTO boot_action AS b (node_name, task_id, identity_key)
SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM task)
ON CONFLICT (node_name) DO UPDATE SET
    task_id = excluded.task_id,
    identity_key = excluded.identity_key";

/// `boot_action_context`: node `$1`'s context.
pub const BOOT_ACTION_CONTEXT: &str = "
SELECT node_name, task_id, identity_key FROM boot_action WHERE node_name = $1";

/// `add_boot_action`, in one statement: inserts the action (`$1` id, `$2` node, `$3` name,
/// `$4` task, `$5` key, `$6` status) only if its task exists (key-share-locked), and says
/// whether it did and whether the id was already stored (read in the statement's snapshot,
/// so a missing task with a taken id is told as the reference store tells it: a conflict).
/// A taken id with the task present fails the primary key (a unique violation).
pub const ADD_BOOT_ACTION: &str = "
WITH task AS MATERIALIZED (
    SELECT 1 FROM tasks WHERE task_id = $4 FOR KEY SHARE
), added AS (
    INSERT INTO boot_action_status
        (action_id, node_name, action_name, task_id, identity_key, action_status)
    SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM task)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM added) AS added,
       EXISTS (SELECT 1 FROM boot_action_status WHERE action_id = $1) AS id_taken";

/// `boot_action`: one action by id.
pub const BOOT_ACTION: &str = "SELECT * FROM boot_action_status WHERE action_id = $1";

/// `set_boot_action_status`, first in its transaction: writes the status `$2` of action `$1`
/// and returns the action with the status it had (`previous_status`); no row for an unknown
/// id. The action is locked first, until the transaction ends, so concurrent reports of one
/// action queue up and each sees the status the previous one wrote (after the wait, the lock
/// returns the row as committed); the caller rolls back when that status was final.
pub const SET_BOOT_ACTION_STATUS: &str = "
WITH old AS MATERIALIZED (
    SELECT action_id, action_status FROM boot_action_status
    WHERE action_id = $1 FOR UPDATE)
UPDATE boot_action_status AS s SET action_status = $2
FROM old WHERE s.action_id = old.action_id
RETURNING s.*, old.action_status AS previous_status";

/// `boot_actions_for_node`: node `$1`'s actions in id order (`boot_action_status_node_idx`);
/// ULIDs sort by time and bytea bytewise, so the newest of a repeated name comes last.
pub const BOOT_ACTIONS_OF_NODE: &str = "
SELECT * FROM boot_action_status WHERE node_name = $1 ORDER BY action_id";

// ---- health -----------------------------------------------------------------------------

/// `ping`: the database's clock, a round trip that proves it answers.
pub const PING: &str = "SELECT now()";

// ---- import -----------------------------------------------------------------------------

/// `import`: which of the tasks `$1` are stored, each key-share-locked (as a foreign key
/// would) until the import's transaction ends, so none is purged under the tasks and
/// messages that refer to it.
pub const IMPORT_STORED_TASKS: &str = "
SELECT task_id FROM tasks WHERE task_id = ANY ($1::uuid[]) FOR KEY SHARE";

/// `import`: tasks as given, every column, bound as parallel arrays in batch order (parents
/// first; the parent's foreign key is checked at the end of the statement, so a parent and
/// its child may come in one). The three list columns come as one JSON array text per task
/// (`$3` subtask ids, `$10` successes, `$11` failures), unpacked in order; `$12` is the result
/// links as JSON text (`jsonb`, as [`UPDATE_TASKS`] writes them); `$13` node filter and `$21`
/// request context are JSON text cast to `json`, kept as given. A task whose id is stored is
/// not written: the rows affected are the tasks written.
pub const IMPORT_TASKS: &str = "
INSERT INTO tasks (
    task_id, parent_task_id, subtask_id_list, action, design_ref, status, result_status,
    result_message, result_reason, result_successes, result_failures, result_links,
    node_filter, created, created_by, updated, retry, terminated, terminated_by, terminate,
    request_context, claimed_by, claim_term, claimed_at, attempt, claim_id)
SELECT t.task_id, t.parent_task_id,
       ARRAY(SELECT s.e::uuid FROM json_array_elements_text(t.subtasks::json)
             WITH ORDINALITY AS s(e, n) ORDER BY s.n),
       t.action, t.design_ref, t.status, t.result_status, t.result_message, t.result_reason,
       ARRAY(SELECT s.e FROM json_array_elements_text(t.successes::json)
             WITH ORDINALITY AS s(e, n) ORDER BY s.n),
       ARRAY(SELECT s.e FROM json_array_elements_text(t.failures::json)
             WITH ORDINALITY AS s(e, n) ORDER BY s.n),
       t.links::jsonb, t.node_filter::json, t.created, t.created_by, t.updated, t.retry,
       t.terminated, t.terminated_by, t.terminate, t.request_context::json, t.claimed_by,
       t.claim_term, t.claimed_at, t.attempt, t.claim_id
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::timestamptz[], $15::text[], $16::timestamptz[], $17::integer[],
            $18::timestamptz[], $19::text[], $20::boolean[], $21::text[], $22::text[],
            $23::bigint[], $24::timestamptz[], $25::bigint[], $26::uuid[])
     WITH ORDINALITY AS t(task_id, parent_task_id, subtasks, action, design_ref, status,
                          result_status, result_message, result_reason, successes, failures,
                          links, node_filter, created, created_by, updated, retry, terminated,
                          terminated_by, terminate, request_context, claimed_by, claim_term,
                          claimed_at, attempt, claim_id, ord)
ORDER BY t.ord
ON CONFLICT (task_id) DO NOTHING";

/// `import`: the stored messages numbered as any of `$1`, with their task.
pub const IMPORT_MESSAGE_OWNERS: &str = "
SELECT sequence, task_id FROM result_message WHERE sequence = ANY ($1::bigint[])";

/// `import`: moves the messages' `bigserial` to `$1` when it is below (never back), so the
/// next appended message is numbered above every imported one. Only ever forward: a
/// sequence already past `$1` is not touched, so concurrent appends are never renumbered.
pub const IMPORT_ADVANCE_MESSAGE_SEQUENCE: &str = "
SELECT setval(s.seq, $1::bigint)
FROM (SELECT pg_get_serial_sequence('result_message', 'sequence')::regclass AS seq)
     AS s
WHERE $1::bigint > COALESCE(pg_sequence_last_value(s.seq), 0)";

/// `import`: messages with their own sequence numbers and times, bound as parallel arrays;
/// `$8` is each extra's JSON text, cast to `json` and kept as given.
pub const IMPORT_MESSAGES: &str = "
INSERT INTO result_message
    (sequence, task_id, message, error, context_type, context, ts, extra)
SELECT m.sequence, m.task_id, m.message, m.error, m.context_type, m.context, m.ts,
       m.extra::json
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::boolean[], $5::text[], $6::text[],
            $7::timestamptz[], $8::text[])
     AS m(sequence, task_id, message, error, context_type, context, ts, extra)";

/// `import`: how many stored build-data rows equal each of the elements bound as parallel
/// arrays (every column compared), by the element's position (`ord`, from 1).
pub const IMPORT_BUILD_DATA_COUNTS: &str = "
SELECT d.ord, count(b.id) AS stored
FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS d(node_name, task_id, collected_date, generator, data_format,
                          data_element, ord)
LEFT JOIN build_data AS b
       ON b.node_name = d.node_name AND b.task_id = d.task_id
      AND b.collected_date = d.collected_date AND b.generator = d.generator
      AND b.data_format = d.data_format AND b.data_element = d.data_element
GROUP BY d.ord";

/// `import`: build data as given, in array order (the ordered subquery is evaluated before
/// the `bigserial` default, so the rows' ids follow the batch).
pub const IMPORT_BUILD_DATA: &str = "
INSERT INTO build_data
    (node_name, task_id, collected_date, generator, data_format, data_element)
SELECT d.node_name, d.task_id, d.collected_date, d.generator, d.data_format, d.data_element
FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
     WITH ORDINALITY AS d(node_name, task_id, collected_date, generator, data_format,
                          data_element, ord)
ORDER BY d.ord";

/// `import`: boot-action contexts (`$1` nodes, `$2` tasks, `$3` keys); a node that has one
/// keeps it. The rows affected are the contexts written.
pub const IMPORT_BOOT_CONTEXTS: &str = "
INSERT INTO boot_action (node_name, task_id, identity_key)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::bytea[])
ON CONFLICT (node_name) DO NOTHING";

/// `import`: boot actions (`$1` ids, `$2` nodes, `$3` names, `$4` tasks, `$5` keys, `$6`
/// statuses); a stored id keeps its action. The rows affected are the actions written.
pub const IMPORT_BOOT_ACTIONS: &str = "
INSERT INTO boot_action_status
    (action_id, node_name, action_name, task_id, identity_key, action_status)
SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::uuid[], $5::bytea[], $6::text[])
ON CONFLICT (action_id) DO NOTHING";

// ---- adopt: reading a Drydock database (its tables, in `public`) --------------------------

/// `read_drydock`, first: a consistent snapshot that cannot change the source.
pub const ADOPT_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// `read_drydock`, last: ends the read-only snapshot.
pub const ADOPT_END: &str = "ROLLBACK";

/// `read_drydock`: the columns of the Drydock tables `$1` in `public`, with their types.
pub const ADOPT_COLUMNS: &str = "
SELECT table_name::text, column_name::text, udt_name::text
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = ANY($1::text[])";

/// `read_drydock`: the alembic revision(s) recorded.
pub const ADOPT_REVISION: &str =
    "SELECT version_num::text FROM public.alembic_version ORDER BY version_num";

/// `read_drydock`: the `TimeZone` settings that apply to this session's role and database
/// (`ALTER ROLE ... IN DATABASE ... SET`, `ALTER ROLE ... SET`, `ALTER DATABASE ... SET`):
/// whether each is for the role and for the database, and the `name=value` entry.
pub const ADOPT_ROLE_DB_TIME_ZONE: &str = "
SELECT s.setrole <> 0 AS for_role, s.setdatabase <> 0 AS for_database, cfg
FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
WHERE (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
  AND (s.setdatabase = 0 OR s.setdatabase =
       (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
  AND NOT (s.setrole = 0 AND s.setdatabase = 0)
  AND lower(split_part(cfg, '=', 1)) = 'timezone'";

/// `read_drydock`: whether this role may read `pg_file_settings` (superusers and members of
/// `pg_read_all_settings` may).
pub const ADOPT_CAN_READ_FILE_SETTINGS: &str = "
SELECT has_table_privilege('pg_catalog.pg_file_settings', 'SELECT')
   AND has_function_privilege('pg_catalog.pg_show_all_file_settings()', 'EXECUTE')";

/// `read_drydock`: the `timezone` the server's configuration files apply, and where.
pub const ADOPT_FILE_TIME_ZONE: &str = "
SELECT setting, coalesce(sourcefile, ''), coalesce(sourceline, 0)
FROM pg_catalog.pg_file_settings
WHERE lower(name) = 'timezone' AND applied AND error IS NULL
ORDER BY seqno DESC LIMIT 1";

/// `read_drydock`: the server's built-in `TimeZone` (used when no file sets one).
pub const ADOPT_BOOT_TIME_ZONE: &str =
    "SELECT boot_val FROM pg_catalog.pg_settings WHERE name = 'TimeZone'";

/// `read_drydock`: checks that PostgreSQL knows the zone `$1` (fails if not).
pub const ADOPT_CHECK_TIME_ZONE: &str = "SELECT now() AT TIME ZONE $1";

/// `read_drydock`: Drydock's tasks, naive times read as wall times of zone `$1`, in
/// `(created, task_id)` order.
pub const ADOPT_TASKS: &str = "
SELECT task_id::bytea, parent_task_id::bytea, subtask_id_list::bytea[],
       result_status::text, result_message::text, result_reason::text, result_error_count,
       result_successes::text[], result_failures::text[], result_links::json, retry,
       status::text, (created AT TIME ZONE $1) AS created, created_by::text,
       (updated AT TIME ZONE $1) AS updated, design_ref::text, request_context::json,
       node_filter::json, action::text, (terminated AT TIME ZONE $1) AS terminated,
       terminated_by::text, terminate
FROM public.tasks
ORDER BY (tasks.created AT TIME ZONE $1), tasks.task_id";

/// `read_drydock`: Drydock's result messages, `ts` read in zone `$1`, in `sequence` order.
pub const ADOPT_MESSAGES: &str = "
SELECT sequence::bigint AS sequence, task_id::bytea, message::text, error, context::text,
       context_type::text, (ts AT TIME ZONE $1) AS ts, extra::json
FROM public.result_message
ORDER BY result_message.sequence";

/// `read_drydock`: Drydock's build data (no key; written in UTC), in collection order, then
/// as stored.
pub const ADOPT_BUILD_DATA: &str = "
SELECT node_name::text, task_id::bytea, (collected_date AT TIME ZONE 'UTC') AS collected_date,
       generator::text, data_format::text, data_element::text
FROM public.build_data
ORDER BY build_data.collected_date, build_data.ctid";

/// `read_drydock`: Drydock's boot-action contexts, by node.
pub const ADOPT_BOOT_CONTEXTS: &str = "
SELECT node_name::text, task_id::bytea, identity_key::bytea
FROM public.boot_action ORDER BY boot_action.node_name";

/// `read_drydock`: Drydock's boot-action statuses, by id (ULIDs sort by time).
pub const ADOPT_BOOT_ACTIONS: &str = "
SELECT node_name::text, action_id::bytea, action_name::text, task_id::bytea,
       identity_key::bytea, action_status::text
FROM public.boot_action_status ORDER BY boot_action_status.action_id";

/// `read_drydock`: rows in Drydock's `active_instance` (not carried over).
pub const ADOPT_ACTIVE_INSTANCES: &str = "SELECT count(*) FROM public.active_instance";
