//! A unit of work: the changes one request makes, across aggregates, committed in one
//! transaction.
//!
//! A unit is a list of changes built up front and handed to [`Store::commit`], not a
//! closure holding a live transaction. That keeps it the same for every backend: SQLite
//! applies the list on its single writer connection in one blocking call (no await while
//! the write lock is held), PostgreSQL applies it in one async transaction from its pool,
//! and a backend that batches several units into one commit (group commit) can give each
//! its own savepoint. What a change needs from earlier rows (check-and-set, the version
//! number a seal binds) is decided inside the change, by the backend, in the transaction.
//!
//! Changes apply in order; the first error rolls the whole unit back and is returned.
//! Each builder method hands back a [`Slot`] for that change's result in [`Committed`].
//!
//! [`Store::commit`]: super::Store::commit

use std::marker::PhantomData;

use super::idempotency::IdempotencyChange;
use super::jobs::JobChange;
use super::keyring::KeyringChange;
use super::maintenance::MaintenanceChange;
use super::policies::PolicyChange;
use super::rotation::RotationChange;
use super::secrets::SecretChange;
use super::tokens::TokenChange;
use super::webhooks::WebhookChange;
use super::{ClaimOutcome, RestoreOutcome, Result, StoreError};

/// One storage write, grouped by the aggregate it belongs to.
pub enum Change {
    Secret(SecretChange),
    Token(TokenChange),
    Policy(PolicyChange),
    Keyring(KeyringChange),
    Idempotency(IdempotencyChange),
    Maintenance(MaintenanceChange),
    Job(JobChange),
    Rotation(RotationChange),
    Webhook(WebhookChange),
}

/// What one change did. Backends return one per change, in order.
#[derive(Debug)]
pub enum Applied {
    Done,
    /// A version number or a count of rows.
    Number(u64),
    /// Whether the row the change addressed existed.
    Found(bool),
    Restore(RestoreOutcome),
    /// The hash of a token just revoked (`None`: no live token had that accessor).
    Revoked(Option<[u8; 32]>),
    Claim(ClaimOutcome),
    /// Paths of secrets the change erased.
    Erased(Vec<String>),
    /// The version of the row the change addressed, `None` when it had none to address.
    Versioned(Option<u64>),
}

/// The Rust type of a change's result, as carried by [`Applied`].
pub trait FromApplied: Sized {
    fn from_applied(applied: Applied) -> Option<Self>;
}

macro_rules! from_applied {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl FromApplied for $t {
            fn from_applied(applied: Applied) -> Option<Self> {
                match applied {
                    Applied::$variant(value) => Some(value),
                    _ => None,
                }
            }
        }
    )*};
}

from_applied!(
    u64 => Number,
    bool => Found,
    RestoreOutcome => Restore,
    Option<[u8; 32]> => Revoked,
    ClaimOutcome => Claim,
    Vec<String> => Erased,
    Option<u64> => Versioned,
);

impl FromApplied for () {
    fn from_applied(applied: Applied) -> Option<Self> {
        matches!(applied, Applied::Done).then_some(())
    }
}

/// Declares an aggregate's typed builder, reached as `unit.<method>()`: a borrow of the
/// unit whose methods (written in the aggregate's module) push that aggregate's changes.
macro_rules! aggregate_writes {
    ($writes:ident, $method:ident, $variant:ident($change:ty)) => {
        pub struct $writes<'u>(&'u mut $crate::store::UnitOfWork);

        impl $crate::store::UnitOfWork {
            pub fn $method(&mut self) -> $writes<'_> {
                $writes(self)
            }
        }

        impl $writes<'_> {
            fn push<T: $crate::store::unit_of_work::FromApplied>(
                self,
                change: $change,
            ) -> $crate::store::Slot<T> {
                self.0
                    .push($crate::store::unit_of_work::Change::$variant(change))
            }
        }
    };
}
pub(super) use aggregate_writes;

/// Where one change's result will be in [`Committed`]; taken once, or dropped when the
/// caller needs only the commit.
#[derive(Debug)]
pub struct Slot<T> {
    index: usize,
    output: PhantomData<fn() -> T>,
}

#[derive(Default)]
pub struct UnitOfWork {
    changes: Vec<Change>,
}

impl UnitOfWork {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Adds a change; the aggregates' typed builders (`unit.secrets()`, `unit.tokens()`,
    /// ...) call this.
    pub(super) fn push<T: FromApplied>(&mut self, change: Change) -> Slot<T> {
        self.changes.push(change);
        Slot {
            index: self.changes.len() - 1,
            output: PhantomData,
        }
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// For backends: the changes to apply, in order, and who makes them (the actor of
    /// the unit's change records). Call it in the task that commits: while a keyed request
    /// runs it adds the change that marks its idempotency key applied
    /// ([`super::idempotency::while_held`]), and the actor is the identity the request
    /// authenticated as (`None` outside a request: the server's own jobs).
    pub fn prepare(self) -> Prepared {
        let mut changes = self.changes;
        if !changes.is_empty()
            && let Some(mark) = super::idempotency::held_key_change()
        {
            changes.push(mark);
        }
        Prepared {
            changes,
            actor: crate::audit::context::noted_caller().0,
        }
    }
}

/// A unit ready for its backend: see [`UnitOfWork::prepare`].
pub struct Prepared {
    pub changes: Vec<Change>,
    pub actor: Option<String>,
}

/// The results of a committed unit, one per change.
#[derive(Debug, Default)]
pub struct Committed {
    applied: Vec<Option<Applied>>,
}

impl Committed {
    pub fn new(applied: Vec<Applied>) -> Self {
        Committed {
            applied: applied.into_iter().map(Some).collect(),
        }
    }

    /// The result of the change `slot` names.
    pub fn take<T: FromApplied>(&mut self, slot: Slot<T>) -> Result<T> {
        self.applied
            .get_mut(slot.index)
            .and_then(Option::take)
            .and_then(T::from_applied)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the backend returned no result of the expected kind for change {}",
                    slot.index
                ))
            })
    }

    /// Every result, in the order of the changes (for backends that post-process them).
    pub fn iter(&self) -> impl Iterator<Item = &Applied> {
        self.applied.iter().flatten()
    }
}
