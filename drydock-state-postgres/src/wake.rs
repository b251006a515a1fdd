//! Waking idle claimers: a `LISTEN` on the channel the `tasks_notify_queued` trigger notifies
//! whenever a task becomes queued, by this process or any other, kept alive across lost
//! connections and server restarts.
//!
//! The listener is a background task with a connection of its own, outside the store's pool.
//! When its connection is lost (a killed backend, a restarted server, a network cut) it wakes
//! every waiter, since notifications may have been missed, and reconnects with exponential
//! backoff ([`MIN_BACKOFF`] doubling up to [`MAX_BACKOFF`]); once it listens again it wakes every
//! waiter once more, for the notifications sent while it was away. Meanwhile waiters fall back
//! on their poll interval, so nothing is ever missed for longer than that.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{oneshot, Notify, OnceCell};

/// The channel of migration `0002_notify_queued.sql`.
pub(crate) const QUEUED_CHANNEL: &str = "drydock_task_queued";

/// The first pause before reconnecting a lost listener.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// The longest pause between reconnection attempts: a restarted server is heard again at
/// most this long after it accepts connections.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long one connection attempt may take (sqlx retries a refused connection within it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Wakes the claimers of one store (and its clones) when a task is queued.
#[derive(Default)]
pub(crate) struct QueuedWake {
    notify: Notify,
    /// Set once the listener task runs; dropping it (with the last store clone) stops the task.
    listening: OnceCell<oneshot::Sender<()>>,
}

impl QueuedWake {
    /// Waits for a notification or `max_wait`, never longer. The first call starts the
    /// listener and waits (within `max_wait`) for its first connection attempt, so that a task
    /// queued after it returns is heard; if that attempt fails or is slow the listener keeps
    /// trying in the background and waiters poll meanwhile.
    pub(crate) async fn wait(self: &Arc<Self>, pool: &PgPool, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        self.listening
            .get_or_init(|| start(Arc::downgrade(self), pool, deadline))
            .await;
        let _ = tokio::time::timeout_at(deadline, self.notify.notified()).await;
    }
}

/// Spawns the listener task and waits for the outcome of its first connection attempt, or
/// until `deadline`: an unreachable server must not hold a waiter past its `max_wait`.
async fn start(
    wake: Weak<QueuedWake>,
    pool: &PgPool,
    deadline: tokio::time::Instant,
) -> oneshot::Sender<()> {
    let options = (*pool.connect_options()).clone();
    let (stop, stopped) = oneshot::channel();
    let (first, first_done) = oneshot::channel();
    tokio::spawn(run(wake, options, stopped, first));
    let _ = tokio::time::timeout_at(deadline, first_done).await;
    stop
}

/// A listener subscribed to [`QUEUED_CHANNEL`] on a fresh connection from `own`.
async fn subscribe(own: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(own).await?;
    // Reconnection is ours to do (with backoff and a wake-up afterwards), not sqlx's.
    listener.eager_reconnect(false);
    listener.listen(QUEUED_CHANNEL).await?;
    Ok(listener)
}

/// The listener task: subscribe, relay notifications, and on a lost connection wake everyone
/// and subscribe again, until the store is dropped.
async fn run(
    wake: Weak<QueuedWake>,
    options: PgConnectOptions,
    mut stopped: oneshot::Receiver<()>,
    first: oneshot::Sender<()>,
) {
    // A pool of its own, so the listening connection never takes one from the store's pool;
    // tested on checkout, so a connection that died under a dropped listener is not reused.
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(CONNECT_TIMEOUT)
        .test_before_acquire(true)
        .connect_lazy_with(options);
    let mut first = Some(first);
    let mut backoff = MIN_BACKOFF;
    let mut lost_at: Option<Instant> = None;
    'subscribe: loop {
        let attempt = tokio::select! {
            _ = &mut stopped => break,
            attempt = subscribe(&own) => attempt,
        };
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        let mut listener = match attempt {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot listen for queued tasks; claimers poll until the listener is back"
                );
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        if let Some(since) = lost_at.take() {
            tracing::info!(
                down_ms = since.elapsed().as_millis() as u64,
                "queued-task listener reconnected"
            );
            // Notifications sent while it was away are gone: everyone looks once.
            let Some(wake) = wake.upgrade() else { break };
            wake.notify.notify_waiters();
        }
        loop {
            let next = tokio::select! {
                _ = &mut stopped => break 'subscribe,
                next = listener.try_recv() => next,
            };
            let Some(wake) = wake.upgrade() else {
                break 'subscribe;
            };
            // A notification, or a lost connection (after which some may be missed): wake
            // everyone either way.
            wake.notify.notify_waiters();
            match next {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!("queued-task listener lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "queued-task listener failed; reconnecting");
                    break;
                }
            }
        }
        lost_at = Some(Instant::now());
        drop(listener);
    }
    own.close().await;
}
