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

use std::sync::{Arc, RwLock};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::{SecretRow, VersionRow};

/// A head row with its current version.
pub(crate) type Entry = Arc<(SecretRow, VersionRow)>;

/// Bytes an entry is counted as: what it holds plus a fixed overhead for the rows.
#[derive(Clone)]
struct EntryBytes;

impl Weighter<String, Entry> for EntryBytes {
    fn weight(&self, path: &String, entry: &Entry) -> u64 {
        let (head, version) = entry.as_ref();
        let text = head.tags.iter().map(String::len).sum::<usize>()
            + head.description.as_ref().map_or(0, String::len)
            + version.created_by.len();
        (256 + 2 * path.len() + text + version.ciphertext.len()) as u64
    }
}

/// A size-bounded map (quick_cache: S3-FIFO eviction, so a scan of cold paths does not
/// push out the hot ones) plus the write generation.
pub(crate) struct ReadCache {
    entries: Cache<String, Entry, EntryBytes>,
    /// Bumped by every write that touches secrets. Inserts hold it shared across their
    /// check-and-insert and writes exclusively across bump-and-remove, so no insert of a
    /// row read before a write lands after that write's invalidation. Hits never take it.
    generation: RwLock<u64>,
}

impl ReadCache {
    /// At most `max_bytes` of entries (as [`EntryBytes`] counts them); `expected_entries`
    /// sizes the table.
    pub(crate) fn new(expected_entries: usize, max_bytes: u64) -> Self {
        ReadCache {
            entries: Cache::with_weighter(expected_entries, max_bytes, EntryBytes),
            generation: RwLock::new(0),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Option<Entry> {
        self.entries.get(path)
    }

    /// Taken before a database read: the read's row may be cached only if no write
    /// finished in between.
    pub(crate) fn generation(&self) -> u64 {
        // The counter stays meaningful even if a holder panicked: every update is one step.
        *self.generation.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, read_at: u64, entry: Entry) {
        let generation = self.generation.read().unwrap_or_else(|p| p.into_inner());
        if *generation == read_at {
            self.entries.insert(entry.0.path.clone(), entry);
        }
    }

    /// Called after a write committed (or failed: dropping an entry is always safe).
    pub(crate) fn invalidate(&self, path: &str) {
        let mut generation = self.generation.write().unwrap_or_else(|p| p.into_inner());
        *generation += 1;
        self.entries.remove(path);
    }

    /// For writes whose outcome is unknown (a purge that failed part-way).
    pub(crate) fn clear(&self) {
        let mut generation = self.generation.write().unwrap_or_else(|p| p.into_inner());
        *generation += 1;
        self.entries.clear();
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
                rotation: None,
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
        let cache = ReadCache::new(8, 1 << 20);
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
    fn writes_drop_entries() {
        let cache = ReadCache::new(8, 1 << 20);
        cache.insert(cache.generation(), entry("c", 1));
        cache.invalidate("c");
        assert!(cache.get("c").is_none());
        cache.insert(cache.generation(), entry("d", 1));
        assert!(cache.get("d").is_some());
        cache.clear();
        assert!(cache.get("d").is_none());
    }

    #[test]
    fn size_is_bounded_in_bytes_and_hot_entries_survive_a_scan() {
        let one = EntryBytes.weight(&"p/00000".to_owned(), &entry("p/00000", 1));
        let cache = ReadCache::new(100, 100 * one);
        cache.insert(cache.generation(), entry("hot", 1));
        for _ in 0..3 {
            assert!(cache.get("hot").is_some());
        }
        // Ten times the capacity of paths read once.
        for i in 0..1000 {
            let path = format!("p/{i:05}");
            cache.insert(cache.generation(), entry(&path, 1));
        }
        assert!(
            cache.entries.weight() <= 100 * one,
            "{}",
            cache.entries.weight()
        );
        assert!(cache.entries.len() <= 100);
        assert!(cache.get("hot").is_some(), "a hot entry outlives a scan");
        let kept = (0..1000)
            .filter(|i| cache.get(&format!("p/{i:05}")).is_some())
            .count();
        assert!(kept < 100, "most of the scan is evicted: {kept} kept");
    }
}
