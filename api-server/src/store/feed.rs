//! The change feed: a durable, ordered record of every change the vault applied, written
//! in the same transaction as the change itself, so a record exists if and only if its
//! change committed. It is the outbox that event delivery, webhooks and the agents'
//! push stream read, and what lets a replica learn what another one changed.
//!
//! Records carry what changed (`kind`), which object (`subject`: a secret's path, a
//! token's accessor, a policy's id), the secret's version when there is one, who acted
//! (`actor`) and why when the change says (`reason`), never a value. `seq` grows with commit order, with
//! no record appearing behind one a reader has already seen: SQLite has one writer, and
//! PostgreSQL backends serialise the feed's appends until commit. A reader resumes after
//! the last `seq` it handled; records older than the retention are pruned, and a reader
//! further behind than that learns it from [`FeedReads::first_change_seq`].
//!
//! Which change yields which record is declared here, once, for every backend.

use async_trait::async_trait;
use time::OffsetDateTime;

/// How long change records are kept: a consumer (a webhook receiver, an agent, a replica)
/// down for up to a week resumes where it stopped; one away longer resynchronises.
pub const FEED_RETENTION: time::Duration = time::Duration::days(7);

use super::RestoreOutcome;
use super::Result;
use super::idempotency::IdempotencyChange;
use super::keyring::KeyringChange;
use super::maintenance::MaintenanceChange;
use super::policies::PolicyChange;
use super::rotation::{RotationChange, Signal};
use super::secrets::SecretChange;
use super::tokens::TokenChange;
use super::unit_of_work::{Applied, Change};
use super::webhooks::WebhookChange;

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub kind: ChangeKind,
    pub subject: String,
    pub version: Option<u64>,
    /// The identity whose request made the change; `None` for the server's own jobs.
    pub actor: Option<String>,
    pub reason: Option<String>,
}

/// What changed. The names are stable: consumers outside the process (events, the
/// agent's stream) match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    SecretWritten,
    SecretMetadataUpdated,
    SecretDeleted,
    SecretRestored,
    SecretDestroyed,
    SecretExpired,
    TokenCreated,
    TokenRevoked,
    PolicyCreated,
    PolicyUpdated,
    PolicyDeleted,
    BindingAdded,
    BindingRemoved,
    IdentityCreated,
    KeyAdded,
    MetaUpdated,
    RotationDue,
    RotationOverdue,
    RotationFailed,
    RotationRequested,
    RotationCompleted,
    WebhookExhausted,
    WebhookDisabled,
}

macro_rules! change_kinds {
    ($($kind:ident => $name:literal),* $(,)?) => {
        impl ChangeKind {
            pub fn as_str(self) -> &'static str {
                match self { $(ChangeKind::$kind => $name),* }
            }

            pub fn parse(name: &str) -> Option<ChangeKind> {
                match name { $($name => Some(ChangeKind::$kind),)* _ => None }
            }
        }
    };
}

change_kinds!(
    SecretWritten => "secret.written",
    SecretMetadataUpdated => "secret.metadata_updated",
    SecretDeleted => "secret.deleted",
    SecretRestored => "secret.restored",
    SecretDestroyed => "secret.destroyed",
    SecretExpired => "secret.expired",
    TokenCreated => "token.created",
    TokenRevoked => "token.revoked",
    PolicyCreated => "policy.created",
    PolicyUpdated => "policy.updated",
    PolicyDeleted => "policy.deleted",
    BindingAdded => "binding.added",
    BindingRemoved => "binding.removed",
    IdentityCreated => "identity.created",
    KeyAdded => "keyring.key_added",
    MetaUpdated => "keyring.meta_updated",
    RotationDue => "rotation.due",
    RotationOverdue => "rotation.overdue",
    RotationFailed => "rotation.failed",
    RotationRequested => "rotation.requested",
    RotationCompleted => "rotation.completed",
    WebhookExhausted => "webhook.exhausted",
    WebhookDisabled => "webhook.disabled",
);

