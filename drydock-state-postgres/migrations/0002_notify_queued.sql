-- Wakes idle claimers: every task that becomes queued (created queued, requeued, or put back
-- in the queue by an update) notifies the channel `drydock_task_queued`, which
-- `wait_for_queued` listens on. PostgreSQL folds identical notifications of one transaction
-- into one, so a batch costs a single wake-up.

CREATE FUNCTION notify_task_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('drydock_task_queued', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_queued
    AFTER INSERT OR UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION notify_task_queued();
