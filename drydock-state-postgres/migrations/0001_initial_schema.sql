-- The drydock-state schema: tasks, their result messages, node build data and the leader lease.
-- Names are unqualified: they land in the configured schema (`database.schema`, default
-- drydock_state), the only one on the migration connection's search_path, where the migration
-- history (_sqlx_migrations) lives too, apart from any application's own (see src/migrate.rs).

CREATE TABLE tasks (
    task_id          uuid        PRIMARY KEY,
    -- A subtask goes with its parent: purging a root removes the whole tree.
    parent_task_id   uuid        REFERENCES tasks (task_id) ON DELETE CASCADE,
    subtask_id_list  uuid[]      NOT NULL DEFAULT '{}',
    action           text        NOT NULL CHECK (action <> ''),
    design_ref       text,
    status           text        NOT NULL CHECK (status IN
                         ('requested', 'queued', 'running', 'terminating', 'terminated', 'complete')),
    result_status    text        NOT NULL CHECK (result_status IN
                         ('incomplete', 'success', 'partial_success', 'failure', 'unreported')),
    result_message   text,
    result_reason    text,
    result_successes text[]      NOT NULL DEFAULT '{}',
    result_failures  text[]      NOT NULL DEFAULT '{}',
    result_links     jsonb       NOT NULL DEFAULT '[]',
    node_filter      jsonb,
    created          timestamptz NOT NULL,
    created_by       text,
    updated          timestamptz,
    retry            integer     NOT NULL DEFAULT 0,
    terminated       timestamptz,
    terminated_by    text,
    terminate        boolean     NOT NULL DEFAULT false,
    request_context  jsonb,
    claimed_by       text,
    claim_term       bigint,
    claimed_at       timestamptz
);

-- claim_next: the oldest queued task.
CREATE INDEX tasks_queued_idx ON tasks (created, task_id) WHERE status = 'queued';
-- list_tasks: keyset pages in (created, task_id) order.
CREATE INDEX tasks_created_idx ON tasks (created, task_id);
-- list_tasks by parent, the subtask walk of purge, and the cascade from a deleted parent.
CREATE INDEX tasks_parent_idx ON tasks (parent_task_id);
-- purge: old roots.
CREATE INDEX tasks_root_created_idx ON tasks (created, task_id) WHERE parent_task_id IS NULL;
-- recover_orphans: running tasks by the term they were claimed under.
CREATE INDEX tasks_running_term_idx ON tasks (claim_term) WHERE status = 'running';

CREATE TABLE result_message (
    sequence     bigserial   PRIMARY KEY,
    task_id      uuid        NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    message      text        NOT NULL,
    error        boolean     NOT NULL DEFAULT false,
    context_type text        NOT NULL,
    context      text        NOT NULL,
    ts           timestamptz NOT NULL DEFAULT now(),
    extra        jsonb
);

-- A task's messages in sequence order (get, list, subtasks, purge counts, the cascade).
CREATE INDEX result_message_task_idx ON result_message (task_id, sequence);

-- Build history outlives tasks (it is kept across redeploys), so task_id is not a foreign key.
CREATE TABLE build_data (
    id             bigserial   PRIMARY KEY,
    node_name      text        NOT NULL,
    task_id        uuid        NOT NULL,
    collected_date timestamptz NOT NULL,
    generator      text        NOT NULL,
    data_format    text        NOT NULL,
    data_element   text        NOT NULL
);

-- By node, newest first, and the newest per generator (DISTINCT ON).
CREATE INDEX build_data_node_idx
    ON build_data (node_name, generator, collected_date DESC, id DESC);
CREATE INDEX build_data_task_idx ON build_data (task_id);

-- The leader lease: at most one row. `term` only ever grows, and the row is kept on release
-- so the next holder's term is still higher.
CREATE TABLE active_instance (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    instance_id text        NOT NULL,
    term        bigint      NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
