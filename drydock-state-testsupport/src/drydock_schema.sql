-- Airship Drydock's database schema at alembic head 4713e7ebca9, as its three migrations create
-- it on PostgreSQL through SQLAlchemy (written from reading alembic/versions/*.py and
-- statemgmt/db/tables.py): every table in `public`, no foreign keys, no server defaults but the
-- SERIAL of the two single-integer primary keys, BYTEA(16)/BYTEA(32) rendered as plain BYTEA,
-- DateTime as TIMESTAMP WITHOUT TIME ZONE, and an index for every `index=True` column.

-- Alembic's own bookkeeping, created before the first migration runs.
CREATE TABLE public.alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- 9593a123e7c5: create base database tables.
CREATE TABLE public.tasks (
    task_id BYTEA NOT NULL,
    parent_task_id BYTEA,
    subtask_id_list BYTEA[],
    result_status VARCHAR(32),
    result_message VARCHAR(128),
    result_reason VARCHAR(128),
    result_error_count INTEGER,
    result_successes VARCHAR(32)[],
    result_failures VARCHAR(32)[],
    retry INTEGER,
    status VARCHAR(32),
    created TIMESTAMP WITHOUT TIME ZONE,
    created_by VARCHAR(16),
    updated TIMESTAMP WITHOUT TIME ZONE,
    design_ref VARCHAR(128),
    request_context JSON,
    node_filter JSON,
    action VARCHAR(32),
    terminated TIMESTAMP WITHOUT TIME ZONE,
    terminated_by VARCHAR(16),
    terminate BOOLEAN,
    PRIMARY KEY (task_id)
);

CREATE TABLE public.result_message (
    sequence SERIAL NOT NULL,
    task_id BYTEA,
    message VARCHAR(1024),
    error BOOLEAN,
    context VARCHAR(64),
    context_type VARCHAR(16),
    ts TIMESTAMP WITHOUT TIME ZONE,
    extra JSON,
    PRIMARY KEY (sequence)
);

CREATE TABLE public.active_instance (
    dummy_key SERIAL NOT NULL,
    identity BYTEA,
    last_ping TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (dummy_key)
);

CREATE TABLE public.boot_action (
    node_name VARCHAR(280) NOT NULL,
    task_id BYTEA,
    identity_key BYTEA,
    PRIMARY KEY (node_name)
);

CREATE TABLE public.boot_action_status (
    node_name VARCHAR(280),
    action_id BYTEA NOT NULL,
    action_name VARCHAR(64),
    task_id BYTEA,
    identity_key BYTEA,
    action_status VARCHAR(32),
    PRIMARY KEY (action_id)
);

CREATE INDEX ix_boot_action_status_node_name ON public.boot_action_status (node_name);
CREATE INDEX ix_boot_action_status_task_id ON public.boot_action_status (task_id);

INSERT INTO public.alembic_version (version_num) VALUES ('9593a123e7c5');

-- 4a5bef3702b: create build_data table (no primary key).
CREATE TABLE public.build_data (
    node_name VARCHAR(32),
    task_id BYTEA,
    collected_date TIMESTAMP WITHOUT TIME ZONE,
    generator VARCHAR(256),
    data_format VARCHAR(32),
    data_element TEXT
);

CREATE INDEX ix_build_data_node_name ON public.build_data (node_name);
CREATE INDEX ix_build_data_task_id ON public.build_data (task_id);

UPDATE public.alembic_version SET version_num = '4a5bef3702b' WHERE alembic_version.version_num = '9593a123e7c5';

-- 4713e7ebca9: add task status links.
ALTER TABLE public.tasks ADD COLUMN result_links JSON;

UPDATE public.alembic_version SET version_num = '4713e7ebca9' WHERE alembic_version.version_num = '4a5bef3702b';
