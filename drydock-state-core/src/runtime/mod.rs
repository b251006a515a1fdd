//! The orchestrator runtime: the leader lease, orphan recovery, fenced claims, concurrency,
//! cancellation and graceful shutdown, as a library, so that an application only writes
//! what it does with a task.
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn drydock_state_core::StateStore>) -> drydock_state_core::Result<()> {
//! use drydock_state_core::runtime::{Outcome, Runtime, TaskContext};
//! use drydock_state_core::LeaderConfig;
//!
//! let runtime = Runtime::builder(store, "orchestrator-a")
//!     .leader_config(&LeaderConfig::default())
//!     .actions(["deploy_node"])
//!     .concurrency(8)
//!     .exclusive_by(|task| task.node_filter.as_ref().map(|f| f.to_string()))
//!     .start(|ctx: TaskContext| async move {
//!         ctx.info(format!("deploying for task {}", ctx.id())).await?;
//!         Ok(Outcome::success())
//!     })?;
//! // ... until the process is told to stop:
//! runtime.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! What it does, in order:
//! * **Lease.** It campaigns for the lease and renews it every `claim_interval`; it acts as
//!   leader only while a renewal confirmed by the store says the lease cannot have lapsed,
//!   judged by the local monotonic clock from when the renewal was sent, less a margin (see
//!   the keeper's notes in `lease.rs`). When a renewal is denied or cannot be confirmed in
//!   time it steps down: handlers are cancelled and their contexts refuse every write.
//! * **Recovery.** On every new term, before it claims anything, it recovers the orphans of
//!   older terms ([`crate::TaskStore::recover_orphans`], policy [`RuntimeBuilder::recovery`]).
//! * **Claims.** Fenced with the term and named by a fresh claim id (one `claim_next`, or one
//!   `claim_batch` for as many tasks as handlers are free), so a claim re-sent after
//!   an error that may have lost the reply returns the same task. Up to `concurrency`
//!   handlers run at once; when nothing is queued it waits with
//!   [`crate::TaskStore::wait_for_queued`]`(poll_interval)`.
//! * **Handlers** get a [`TaskContext`]: the task, writes guarded by its claim, and a
//!   cancellation token that fires when the task is marked for termination (checked every
//!   poll interval), when the lease is lost, or at the shutdown deadline. The runtime
//!   writes the handler's [`Outcome`] with the claim as guard: completed, failed (an error or
//!   panic of the handler too), requeued, or `terminated` after a termination request.
//! * **Per-key exclusivity** ([`RuntimeBuilder::exclusive_by`]): of the tasks with one key
//!   (a node, say), at most one handler runs at a time; the others wait, claimed, in order.
//! * **Shutdown** ([`RuntimeHandle::shutdown`]): it stops claiming, waits for running handlers
//!   up to the shutdown deadline, cancels and requeues what is left, and releases the lease
//!   so another instance takes over within one `claim_interval`.
//!
//! It reports [`Event`]s ([`RuntimeHandle::subscribe`]), tracing spans per term and per task,
//! and metrics through the `metrics` facade ([`metrics`] lists them).

mod context;
mod event;
mod lease;
pub mod metrics;
mod work;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use context::{CancelReason, Outcome, TaskContext};
pub use event::Event;

use crate::backend::{no_nul, validate_instance_id};
use crate::config::LeaderConfig;
use crate::error::{BoxError, Error, Result};
use crate::model::{OrphanPolicy, Task};
use crate::store::StateStore;
use lease::Leadership;
use metrics::Metrics;

/// What a handler returns: its [`Outcome`], or an error (the task then fails with the error
/// as its reason; [`Error::LeaseLost`] leaves it to the next leader).
pub type HandlerResult = std::result::Result<Outcome, BoxError>;

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;

/// What the runtime runs for each claimed task. Any `Fn(TaskContext) -> impl Future<Output =
/// HandlerResult>` is one.
pub trait Handler: Send + Sync + 'static {
    /// Works the task.
    fn call(&self, ctx: TaskContext) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, ctx: TaskContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

type KeyFn = Arc<dyn Fn(&Task) -> Option<String> + Send + Sync>;

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) actions: Vec<String>,
    pub(crate) concurrency: usize,
    pub(crate) grace_period: Duration,
    pub(crate) claim_interval: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) margin: Duration,
    pub(crate) recovery: OrphanPolicy,
    pub(crate) shutdown_deadline: Duration,
}

