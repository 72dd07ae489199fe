//! When and how long to wait before sending a request again.
//!
//! Three failures are worth retrying:
//! - `429 rate_limited`: the server rejected the request before handling it and said in
//!   `Retry-After` when to come back; we wait exactly that long (unless it is longer
//!   than [`RetryPolicy::max_retry_after`], in which case the caller gets the error).
//! - `503 storage_unavailable` / `sealed` / ..., `504 request_timeout`: a transient
//!   outage or a slow answer; we back off
//!   exponentially with jitter, capped at [`RetryPolicy::max_delay`], and never wait less
//!   than a `Retry-After` the server sent. `409 idempotency_key_in_flight` (the first
//!   attempt of a keyed mutation is still running) backs off the same way.
//! - A lost answer (connection refused, reset or closed before the response, timeout):
//!   backed off like a 503.
//!
//! Which requests may be retried is decided per endpoint (see [`Retry`]): requests that
//! change nothing are sent again as they are; every mutation carries an
//! `Idempotency-Key` made once per call and reused by its retries, so the server applies
//! it once even when an answer was lost after the change (it replays the first answer).
//! A mutation the server cannot deduplicate (a login: no caller to scope the key to) is
//! never retried.

use std::time::Duration;

use scaivault_api::ErrorCode;

/// Retry settings of a [`crate::Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; `0` disables retrying.
    pub max_retries: u32,
    /// Backoff before the first retry of a 503; doubles on every further retry.
    pub base_delay: Duration,
    /// Upper bound of the exponential backoff.
    pub max_delay: Duration,
    /// A 429 asking to wait longer than this is returned to the caller instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Whether an endpoint may be sent again after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Changes nothing: reads, queries, the what-if test, HMACs.
    Safe,
    /// Changes state: sent with an `Idempotency-Key`, so any repeat is applied once.
    Keyed,
    /// Never repeated: a login (the server has no caller to scope a key to), and the
    /// health probes, whose `503` is an answer.
    Never,
}
impl RetryPolicy {
    /// A policy that never retries.
    pub fn disabled() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before retry number `retries_done + 1`, or `None` to give up.
    ///
    /// `jitter` is a number in `[0, 1)`; passing it in keeps this function pure.
    pub(crate) fn delay_before_retry(
        &self,
        retry: Retry,
        retries_done: u32,
        status: u16,
        code: ErrorCode,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if retry == Retry::Never || retries_done >= self.max_retries {
            return None;
        }
        match status {
            409 if retry == Retry::Keyed && code == ErrorCode::IdempotencyKeyInFlight => {
                let backoff = self.backoff(retries_done, jitter);
                Some(retry_after.map_or(backoff, |asked| backoff.max(asked)))
                    .filter(|wait| *wait <= self.max_retry_after)
            }
            429 => {
                // Without a Retry-After the server broke its contract; back off anyway.
                let wait = retry_after.unwrap_or_else(|| self.backoff(retries_done, jitter));
                (wait <= self.max_retry_after).then_some(wait)
            }
            // 504: the server stopped waiting but the work may go on; a keyed repeat waits
            // for it (409 in flight) and then gets its answer.
            503 | 504 => {
                let backoff = self.backoff(retries_done, jitter);
                match retry_after {
                    Some(asked) if asked > self.max_retry_after => None,
                    Some(asked) => Some(backoff.max(asked)),
                    None => Some(backoff),
                }
            }
            _ => None,
        }
    }

    /// How long to wait after an answer was lost (no response, or a broken one), or
    /// `None` to give up. Only a request that changes nothing or carries an
    /// `Idempotency-Key` is sent again: the lost attempt may have been applied.
    pub(crate) fn delay_after_lost_answer(
        &self,
        retry: Retry,
        retries_done: u32,
        jitter: f64,
    ) -> Option<Duration> {
        (retry != Retry::Never && retries_done < self.max_retries)
            .then(|| self.backoff(retries_done, jitter))
    }

    /// Exponential backoff with "equal jitter": half the step is fixed, half is random,
    /// so concurrent clients spread out but every client still backs off.
    pub(crate) fn backoff(&self, retries_done: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(retries_done.min(16));
        let step = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const RL: ErrorCode = ErrorCode::RateLimited;
    const SU: ErrorCode = ErrorCode::StorageUnavailable;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy::default();
        // Without jitter: half of 200ms, 400ms, 800ms, ... up to half of 5s.
        let no_jitter: Vec<Duration> = (0..8).map(|n| policy.backoff(n, 0.0)).collect();
        assert_eq!(
            no_jitter,
            [
                MS(100),
                MS(200),
                MS(400),
                MS(800),
                MS(1600),
                MS(2500),
                MS(2500),
                MS(2500)
            ]
        );
        // With maximal jitter the full step.
        assert_eq!(policy.backoff(0, 1.0), MS(200));
        assert!(policy.backoff(30, 0.999) <= policy.max_delay);
        // Huge retry counts do not overflow.
        assert_eq!(policy.backoff(u32::MAX, 0.0), MS(2500));
    }

