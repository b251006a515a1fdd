//! Kit cases for the leader lease: claim, denial, lapse, renewal and release.

use std::time::Duration;

use super::support::*;
use super::{with_grace, StoreFactory};
use crate::model::*;

/// The first claimant gets the lease; a second is denied while it lives and is told who holds it.
pub async fn lease_claim_and_deny(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert_eq!(store.current_lease().await.unwrap(), None);
    let held = held(&*store, "instance-a").await;
    assert_eq!(held.instance_id, "instance-a");
    assert!(held.expires_at > held.renewed_at);
    match store.claim_lease("instance-b").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => {
            assert_eq!(holder.instance_id, "instance-a");
            assert_eq!(holder.term, held.term);
        }
        other => panic!("b should be denied, got {other:?}"),
    }
    assert_eq!(
        store.current_lease().await.unwrap().unwrap().instance_id,
        "instance-a"
    );
    // Claiming again as the holder keeps the term.
    assert_eq!(held_term(&*store, "instance-a").await, held.term);
}

/// After the grace period without renewal, another instance takes the lease with a higher term.
pub async fn lease_usurp_after_grace(factory: &dyn StoreFactory) {
    let store = factory.open(with_grace(Duration::from_millis(1500))).await;
    let a = held(&*store, "instance-a").await;
    assert!(store
        .claim_lease("instance-b")
        .await
        .unwrap()
        .held()
        .is_none());
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(store.current_lease().await.unwrap(), None, "lapsed");
    let b = held(&*store, "instance-b").await;
    assert_eq!(b.instance_id, "instance-b");
    assert!(b.term > a.term, "term must rise with a new holder");
    assert!(
        store
            .renew_lease("instance-a")
            .await
            .unwrap()
            .held()
            .is_none(),
        "the deposed holder cannot renew"
    );
    assert_eq!(
        store.current_lease().await.unwrap().unwrap().instance_id,
        "instance-b"
    );
}

/// Renewal extends the holder's lease with the same term; others cannot renew.
pub async fn lease_renew_keeps_term_and_denies_others(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    assert!(matches!(
        store.renew_lease("instance-a").await.unwrap(),
        LeaseOutcome::Denied(None)
    ));
    let first = held(&*store, "instance-a").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let renewed = store
        .renew_lease("instance-a")
        .await
        .unwrap()
        .held()
        .unwrap()
        .clone();
    assert_eq!(renewed.term, first.term);
    assert_eq!(renewed.acquired_at, first.acquired_at);
    assert!(renewed.expires_at > first.expires_at);
    match store.renew_lease("instance-b").await.unwrap() {
        LeaseOutcome::Denied(Some(holder)) => assert_eq!(holder.instance_id, "instance-a"),
        other => panic!("b must not renew a's lease: {other:?}"),
    }
}

/// Releasing frees the lease at once; the next holder's term is higher.
pub async fn lease_release_lets_another_claim_with_higher_term(factory: &dyn StoreFactory) {
    let store = store(factory).await;
    let a = held(&*store, "instance-a").await;
    assert!(
        !store.release_lease("instance-b").await.unwrap(),
        "b holds nothing"
    );
    assert!(store.release_lease("instance-a").await.unwrap());
    assert_eq!(store.current_lease().await.unwrap(), None);
    let b = held(&*store, "instance-b").await;
    assert!(b.term > a.term);
    let a2 = {
        store.release_lease("instance-b").await.unwrap();
        held(&*store, "instance-a").await
    };
    assert!(
        a2.term > b.term,
        "returning to an old holder is still a change of holder"
    );
}