/// A record to append: what and which, before the backend gives it a `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub kind: ChangeKind,
    pub subject: String,
    pub version: Option<u64>,
    pub reason: Option<String>,
}

/// What a change will record, known before it is applied (it is consumed by applying);
/// [`Planned::entries`] completes it with the change's result.
#[derive(Debug)]
pub enum Planned {
    Nothing,
    Always(FeedEntry),
    /// A version written: the record carries the version number the write yielded.
    Written(String),
    /// Only when the change addressed a scheduled secret (`Applied::Versioned(Some(_))`):
    /// the record carries that version.
    IfRotated(FeedEntry),
    /// Only when the addressed row existed (`Applied::Found(true)`).
    IfFound(FeedEntry),
    IfRestored(String),
    IfRevoked(String),
    /// One `secret.expired` per path the purge erased.
    Erased,
}

fn entry(kind: ChangeKind, subject: &str) -> FeedEntry {
    FeedEntry {
        kind,
        subject: subject.to_owned(),
        version: None,
        reason: None,
    }
}

fn because(kind: ChangeKind, subject: &str, reason: &Option<String>) -> FeedEntry {
    FeedEntry {
        reason: reason.clone(),
        ..entry(kind, subject)
    }
}

impl Planned {
    pub fn of(change: &Change) -> Planned {
        use ChangeKind as K;
        match change {
            Change::Secret(c) => match c {
                SecretChange::WriteVersion { new, .. } => Planned::Written(new.path.clone()),
                SecretChange::UpdateMetadata { path, .. } => {
                    Planned::IfFound(entry(K::SecretMetadataUpdated, path))
                }
                SecretChange::SoftDelete { path, .. } => {
                    Planned::IfFound(entry(K::SecretDeleted, path))
                }
                SecretChange::Restore { path, .. } => Planned::IfRestored(path.clone()),
                SecretChange::Destroy { path } => Planned::IfFound(entry(K::SecretDestroyed, path)),
            },
            Change::Token(c) => match c {
                TokenChange::Insert(token) => {
                    Planned::Always(entry(K::TokenCreated, &token.accessor))
                }
                TokenChange::Revoke { accessor, .. } => Planned::IfRevoked(accessor.clone()),
            },
            Change::Policy(c) => match c {
                PolicyChange::CreatePolicy(p) => Planned::Always(entry(K::PolicyCreated, &p.id)),
                PolicyChange::UpdatePolicy(p) => Planned::IfFound(entry(K::PolicyUpdated, &p.id)),
                PolicyChange::DeletePolicy { id } => Planned::IfFound(entry(K::PolicyDeleted, id)),
                PolicyChange::AddBinding(b) => {
                    Planned::Always(entry(K::BindingAdded, &b.policy_id))
                }
                PolicyChange::DeleteBinding { policy_id, .. } => {
                    Planned::IfFound(entry(K::BindingRemoved, policy_id))
                }
                PolicyChange::CreateIdentity(i) => {
                    Planned::Always(entry(K::IdentityCreated, &i.id))
                }
            },
            Change::Keyring(c) => match c {
                KeyringChange::InsertKey(key) => {
                    Planned::Always(entry(K::KeyAdded, &key.key_id.to_string()))
                }
                KeyringChange::PutMeta { key, .. } => Planned::Always(entry(K::MetaUpdated, key)),
                KeyringChange::ReplaceMeta { key, .. } => {
                    Planned::IfFound(entry(K::MetaUpdated, key))
                }
            },
            Change::Rotation(c) => match c {
                RotationChange::Set { path, .. } | RotationChange::Clear { path } => {
                    Planned::IfFound(entry(K::SecretMetadataUpdated, path))
                }
                RotationChange::Rotated { path, reason, .. } => {
                    Planned::IfRotated(because(K::RotationCompleted, path, reason))
                }
                RotationChange::Signal {
                    path,
                    signal,
                    reason,
                    ..
                } => {
                    let kind = match signal {
                        Signal::Due => K::RotationDue,
                        Signal::Overdue => K::RotationOverdue,
                        Signal::Failed => K::RotationFailed,
                    };
                    Planned::IfFound(because(kind, path, reason))
                }
                RotationChange::Requested { path, reason } => {
                    Planned::IfRotated(because(K::RotationRequested, path, reason))
                }
            },
            Change::Webhook(c) => match c {
                WebhookChange::Disable { id, reason } => {
                    Planned::IfFound(because(K::WebhookDisabled, id, &Some(reason.clone())))
                }
                WebhookChange::Exhausted { webhook_id, reason } => Planned::Always(because(
                    K::WebhookExhausted,
                    webhook_id,
                    &Some(reason.clone()),
                )),
                // Settings and the dispatcher's bookkeeping: the audit log records who
                // changed a webhook; the feed carries what receivers act on.
                WebhookChange::Create { .. }
                | WebhookChange::Update(_)
                | WebhookChange::Delete { .. }
                | WebhookChange::Failing { .. }
                | WebhookChange::Take { .. }
                | WebhookChange::Record(_) => Planned::Nothing,
            },
            Change::Maintenance(MaintenanceChange::PurgeExpiredSecrets { .. }) => Planned::Erased,
            // Bookkeeping, not a change of the vault's objects: read counts, purges of
            // expired tokens and idempotency keys.
            Change::Maintenance(_) => Planned::Nothing,
            // The runner's own bookkeeping.
            Change::Job(_) => Planned::Nothing,
            Change::Idempotency(
                IdempotencyChange::Claim(_)
                | IdempotencyChange::Complete { .. }
                | IdempotencyChange::Release { .. }
                | IdempotencyChange::MarkApplied { .. },
            ) => Planned::Nothing,
        }
    }

