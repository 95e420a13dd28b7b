//! The conformance suite: written once against `Arc<dyn Store>`, run against every backend.
//! `conformance_tests!(subject_future)` expands into one `#[tokio::test]` per case, so each
//! backend's test file is a line long and the test runner lists every case by name.
//!
//! Each case takes a fresh, empty store: the run queue is shared by all tenants, so cases
//! sharing one database would claim each other's runs. A subject also says how to open a
//! second handle on its storage (`Subject::with_second_handle`), for the cases that race two;
//! a case on two stores (a copy between them) awaits the subject future twice.

mod agent_timers;
mod blocks;
mod enqueue;
mod export;
mod fixtures;
mod journal;
mod log;
mod memory;
mod moving;
mod portable;
mod runs;
mod sessions;
mod tenants;
mod timers;
mod usage;
mod waiting;
mod webhooks;

use std::any::Any;
use std::sync::Arc;

pub use agent_timers::*;
pub use blocks::*;
pub use enqueue::*;
pub use export::*;
pub use journal::*;
pub use log::*;
pub use memory::*;
pub use moving::*;
pub use portable::*;
pub use runs::*;
pub use sessions::*;
pub use tenants::*;
pub use timers::*;
pub use usage::*;
pub use waiting::*;
pub use webhooks::*;

use crate::Store;

/// Opens one more handle on a subject's storage.
type OpenHandle = Box<dyn Fn() -> Arc<dyn Store> + Send + Sync>;

/// A store under test, and whatever must outlive it (a temporary directory, a database).
pub struct Subject {
    pub store: Arc<dyn Store>,
    second_handle: Option<OpenHandle>,
    _keep_alive: Box<dyn Any + Send>,
}

impl Subject {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Subject {
            store,
            second_handle: None,
            _keep_alive: Box::new(()),
        }
    }

    /// A store that needs `guard` to live as long as it does.
    pub fn keeping(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Subject {
            store,
            second_handle: None,
            _keep_alive: Box::new(guard),
        }
    }

    /// How to open another handle on the same storage, as a second process or node sharing it
    /// would (SQLite: the same file; PostgreSQL: the same database). Every backend gives one:
    /// the cases on what must hold between nodes race two handles.
    pub fn with_second_handle(
        mut self,
        open: impl Fn() -> Arc<dyn Store> + Send + Sync + 'static,
    ) -> Self {
        self.second_handle = Some(Box::new(open));
        self
    }

    /// Another handle on this subject's storage.
    pub fn second_handle(&self) -> Arc<dyn Store> {
        let open = self.second_handle.as_ref().expect(
            "this backend's conformance subject gives no second handle: build it with `Subject::with_second_handle`",
        );
        open()
    }
}

/// What a backend's subject future gives: a `Subject`, or `None` where the backend's server
/// cannot be reached here and its test file has said so loudly (the case then does nothing).
pub trait IntoSubject {
    fn into_subject(self) -> Option<Subject>;
}

impl IntoSubject for Subject {
    fn into_subject(self) -> Option<Subject> {
        Some(self)
    }
}

impl IntoSubject for Option<Subject> {
    fn into_subject(self) -> Option<Subject> {
        self
    }
}