    #[test]
    fn jitter_stays_within_the_step() {
        let policy = RetryPolicy::default();
        for n in 0..6 {
            for jitter in [0.0, 0.25, 0.5, 0.75, 0.9999] {
                let d = policy.backoff(n, jitter);
                let step = policy
                    .base_delay
                    .saturating_mul(1 << n)
                    .min(policy.max_delay);
                assert!(d >= step / 2 && d <= step, "{n} {jitter} {d:?}");
            }
        }
    }

    #[test]
    fn rate_limits_wait_for_retry_after() {
        let policy = RetryPolicy::default();
        let wait =
            policy.delay_before_retry(Retry::Safe, 0, 429, RL, Some(Duration::from_secs(2)), 0.5);
        assert_eq!(wait, Some(Duration::from_secs(2)));
        // Longer than we are willing to wait: give the error to the caller.
        let wait = policy.delay_before_retry(
            Retry::Safe,
            0,
            429,
            RL,
            Some(Duration::from_secs(3600)),
            0.5,
        );
        assert_eq!(wait, None);
        // No header: back off like a 503.
        assert_eq!(
            policy.delay_before_retry(Retry::Safe, 1, 429, RL, None, 0.0),
            Some(MS(200))
        );
    }

    #[test]
    fn unavailable_backs_off_but_respects_retry_after() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_before_retry(Retry::Safe, 0, 503, SU, None, 0.0),
            Some(MS(100))
        );
        assert_eq!(
            policy.delay_before_retry(Retry::Safe, 0, 503, SU, Some(Duration::from_secs(1)), 0.0),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn gives_up_when_told_to() {
        let policy = RetryPolicy::default();
        // Other statuses are answers, not outages.
        for status in [400, 401, 404, 409, 422, 500, 502] {
            assert_eq!(
                policy.delay_before_retry(Retry::Safe, 0, status, SU, None, 0.0),
                None,
                "{status}"
            );
        }
        // Unsafe endpoints are never repeated.
        assert_eq!(
            policy.delay_before_retry(Retry::Never, 0, 503, SU, None, 0.0),
            None
        );
        // The budget runs out.
        assert_eq!(
            policy.delay_before_retry(Retry::Safe, 3, 503, SU, None, 0.0),
            None
        );
        assert_eq!(
            RetryPolicy::disabled().delay_before_retry(Retry::Safe, 0, 503, SU, None, 0.0),
            None
        );
    }

    #[test]
    fn timeouts_are_retried_like_outages() {
        let policy = RetryPolicy::default();
        let timeout = ErrorCode::RequestTimeout;
        assert_eq!(
            policy.delay_before_retry(Retry::Keyed, 0, 504, timeout, None, 0.0),
            Some(MS(100))
        );
        assert_eq!(
            policy.delay_before_retry(Retry::Never, 0, 504, timeout, None, 0.0),
            None
        );
    }

    #[test]
    fn keyed_mutations_wait_for_their_first_attempt() {
        let policy = RetryPolicy::default();
        let in_flight = ErrorCode::IdempotencyKeyInFlight;
        let wait = |retry| policy.delay_before_retry(retry, 0, 409, in_flight, None, 0.0);
        assert_eq!(wait(Retry::Keyed), Some(MS(100)));
        // Only a keyed call can be in flight; other 409s are answers.
        assert_eq!(wait(Retry::Safe), None);
        assert_eq!(
            policy.delay_before_retry(Retry::Keyed, 0, 409, ErrorCode::CasMismatch, None, 0.0),
            None
        );
    }

    #[test]
    fn lost_answers_are_retried_only_when_a_repeat_is_harmless() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay_after_lost_answer(Retry::Safe, 0, 0.0),
            Some(MS(100))
        );
        assert_eq!(
            policy.delay_after_lost_answer(Retry::Keyed, 1, 0.0),
            Some(MS(200))
        );
        assert_eq!(policy.delay_after_lost_answer(Retry::Never, 0, 0.0), None);
        assert_eq!(policy.delay_after_lost_answer(Retry::Keyed, 3, 0.0), None);
    }
}
