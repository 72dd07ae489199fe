//! The storage contract, written once for every backend.
//!
//! Each case takes a fresh, empty store and checks one part of the behaviour the rest of
//! the server relies on: results, ordering, limits, conflicts and check-and-set, soft
//! delete, all-or-nothing units of work, concurrent writers, the change feed, and the
//! audit log's append, queries and retention. A backend runs the whole suite with
//! [`store_contract_tests!`], one `#[tokio::test]` per case:
//!
//! ```ignore
//! mod contract_tests {
//!     fn fresh() -> crate::store::Result<Fresh<dyn Store>> { ... }
//!     fn fresh_audit() -> crate::store::Result<Fresh<dyn AuditStore>> { ... }
//!     crate::store::contract::store_contract_tests!(super::fresh(), super::fresh_audit());
//! }
//! ```

use std::any::Any;
use std::sync::{Arc, LazyLock};

use time::{Duration, OffsetDateTime};

use super::{NewVersion, Result, SealFn, Store, now_millis};

pub(crate) mod audit;
pub(crate) mod feed;
pub(crate) mod idempotency;
pub(crate) mod jobs;
pub(crate) mod keyring;
pub(crate) mod maintenance;
pub(crate) mod policies;
pub(crate) mod rotation;
pub(crate) mod secrets;
pub(crate) mod tokens;
pub(crate) mod unit_of_work;
pub(crate) mod webhooks;

/// A new, empty store and whatever must live as long as it (a temporary directory).
pub(crate) struct Fresh<S: ?Sized> {
    pub store: Arc<S>,
    pub keep: Box<dyn Any + Send>,
}

/// Generates one test per contract case; `$fresh` and `$fresh_audit` are expressions
/// (they may `.await`) giving a `Result<Fresh<_>>` of the data store and of the audit
/// store. The case list is here and only here.
macro_rules! store_contract_tests {
    ($fresh:expr, $fresh_audit:expr) => {
        $crate::store::contract::store_contract_tests!(@cases $fresh_audit;
            audit {
                appends_whole_batches, concurrent_appends_form_one_chain, queries_filter_and_page,
                retention_and_exports,
            }
        );
        $crate::store::contract::store_contract_tests!(@cases $fresh;
            secrets {
                writes_and_reads_versions, check_and_set, concurrent_writers_one_wins_per_version,
                concurrent_writers_without_cas_lose_nothing, retention_prunes_old_versions,
                type_tags_and_description, soft_delete_and_restore, destroy_erases_everything,
                list_pages_in_path_order, seal_failure_writes_nothing, cached_reads_follow_writes,
            }
            maintenance { purges_expired_secrets, counts_reads_per_day }
            tokens { issue_find_list_revoke_purge, taken_hash_or_accessor_is_a_conflict }
            policies { policies_with_unique_names, bindings, identities }
            keyring { keys_and_meta }
            idempotency {
                claim_complete_replay_release_purge, abandoned_claims_are_taken_again,
                a_change_marks_its_held_key_applied,
            }
            feed {
                every_change_is_recorded_in_order, a_unit_that_fails_records_nothing,
                pages_and_prunes_without_reusing_seq,
                a_follower_misses_nothing_under_concurrent_writers,
            }
            jobs { terms_fence_the_units_of_the_last, a_slot_runs_once }
            rotation {
                schedules_follow_their_secret, signals_are_raised_once_per_cycle,
                due_and_to_act_on_queries, records_carry_version_actor_and_reason,
            }
            webhooks {
                webhooks_are_limited_named_and_updated,
                deliveries_are_taken_once_and_sent_oldest_first,
            }
            unit_of_work {
                changes_across_aggregates_commit_together, first_error_rolls_back_the_unit,
                constraint_violation_rolls_back_as_conflict, empty_unit_and_ping,
                concurrent_units_fail_alone,
            }
        );
    };
    (@cases $fresh:expr; $($module:ident { $($case:ident),* $(,)? })*) => {$(
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() -> $crate::store::Result<()> {
                    let $crate::store::contract::Fresh { store, keep } = $fresh?;
                    let outcome = $crate::store::contract::$module::$case(store).await;
                    // The store is gone (the case owned it) before what it lives in.
                    drop(keep);
                    outcome
                }
            )*
        }
    )*};
}
pub(crate) use store_contract_tests;

/// One start for every case, near the real time (read counts are per real day).
static START: LazyLock<OffsetDateTime> = LazyLock::new(now_millis);

/// Instants at storage precision, `seconds` from the start of the run.
pub(crate) fn at(seconds: i64) -> OffsetDateTime {
    *START + Duration::seconds(seconds)
}

/// A write with no options: no CAS, stored defaults.
pub(crate) fn version(path: &str) -> NewVersion {
    NewVersion {
        path: path.to_owned(),
        secret_type: None,
        created_by: "root".into(),
        created_at: at(0),
        expires_at: None,
        cas: None,
        max_versions: None,
        tags: None,
        description: None,
    }
}

/// Stands in for the barrier: the "ciphertext" names the value and the version the store
/// handed to the seal, so tests see which version a value was bound to.
pub(crate) fn sealed(value: &str) -> SealFn {
    let value = value.to_owned();
    Box::new(move |version| Ok(format!("{value}@{version}").into_bytes()))
}

pub(crate) async fn write(store: &dyn Store, new: NewVersion, value: &str) -> Result<u64> {
    store
        .apply(|u| u.secrets().write_version(new, sealed(value)))
        .await
}

/// The current value of `path` as [`sealed`] wrote it (`None` when absent or deleted).
pub(crate) async fn current(store: &dyn Store, path: &str) -> Result<Option<String>> {
    Ok(store
        .read_secret(path, None)
        .await?
        .filter(|(head, _)| head.deleted_at.is_none())
        .and_then(|(_, version)| version)
        .map(|v| String::from_utf8_lossy(&v.ciphertext).into_owned()))
}

/// `Option::unwrap` for the rows a case just wrote, failing at the caller's line.
pub(crate) trait Present<T> {
    fn present(self) -> T;
}

impl<T> Present<T> for Option<T> {
    #[track_caller]
    fn present(self) -> T {
        match self {
            Some(value) => value,
            None => unreachable!("expected a stored row, found none"),
        }
    }
}