/// Expands into one `#[tokio::test]` per conformance case. `$subject` is a future giving a
/// `Subject` holding a fresh, empty store (or an `Option` of one: `IntoSubject`); it is awaited
/// once per case. The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) among
/// its dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($subject:expr) => {
        $crate::conformance_tests!(@cases $subject;
            append_and_read_round_trip,
            seqs_are_contiguous_from_one,
            stale_expected_seq_is_a_conflict_and_writes_nothing,
            unknown_session_is_not_found,
            concurrent_appends_lose_and_duplicate_nothing,
            load_is_latest_snapshot_plus_tail,
            read_events_pages_forward_and_backward,
            scratchpad_commits_with_its_events_and_rolls_back_with_a_conflict,
            agents_are_versioned_per_tenant,
            sessions_list_filters_pages_and_stays_in_its_tenant,
            delete_session_removes_its_log_and_runs,
            creating_a_session_twice_is_already_exists,
            claims_never_hold_two_runs_of_one_session,
            expired_lease_is_taken_over_by_another_node,
            runs_finish_and_take_cancel_requests,
            an_append_can_finish_its_run_in_the_same_transaction,
            release_leases_makes_a_nodes_runs_claimable_now,
            ping_answers,
            tenants_and_api_keys_round_trip_and_revoke,
            archived_agents_leave_the_list_until_a_new_version,
            pending_runs_and_busy_filter_stay_in_their_tenant,
            run_options_round_trip_and_finished_runs_can_be_deleted,
            session_metadata_is_replaced_within_its_tenant,
            usage_totals_add_up_per_tenant_key_model_and_day,
            a_rejecting_enqueue_on_a_busy_session_names_its_run_and_writes_nothing,
            a_run_enqueued_claimed_is_leased_and_taken_over_when_its_node_dies,
            a_started_runs_input_reads_back_from_the_log,
            a_new_sessions_copied_events_are_a_chain_of_their_own,
            a_waiting_run_holds_its_session_without_a_lease_until_queued_again,
            cancelling_a_waiting_run_queues_it_to_be_driven_to_its_end,
            unfinished_runs_are_listed_by_status_newest_first_within_their_tenant,
            timers_are_kept_per_session_and_found_when_due,
            firing_a_timer_queues_its_run_once_per_due_time,
            an_append_sets_and_cancels_timers_with_its_events,
            an_agents_timers_are_kept_per_agent_and_go_when_it_is_archived,
            firing_an_agents_timer_creates_one_session_and_its_run,
            memory_records_round_trip_and_are_replaced_and_deleted_within_their_tenant,
            memory_search_fuses_keywords_and_vectors_within_one_namespace,
            a_memory_record_a_store_cannot_keep_is_refused_whole,
            memory_saved_with_an_append_commits_with_its_events_within_its_tenant,
            a_moved_session_takes_nothing_more_and_is_passed_by,
            webhooks_are_kept_per_tenant_and_found_by_their_token,
            a_settling_run_writes_one_delivery_per_webhook_that_asked,
            deliveries_are_claimed_once_per_attempt_and_settled_by_it,
            an_unsettled_claim_is_claimed_again_when_its_attempt_times_out,
            a_sessions_blocks_follow_its_edit_events_within_its_tenant,
            shared_blocks_are_written_from_their_version_with_their_history,
        );
        // Cases that open more handles on the subject's storage.
        $crate::conformance_tests!(@subject_cases $subject;
            racing_rejecting_enqueues_on_two_handles_let_exactly_one_through,
            racing_claims_on_two_handles_hand_out_each_session_once,
            the_log_is_one_hash_chain_across_batches_and_handles,
            nodes_racing_to_fire_a_due_timer_fire_it_once,
            nodes_racing_to_fire_an_agents_timer_create_one_session_per_due_time,
            a_timer_put_while_its_agent_is_archived_is_never_left_behind,
            nodes_racing_to_claim_deliveries_claim_each_once,
            an_inbound_signature_is_accepted_once_within_its_window,
            handles_racing_to_write_a_shared_block_from_one_version_write_it_once,
        );
        // Cases on two stores of the backend: `$subject` awaited twice.
        $crate::conformance_tests!(@pair_cases $subject;
            a_copied_store_answers_every_reader_as_the_original,
            an_exported_session_imports_into_another_store_as_it_was,
            an_imported_session_has_the_blocks_its_log_edits,
        );
    };
    (@cases $subject:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(subject) = $crate::conformance::IntoSubject::into_subject($subject.await) else {
                    return;
                };
                $crate::conformance::$case(::std::sync::Arc::clone(&subject.store)).await;
            }
        )+
    };
    (@pair_cases $subject:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(source) = $crate::conformance::IntoSubject::into_subject($subject.await) else {
                    return;
                };
                let Some(target) = $crate::conformance::IntoSubject::into_subject($subject.await) else {
                    return;
                };
                $crate::conformance::$case(&source, &target).await;
            }
        )+
    };
    (@subject_cases $subject:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(subject) = $crate::conformance::IntoSubject::into_subject($subject.await) else {
                    return;
                };
                $crate::conformance::$case(&subject).await;
            }
        )+
    };
}
