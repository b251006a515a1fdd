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

pub mod boot;
pub mod build_data;
pub mod claims;
pub mod fencing;
pub mod lease;
pub mod messages;
pub mod purge;
pub mod recovery;
pub mod subtasks;
mod support;
pub mod tasks;
pub mod views;

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

/// Calls `$crate::$callback!` with the arguments given, then `;` and every case of the kit as
/// `module::case`: the one place the cases are listed. A case written in a `cases*.rs` file
/// but missing here fails the kit's own completeness test; one listed twice fails to compile.
#[doc(hidden)]
#[macro_export]
macro_rules! __kit_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! { $($args)*;
            tasks::task_create_and_get,
            tasks::task_create_duplicate_is_conflict,
            tasks::task_create_with_unknown_parent_is_not_found,
            tasks::task_get_unknown_is_none,
            tasks::task_node_filter_round_trip,
            tasks::task_update_writes_what_it_sets,
            tasks::task_update_unknown_is_not_found,
            tasks::task_terminal_status_is_final,
            tasks::task_running_only_by_a_claim,
            tasks::task_invalid_input_is_refused_and_nothing_stored,
            tasks::task_sql_metacharacters_stored_verbatim,
            tasks::task_list_filters,
            tasks::task_list_keyset_pagination,
            tasks::task_list_assembles_messages,
            tasks::task_json_shape_from_store,
            subtasks::subtask_append_is_atomic,
            subtasks::subtasks_active_vs_complete,
            subtasks::subtask_of_unknown_parent_is_not_found,
            subtasks::terminate_task_records_who_and_when,
            purge::purge_removes_old_trees_keeps_young,
            purge::purge_zero_retention_is_invalid,
            messages::messages_error_count,
            messages::message_5000_chars_stored_whole,
            messages::messages_in_sequence_order,
            messages::message_to_unknown_task_is_not_found,
            messages::message_batch_is_all_or_nothing,
            build_data::build_data_with_and_without_collected_date,
            build_data::build_data_by_node_task_and_both,
            build_data::build_data_latest_per_generator,
            build_data::build_data_latest_without_node_filter,
            build_data::build_data_brief_omits_element,
            lease::lease_claim_and_deny,
            lease::lease_usurp_after_grace,
            lease::lease_renew_keeps_term_and_denies_others,
            lease::lease_release_lets_another_claim_with_higher_term,
            claims::claim_oldest_queued_first,
            claims::claim_respects_actions,
            claims::claim_nothing_queued_is_none,
            claims::claim_fenced_with_stale_term_is_refused,
            recovery::recover_orphans_requeues_with_message,
            recovery::recover_orphans_fail_policy,
            recovery::stalled_leader_is_fenced_out_and_recovered_once,
            recovery::late_write_with_a_stale_claim_is_refused,
            fencing::late_writes_after_fail_recovery_are_refused,
            fencing::late_writes_after_requeue_are_refused,
            fencing::second_run_under_the_same_term_fences_out_the_first,
            fencing::guarded_write_after_losing_the_lease_is_refused,
            fencing::guard_must_match_the_stored_claim_exactly,
            fencing::resent_claim_id_returns_the_same_task,
            fencing::list_by_claimant_and_term,
            fencing::terminate_marks_the_whole_subtree,
            fencing::claim_terminates_a_marked_queued_task,
            fencing::recover_orphans_terminates_terminating_tasks,
            fencing::update_parent_must_exist,
            fencing::keyset_pages_with_ties_across_boundaries,
            boot::boot_action_context_is_one_per_node,
            boot::boot_action_post_put_get,
            boot::boot_action_final_status_never_changes,
            boot::boot_action_unknown_id_is_not_found,
            boot::boot_actions_of_a_node_keyed_by_name,
            boot::boot_action_status_details_go_to_the_task,
            boot::ping_returns_the_store_clock,
            views::task_tree_follows_subtask_lists,
            views::task_view_of_one_task,
            views::task_view_layers,
            views::task_tree_order_follows_the_lists_not_the_ids,
            views::build_data_of_tasks_orders_ties_alike,
            purge::purge_keeps_trees_with_live_tasks,
            purge::json_text_kept_as_given,
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
            include_str!("boot.rs"),
            include_str!("build_data.rs"),
            include_str!("claims.rs"),
            include_str!("fencing.rs"),
            include_str!("lease.rs"),
            include_str!("messages.rs"),
            include_str!("purge.rs"),
            include_str!("recovery.rs"),
            include_str!("subtasks.rs"),
            include_str!("tasks.rs"),
            include_str!("views.rs"),
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