/// What the lease keeper and the worker loop share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) instance: String,
    pub(crate) settings: Settings,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) key: Option<KeyFn>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) metrics: Metrics,
    pub(crate) paused: AtomicBool,
}

impl Shared {
    pub(crate) fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub(crate) fn store_error(&self, during: &'static str, message: String) {
        tracing::warn!(instance = %self.instance, during, %message, "store error");
        self.emit(Event::StoreError {
            instance: self.instance.clone(),
            during,
            message,
        });
    }
}

/// The orchestrator runtime: see the [module](self) documentation.
#[derive(Debug)]
pub struct Runtime;

impl Runtime {
    /// A runtime for `instance_id` over `store`, with [`LeaderConfig::default`]'s intervals
    /// until [`RuntimeBuilder::leader_config`] says otherwise.
    pub fn builder(store: Arc<dyn StateStore>, instance_id: impl Into<String>) -> RuntimeBuilder {
        let leader = LeaderConfig::default();
        RuntimeBuilder {
            store,
            instance: instance_id.into(),
            settings: Settings {
                actions: Vec::new(),
                concurrency: 1,
                grace_period: leader.grace_period,
                claim_interval: leader.claim_interval,
                poll_interval: leader.poll_interval,
                margin: leader.grace_period / 5,
                recovery: OrphanPolicy::Requeue,
                shutdown_deadline: leader.claim_interval,
            },
            margin_set: false,
            key: None,
            events: broadcast::channel(1024).0,
        }
    }
}

/// Configures and starts a [`Runtime`].
pub struct RuntimeBuilder {
    store: Arc<dyn StateStore>,
    instance: String,
    settings: Settings,
    margin_set: bool,
    key: Option<KeyFn>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("instance", &self.instance)
            .field("settings", &self.settings)
            .field("exclusive_by", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Takes `grace_period` (the lease length the store was opened with), `claim_interval`
    /// (how often the lease is claimed or renewed) and `poll_interval` (the longest wait for
    /// queued work, and how often termination requests and the queue are checked).
    pub fn leader_config(mut self, leader: &LeaderConfig) -> Self {
        self.settings.grace_period = leader.grace_period;
        self.settings.claim_interval = leader.claim_interval;
        self.settings.poll_interval = leader.poll_interval;
        if !self.margin_set {
            self.settings.margin = leader.grace_period / 5;
        }
        self
    }

    /// Claims only tasks with these actions (default: any).
    pub fn actions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, actions: I) -> Self {
        self.settings.actions = actions.into_iter().map(Into::into).collect();
        self
    }

