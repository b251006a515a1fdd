-- drydock-state SQLite schema, version 1.
--
-- Every table is prefixed `drydock_` so the file can be shared with an application's own
-- tables. Timestamps are INTEGER microseconds since the Unix epoch (they sort, and keep the
-- microseconds the model carries); ids are canonical lowercase UUID text, whose text order is
-- the UUID's byte order; JSON is TEXT written and read by the application, never rewritten.

CREATE TABLE drydock_tasks (
    task_id          TEXT    NOT NULL PRIMARY KEY,
    parent_task_id   TEXT    REFERENCES drydock_tasks (task_id) ON DELETE CASCADE,
    action           TEXT    NOT NULL,
    design_ref       TEXT,
    status           TEXT    NOT NULL CHECK (status IN
                         ('requested', 'queued', 'running', 'terminating', 'terminated', 'complete')),
    result_status    TEXT    NOT NULL CHECK (result_status IN
                         ('incomplete', 'success', 'partial_success', 'failure', 'unreported')),
    result_message   TEXT,
    result_reason    TEXT,
    result_successes TEXT    NOT NULL DEFAULT '[]',
    result_failures  TEXT    NOT NULL DEFAULT '[]',
    result_links     TEXT    NOT NULL DEFAULT '[]',
    node_filter      TEXT,
    subtask_id_list  TEXT    NOT NULL DEFAULT '[]',
    created          INTEGER NOT NULL,
    created_by       TEXT,
    updated          INTEGER,
    retry            INTEGER NOT NULL DEFAULT 0,
    terminated       INTEGER,
    terminated_by    TEXT,
    terminate        INTEGER NOT NULL DEFAULT 0,
    request_context  TEXT,
    claimed_by       TEXT,
    claim_term       INTEGER,
    claimed_at       INTEGER
) STRICT;

-- Listing and purging walk tasks in (created, task_id) order.
CREATE INDEX drydock_tasks_created ON drydock_tasks (created, task_id);
-- The claim queue: only queued tasks, oldest first.
CREATE INDEX drydock_tasks_queued ON drydock_tasks (created, task_id) WHERE status = 'queued';
-- Subtask listing by parent, and the cascade when a parent is deleted.
CREATE INDEX drydock_tasks_parent ON drydock_tasks (parent_task_id);
-- Orphan recovery looks for running tasks by claim term.
CREATE INDEX drydock_tasks_running ON drydock_tasks (claim_term) WHERE status = 'running';

CREATE TABLE drydock_result_messages (
    -- AUTOINCREMENT so a sequence number is never reused, even after a purge.
    sequence     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT    NOT NULL REFERENCES drydock_tasks (task_id) ON DELETE CASCADE,
    message      TEXT    NOT NULL,
    error        INTEGER NOT NULL,
    context_type TEXT    NOT NULL,
    context      TEXT    NOT NULL,
    ts           INTEGER NOT NULL,
    extra        TEXT
) STRICT;

CREATE INDEX drydock_result_messages_task ON drydock_result_messages (task_id, sequence);

-- Build history outlives tasks (it is kept across redeploys), so no foreign key.
CREATE TABLE drydock_build_data (
    id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    node_name      TEXT    NOT NULL,
    task_id        TEXT    NOT NULL,
    collected_date INTEGER NOT NULL,
    generator      TEXT    NOT NULL,
    data_format    TEXT    NOT NULL,
    data_element   TEXT    NOT NULL
) STRICT;

CREATE INDEX drydock_build_data_node ON drydock_build_data (node_name, generator, collected_date);
CREATE INDEX drydock_build_data_task ON drydock_build_data (task_id);

-- The leader lease: one row, kept across releases so the term only ever rises.
CREATE TABLE drydock_active_instance (
    singleton   INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    instance_id TEXT    NOT NULL,
    term        INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
