//! The lease keeper: campaigns for the lease, renews it every `claim_interval`, recovers the
//! orphans of older terms on each new term, and steps down before the lease can lapse.
//!
//! The lease is judged by the store's clock, which this process cannot read. So the keeper
//! judges it by its own monotonic clock, conservatively: a renewal sent at local instant `t`
//! and answered with a lease of length `L` (the store's `expires_at - renewed_at`) was renewed
//! no earlier than `t` by the store's clock, so it cannot lapse before `t + L` locally. The
//! keeper acts as leader until `t + L - margin` and steps down then unless a later renewal has
//! been confirmed: a renewal that hangs, fails or is paused (a stalled process) ends the
//! leadership before the lease could have passed to another.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::{Cancel, CancelReason};
use super::event::Event;
use super::metrics::{LEASE_HELD, TASKS_RECOVERED, TERM_CHANGES};
use super::Shared;
use crate::model::{Lease, LeaseOutcome};

/// Who acts as leader, as the keeper tells the worker loop.
#[derive(Clone, Debug, Default)]
pub(crate) enum Leadership {
    /// Not leader: claim nothing.
    #[default]
    Follower,
    /// Leader with `term`; `cancel` fires (with its reason) when the leadership ends.
    Leader { term: i64, cancel: Cancel },
}

struct Held {
    term: i64,
    /// The local instant after which the lease may have lapsed (less the margin).
    valid_until: Instant,
    cancel: Cancel,
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs until `stop` fires, then releases the lease if it holds it.
pub(crate) async fn keep(
    shared: Arc<Shared>,
    tx: watch::Sender<Leadership>,
    stop: CancellationToken,
) {
    let s = &shared.settings;
    let mut held: Option<Held> = None;
    // A term this instance stepped down from without the store's word that it ended: if a
    // claim finds it still ours, it is released first, so the next term recovers what it
    // left running.
    let mut abandoned: Option<i64> = None;
    let mut follower_of: Option<(Option<String>, Option<i64>)> = None;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = until(held.as_ref().map(|h| h.valid_until)) => {
                let h = held.take().expect("a deadline only while held");
                abandoned = Some(h.term);
                step_down(&shared, &tx, h, "no renewal was confirmed before the lease's local deadline");
                continue;
            }
            _ = sleep_until(next) => {}
        }
        next = Instant::now() + s.claim_interval;
        if shared.paused.load(Ordering::SeqCst) {
            continue;
        }
        let sent = Instant::now();
        let limit = held
            .as_ref()
            .map_or(sent + s.grace_period, |h| h.valid_until);
        let reply = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = timeout_at(limit, shared.store.claim_lease(&shared.instance)) => r,
        };
        let lease = match reply {
            Err(_) => {
                match held.take() {
                    Some(h) => {
                        abandoned = Some(h.term);
                        step_down(
                            &shared,
                            &tx,
                            h,
                            "the renewal was not confirmed before the lease's local deadline",
                        );
                    }
                    None => shared.store_error("claiming the lease", "no answer in time".into()),
                }
                continue;
            }
            Ok(Err(e)) => {
                // Held or not, nothing changes until the deadline: a later renewal may still
                // be confirmed in time.
                shared.store_error("claiming the lease", e.to_string());
                continue;
            }
            Ok(Ok(LeaseOutcome::Denied(holder))) => {
                abandoned = None;
                if let Some(h) = held.take() {
                    let reason = match &holder {
                        Some(l) => format!(
                            "the lease is held by {} with term {}",
                            l.instance_id, l.term
                        ),
                        None => "the renewal was denied: the lease had lapsed".to_string(),
                    };
                    step_down(&shared, &tx, h, &reason);
                }
                let seen = (
                    holder.as_ref().map(|l| l.instance_id.clone()),
                    holder.as_ref().map(|l| l.term),
                );
                if follower_of.as_ref() != Some(&seen) {
                    shared.emit(Event::Follower {
                        instance: shared.instance.clone(),
                        holder: seen.0.clone(),
                        term: seen.1,
                    });
                    follower_of = Some(seen);
                }
                continue;
            }
            Ok(Ok(LeaseOutcome::Held(lease))) => lease,
        };
        if abandoned == Some(lease.term) {
            abandoned = None;
            release(&shared, lease.term).await;
            next = Instant::now();
            continue;
        }
        abandoned = None;
        let valid_until = sent + length(&lease).saturating_sub(s.margin);
        match held.as_mut() {
            Some(h) if h.term == lease.term => {
                h.valid_until = valid_until;
                continue;
            }
            Some(_) => {
                let h = held.take().expect("checked");
                step_down(
                    &shared,
                    &tx,
                    h,
                    "the lease lapsed and was taken again with a new term",
                );
            }
            None => {}
        }
        held = elect(&shared, &tx, lease.term, valid_until).await;
        if held.is_some() {
            follower_of = None;
        }
    }
    if let Some(h) = held.take() {
        h.cancel.cancel(CancelReason::Shutdown);
        tx.send_replace(Leadership::Follower);
        shared.metrics.set(LEASE_HELD, 0.0);
        release(&shared, h.term).await;
    }
}

