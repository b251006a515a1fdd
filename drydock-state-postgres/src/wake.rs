//! Waking idle claimers: a `LISTEN` on the channel the `tasks_notify_queued` trigger notifies
//! whenever a task becomes queued, by this process or any other.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{oneshot, Notify, OnceCell};

/// The channel of migration `0002_notify_queued.sql`.
pub(crate) const QUEUED_CHANNEL: &str = "drydock_task_queued";

/// Wakes the claimers of one store (and its clones) when a task is queued.
#[derive(Default)]
pub(crate) struct QueuedWake {
    notify: Notify,
    /// Set once the listener runs; dropping it (with the last store clone) stops the listener.
    listening: OnceCell<oneshot::Sender<()>>,
}

impl QueuedWake {
    /// Waits for a notification or `max_wait`. The listener starts on first use; if it cannot,
    /// this is a plain sleep (the poll every claimer falls back on) and the next call retries.
    pub(crate) async fn wait(self: &Arc<Self>, pool: &PgPool, max_wait: Duration) {
        let started = self
            .listening
            .get_or_try_init(|| listen(Arc::downgrade(self), pool))
            .await;
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot listen for queued tasks; polling instead");
        }
        let _ = tokio::time::timeout(max_wait, self.notify.notified()).await;
    }
}

async fn listen(wake: Weak<QueuedWake>, pool: &PgPool) -> Result<oneshot::Sender<()>, sqlx::Error> {
    // A pool of its own, so the listening connection never takes one from the store's pool.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with((*pool.connect_options()).clone())
        .await?;
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(QUEUED_CHANNEL).await?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = &mut stopped => break,
                next = listener.try_recv() => next,
            };
            let Some(wake) = wake.upgrade() else { break };
            match next {
                // A notification, or a lost connection (notifications may have been missed,
                // and the listener reconnects on the next call): wake everyone either way.
                Ok(_) => wake.notify.notify_waiters(),
                Err(e) => {
                    drop(wake);
                    tracing::debug!(error = %e, "queued-task listener failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        drop(listener);
        own.close().await;
    });
    Ok(stop)
}
