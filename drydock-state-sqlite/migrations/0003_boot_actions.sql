-- drydock-state SQLite schema, version 3: boot actions (issue 11), Drydock's `boot_action` and
-- `boot_action_status` tables.
--
-- Action ids (ULIDs, 16 bytes) and identity keys (32 bytes) are BLOBs, kept byte for byte; a
-- BLOB compares bytewise, so action ids sort by their ULID time. Task ids are canonical
-- lowercase UUID text, like every task id here. There is no foreign key to the tasks: a
-- status report for a purged task is still recorded (the store refuses a context or action
-- whose task does not exist when it is written, in the same transaction).

-- One boot-action context per node; setting it again replaces it.
CREATE TABLE drydock_boot_action (
    node_name    TEXT NOT NULL PRIMARY KEY CHECK (length(node_name) BETWEEN 1 AND 280),
    task_id      TEXT NOT NULL,
    identity_key BLOB NOT NULL CHECK (length(identity_key) = 32)
) STRICT;

CREATE TABLE drydock_boot_action_status (
    action_id     BLOB NOT NULL PRIMARY KEY CHECK (length(action_id) = 16),
    node_name     TEXT NOT NULL CHECK (length(node_name) BETWEEN 1 AND 280),
    action_name   TEXT NOT NULL CHECK (length(action_name) BETWEEN 1 AND 64),
    task_id       TEXT NOT NULL,
    identity_key  BLOB NOT NULL CHECK (length(identity_key) = 32),
    action_status TEXT NOT NULL CHECK (action_status IN
                      ('incomplete', 'success', 'failure', 'unreported'))
) STRICT;

-- boot_actions_for_node: a node's actions, oldest id first.
CREATE INDEX drydock_boot_action_status_node ON drydock_boot_action_status (node_name, action_id);
