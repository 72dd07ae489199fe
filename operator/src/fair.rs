//! Bounded, per-namespace fair admission of reconcile work.
//!
//! The Controller hands out objects in the order they became due, and a cold start lists
//! them sorted by namespace: with a plain concurrency limit, a namespace of 5,000
//! VaultSecrets would go first and make every other namespace wait for all of them.
//! Here a reconcile takes one of `permits` slots before it touches the vault or the
//! apiserver; when none is free it queues under its namespace, and a freed slot goes to
//! the next namespace in round-robin order (fair queuing by flow, the idea of the
//! apiserver's priority and fairness), FIFO within a namespace.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

#[derive(Default)]
struct State {
    free: usize,
    /// Waiters by namespace.
    queues: HashMap<String, VecDeque<oneshot::Sender<Permit>>>,
    /// Namespaces with waiters, in the order they are served.
    turn: VecDeque<String>,
}

struct Inner {
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every step is one push
        // or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot came free: hand it to the next waiter, or keep it.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some(namespace) = state.turn.pop_front() {
            let Some(queue) = state.queues.get_mut(&namespace) else {
                continue;
            };
            let waiter = queue.pop_front();
            if queue.is_empty() {
                state.queues.remove(&namespace);
            } else {
                state.turn.push_back(namespace);
            }
            let Some(waiter) = waiter else { continue };
            // A waiter whose reconcile was dropped is skipped; a permit sent to a waiter
            // dropped later is released by that drop (the channel drops its value).
            if let Err(mut unsent) = waiter.send(Permit {
                gate: Some(self.clone()),
            }) {
                unsent.gate = None;
                continue;
            }
            return;
        }
        state.free += 1;
    }
}

/// The gate; clones share the slots.
#[derive(Clone)]
pub struct FairGate {
    inner: Arc<Inner>,
}

/// One slot, given back when dropped.
#[must_use = "the slot is given back when the permit is dropped"]
pub struct Permit {
    gate: Option<Arc<Inner>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl FairGate {
    /// `permits` slots (at least one).
    pub fn new(permits: usize) -> FairGate {
        FairGate {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    free: permits.max(1),
                    ..State::default()
                }),
            }),
        }
    }

    /// Waits for a slot for work in `namespace`.
    pub async fn acquire(&self, namespace: &str) -> Permit {
        let rx = {
            let mut state = self.inner.lock();
            if state.free > 0 && state.turn.is_empty() {
                state.free -= 1;
                return Permit {
                    gate: Some(self.inner.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            match state.queues.get_mut(namespace) {
                Some(queue) => queue.push_back(tx),
                None => {
                    state
                        .queues
                        .insert(namespace.to_owned(), VecDeque::from([tx]));
                    state.turn.push_back(namespace.to_owned());
                }
            }
            rx
        };
        // The sender is only dropped unsent when the gate itself is gone (shutdown).
        rx.await.unwrap_or(Permit { gate: None })
    }

    /// Free slots now (for tests).
    pub fn available(&self) -> usize {
        self.inner.lock().free
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_crowded_namespace_does_not_starve_another() {
        let gate = FairGate::new(1);
        let held = gate.acquire("big").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // 50 waiters of "big" queue first, then 2 of "small".
        for (ns, n) in [("big", 50), ("small", 2)] {
            for i in 0..n {
                let gate = gate.clone();
                let order = order.clone();
                tasks.push(tokio::spawn(async move {
                    let _p = gate.acquire(ns).await;
                    order.lock().unwrap().push(format!("{ns}{i}"));
                    tokio::task::yield_now().await;
                }));
                // Let each waiter enqueue in this order.
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 52);
        let small = order.iter().position(|o| o == "small1").unwrap();
        // Alternating turns: small0 second, small1 fourth, not after 50 "big" ones.
        assert!(small <= 4, "{order:?}");
        assert_eq!(gate.available(), 1);
    }

    #[tokio::test]
    async fn bounds_concurrency_and_survives_dropped_waiters() {
        let gate = FairGate::new(2);
        let a = gate.acquire("x").await;
        let b = gate.acquire("y").await;
        assert_eq!(gate.available(), 0);
        // A waiter that gives up (its reconcile was cancelled) loses no slot.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire("x").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(a);
        drop(b);
        assert_eq!(gate.available(), 2);
        let c = gate.acquire("z").await;
        assert_eq!(gate.available(), 1);
        drop(c);
    }
}
