//! Bounded, per-namespace fair admission of reconcile work.
//!
//! The Controller hands out objects in the order they became due, and a cold start lists
//! them sorted by namespace: with a plain concurrency limit, a namespace of 5,000
//! VaultSecrets would go first and make every other namespace wait for all of them.
//! Here a reconcile takes one of `permits` slots before it touches the vault or the
//! apiserver; a freed slot goes to the next namespace in round-robin order (fair
//! queuing by flow, the idea of the apiserver's priority and fairness), FIFO within a
//! namespace.
//!
//! A reconcile that finds no free slot does not wait for one: its object is *parked*
//! under its namespace (its name, a few bytes) and the reconcile ends, so a cold start
//! of 10,000 objects holds 10,000 names, not 10,000 pending reconciles with their tasks,
//! spans and Controller entries. When its turn comes the object is *called*: sent on the
//! `calls` channel (the Controller reconciles what arrives there, `reconcile_on`) with the
//! slot kept for it, and its next reconcile takes that slot ([`FairGate::admit`]). A call
//! not answered within the call timeout (the object went away) gives its slot back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;

/// How long a called object's slot is kept for it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A parked object whose turn has come: reconcile it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    pub namespace: String,
    pub name: String,
}

struct State {
    free: usize,
    /// Parked names by namespace.
    parked: HashMap<String, VecDeque<Box<str>>>,
    /// Namespaces with parked objects, in the order they are served.
    turn: VecDeque<String>,
    /// Called objects, each holding a slot, and since when.
    called: HashMap<Call, Instant>,
}

struct Inner {
    state: Mutex<State>,
    calls: UnboundedSender<Call>,
    call_timeout: Duration,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every step is one push
        // or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot came free: call the next parked object with it, or keep it.
    fn release(&self, state: &mut State) {
        while let Some(namespace) = state.turn.pop_front() {
            let Some(queue) = state.parked.get_mut(&namespace) else {
                continue;
            };
            let name = queue.pop_front();
            if queue.is_empty() {
                state.parked.remove(&namespace);
            } else {
                state.turn.push_back(namespace.clone());
            }
            let Some(name) = name else { continue };
            let call = Call {
                namespace,
                name: name.into(),
            };
            // No receiver: the controllers are stopping; nobody will answer.
            if self.calls.unbounded_send(call.clone()).is_ok() {
                state.called.insert(call, Instant::now());
                return;
            }
        }
        state.free += 1;
    }

    /// Slots of calls nobody answered go to the next in turn.
    fn expire_calls(&self, state: &mut State) {
        let timeout = self.call_timeout;
        let expired: Vec<Call> = state
            .called
            .iter()
            .filter(|(_, since)| since.elapsed() >= timeout)
            .map(|(call, _)| call.clone())
            .collect();
        for call in expired {
            state.called.remove(&call);
            tracing::debug!(namespace = %call.namespace, name = %call.name, "a call was not answered; its slot goes on");
            self.release(state);
        }
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
    gate: Arc<Inner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        self.gate.release(&mut state);
    }
}

impl FairGate {
    /// `permits` slots (at least one); parked objects are called on `calls`.
    pub fn new(permits: usize, calls: UnboundedSender<Call>) -> FairGate {
        FairGate::with_call_timeout(permits, calls, CALL_TIMEOUT)
    }

