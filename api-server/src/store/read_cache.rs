//! Reads of a secret's current version, served from memory.
//!
//! That read is the hot path: answering it from memory skips the blocking-pool hop and
//! the SQLite lookup. The database stays the source of truth: an entry is only ever a
//! copy of a committed row (still sealed: the cache never holds plaintext), every write
//! of this process drops the entries of the paths it touches once it has committed, and
//! a generation counter keeps a read that raced with a write from inserting the row it
//! saw before that write.
//!
//! This relies on one server process owning a data directory, which the audit chain
//! already does (its writer continues the chain from memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{SecretRow, VersionRow};

/// A head row with its current version.
pub(crate) type Entry = Arc<(SecretRow, VersionRow)>;

pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    /// Bumped by every write that touches secrets, under the same lock as the entries.
    generation: u64,
    entries: HashMap<String, Entry>,
}

impl ReadCache {
    pub(crate) fn new(capacity: usize) -> Self {
        ReadCache {
            inner: Mutex::new(Inner {
                generation: 0,
                entries: HashMap::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, path: &str) -> Option<Entry> {
        self.lock().entries.get(path).cloned()
    }

    /// Taken before a database read: the read's row may be cached only if no write
    /// finished in between.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub(crate) fn insert(&self, read_at: u64, entry: Entry) {
        let mut inner = self.lock();
        if inner.generation != read_at {
            return;
        }
        if inner.entries.len() >= self.capacity
            && let Some(victim) = inner.entries.keys().next().cloned()
        {
            inner.entries.remove(&victim);
        }
        inner.entries.insert(entry.0.path.clone(), entry);
    }

    /// Called after a write committed (or failed: dropping an entry is always safe).
    pub(crate) fn invalidate(&self, path: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(path);
    }

    /// For writes whose outcome is unknown (a purge that failed part-way).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn entry(path: &str, version: u64) -> Entry {
        let now = OffsetDateTime::UNIX_EPOCH;
        Arc::new((
            SecretRow {
                path: path.to_owned(),
                secret_type: "generic".into(),
                current_version: version,
                version_count: 0,
                tags: vec![],
                description: None,
                max_versions: 10,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                expires_at: None,
                access_count_30d: 0,
            },
            VersionRow {
                version,
                secret_type: "generic".into(),
                ciphertext: vec![1, 2, 3],
                created_at: now,
                created_by: "root".into(),
                expires_at: None,
            },
        ))
    }

    #[test]
    fn a_read_that_raced_with_a_write_is_not_cached() {
        let cache = ReadCache::new(8);
        let before = cache.generation();
        // A write to any secret commits and invalidates while the read is in flight.
        cache.invalidate("a");
        cache.insert(before, entry("a", 1));
        assert!(cache.get("a").is_none());
        let now = cache.generation();
        cache.insert(now, entry("a", 2));
        assert_eq!(cache.get("a").map(|e| e.1.version), Some(2));
    }

    #[test]
    fn writes_drop_entries_and_capacity_is_bounded() {
        let cache = ReadCache::new(2);
        for (i, path) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(cache.generation(), entry(path, i as u64 + 1));
        }
        assert_eq!(cache.lock().entries.len(), 2);
        assert!(cache.get("c").is_some(), "the newest entry is kept");
        cache.invalidate("c");
        assert!(cache.get("c").is_none());
        cache.insert(cache.generation(), entry("d", 1));
        cache.clear();
        assert!(cache.get("d").is_none());
    }
}
