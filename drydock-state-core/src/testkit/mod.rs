//! The conformance kit: every store guarantee written once, run by every backend.
//!
//! A backend crate runs the whole kit with one macro call in a test file, given a factory of
//! empty stores and what the backend can do:
//!
//! ```text
//! drydock_state_core::conformance_tests!(
//!     |config: drydock_state_core::Config| async move {
//!         std::sync::Arc::new(MyStore::open_fresh(&config).await)
//!             as std::sync::Arc<dyn drydock_state_core::StateStore>
//!     },
//!     drydock_state_core::testkit::Capabilities::new().wakes_on_queue(),
//! );
//! ```
//!
//! The factory ([`StoreFactory`]; a closure from [`Config`] to a future of a store is one) is
//! called with the configuration a case needs (some shorten the lease grace period) and must
//! return an empty store of its own, so cases can run in parallel. A backend whose stores
//! other processes can reach by URL implements [`StoreFactory::open_shared`] (and, if its
//! URLs are not opened through the [`BackendRegistry`],
//! [`StoreFactory::connect`]) and declares
//! [`Capabilities::shared_between_processes`]. The caller needs `tokio` (with `macros` and
//! `rt-multi-thread`) as a dev-dependency.
//!
//! What runs: every case of the modules below, one `#[tokio::test]` each; the bad-input
//! catalogue ([`bad_input`]); the differential model-based test against [`MemoryStore`]
//! ([`model`]); the exactly-once drains, in one process and across processes ([`drains`]);
//! and `wait_for_queued` ([`waits`]). See the crate's README for the environment variables.
//!
//! [`MemoryStore`]: crate::MemoryStore

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::BackendRegistry;
use crate::backend::Checked;
use crate::config::Config;
use crate::error::Result;
use crate::memory::MemoryStore;
use crate::store::StateStore;

pub mod bad_input;
pub mod batches;
pub mod boot;
pub mod build_data;
pub mod claims;
pub mod drains;
pub mod fencing;
pub mod import;
pub mod lease;
pub mod messages;
pub mod model;
pub mod purge;
pub mod recovery;
pub mod subtasks;
mod support;
pub mod tasks;
pub mod views;
pub mod waits;

/// The future of a store a [`StoreFactory`] opens.
pub type StoreFuture = Pin<Box<dyn Future<Output = Arc<dyn StateStore>> + Send>>;

/// The future of [`StoreFactory::open_shared`].
pub type SharedFuture = Pin<Box<dyn Future<Output = Option<SharedStore>> + Send>>;

/// The future of [`StoreFactory::connect`].
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn StateStore>>> + Send>>;

/// An empty store that other processes can open too, and the URL they open it by.
#[non_exhaustive]
pub struct SharedStore {
    /// The store; it keeps its storage (a temporary directory, a test database) alive.
    pub store: Arc<dyn StateStore>,
    /// What another process passes to [`StoreFactory::connect`] to reach the same store. It
    /// may hold a password: the kit never prints it.
    pub url: String,
}

impl SharedStore {
    /// A store and the URL another process reaches it by.
    pub fn new(store: Arc<dyn StateStore>, url: impl Into<String>) -> Self {
        Self {
            store,
            url: url.into(),
        }
    }
}

/// Opens stores for the kit's cases.
///
/// A closure `Fn(Config) -> impl Future<Output = Arc<dyn StateStore>>` is a factory of
/// stores that only its own process can reach; implement the trait on a type of your own to
/// offer stores shared between processes.
pub trait StoreFactory: Send + Sync {
    /// An empty store of its own, configured with `config`.
    fn open(&self, config: Config) -> StoreFuture;

    /// An empty store of its own that another process can open by URL, for the
    /// multi-process drain. `None`, the default, when the backend has no such store (the
    /// in-memory store, an in-memory SQLite database).
    fn open_shared(&self, config: Config) -> SharedFuture {
        let _ = config;
        Box::pin(async { None })
    }

    /// Opens the store at `url` (from [`StoreFactory::open_shared`]) as another process does.
    /// The default opens it through the backends registered in this program
    /// ([`BackendRegistry::from_inventory`]), as an application would.
    fn connect(&self, url: String, config: Config) -> ConnectFuture {
        Box::pin(async move { BackendRegistry::from_inventory()?.open(&url, &config).await })
    }

    /// What the stores can do that a backend may legitimately not. The default declares
    /// nothing optional; [`conformance_tests!`](crate::conformance_tests)'s second argument
    /// overrides it.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
}