    /// The records of the change, given what applying it did.
    pub fn entries(self, applied: &Applied) -> Vec<FeedEntry> {
        match (self, applied) {
            (Planned::Always(e), _) | (Planned::IfFound(e), Applied::Found(true)) => vec![e],
            (Planned::Written(path), Applied::Number(version)) => vec![FeedEntry {
                version: Some(*version),
                ..entry(ChangeKind::SecretWritten, &path)
            }],
            (Planned::IfRotated(e), Applied::Versioned(Some(version))) => vec![FeedEntry {
                version: Some(*version),
                ..e
            }],
            (Planned::IfRestored(path), Applied::Restore(RestoreOutcome::Restored)) => {
                vec![entry(ChangeKind::SecretRestored, &path)]
            }
            (Planned::IfRevoked(accessor), Applied::Revoked(Some(_))) => {
                vec![entry(ChangeKind::TokenRevoked, &accessor)]
            }
            (Planned::Erased, Applied::Erased(paths)) => paths
                .iter()
                .map(|path| entry(ChangeKind::SecretExpired, path))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Reads of the feed.
#[async_trait]
pub trait FeedReads: Send + Sync + 'static {
    /// Records with `seq` greater than `after`, in order, at most `limit`.
    async fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>>;
    /// The newest record's `seq` (0: none yet): where a new reader starts.
    async fn last_change_seq(&self) -> Result<u64>;
    /// The oldest kept record's `seq` (0: none): a reader whose position is below it has
    /// missed pruned records and must resynchronise from the state itself.
    async fn first_change_seq(&self) -> Result<u64>;
    /// Wakes `notify` after commits that recorded changes: this process's on SQLite, every
    /// replica's on PostgreSQL (`LISTEN`/`NOTIFY`); each caller's `notify` is woken. A wake may cover several commits or
    /// none (a reconnection wakes it once); the waiter reads the feed to learn what
    /// changed, and reads it on a timer too, for a wake lost with a connection.
    fn notify_changes(&self, notify: std::sync::Arc<tokio::sync::Notify>);
}
