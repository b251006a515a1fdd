//! `lease claim`, `renew`, `release` and `show`.

use drydock_state::{LeaseOutcome, Result, StateStore};
use serde_json::json;

use crate::args::LeaseCommand;
use crate::output::{to_json, Outcome};

/// Exit status when the lease is held by another instance.
const EXIT_LEASE_HELD_ELSEWHERE: u8 = 3;

pub async fn run(cmd: LeaseCommand, store: &dyn StateStore) -> Result<Outcome> {
    match cmd {
        LeaseCommand::Claim { instance } => held(store.claim_lease(&instance).await?, &instance),
        LeaseCommand::Renew { instance } => held(store.renew_lease(&instance).await?, &instance),
        LeaseCommand::Release { instance } => {
            let released = store.release_lease(&instance).await?;
            let text = if released {
                format!("{instance} released the lease")
            } else {
                format!("{instance} did not hold the lease")
            };
            Ok(Outcome::new(json!({"released": released}), text))
        }
        LeaseCommand::Show => {
            let lease = store.current_lease().await?;
            let text = match &lease {
                Some(l) => format!(
                    "{} holds the lease (term {}, expires {})",
                    l.instance_id, l.term, l.expires_at
                ),
                None => "nobody holds the lease".into(),
            };
            Ok(Outcome::new(to_json(&lease)?, text))
        }
    }
}

/// A claim's or renewal's outcome for `instance`: exit 0 when it holds the lease,
/// [`EXIT_LEASE_HELD_ELSEWHERE`] when it does not.
fn held(result: LeaseOutcome, instance: &str) -> Result<Outcome> {
    let code = if result.held().is_some() {
        0
    } else {
        EXIT_LEASE_HELD_ELSEWHERE
    };
    let text = match &result {
        LeaseOutcome::Held(l) => format!(
            "{instance} holds the lease (term {}, expires {})",
            l.term, l.expires_at
        ),
        LeaseOutcome::Denied(Some(l)) => format!(
            "{} holds the lease (term {}, expires {})",
            l.instance_id, l.term, l.expires_at
        ),
        LeaseOutcome::Denied(None) => {
            format!("{instance} does not hold the lease; nobody does")
        }
    };
    Ok(Outcome::new(to_json(&result)?, text).with_code(code))
}