impl<F, Fut> StoreFactory for F
where
    F: Fn(Config) -> Fut + Send + Sync,
    Fut: Future<Output = Arc<dyn StateStore>> + Send + 'static,
{
    fn open(&self, config: Config) -> StoreFuture {
        Box::pin(self(config))
    }
}

/// What a backend's stores can do beyond what every store must. Cases that depend on a
/// capability check what is declared: a declared capability the store lacks fails them, an
/// undeclared one is checked in its weaker form (or, for processes, not at all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `wait_for_queued` returns soon after a task is queued in the same store, instead of
    /// only once `max_wait` has passed.
    pub wakes_on_queue: bool,
    /// [`StoreFactory::open_shared`] gives stores that other OS processes reach by URL: the
    /// multi-process drain runs.
    pub shared_between_processes: bool,
}

impl Capabilities {
    /// Nothing beyond what every store must do.
    pub const fn new() -> Self {
        Self {
            wakes_on_queue: false,
            shared_between_processes: false,
        }
    }

    /// Declares [`Capabilities::wakes_on_queue`].
    pub const fn wakes_on_queue(mut self) -> Self {
        self.wakes_on_queue = true;
        self
    }

    /// Declares [`Capabilities::shared_between_processes`].
    pub const fn shared_between_processes(mut self) -> Self {
        self.shared_between_processes = true;
        self
    }
}

/// A factory with the capabilities its backend's test declared: what
/// [`conformance_tests!`](crate::conformance_tests) hands every case.
pub struct Declared<F> {
    factory: F,
    capabilities: Capabilities,
}

impl<F: StoreFactory> Declared<F> {
    /// `factory`, declaring `capabilities`.
    pub fn new(factory: F, capabilities: Capabilities) -> Self {
        Self {
            factory,
            capabilities,
        }
    }

    /// `factory`, with the capabilities it declares itself.
    pub fn own(factory: F) -> Self {
        let capabilities = factory.capabilities();
        Self::new(factory, capabilities)
    }
}

/// Every store the kit's cases use comes from here: the stores they test are opened through
/// [`Declared::open`], [`Declared::open_shared`] and [`Declared::connect`], and each is
/// wrapped in [`Checked`] as [`BackendRegistry::open`] wraps it in production (a store opened
/// by URL through the registry already is), so the kit checks what applications get.
impl<F: StoreFactory> StoreFactory for Declared<F> {
    fn open(&self, config: Config) -> StoreFuture {
        let opened = self.factory.open(config);
        Box::pin(async move { Arc::new(Checked::from_arc(opened.await)) as Arc<dyn StateStore> })
    }
    fn open_shared(&self, config: Config) -> SharedFuture {
        let opened = self.factory.open_shared(config);
        Box::pin(async move {
            opened.await.map(|shared| {
                SharedStore::new(Arc::new(Checked::from_arc(shared.store)), shared.url)
            })
        })
    }
    fn connect(&self, url: String, config: Config) -> ConnectFuture {
        self.factory.connect(url, config)
    }
    fn capabilities(&self) -> Capabilities {
        self.capabilities
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

/// The in-memory store the model-based test and the catalogue compare every store with.
pub(crate) fn reference_store(config: &Config) -> Arc<dyn StateStore> {
    Arc::new(Checked::new(MemoryStore::new(config)))
}

/// Where a case runs: its test's name as libtest knows it (`module::case`, without the
/// crate's name) and the root of the crate whose test it is.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    manifest_dir: &'static str,
}

tokio::task_local! {
    static CASE: Case;
}

/// Runs `case` as the test at `path` (`module_path!()` and the case's name) of the crate at
/// `manifest_dir`, so that a case knows how to re-run its own test in another process and
/// where the calling crate keeps its regressions.
#[doc(hidden)]
pub async fn run_case(
    path: &'static str,
    manifest_dir: &'static str,
    case: impl Future<Output = ()>,
) {
    let name = path.split_once("::").map_or(path, |(_crate, rest)| rest);
    CASE.scope(Case { name, manifest_dir }, case).await;
}

/// The running case's test name, when run through [`conformance_tests!`](crate::conformance_tests).
pub(crate) fn case_name() -> Option<&'static str> {
    CASE.try_with(|case| case.name).ok()
}

/// The root of the crate whose test runs the case, when run through
/// [`conformance_tests!`](crate::conformance_tests).
pub(crate) fn case_manifest_dir() -> Option<&'static str> {
    CASE.try_with(|case| case.manifest_dir).ok()
}

