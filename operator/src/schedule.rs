//! When to act next: jittered retry delays and the refresh grid of VaultSecrets.
//! (Durations themselves are parsed by `scaivault_api::duration`, the grammar of the API.)

use std::time::Duration;

/// `base` scattered uniformly over ±10 %, so objects created together do not refresh
/// together forever.
pub fn jitter(base: Duration) -> Duration {
    let factor = 0.9 + fastrand::f64() * 0.2;
    base.mul_f64(factor)
}

/// Time from now until the next refresh of a VaultSecret read under `key_hash`, on a fixed
/// grid `phase + k * interval` counted from the process's epoch (`since_epoch` is now).
/// The phase comes from the key, so refreshes of different paths spread evenly over the
/// interval (jitter without randomness), and VaultSecrets sharing a path refresh at the
/// same instants and share one vault read. Always in `(0, interval]`.
pub fn until_next_refresh(key_hash: u64, interval: Duration, since_epoch: Duration) -> Duration {
    let period = interval.as_millis().max(1);
    let phase = u128::from(key_hash) % period;
    let into_period = (since_epoch.as_millis() + period - phase) % period;
    Duration::from_millis(u64::try_from(period - into_period).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_fall_on_one_grid_per_key_and_spread_across_keys() {
        let minute = Duration::from_secs(60);
        // Never now, never later than one interval.
        for now_ms in [0u64, 1, 59_999, 60_000, 123_456] {
            for key in [0u64, 7, 59_999, u64::MAX] {
                let wait = until_next_refresh(key, minute, Duration::from_millis(now_ms));
                assert!(
                    wait > Duration::ZERO && wait <= minute,
                    "{key} {now_ms}: {wait:?}"
                );
            }
        }
        // Two VaultSecrets of one key synced at different times refresh at the same instant.
        let a = Duration::from_millis(1_000)
            + until_next_refresh(42, minute, Duration::from_millis(1_000));
        let b = Duration::from_millis(31_500)
            + until_next_refresh(42, minute, Duration::from_millis(31_500));
        assert_eq!(a, b);
        // Many keys spread over the interval: each tenth of it gets some.
        let mut buckets = [0u32; 10];
        for key in 0..1000u64 {
            let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let wait = until_next_refresh(h, minute, Duration::ZERO);
            buckets[((wait.as_millis() - 1) / 6_000) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 50), "{buckets:?}");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jitter(base);
            assert!(
                j >= Duration::from_secs(90) && j <= Duration::from_secs(110),
                "{j:?}"
            );
        }
    }
}
