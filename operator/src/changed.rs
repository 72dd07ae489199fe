//! VaultSecrets whose vault source changed (an event of the stream said so) and that have
//! not been synced since: a reconcile of one of these must read the vault again, even when
//! its refresh is not due (`vault_secret::not_due`) and even when another VaultSecret read
//! the same path a moment ago (the shared read may predate the change).
//!
//! A mark is the instant the event was handled. It is cleared by a sync whose read started
//! after it and that succeeded (or failed with an answer a retry would repeat, such as
//! "not found"): a sync already reading when the event came, or one that failed for an
//! outage, leaves it, so the next reconcile reads again. Marks live from the event to
//! the sync (normally well under a second), by uid.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

#[derive(Default)]
pub struct Changed {
    marks: Mutex<HashMap<Box<str>, Instant>>,
}

/// Below this many marks left, an emptied map gives its memory back (a resync of every
/// VaultSecret marks them all at once).
const SHRINK_BELOW: usize = 64;

impl Changed {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Instant>> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source of `uid` changed now.
    pub fn mark(&self, uid: &str) {
        self.mark_at(uid, Instant::now());
    }

    pub fn mark_at(&self, uid: &str, at: Instant) {
        self.lock().insert(uid.into(), at);
    }

    /// Since when `uid`'s source is known to have changed, if it was not synced since.
    pub fn since(&self, uid: &str) -> Option<Instant> {
        self.lock().get(uid).copied()
    }

    /// A sync that read after `at` succeeded: the mark goes, unless a newer one replaced it.
    pub fn clear(&self, uid: &str, at: Instant) {
        let mut marks = self.lock();
        if marks.get(uid).is_some_and(|m| *m <= at) {
            marks.remove(uid);
            if marks.is_empty() && marks.capacity() > SHRINK_BELOW {
                marks.shrink_to(SHRINK_BELOW);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_newer_mark_survives_the_clear_of_an_older_one() {
        let changed = Changed::default();
        let t0 = Instant::now();
        changed.mark_at("u", t0);
        assert_eq!(changed.since("u"), Some(t0));
        // An event while a sync was reading: its mark is newer than the read.
        let t1 = t0 + Duration::from_millis(5);
        changed.mark_at("u", t1);
        changed.clear("u", t0);
        assert_eq!(changed.since("u"), Some(t1));
        changed.clear("u", t1);
        assert_eq!(changed.since("u"), None);
        assert!(changed.is_empty());
        // Clearing what is not marked is nothing.
        changed.clear("v", t1);
        assert!(changed.is_empty());
    }
}
