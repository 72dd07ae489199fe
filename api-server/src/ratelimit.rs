//! Per-identity rate limits on `governor` (GCRA, keyed, shared by every connection).
//!
//! Each identity gets `limit` requests per minute, replenished continuously, with a burst
//! of `limit`. The result carries what the `X-RateLimit-*` headers report.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};

type Buckets<C> = Gcra<String, DefaultKeyedStateStore<String>, C, StateInformationMiddleware>;

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

pub struct RateLimiter<C: Clock = DefaultClock> {
    /// `None`: limiting is off.
    buckets: Option<(NonZeroU32, Buckets<C>)>,
    clock: C,
}

impl RateLimiter {
    /// `per_minute == 0` disables limiting.
    pub fn new(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(per_minute: u32, clock: C) -> Self {
        let buckets = NonZeroU32::new(per_minute).map(|limit| {
            let quota = Quota::per_minute(limit);
            let buckets =
                Buckets::<C>::new(quota, DefaultKeyedStateStore::default(), clock.clone());
            (limit, buckets)
        });
        RateLimiter { buckets, clock }
    }

    pub fn enabled(&self) -> bool {
        self.buckets.is_some()
    }

    pub fn check(&self, identity: &str) -> Decision {
        self.check_at(identity, SystemTime::now())
    }

    fn check_at(&self, identity: &str, wall: SystemTime) -> Decision {
        let Some((limit, buckets)) = &self.buckets else {
            return Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_epoch: 0,
                retry_after: 0,
            };
        };
        let limit = limit.get();
        let replenish = Duration::from_secs(60) / limit;
        let epoch_now = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let reset_after = |remaining: u32| epoch_now + replenish * (limit - remaining);
        match buckets.check_key(&identity.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(limit);
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    reset_epoch: reset_after(remaining).as_secs_f64().ceil() as u64,
                    retry_after: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_epoch: reset_after(0).as_secs_f64().ceil() as u64,
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }

    /// Forgets identities whose bucket is full again, bounding memory.
    pub fn prune_idle(&self) {
        if let Some((_, buckets)) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.as_ref().map_or(0, |(_, b)| b.len())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(per_minute: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock(per_minute, clock.clone()), clock)
    }

    #[test]
    fn allows_the_burst_then_refuses_with_retry_after() {
        let (limiter, clock) = limiter(3);
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let decisions: Vec<_> = (0..4).map(|_| limiter.check_at("a", wall)).collect();
        assert!(decisions[..3].iter().all(|d| d.allowed));
        assert_eq!(
            decisions.iter().map(|d| d.remaining).collect::<Vec<_>>(),
            vec![2, 1, 0, 0]
        );
        let refused = decisions[3];
        assert!(!refused.allowed);
        assert_eq!(
            refused.retry_after, 20,
            "3/min refills one request every 20s"
        );
        assert_eq!(refused.reset_epoch, 1_060);
        // Other identities have their own bucket.
        assert!(limiter.check_at("b", wall).allowed);
        // After 20s one request passes again, and only one.
        clock.advance(Duration::from_secs(20));
        assert!(limiter.check_at("a", wall).allowed);
        assert!(!limiter.check_at("a", wall).allowed);
    }

    #[test]
    fn headers_for_a_fresh_bucket() {
        let (limiter, _) = limiter(1000);
        let d = limiter.check_at("x", UNIX_EPOCH + Duration::from_secs(100));
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (1000, 999));
        assert_eq!(
            d.reset_epoch, 101,
            "one request refills in 60ms, rounded up to the next second"
        );
    }

    #[test]
    fn zero_disables_limiting() {
        let (limiter, _) = limiter(0);
        assert!(!limiter.enabled());
        assert!((0..10).all(|_| limiter.check("x").allowed));
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let (limiter, clock) = limiter(60);
        limiter.check("x");
        assert_eq!(limiter.tracked(), 1);
        clock.advance(Duration::from_secs(2));
        limiter.prune_idle();
        assert_eq!(limiter.tracked(), 0, "a full bucket is forgotten");
    }
}