    pub fn with_call_timeout(
        permits: usize,
        calls: UnboundedSender<Call>,
        call_timeout: Duration,
    ) -> FairGate {
        FairGate {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    free: permits.max(1),
                    parked: HashMap::new(),
                    turn: VecDeque::new(),
                    called: HashMap::new(),
                }),
                calls,
                call_timeout,
            }),
        }
    }

    /// A slot for work on `namespace/name`: the one kept for it if it was called, a free
    /// one if nobody is parked, else `None` and the object is parked (once) until called.
    pub fn admit(&self, namespace: &str, name: &str) -> Option<Permit> {
        let mut state = self.inner.lock();
        self.inner.expire_calls(&mut state);
        let call = Call {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let permit = || Permit {
            gate: self.inner.clone(),
        };
        // The slot kept for the call.
        if state.called.remove(&call).is_some() {
            return Some(permit());
        }
        // Nobody parked is passed over.
        if state.free > 0 && state.turn.is_empty() {
            state.free -= 1;
            return Some(permit());
        }
        match state.parked.get_mut(namespace) {
            Some(queue) => {
                if !queue.iter().any(|n| **n == *name) {
                    queue.push_back(name.into());
                }
            }
            None => {
                state
                    .parked
                    .insert(namespace.to_owned(), VecDeque::from([name.into()]));
                state.turn.push_back(namespace.to_owned());
            }
        }
        None
    }

    /// A called object that will not use its slot (nothing is due): the slot goes on.
    pub fn forfeit(&self, namespace: &str, name: &str) {
        let mut state = self.inner.lock();
        let call = Call {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        if state.called.remove(&call).is_some() {
            self.inner.release(&mut state);
        }
    }

    /// Free slots now (for tests).
    pub fn available(&self) -> usize {
        self.inner.lock().free
    }

    /// Parked objects now.
    pub fn parked(&self) -> usize {
        self.inner.lock().parked.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    #[test]
    fn a_crowded_namespace_does_not_starve_another() {
        let (tx, mut calls) = mpsc::unbounded();
        let gate = FairGate::new(1, tx);
        let held = gate.admit("big", "first").unwrap();
        // 50 objects of "big" park first, then 2 of "small".
        for (ns, n) in [("big", 50), ("small", 2)] {
            for i in 0..n {
                assert!(gate.admit(ns, &format!("{ns}{i}")).is_none());
            }
        }
        assert_eq!(gate.parked(), 52);
        drop(held);
        // Each call is answered by a reconcile that takes the kept slot and ends.
        let mut order = Vec::new();
        while let Ok(call) = calls.try_recv() {
            order.push(call.name.clone());
            let permit = gate.admit(&call.namespace, &call.name);
            assert!(permit.is_some(), "the called object gets its slot");
        }
        assert_eq!(order.len(), 52);
        let small = order.iter().position(|o| o == "small1").unwrap();
        // Alternating turns: small0 second, small1 fourth, not after 50 "big" ones.
        assert!(small <= 4, "{order:?}");
        assert_eq!(gate.available(), 1);
        assert_eq!(gate.parked(), 0);
    }

    #[test]
    fn bounds_concurrency_and_parks_each_object_once() {
        let (tx, mut calls) = mpsc::unbounded();
        let gate = FairGate::new(2, tx);
        let a = gate.admit("x", "a").unwrap();
        let b = gate.admit("y", "b").unwrap();
        assert_eq!(gate.available(), 0);
        assert!(gate.admit("x", "c").is_none());
        assert!(gate.admit("x", "c").is_none(), "a second trigger");
        assert_eq!(gate.parked(), 1);
        // Nobody jumps the queue: with c parked, a newcomer parks too even once a slot
        // is free, and the free slot went to c.
        drop(a);
        assert_eq!(gate.available(), 0);
        assert!(gate.admit("z", "d").is_none());
        let call = calls.try_recv().unwrap();
        assert_eq!(call.name, "c");
        let c = gate.admit("x", "c").unwrap();
        drop(b);
        assert_eq!(calls.try_recv().unwrap().name, "d");
        // d does not answer (nothing due): its slot is free again.
        gate.forfeit("z", "d");
        assert_eq!(gate.available(), 1);
        drop(c);
        assert_eq!(gate.available(), 2);
        assert!(calls.try_recv().is_err(), "no more calls");
    }

    #[test]
    fn an_unanswered_call_gives_its_slot_back() {
        let (tx, mut calls) = mpsc::unbounded();
        let gate = FairGate::with_call_timeout(1, tx, Duration::ZERO);
        let a = gate.admit("x", "a").unwrap();
        assert!(gate.admit("x", "gone").is_none());
        assert!(gate.admit("x", "next").is_none());
        drop(a);
        assert_eq!(calls.try_recv().unwrap().name, "gone");
        // "gone" never comes back; the next admit finds its call expired and calls on.
        assert!(gate.admit("y", "late").is_none());
        assert_eq!(calls.try_recv().unwrap().name, "next");
    }

    #[test]
    fn with_nobody_listening_slots_stay_free() {
        let (tx, calls) = mpsc::unbounded();
        let gate = FairGate::new(1, tx);
        let a = gate.admit("x", "a").unwrap();
        assert!(gate.admit("x", "b").is_none());
        drop(calls);
        drop(a);
        assert_eq!(gate.available(), 1);
    }
}