/// Reads a number from the environment variable `name`, or `default` when it is unset. A
/// value that is not a number fails the case, naming the variable.
pub(crate) fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")),
        Err(_) => default,
    }
}

/// Calls `$crate::$callback!` with the arguments given, then `;` and every case of the kit as
/// `module::case`: the one place the cases are listed. A case written in one of the kit's
/// case files but missing here fails the kit's own completeness test; one listed twice fails
/// to compile.
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
            tasks::task_count_matches_list,
            subtasks::subtask_append_is_atomic,
            subtasks::subtasks_active_vs_complete,
            subtasks::subtask_of_unknown_parent_is_not_found,
            subtasks::terminate_task_records_who_and_when,
            subtasks::create_subtask_writes_child_and_link_together,
            subtasks::create_subtask_refused_writes_nothing,
            subtasks::create_subtask_guard_is_checked_with_the_write,
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
            batches::claim_batch_takes_the_oldest_up_to_n,
            batches::claim_batch_size_is_bounded,
            batches::claim_batch_concurrent_claimers_partition_the_queue,
            batches::claim_batch_is_fenced_by_the_term,
            batches::claim_batch_resent_claim_id_returns_the_same_tasks,
            batches::update_tasks_outcomes_are_per_task,
            batches::update_tasks_of_one_task_apply_in_order,
            batches::create_task_tree_links_parent_and_subtasks,
            batches::create_task_tree_is_all_or_nothing,
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
            import::import_keeps_rows_as_given,
            import::import_twice_writes_nothing_more,
            import::import_dry_run_changes_nothing,
            import::import_is_all_or_nothing,
            import::import_build_data_by_content,
            import::import_refuses_a_malformed_batch,
            views::task_tree_follows_subtask_lists,
            views::task_view_of_one_task,
            views::task_view_layers,
            views::task_tree_order_follows_the_lists_not_the_ids,
            views::build_data_of_tasks_orders_ties_alike,
            purge::purge_keeps_trees_with_live_tasks,
            purge::json_text_kept_as_given,
            drains::claims_drained_once_by_concurrent_claimers,
            drains::claims_drained_once_across_processes,
            waits::wait_for_queued_returns_once_a_task_is_queued,
            waits::wait_for_queued_without_work_returns_ok,
            bad_input::bad_input_is_refused_and_changes_nothing,
            bad_input::ten_megabytes_stored_whole,
            bad_input::metacharacters_stored_and_matched_verbatim,
            bad_input::nul_in_lookups_answered_as_the_reference_does,
            bad_input::claim_by_an_instance_id_with_a_nul_is_refused,
            model::random_operations_agree_with_the_reference,
            model::parent_cycles_made_by_update_are_handled_as_the_reference_does,
        }
    };
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the factory expression
/// for its stores: `conformance_tests!(factory)` with the capabilities the factory declares
/// itself ([`StoreFactory::capabilities`], none by default), or
/// `conformance_tests!(factory, capabilities)`. See the [module documentation](crate::testkit).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__kit_cases!(__conformance_cases {
            $crate::testkit::Declared::own($factory)
        });
    };
    ($factory:expr, $capabilities:expr $(,)?) => {
        $crate::__kit_cases!(__conformance_cases {
            $crate::testkit::Declared::new($factory, $capabilities)
        });
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
                $crate::testkit::run_case(
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!($case)),
                    ::core::env!("CARGO_MANIFEST_DIR"),
                    $crate::testkit::$module::$case(&factory),
                )
                .await;
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
            include_str!("bad_input.rs"),
            include_str!("batches.rs"),
            include_str!("boot.rs"),
            include_str!("build_data.rs"),
            include_str!("claims.rs"),
            include_str!("drains.rs"),
            include_str!("fencing.rs"),
            include_str!("import.rs"),
            include_str!("lease.rs"),
            include_str!("messages.rs"),
            include_str!("model/mod.rs"),
            include_str!("purge.rs"),
            include_str!("recovery.rs"),
            include_str!("subtasks.rs"),
            include_str!("tasks.rs"),
            include_str!("views.rs"),
            include_str!("waits.rs"),
        ];
        let mut written: Vec<&str> = sources
            .iter()
            .flat_map(|src| src.split("pub async fn ").skip(1))
            .filter(|rest| {
                rest.split_once('(').is_some_and(|(_, args)| {
                    args.trim_start().starts_with("factory: &dyn StoreFactory")
                })
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
