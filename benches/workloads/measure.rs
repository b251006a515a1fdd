//! What every workload uses to measure: rates, the statement count, and tasks made in bulk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drydock_state::{NewTask, StateStore, TaskId, TaskStatus};

// Statement counting: sqlx reports every statement as a tracing event with target `sqlx::query`.

static COUNTING: AtomicBool = AtomicBool::new(false);
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// The tracing layer that counts statements while [`count_statements`] runs.
pub struct StatementCounter;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementCounter {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        COUNTING.load(Ordering::Relaxed) && metadata.target() == "sqlx::query"
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs `f`, counting the statements sqlx reports meanwhile.
pub async fn count_statements<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    STATEMENTS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f.await;
    COUNTING.store(false, Ordering::SeqCst);
    (out, STATEMENTS.load(Ordering::SeqCst))
}

/// `n` operations in `elapsed`, per second.
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// Creates `n` tasks of `action` in `status`, one call each, and returns their ids.
pub async fn create_many(
    store: &Arc<dyn StateStore>,
    n: usize,
    action: &str,
    status: TaskStatus,
) -> Vec<TaskId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let t = NewTask::new(action).with_status(status);
        let stored = store.create_task(&t).await.expect("create");
        ids.push(stored.task_id);
    }
    ids
}
