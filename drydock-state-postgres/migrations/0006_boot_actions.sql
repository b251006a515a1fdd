-- Boot actions (issue 11): what nodes run on first boot and what they report, as Drydock's
-- `boot_action` and `boot_action_status` tables. Ids and keys are bytea, kept byte for byte.
--
-- task_id is not a foreign key in either table: a purge removes old tasks, but a node's boot
-- actions are its history (as build data is), and a status reported for an action whose task
-- was purged is still recorded. The store checks that the task exists when a context or an
-- action is written, in the writing statement.

-- A node's boot-action context: the task deploying it and the key it presents. One per node.
CREATE TABLE boot_action (
    node_name    text  PRIMARY KEY
                       CHECK (node_name <> '' AND char_length(node_name) <= 280),
    task_id      uuid  NOT NULL,
    identity_key bytea NOT NULL CHECK (octet_length(identity_key) = 32)
);

-- The boot actions: a ULID id (16 bytes), the node, the action's name, its task and key, and
-- what the node reported.
CREATE TABLE boot_action_status (
    action_id     bytea PRIMARY KEY CHECK (octet_length(action_id) = 16),
    node_name     text  NOT NULL
                        CHECK (node_name <> '' AND char_length(node_name) <= 280),
    action_name   text  NOT NULL
                        CHECK (action_name <> '' AND char_length(action_name) <= 64),
    task_id       uuid  NOT NULL,
    identity_key  bytea NOT NULL CHECK (octet_length(identity_key) = 32),
    action_status text  NOT NULL
                        CHECK (action_status IN ('incomplete', 'success', 'failure', 'unreported'))
);

-- boot_actions_for_node: a node's actions in id order (ULIDs sort by time, bytea bytewise),
-- so the newest of a repeated name comes last.
CREATE INDEX boot_action_status_node_idx ON boot_action_status (node_name, action_id);
