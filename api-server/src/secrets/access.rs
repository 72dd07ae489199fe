//! Read counts without a write per read: reads bump an in-memory counter, a job flushes
//! the totals into per-day rows, and `access_count_30d` adds both.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

#[derive(Debug, Default)]
pub struct AccessCounter {
    pending: DashMap<String, AtomicU64>,
}

impl AccessCounter {
    pub fn record(&self, path: &str) {
        if let Some(counter) = self.pending.get(path) {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.pending
            .entry(path.to_owned())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Reads not yet flushed for one path.
    pub fn pending(&self, path: &str) -> u64 {
        self.pending
            .get(path)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Takes every pending count, leaving zeros behind.
    pub fn drain(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.pending.retain(|path, counter| {
            let n = counter.swap(0, Ordering::Relaxed);
            if n > 0 {
                out.push((path.clone(), n));
            }
            false
        });
        out
    }

    /// Puts counts back after a failed flush so no read is lost.
    pub fn restore(&self, counts: Vec<(String, u64)>) {
        for (path, n) in counts {
            self.pending
                .entry(path)
                .or_default()
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn forget(&self, path: &str) {
        self.pending.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_drain_and_restore() {
        let c = AccessCounter::default();
        c.record("a");
        c.record("a");
        c.record("b");
        assert_eq!(c.pending("a"), 2);
        let mut drained = c.drain();
        drained.sort();
        assert_eq!(drained, vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(c.pending("a"), 0);
        c.restore(drained);
        assert_eq!(c.pending("a"), 2);
    }
}