    /// Runs up to `n` handlers at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n;
        self
    }

    /// What recovery does with a running task of an older term (default: requeue it).
    pub fn recovery(mut self, policy: OrphanPolicy) -> Self {
        self.settings.recovery = policy;
        self
    }

    /// How long before the lease's earliest possible lapse the runtime stops acting as leader
    /// when no renewal has been confirmed (default: a fifth of the grace period). It covers
    /// the time a write takes to reach the store after the runtime last checked.
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.settings.margin = margin;
        self.margin_set = true;
        self
    }

    /// How long a graceful shutdown waits for running handlers before it cancels them and
    /// requeues their tasks (default: one claim interval).
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.settings.shutdown_deadline = deadline;
        self
    }

    /// At most one handler at a time per key: `key` names each task's (a node, say; `None`
    /// for a task that may run beside any). Tasks whose key is busy wait, claimed, in claim
    /// order.
    pub fn exclusive_by(
        mut self,
        key: impl Fn(&Task) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// The runtime's events from now on (subscribe before [`RuntimeBuilder::start`] to see
    /// the first election).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn validate(&self) -> Result<()> {
        validate_instance_id("runtime.instance_id", &self.instance)?;
        self.settings
            .actions
            .iter()
            .try_for_each(|a| no_nul("runtime.actions", a))?;
        let s = &self.settings;
        if s.concurrency == 0 {
            return Err(Error::invalid("runtime.concurrency", "must be at least 1"));
        }
        if s.claim_interval.is_zero() || s.poll_interval.is_zero() {
            return Err(Error::invalid(
                "leader.claim_interval",
                "the claim and poll intervals must be longer than zero",
            ));
        }
        if s.margin >= s.grace_period || s.claim_interval >= s.grace_period - s.margin {
            return Err(Error::invalid(
                "leader.claim_interval",
                format!(
                    "a renewal every {:?} cannot keep a {:?} lease with a {:?} margin: the \
                     claim interval must be shorter than the grace period less the margin",
                    s.claim_interval, s.grace_period, s.margin
                ),
            ));
        }
        Ok(())
    }

    /// Starts the runtime on the current tokio runtime with `handler` for every claimed task.
    /// `InvalidInput` for a bad instance id or action, a concurrency of 0, or intervals that
    /// cannot keep the lease (the claim interval must be shorter than the grace period less
    /// the margin).
    pub fn start(self, handler: impl Handler) -> Result<RuntimeHandle> {
        self.validate()?;
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&self.instance),
            store: self.store,
            instance: self.instance,
            settings: self.settings,
            handler: Arc::new(handler),
            key: self.key,
            events: self.events,
            paused: AtomicBool::new(false),
        });
        shared.metrics.set(metrics::LEASE_HELD, 0.0);
        let (tx, rx) = watch::channel(Leadership::Follower);
        let shutdown = CancellationToken::new();
        let stop_lease = CancellationToken::new();
        let keeper = tokio::spawn(lease::keep(shared.clone(), tx, stop_lease.clone()));
        let worker = tokio::spawn(work::work(shared.clone(), rx.clone(), shutdown.clone()));
        Ok(RuntimeHandle {
            shared,
            leadership: rx,
            shutdown,
            stop_lease,
            keeper,
            worker,
        })
    }
}

/// A running [`Runtime`]. Dropping it does not stop it; call [`RuntimeHandle::shutdown`].
pub struct RuntimeHandle {
    shared: Arc<Shared>,
    leadership: watch::Receiver<Leadership>,
    shutdown: CancellationToken,
    stop_lease: CancellationToken,
    keeper: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("instance", &self.shared.instance)
            .field("term", &self.term())
            .finish_non_exhaustive()
    }
}

impl RuntimeHandle {
    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance
    }

    /// The term this instance acts as leader with now, if it does.
    pub fn term(&self) -> Option<i64> {
        match &*self.leadership.borrow() {
            Leadership::Leader { term, cancel } if !cancel.token().is_cancelled() => Some(*term),
            _ => None,
        }
    }

    /// The runtime's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// A fault to rehearse a hung process: no claim or renewal of the lease is sent until
    /// [`RuntimeHandle::resume_lease_renewals`]. Everything else goes on, so the runtime
    /// must step down by itself before the lease can lapse, as it would when the store stops
    /// answering. For tests and drills.
    pub fn pause_lease_renewals(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Ends [`RuntimeHandle::pause_lease_renewals`]: the next claim interval campaigns again.
    pub fn resume_lease_renewals(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Shuts down gracefully: stops claiming, waits for running handlers up to the shutdown
    /// deadline, cancels and requeues what is left, releases the lease, and returns when
    /// everything has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(e) = self.worker.await {
            tracing::error!(instance = %self.shared.instance, error = %e, "the worker loop failed");
        }
        self.stop_lease.cancel();
        if let Err(e) = self.keeper.await {
            tracing::error!(instance = %self.shared.instance, error = %e, "the lease keeper failed");
        }
        self.shared.metrics.set(metrics::LEASE_HELD, 0.0);
        self.shared.emit(Event::Stopped {
            instance: self.shared.instance.clone(),
        });
    }
}