/// The lease's length by the store's clock.
fn length(lease: &Lease) -> std::time::Duration {
    (lease.expires_at - lease.renewed_at)
        .to_std()
        .unwrap_or_default()
}

/// A new term: recovers the orphans of older terms, then tells the worker loop to claim.
async fn elect(
    shared: &Arc<Shared>,
    tx: &watch::Sender<Leadership>,
    term: i64,
    valid_until: Instant,
) -> Option<Held> {
    let span = tracing::info_span!("term", instance = %shared.instance, term);
    let recovered = timeout_at(
        valid_until,
        shared
            .store
            .recover_orphans(term, shared.settings.recovery)
            .instrument(span.clone()),
    )
    .await;
    let recovered = match recovered {
        Ok(Ok(ids)) => ids,
        failed => {
            let message = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer before the lease's local deadline".to_string(),
            };
            shared.store_error("recovering orphans", message);
            // Not leader without the recovery: give the term up and campaign again.
            release(shared, term).await;
            return None;
        }
    };
    span.in_scope(|| tracing::info!(recovered = recovered.len(), "leader"));
    let cancel = Cancel::default();
    shared.metrics.count(TERM_CHANGES, 1);
    shared
        .metrics
        .count(TASKS_RECOVERED, recovered.len() as u64);
    shared.metrics.set(LEASE_HELD, 1.0);
    tx.send_replace(Leadership::Leader {
        term,
        cancel: cancel.clone(),
    });
    shared.emit(Event::Elected {
        instance: shared.instance.clone(),
        term,
        recovered,
    });
    Some(Held {
        term,
        valid_until,
        cancel,
    })
}

/// Ends a leadership: every handler of the term is cancelled and no write is made under it.
fn step_down(shared: &Shared, tx: &watch::Sender<Leadership>, held: Held, reason: &str) {
    held.cancel.cancel(CancelReason::LeaseLost);
    tx.send_replace(Leadership::Follower);
    shared.metrics.set(LEASE_HELD, 0.0);
    tracing::warn!(instance = %shared.instance, term = held.term, reason, "stepped down");
    shared.emit(Event::SteppedDown {
        instance: shared.instance.clone(),
        term: held.term,
        reason: reason.to_string(),
    });
}

/// Gives the lease up, so that another instance (or this one, with a new term) takes it at
/// once.
async fn release(shared: &Shared, term: i64) {
    let limit = Instant::now() + shared.settings.claim_interval;
    match timeout_at(limit, shared.store.release_lease(&shared.instance)).await {
        Ok(Ok(true)) => shared.emit(Event::Released {
            instance: shared.instance.clone(),
            term,
        }),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => shared.store_error("releasing the lease", e.to_string()),
        Err(_) => shared.store_error("releasing the lease", "no answer in time".into()),
    }
}
