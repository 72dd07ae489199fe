//! Waiting on a condition instead of sleeping: a probe polled until it holds, with a
//! deadline and a message naming what did not happen.

use std::future::Future;
use std::time::{Duration, Instant};

/// The first retry comes quickly (most conditions hold within milliseconds); later ones
/// back off to [`MAX_POLL`] so a slow condition is not hammered (a login probe counts
/// against the server's rate limit).
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(500);

fn next(poll: Duration) -> Duration {
    (poll * 3 / 2).min(MAX_POLL)
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut poll = FIRST_POLL;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(poll).await;
        poll = next(poll);
    }
}

/// [`wait_for`] with a yes/no condition.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, timeout, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// [`wait_for`] outside an async runtime (process exits, files appearing).
pub fn wait_for_blocking<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut poll = FIRST_POLL;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(poll);
        poll = next(poll);
    }
}
