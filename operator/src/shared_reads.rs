//! One vault read per (namespace, ServiceAccount, path, version) per refresh window:
//! VaultSecrets naming the same path as the same ServiceAccount share it. Their refreshes
//! fall on the same instants (`schedule::until_next_refresh` keys the schedule by the
//! same tuple), so a window of a few seconds is enough, and values stay in memory for
//! no longer than that.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scaivault_client::api::secrets::SecretResponse;

/// Longest a read is shared (less for VaultSecrets refreshing faster: see `max_age`).
/// VaultSecrets sharing a key come due at the same instant and are reconciled moments
/// apart (concurrently, or a few turns of the fair gate apart), so a longer window only
/// holds more values: after a cold sync the refreshes that fell due meanwhile run back
/// to back, about a thousand reads a second, and holding each value for 5-10 s made
/// these reads the largest part of the operator's peak heap at 10,000 VaultSecrets.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How often reads older than `WINDOW` are dropped.
pub const PURGE_EVERY: Duration = Duration::from_millis(500);

/// What one read is shared by.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ReadKey {
    pub namespace: String,
    pub service_account: String,
    pub path: String,
    pub version: Option<u64>,
}

/// How old a shared read a VaultSecret refreshing every `refresh` accepts.
pub fn max_age(refresh: Duration) -> Duration {
    WINDOW.min(refresh / 4)
}

struct Entry {
    /// When the read was sent: a value is as old as its request, and one sent before a
    /// change the stream reported may predate it.
    fetched: Instant,
    value: Arc<SecretResponse>,
}

/// A shared value and when its read was sent.
pub struct Read {
    pub value: Arc<SecretResponse>,
    pub sent: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

#[derive(Default)]
pub struct SharedReads {
    slots: Mutex<HashMap<ReadKey, Slot>>,
}

impl SharedReads {
    fn lock(&self) -> MutexGuard<'_, HashMap<ReadKey, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key` read within `max_age` (and, with `not_before`, sent no earlier
    /// than that: after a change the stream reported), or `read`'s (concurrent callers of
    /// one key wait for a single read). Failures are not shared: each caller reports its own.
    pub async fn get_or_read<E, F, Fut>(
        &self,
        key: ReadKey,
        max_age: Duration,
        not_before: Option<Instant>,
        read: F,
    ) -> Result<Read, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SecretResponse, E>>,
    {
        let slot = self.lock().entry(key).or_default().clone();
        let mut entry = slot.lock().await;
        if let Some(e) = entry.as_ref()
            && e.fetched.elapsed() <= max_age
            && not_before.is_none_or(|at| e.fetched >= at)
        {
            return Ok(Read {
                value: e.value.clone(),
                sent: e.fetched,
            });
        }
        let sent = Instant::now();
        let value = Arc::new(read().await?);
        *entry = Some(Entry {
            fetched: sent,
            value: value.clone(),
        });
        Ok(Read { value, sent })
    }

    /// Drops every read older than `WINDOW` (called every `PURGE_EVERY`), so secret values
    /// do not linger in memory.
    pub fn purge(&self) {
        self.lock().retain(|_, slot| match slot.try_lock() {
            Ok(entry) => entry
                .as_ref()
                .is_some_and(|e| e.fetched.elapsed() <= WINDOW),
            // In use right now: keep.
            Err(_) => true,
        });
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn response(version: u64) -> SecretResponse {
        serde_json::from_value(serde_json::json!({
            "path": "a/b", "version": version, "data": {"k": "v"}, "secret_type": "generic",
            "created_at": "2026-01-01T00:00:00Z", "created_by": "user:t", "expires_at": null,
            "metadata": {"tags": [], "description": null}
        }))
        .unwrap()
    }

    fn key(path: &str) -> ReadKey {
        ReadKey {
            namespace: "ns".into(),
            service_account: "app".into(),
            path: path.into(),
            version: None,
        }
    }

    #[tokio::test]
    async fn concurrent_readers_of_one_key_share_one_read() {
        let reads = SharedReads::default();
        let count = AtomicUsize::new(0);
        let read = || async {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(response(1))
        };
        let all = futures::future::join_all(
            (0..10).map(|_| reads.get_or_read(key("a/b"), WINDOW, None, read)),
        )
        .await;
        assert!(all.iter().all(|r| r.as_ref().unwrap().value.version == 1));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Another path is its own read; an older entry than max_age is read again.
        reads
            .get_or_read(key("a/c"), WINDOW, None, read)
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        reads
            .get_or_read(key("a/b"), Duration::ZERO, None, read)
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 3);
        // A change reported after that read: the next caller reads again, later ones share.
        let changed = Instant::now();
        let fresh = reads
            .get_or_read(key("a/b"), WINDOW, Some(changed), read)
            .await
            .unwrap();
        assert!(fresh.sent >= changed);
        assert_eq!(count.load(Ordering::SeqCst), 4);
        reads
            .get_or_read(key("a/b"), WINDOW, Some(changed), read)
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn failures_are_not_shared_and_purge_forgets() {
        let reads = SharedReads::default();
        let failed: Result<_, &str> = reads
            .get_or_read(key("a/b"), WINDOW, None, || async { Err("boom") })
            .await;
        assert!(failed.is_err());
        let ok: Result<_, &str> = reads
            .get_or_read(key("a/b"), WINDOW, None, || async { Ok(response(2)) })
            .await;
        assert_eq!(ok.unwrap().value.version, 2);
        reads.purge();
        assert_eq!(reads.len(), 1, "a fresh entry stays");
        assert_eq!(max_age(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(max_age(Duration::from_secs(60)), WINDOW);
        assert_eq!(max_age(Duration::from_secs(3600)), WINDOW);
    }
}
