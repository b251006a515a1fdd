-- drydock-state SQLite schema, version 2: every write fenced (issue 9).
--
-- A claim is named by its instance, its lease term and the task's attempt number, which rises
-- by one on every claim; a caller-chosen claim id (canonical lowercase UUID text, like every
-- id here) lets a claim re-sent after a lost reply find the task it already claimed.

ALTER TABLE drydock_tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE drydock_tasks ADD COLUMN claim_id TEXT;

-- claim_next: a claim id names at most one task's claim, and a re-sent claim looks it up.
CREATE UNIQUE INDEX drydock_tasks_claim_id ON drydock_tasks (claim_id) WHERE claim_id IS NOT NULL;

-- claim_next: the oldest queued task that is not marked for termination ...
DROP INDEX drydock_tasks_queued;
CREATE INDEX drydock_tasks_queued ON drydock_tasks (created, task_id)
    WHERE status = 'queued' AND terminate = 0;
-- ... and the marked ones it terminates instead of handing out (usually none, so this index
-- is nearly empty and the claim never walks the queue to find them).
CREATE INDEX drydock_tasks_queued_marked ON drydock_tasks (task_id)
    WHERE status = 'queued' AND terminate = 1;

-- recover_orphans: running and terminating tasks by the term they were claimed under.
DROP INDEX drydock_tasks_running;
CREATE INDEX drydock_tasks_live ON drydock_tasks (claim_term)
    WHERE status IN ('running', 'terminating');
