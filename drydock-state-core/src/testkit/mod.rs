//! The conformance kit: every store guarantee written once, run by every backend.
//!
//! A backend crate runs the whole kit with one macro call in a test file:
//!
//! ```text
//! drydock_state_core::conformance_tests!(|config: drydock_state_core::Config| async move {
//!     std::sync::Arc::new(MyStore::open_fresh(&config).await) as std::sync::Arc<dyn drydock_state_core::StateStore>
//! });
//! ```
//!
//! The factory is called with the configuration a case needs (some shorten the lease grace
//! period) and must return an empty store of its own, so cases can run in parallel. The caller
//! needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::store::StateStore;

pub mod cases;
pub mod cases_purge;

/// Opens an empty store for one case.
pub trait StoreFactory: Send + Sync {
    /// An empty store of its own, configured with `config`.
    fn open(&self, config: Config) -> Pin<Box<dyn Future<Output = Arc<dyn StateStore>> + Send>>;
}

impl<F, Fut> StoreFactory for F
where
    F: Fn(Config) -> Fut + Send + Sync,
    Fut: Future<Output = Arc<dyn StateStore>> + Send + 'static,
{
    fn open(&self, config: Config) -> Pin<Box<dyn Future<Output = Arc<dyn StateStore>> + Send>> {
        Box::pin(self(config))
    }
}

/// The configuration cases use unless they need another: a 60 s lease.
pub fn kit_config() -> Config {
    with_grace(Duration::from_secs(60))
}

/// The kit's configuration with a lease grace period of `grace`.
pub fn with_grace(grace: Duration) -> Config {
    let mut config = Config::default();
    config.leader.grace_period = grace;
    config.database.pool_size = 4;
    config.database.pool_overflow = 4;
    config
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the factory expression
/// for its stores. See the [module documentation](crate::testkit).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__conformance_cases!($factory;
            task_create_and_get,
            task_create_duplicate_is_conflict,
            task_create_with_unknown_parent_is_not_found,
            task_get_unknown_is_none,
            task_node_filter_round_trip,
            task_update_is_whole_put,
            task_update_unknown_is_not_found,
            task_terminal_status_is_final,
            task_invalid_input_is_refused_and_nothing_stored,
            task_sql_metacharacters_stored_verbatim,
            task_list_filters,
            task_list_keyset_pagination,
            task_list_assembles_messages,
            task_json_shape_from_store,
            subtask_append_is_atomic,
            subtasks_active_vs_complete,
            subtask_of_unknown_parent_is_not_found,
            terminate_task_records_who_and_when,
            purge_removes_old_trees_keeps_young,
            purge_zero_retention_is_invalid,
            messages_error_count,
            message_5000_chars_stored_whole,
            messages_in_sequence_order,
            message_to_unknown_task_is_not_found,
            message_batch_is_all_or_nothing,
            build_data_with_and_without_collected_date,
            build_data_by_node_task_and_both,
            build_data_latest_per_generator,
            build_data_latest_without_node_filter,
            build_data_brief_omits_element,
            lease_claim_and_deny,
            lease_usurp_after_grace,
            lease_renew_keeps_term_and_denies_others,
            lease_release_lets_another_claim_with_higher_term,
            claim_oldest_queued_first,
            claim_respects_actions,
            claim_nothing_queued_is_none,
            claim_fenced_with_stale_term_is_refused,
            claim_concurrent_exactly_once,
            recover_orphans_requeues_with_message,
            recover_orphans_fail_policy,
            stalled_leader_is_fenced_out_and_recovered_once,
            late_write_with_a_stale_claim_is_refused,
            purge_keeps_trees_with_live_tasks,
            json_text_kept_as_given,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let factory = $factory;
                $crate::testkit::cases::$case(&factory).await;
            }
        )+

        #[test]
        fn conformance_kit_is_complete() {
            let ran: &[&str] = &[$(stringify!($case)),+];
            assert_eq!(ran, $crate::testkit::cases::ALL, "the macro and the case list disagree");
        }
    };
}
