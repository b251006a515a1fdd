-- The whole drydock-state schema on MariaDB/MySQL. Every table is named drydock_..., so the
-- schema can share a database with an application's own tables.
--
-- DDL commits implicitly on MariaDB and MySQL, so a migration cannot be rolled back as a
-- whole: every statement here is safe to run again (IF NOT EXISTS, INSERT IGNORE), and a
-- migration interrupted midway is completed by the next `migrate`.
--
-- Identifiers (task ids, claim ids) are hyphenated lower-case UUID text in ascii_bin, so their
-- order is the UUIDs' byte order, as on PostgreSQL and in memory. Every other text is
-- utf8mb4_nopad_bin: compared byte for byte, case- and trailing-space-sensitive, as on
-- PostgreSQL. Times are DATETIME(6) in UTC (every session's time_zone is '+00:00'). JSON is
-- kept as the text it was given (LONGTEXT), so its key order survives.
-- Statements are separated by a semicolon at the end of a line.

CREATE TABLE IF NOT EXISTS drydock_tasks (
    task_id          CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    parent_task_id   CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    subtask_id_list  LONGTEXT NOT NULL,
    action           VARCHAR(128) NOT NULL,
    design_ref       LONGTEXT NULL,
    status           VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    result_status    VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    result_message   LONGTEXT NULL,
    result_reason    LONGTEXT NULL,
    result_successes LONGTEXT NOT NULL,
    result_failures  LONGTEXT NOT NULL,
    result_links     LONGTEXT NOT NULL,
    node_filter      LONGTEXT NULL,
    created          DATETIME(6) NOT NULL,
    created_by       LONGTEXT NULL,
    updated          DATETIME(6) NULL,
    retry            INT NOT NULL DEFAULT 0,
    `terminated`     DATETIME(6) NULL,
    terminated_by    LONGTEXT NULL,
    `terminate`      BOOLEAN NOT NULL DEFAULT FALSE,
    request_context  LONGTEXT NULL,
    claimed_by       LONGTEXT NULL,
    claim_term       BIGINT NULL,
    claimed_at       DATETIME(6) NULL,
    attempt          BIGINT NOT NULL DEFAULT 0,
    claim_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    PRIMARY KEY (task_id),
    UNIQUE KEY drydock_tasks_claim_id_idx (claim_id),
    KEY drydock_tasks_queue_idx (status, `terminate`, created, task_id),
    KEY drydock_tasks_created_idx (created, task_id),
    KEY drydock_tasks_parent_idx (parent_task_id),
    KEY drydock_tasks_live_term_idx (status, claim_term)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE IF NOT EXISTS drydock_result_message (
    sequence     BIGINT NOT NULL AUTO_INCREMENT,
    task_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    message      LONGTEXT NOT NULL,
    error        BOOLEAN NOT NULL DEFAULT FALSE,
    context_type LONGTEXT NOT NULL,
    context      LONGTEXT NOT NULL,
    ts           DATETIME(6) NOT NULL,
    extra        LONGTEXT NULL,
    PRIMARY KEY (sequence),
    KEY drydock_result_message_task_idx (task_id, sequence)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE IF NOT EXISTS drydock_build_data (
    id             BIGINT NOT NULL AUTO_INCREMENT,
    node_name      LONGTEXT NOT NULL,
    task_id        CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    collected_date DATETIME(6) NOT NULL,
    generator      LONGTEXT NOT NULL,
    data_format    LONGTEXT NOT NULL,
    data_element   LONGTEXT NOT NULL,
    PRIMARY KEY (id),
    KEY drydock_build_data_node_idx (node_name(255), generator(255), collected_date, id),
    KEY drydock_build_data_task_idx (task_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- The leader lease: one row, always present. A row whose expires_at has passed is no lease;
-- the term is kept across releases and lapses, so every new holder's is higher.
CREATE TABLE IF NOT EXISTS drydock_active_instance (
    singleton   TINYINT NOT NULL CHECK (singleton = 1),
    instance_id LONGTEXT NOT NULL,
    term        BIGINT NOT NULL,
    acquired_at DATETIME(6) NOT NULL,
    renewed_at  DATETIME(6) NOT NULL,
    expires_at  DATETIME(6) NOT NULL,
    PRIMARY KEY (singleton)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

INSERT IGNORE INTO drydock_active_instance
    (singleton, instance_id, term, acquired_at, renewed_at, expires_at)
VALUES (1, '', 0, '1970-01-01 00:00:00', '1970-01-01 00:00:00', '1970-01-01 00:00:00');

CREATE TABLE IF NOT EXISTS drydock_boot_action (
    node_name    VARCHAR(280) NOT NULL,
    task_id      CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    identity_key BINARY(32) NOT NULL,
    PRIMARY KEY (node_name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE IF NOT EXISTS drydock_boot_action_status (
    action_id     BINARY(16) NOT NULL,
    node_name     VARCHAR(280) NOT NULL,
    action_name   VARCHAR(64) NOT NULL,
    task_id       CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    identity_key  BINARY(32) NOT NULL,
    action_status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (action_id),
    KEY drydock_boot_action_status_node_idx (node_name, action_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
