-- Fewer index entries per task write (issue 5): every status change rewrites the task row
-- into every index whose predicate it matches (status appears in partial-index predicates,
-- so such updates are never HOT), so each index that earns nothing costs on every create,
-- claim and completion.
--
-- * tasks_root_created_idx duplicated tasks_created_idx for purge alone; purge's search for
--   old roots walks tasks_created_idx in the same order and filters on parent_task_id.
-- * tasks_parent_idx held an entry for every root task (parent NULL) that no query looks up:
--   lookups by parent (list by parent, purge's subtask walk, the ON DELETE CASCADE) all
--   compare with `=`, which a partial index on non-NULL parents serves.

DROP INDEX tasks_root_created_idx;

CREATE INDEX tasks_parent_nonnull_idx ON tasks (parent_task_id)
    WHERE parent_task_id IS NOT NULL;
DROP INDEX tasks_parent_idx;
