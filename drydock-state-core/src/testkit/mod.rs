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
pub mod cases_boot;
pub mod cases_fencing;
pub mod cases_purge;
pub mod cases_views;

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
    /// The store the function opens, wrapped in [`crate::backend::Checked`] as
    /// [`crate::BackendRegistry::open`] wraps it in production.
    fn open(&self, config: Config) -> Pin<Box<dyn Future<Output = Arc<dyn StateStore>> + Send>> {
        let store = self(config);
        Box::pin(async move {
            Arc::new(crate::backend::Checked::from_arc(store.await)) as Arc<dyn StateStore>
        })
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

/// Calls `$crate::$callback!` with the arguments given, then `;` and every case of the kit as
/// `module::case`: the one place the cases are listed. A case written in a `cases*.rs` file
/// but missing here fails the kit's own completeness test; one listed twice fails to compile.
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! { $($args)*;
            cases::task_create_and_get,
            cases::task_create_duplicate_is_conflict,
            cases::task_create_with_unknown_parent_is_not_found,
            cases::task_get_unknown_is_none,
            cases::task_node_filter_round_trip,
            cases::task_update_writes_what_it_sets,
            cases::task_update_unknown_is_not_found,
            cases::task_terminal_status_is_final,
            cases::task_running_only_by_a_claim,
            cases::task_invalid_input_is_refused_and_nothing_stored,
            cases::task_sql_metacharacters_stored_verbatim,
            cases::task_list_filters,
            cases::task_list_keyset_pagination,
            cases::task_list_assembles_messages,
            cases::task_json_shape_from_store,
            cases::subtask_append_is_atomic,
            cases::subtasks_active_vs_complete,
            cases::subtask_of_unknown_parent_is_not_found,
            cases::terminate_task_records_who_and_when,
            cases::purge_removes_old_trees_keeps_young,
            cases::purge_zero_retention_is_invalid,
            cases::messages_error_count,
            cases::message_5000_chars_stored_whole,
            cases::messages_in_sequence_order,
            cases::message_to_unknown_task_is_not_found,
            cases::message_batch_is_all_or_nothing,
            cases::build_data_with_and_without_collected_date,
            cases::build_data_by_node_task_and_both,
            cases::build_data_latest_per_generator,
            cases::build_data_latest_without_node_filter,
            cases::build_data_brief_omits_element,
            cases::lease_claim_and_deny,
            cases::lease_usurp_after_grace,
            cases::lease_renew_keeps_term_and_denies_others,
            cases::lease_release_lets_another_claim_with_higher_term,
            cases::claim_oldest_queued_first,
            cases::claim_respects_actions,
            cases::claim_nothing_queued_is_none,
            cases::claim_fenced_with_stale_term_is_refused,
            cases::claim_concurrent_exactly_once,
            cases::recover_orphans_requeues_with_message,
            cases::recover_orphans_fail_policy,
            cases::stalled_leader_is_fenced_out_and_recovered_once,
            cases::late_write_with_a_stale_claim_is_refused,
            cases_fencing::late_writes_after_fail_recovery_are_refused,
            cases_fencing::late_writes_after_requeue_are_refused,
            cases_fencing::second_run_under_the_same_term_fences_out_the_first,
            cases_fencing::guarded_write_after_losing_the_lease_is_refused,
            cases_fencing::guard_must_match_the_stored_claim_exactly,
            cases_fencing::resent_claim_id_returns_the_same_task,
            cases_fencing::list_by_claimant_and_term,
            cases_fencing::terminate_marks_the_whole_subtree,
            cases_fencing::claim_terminates_a_marked_queued_task,
            cases_fencing::recover_orphans_terminates_terminating_tasks,
            cases_fencing::update_parent_must_exist,
            cases_fencing::keyset_pages_with_ties_across_boundaries,
            cases_boot::boot_action_context_is_one_per_node,
            cases_boot::boot_action_post_put_get,
            cases_boot::boot_action_final_status_never_changes,
            cases_boot::boot_action_unknown_id_is_not_found,
            cases_boot::boot_actions_of_a_node_keyed_by_name,
            cases_boot::boot_action_status_details_go_to_the_task,
            cases_boot::ping_returns_the_store_clock,
            cases_views::task_tree_follows_subtask_lists,
            cases_views::task_view_of_one_task,
            cases_views::task_view_layers,
            cases_views::task_tree_order_follows_the_lists_not_the_ids,
            cases_views::build_data_of_tasks_orders_ties_alike,
            cases_purge::purge_keeps_trees_with_live_tasks,
            cases_purge::json_text_kept_as_given,
        }
    };
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the factory expression
/// for its stores. See the [module documentation](crate::testkit).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__kit_cases!(__conformance_cases { $factory });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:expr; $($module:ident :: $case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let factory = $factory;
                $crate::testkit::$module::$case(&factory).await;
            }
        )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kit_case_names {
    (; $($module:ident :: $case:ident),+ $(,)?) => {
        /// Every case of the kit by name, in the order [`conformance_tests!`](crate::conformance_tests) runs them.
        pub const ALL: &[&str] = &[$(stringify!($case)),+];
    };
}

__kit_cases!(__kit_case_names {});

#[cfg(test)]
mod tests {
    /// Every `pub async fn` case written in the kit's case files is listed in
    /// [`__kit_cases`], so none is silently left out of every backend's run.
    #[test]
    fn every_written_case_is_listed() {
        let sources = [
            include_str!("cases.rs"),
            include_str!("cases_fencing.rs"),
            include_str!("cases_purge.rs"),
            include_str!("cases_boot.rs"),
            include_str!("cases_views.rs"),
        ];
        let mut written: Vec<&str> = sources
            .iter()
            .flat_map(|src| src.split("pub async fn ").skip(1))
            .filter(|rest| {
                rest.split_once('(')
                    .is_some_and(|(_, args)| args.starts_with("factory: &dyn StoreFactory)"))
            })
            .map(|rest| rest.split('(').next().unwrap_or_default())
            .collect();
        written.sort_unstable();
        let mut listed: Vec<&str> = super::ALL.to_vec();
        listed.sort_unstable();
        assert_eq!(
            written, listed,
            "cases written vs cases listed in __kit_cases"
        );
    }
}
