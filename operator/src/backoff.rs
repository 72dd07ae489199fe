//! Per-object exponential backoff for `error_policy`: 1 s, 2 s, 4 s, ... capped, with
//! jitter; reset by the next success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First retry delay.
pub const BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const CAP: Duration = Duration::from_secs(300);

/// Failure counts by object key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure and returns the delay before the next attempt.
    pub fn failed(&self, key: &str) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut map) => {
                let n = map.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            // A poisoned map only loses counts; fall back to the cap's neighbourhood.
            Err(_) => 8,
        };
        crate::schedule::jitter(delay(n))
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

/// Delay after the `n`th consecutive failure (n >= 1).
pub fn delay(n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(16);
    BASE.saturating_mul(1u32 << exp).min(CAP)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let secs: Vec<u64> = (1..=12).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(delay(u32::MAX), CAP);
    }

    #[test]
    fn success_resets() {
        let b = Backoff::default();
        b.failed("a");
        b.failed("a");
        let third = b.failed("a");
        assert!(third >= Duration::from_millis(3600), "{third:?}");
        b.succeeded("a");
        assert!(b.failed("a") <= Duration::from_millis(1100));
    }
}
