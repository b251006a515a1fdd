//! W6: the leader lease, claimed and renewed, and the failover from one instance to another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state::{BackendRegistry, Config, StateStore};
use serde_json::json;

use crate::baseline::Baselines;
use crate::measure::rate;
use crate::report::Figure;
use crate::scratch::Scratch;
use crate::BenchResult;

/// W6: lease calls per second, and the failover time beside its bound.
pub struct W6 {
    rate: f64,
    failover: Duration,
    failover_bound: f64,
    grace_period: Duration,
}

pub async fn w6_lease(
    store: &Arc<dyn StateStore>,
    s: usize,
    registry: &BackendRegistry,
    scratch: &Scratch,
    config: &Config,
) -> BenchResult<W6> {
    eprintln!("W6 lease...");
    let n = 2000 / s;
    let started = Instant::now();
    for _ in 0..n {
        assert!(store.claim_lease("bench-leader").await?.held().is_some());
        assert!(store.renew_lease("bench-leader").await?.held().is_some());
    }
    let w6 = rate(2 * n, started.elapsed());
    store.release_lease("bench-leader").await?;
    // Failover between two instances with pools of their own (on PostgreSQL, in sessions 14
    // hours apart): from the holder's last renewal to the other's first successful claim.
    let holder = registry.open(&scratch.store_url, config).await?;
    let other = registry.open(&scratch.other_instance_url, config).await?;
    assert!(holder.claim_lease("bench-holder").await?.held().is_some());
    assert!(holder.renew_lease("bench-holder").await?.held().is_some());
    let last_renewal = Instant::now();
    drop(holder);
    let failover = loop {
        if other.claim_lease("bench-other").await?.held().is_some() {
            break last_renewal.elapsed();
        }
        tokio::time::sleep(config.leader.claim_interval).await;
    };
    drop(other);
    let failover_bound = (config.leader.grace_period + config.leader.claim_interval).as_secs_f64();
    Ok(W6 {
        rate: w6,
        failover,
        failover_bound,
        grace_period: config.leader.grace_period,
    })
}

impl W6 {
    pub fn figures(&self, base: &Baselines) -> Vec<Figure> {
        let failover_bound = self.failover_bound;
        vec![
            Figure::rate(
                "W6_lease",
                self.rate,
                "calls/s",
                "update_c1",
                base.update_c1,
            )
            .target(">= 0.8 x update_c1", |f| f.at_least(0.8)),
            Figure::seconds(
                "W6_failover",
                self.failover.as_secs_f64(),
                "grace+claim_interval",
                failover_bound,
            )
            .with("grace_period_s", json!(self.grace_period.as_secs_f64()))
            .target("<= grace + claim interval", |f| f.value <= failover_bound),
        ]
    }
}
