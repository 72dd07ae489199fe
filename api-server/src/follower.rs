//! Follows the change feed, so what this replica holds in memory stays true to the
//! shared storage: the policy index after a policy or binding change, the keyring after
//! another replica added a data key, and looked-up tokens after a revocation.
//!
//! It runs on replicas of a shared database (on SQLite the one process keeps its memory
//! current itself). It wakes on the store's notification (every replica's commits,
//! through `LISTEN`) and reads the feed on a timer as well, for a
//! notification lost with a connection. It reads after the last `seq` it handled and
//! advances only once a batch's effects are applied, so a failure (the database is
//! down) is retried, never skipped. A replica further behind than the feed's retention
//! reloads everything instead.
//!
//! It is the one reader of the feed per replica; event delivery and the agents' push
//! stream will take their records from here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::error::Result;
use crate::store::{ChangeKind, ChangeRecord};
use crate::vault::Vault;

/// The catch-up read's period, when no notification came.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Records read per query.
const BATCH: usize = 512;

/// What a batch of records asks of this replica.
#[derive(Debug, Default, PartialEq, Eq)]
struct Effects {
    reload_policies: bool,
    sync_keyring: bool,
    revoked: Vec<String>,
}

impl Effects {
    fn of(records: &[ChangeRecord]) -> Effects {
        let mut effects = Effects::default();
        for record in records {
            match record.kind {
                ChangeKind::PolicyCreated
                | ChangeKind::PolicyUpdated
                | ChangeKind::PolicyDeleted
                | ChangeKind::BindingAdded
                | ChangeKind::BindingRemoved
                | ChangeKind::IdentityCreated => effects.reload_policies = true,
                ChangeKind::KeyAdded => effects.sync_keyring = true,
                ChangeKind::TokenRevoked => effects.revoked.push(record.subject.clone()),
                // Secrets are read from the database on PostgreSQL, and SQLite's read
                // cache is this process's own; new tokens and settings hold nothing here.
                ChangeKind::SecretWritten
                | ChangeKind::SecretMetadataUpdated
                | ChangeKind::SecretDeleted
                | ChangeKind::SecretRestored
                | ChangeKind::SecretDestroyed
                | ChangeKind::SecretExpired
                | ChangeKind::TokenCreated
                | ChangeKind::MetaUpdated
                | ChangeKind::RotationDue
                | ChangeKind::RotationOverdue
                | ChangeKind::RotationFailed
                | ChangeKind::RotationRequested
                | ChangeKind::RotationCompleted
                | ChangeKind::WebhookExhausted
                | ChangeKind::WebhookDisabled => {}
            }
        }
        effects
    }

    /// Everything, for a replica that may have missed records.
    fn all() -> Effects {
        Effects {
            reload_policies: true,
            sync_keyring: true,
            revoked: Vec::new(),
        }
    }

    async fn apply(&self, vault: &Vault, forget_tokens: bool) -> Result<()> {
        if self.sync_keyring {
            vault.secrets.sync_keyring().await?;
        }
        if self.reload_policies {
            vault.policies.reload().await?;
        }
        if forget_tokens {
            vault.tokens.forget_all();
        }
        for accessor in &self.revoked {
            vault.tokens.forget_accessor(accessor);
        }
        Ok(())
    }
}

pub struct Follower {
    vault: Arc<Vault>,
    notify: Arc<Notify>,
    /// The last `seq` whose effects are applied.
    cursor: u64,
}

impl Follower {
    /// Starts from the feed's end, then reloads what the vault loaded at open, so a
    /// change committed between that load and this start is not missed.
    pub async fn start(vault: Arc<Vault>) -> Result<Follower> {
        let notify = Arc::new(Notify::new());
        vault.store.notify_changes(Arc::clone(&notify));
        let cursor = vault.store.last_change_seq().await?;
        Effects::all().apply(&vault, true).await?;
        Ok(Follower {
            vault,
            notify,
            cursor,
        })
    }

    /// Follows until `shutdown`.
    pub fn spawn(mut self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
                match self.catch_up().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(seq = self.cursor, "following the change feed again");
                    }
                    Ok(()) => {}
                    // Once per outage, not once a second.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "reading the change feed failed; retrying");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    async fn catch_up(&mut self) -> Result<()> {
        let store = Arc::clone(&self.vault.store);
        loop {
            let records = store.changes_after(self.cursor, BATCH).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(());
            };
            // `seq` may skip numbers (a rolled-back append), so only a pruned start
            // proves records were missed.
            let missed = records[0].seq > self.cursor + 1
                && self.cursor > 0
                && store.first_change_seq().await? > self.cursor + 1;
            if missed {
                tracing::warn!(
                    after = self.cursor,
                    "the change feed was pruned past this replica's position; reloading everything"
                );
                Effects::all().apply(&self.vault, true).await?;
            }
            Effects::of(&records).apply(&self.vault, false).await?;
            self.cursor = last;
            if records.len() < BATCH {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn record(kind: ChangeKind, subject: &str) -> ChangeRecord {
        ChangeRecord {
            seq: 1,
            at: OffsetDateTime::UNIX_EPOCH,
            kind,
            subject: subject.into(),
            version: None,
            actor: None,
            reason: None,
        }
    }

    #[test]
    fn each_kind_of_change_asks_for_what_it_invalidates() {
        let effects = Effects::of(&[
            record(ChangeKind::SecretWritten, "app/db"),
            record(ChangeKind::TokenRevoked, "acc_1"),
            record(ChangeKind::BindingRemoved, "pol_1"),
            record(ChangeKind::TokenRevoked, "acc_2"),
        ]);
        assert_eq!(
            effects,
            Effects {
                reload_policies: true,
                sync_keyring: false,
                revoked: vec!["acc_1".into(), "acc_2".into()],
            }
        );
        assert!(Effects::of(&[record(ChangeKind::KeyAdded, "2")]).sync_keyring);
        assert_eq!(
            Effects::of(&[record(ChangeKind::SecretDeleted, "a/b")]),
            Effects::default()
        );
    }
}
