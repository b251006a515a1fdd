-- Every write fenced (issue 9): a claim is named by its instance, its lease term and the
-- task's attempt number, which rises by one on every claim; a caller-chosen claim id lets a
-- claim re-sent after a lost reply find the task it already claimed.

ALTER TABLE tasks
    ADD COLUMN attempt  bigint NOT NULL DEFAULT 0,
    ADD COLUMN claim_id uuid;

-- claim_next: a claim id names at most one task's claim, and a re-sent claim looks it up.
CREATE UNIQUE INDEX tasks_claim_id_idx ON tasks (claim_id) WHERE claim_id IS NOT NULL;

-- claim_next: the oldest queued task that is not marked for termination ...
DROP INDEX tasks_queued_idx;
CREATE INDEX tasks_queued_idx ON tasks (created, task_id)
    WHERE status = 'queued' AND NOT terminate;
-- ... and the marked ones it terminates instead of handing out (usually none, so this index
-- is nearly empty and the claim never walks the queue to find them).
CREATE INDEX tasks_queued_marked_idx ON tasks (task_id)
    WHERE status = 'queued' AND terminate;

-- recover_orphans: running and terminating tasks by the term they were claimed under.
DROP INDEX tasks_running_term_idx;
CREATE INDEX tasks_live_term_idx ON tasks (claim_term)
    WHERE status IN ('running', 'terminating');
