//! Per-identity token buckets.
//!
//! Each identity gets `limit` requests per minute, refilled continuously, with a burst of
//! `limit`. The result carries what the `X-RateLimit-*` headers report.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix epoch seconds at which the bucket is full again.
    pub reset_epoch: u64,
    /// Seconds to wait before a request would be allowed (0 when allowed).
    pub retry_after: u64,
}

pub struct RateLimiter {
    per_minute: u32,
    buckets: DashMap<String, Mutex<Bucket>>,
}

impl RateLimiter {
    /// `per_minute == 0` disables limiting.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: DashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_minute > 0
    }

    pub fn check(&self, identity: &str) -> Decision {
        self.check_at(identity, Instant::now(), SystemTime::now())
    }

    fn check_at(&self, identity: &str, now: Instant, wall: SystemTime) -> Decision {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let decide = |bucket: &mut Bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
            bucket.updated = now;
            let allowed = bucket.tokens >= 1.0;
            if allowed {
                bucket.tokens -= 1.0;
            }
            let to_full = Duration::from_secs_f64((capacity - bucket.tokens) / per_second);
            let epoch_now = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            Decision {
                allowed,
                limit: self.per_minute,
                remaining: bucket.tokens.floor() as u32,
                reset_epoch: (epoch_now + to_full).as_secs_f64().ceil() as u64,
                retry_after: if allowed {
                    0
                } else {
                    ((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64
                },
            }
        };
        if let Some(entry) = self.buckets.get(identity) {
            let mut bucket = entry.lock().unwrap_or_else(|p| p.into_inner());
            return decide(&mut bucket);
        }
        let entry = self.buckets.entry(identity.to_owned()).or_insert_with(|| {
            Mutex::new(Bucket {
                tokens: capacity,
                updated: now,
            })
        });
        let mut bucket = entry.lock().unwrap_or_else(|p| p.into_inner());
        decide(&mut bucket)
    }

    /// Drops buckets that are full again (idle identities), bounding memory.
    pub fn prune_idle(&self) {
        let capacity = f64::from(self.per_minute);
        let now = Instant::now();
        self.buckets.retain(|_, bucket| {
            let b = bucket.get_mut().unwrap_or_else(|p| p.into_inner());
            let refilled =
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * capacity / 60.0;
            refilled < capacity
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_with_retry_after() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let decisions: Vec<_> = (0..4).map(|_| limiter.check_at("a", t0, wall)).collect();
        assert!(decisions[..3].iter().all(|d| d.allowed));
        assert_eq!(
            decisions.iter().map(|d| d.remaining).collect::<Vec<_>>(),
            vec![2, 1, 0, 0]
        );
        let refused = decisions[3];
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 20, "3/min refills one token every 20s");
        assert_eq!(refused.reset_epoch, 1_060);
        // Other identities have their own bucket.
        assert!(limiter.check_at("b", t0, wall).allowed);
        // After 20s one request passes again.
        assert!(
            limiter
                .check_at("a", t0 + Duration::from_secs(20), wall)
                .allowed
        );
    }

    #[test]
    fn headers_for_a_fresh_bucket() {
        let limiter = RateLimiter::new(1000);
        let d = limiter.check_at("x", Instant::now(), UNIX_EPOCH + Duration::from_secs(100));
        assert_eq!((d.limit, d.remaining), (1000, 999));
        assert_eq!(
            d.reset_epoch, 101,
            "one token refills in 60ms, rounded up to the next second"
        );
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let limiter = RateLimiter::new(60_000);
        limiter.check("x");
        std::thread::sleep(Duration::from_millis(5));
        limiter.prune_idle();
        assert!(limiter.buckets.is_empty());
    }
}
