//! One subscription per operator process to the vault's event stream
//! (`GET /v1/events/stream`): a change of a VaultSecret's source reconciles that
//! VaultSecret at once, instead of at its next `refreshInterval`.
//!
//! The stream is read with the token of `--vault-token-file` (events are authorised per
//! path: that token needs `list` on the synced paths); the value itself is still read as
//! each namespace's ServiceAccount by the reconcile. An event marks the VaultSecrets
//! reading its path as changed (`changed::Changed`) and hands them to the Controller
//! (`reconcile_on`); the reconcile then reads once per path and ServiceAccount
//! (`shared_reads`), with a read sent after the event.
//!
//! Nothing is missed across a disconnect: the stream is opened again, with backoff, after
//! the last position seen (the server replays its change feed from there), and after a
//! `lagged` from the position it names. What cannot be replayed is re-read instead: a
//! stream that ended before it delivered anything has no position, and the feed keeps
//! only 7 days. Then every VaultSecret is synced once. While the stream is down the
//! refresh schedule goes on as without it (it never stops): polling is the fallback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use scaivault_client::api::events::{Event, EventType};
use scaivault_client::{StreamItem, StreamOptions};
use tokio::sync::watch;

use crate::context::Context;
use crate::source_index::{Guarded, SourceIndex, path_of};

/// First and longest wait before opening the stream again after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A stream open this long, or that delivered an event, was healthy: the backoff starts over.
const STABLE: Duration = Duration::from_secs(30);
/// How long the change feed keeps a change (the server's retention, 7 days), less a
/// margin: a stream down longer may resume after changes already pruned.
pub const FEED_KEPT: Duration = Duration::from_secs(7 * 24 * 3600 - 3600);

fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)));
    crate::schedule::jitter(exp.min(BACKOFF_CAP))
}

/// Whether events may have been missed between two streams: nothing to resume from
/// (`position` unknown), or a gap longer than the feed keeps.
pub fn must_resync(position: Option<u64>, down_for: Duration) -> bool {
    position.is_none() || down_for >= FEED_KEPT
}

/// How a stream ended.
enum End {
    /// Open the next one at once (`lagged`: the server says where to resume).
    Resume,
    /// After a backoff (an error, the server ended it, storage unavailable).
    Retry,
    Stop,
}

pub struct Subscription {
    pub ctx: Arc<Context>,
    pub index: Arc<SourceIndex>,
    /// The VaultSecret Controller's store.
    pub store: Store<Guarded>,
    /// Objects to reconcile now (the Controller's `reconcile_on`).
    pub trigger: UnboundedSender<ObjectRef<Guarded>>,
}

impl Subscription {
    /// Follows the stream until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let Some(admin) = self.ctx.admin.as_ref() else {
            tracing::warn!(
                "no --vault-token-file: not following the vault's event stream; VaultSecrets refresh on their refreshInterval only"
            );
            return;
        };
        let metrics = &self.ctx.metrics;
        let mut position: Option<u64> = None;
        let mut failures = 0u32;
        // Since when changes may have gone unheard: the end of the last stream, or the first
        // failed attempt to open one (the cold sync read everything before that).
        let mut down_since: Option<Instant> = None;
        let mut opened_before = false;
        loop {
            let opened = match admin.client() {
                Ok(client) => {
                    let options = StreamOptions {
                        types: EventType::VALUE_CHANGES.to_vec(),
                        path_prefix: None,
                        after: position,
                    };
                    tokio::select! {
                        opened = client.event_stream(&options) => opened.map_err(|e| e.to_string()),
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => Err(e),
            };
            let end = match opened {
                Err(e) => {
                    tracing::warn!(error = %e, after = ?position, "opening the vault's event stream failed; VaultSecrets refresh on their schedule meanwhile");
                    down_since.get_or_insert_with(Instant::now);
                    End::Retry
                }
                Ok(mut stream) => {
                    if opened_before {
                        metrics.stream_reconnects.inc();
                    }
                    opened_before = true;
                    if let Some(since) = down_since.take()
                        && must_resync(position, since.elapsed())
                    {
                        self.resync_all();
                    }
                    metrics.stream_connected.set(1);
                    tracing::info!(after = ?position, "following the vault's event stream");
                    let opened_at = Instant::now();
                    let mut delivered = false;
                    let end = loop {
                        let item = tokio::select! {
                            item = stream.next() => item,
                            _ = stop.wait_for(|s| *s) => break End::Stop,
                        };
                        match item {
                            Ok(Some(StreamItem::Event(event))) => {
                                metrics.stream_events.inc();
                                position = Some(event.seq);
                                delivered = true;
                                self.changed(&event);
                            }
                            Ok(Some(StreamItem::Lagged { resume_after })) => {
                                tracing::info!(
                                    resume_after,
                                    "the event stream fell behind; resuming"
                                );
                                position = Some(resume_after);
                                break End::Resume;
                            }
                            Ok(Some(StreamItem::Unavailable { resume_after })) => {
                                tracing::warn!(
                                    resume_after,
                                    "the vault could not replay events; resuming later"
                                );
                                position = Some(resume_after);
                                break End::Retry;
                            }
                            Ok(None) => {
                                tracing::info!(after = ?position, "the vault ended the event stream");
                                break End::Retry;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, after = ?position, "the event stream failed");
                                break End::Retry;
                            }
                        }
                    };
                    // Where the vault said the stream started, when no event came since:
                    // a stream that delivered nothing resumes from there, not by a resync.
                    position = position.max(stream.resume_after());
                    metrics.stream_connected.set(0);
                    down_since = Some(Instant::now());
                    if delivered || opened_at.elapsed() >= STABLE {
                        failures = 0;
                    }
                    end
                }
            };
            match end {
                End::Stop => return,
                End::Resume => {}
                End::Retry => {
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// The VaultSecrets reading the event's path: marked changed, reconciled now.
    fn changed(&self, event: &Event) {
        let Some(path) = event.path.as_deref() else {
            return;
        };
        let now = Instant::now();
        for obj in self.index.lookup(path) {
            // The index may lag the store by one watch event: the store has the last word.
            let Some(vs) = self.store.get(&obj) else {
                continue;
            };
            if path_of(&vs) != Some(path) {
                continue;
            }
            if let Some(uid) = vs.uid() {
                self.ctx.changed.mark_at(&uid, now);
            }
            tracing::debug!(vaultsecret = %obj, path, seq = event.seq, "source changed");
            // No receiver: the controllers are stopping.
            let _ = self.trigger.unbounded_send(obj);
        }
    }

    /// Every VaultSecret read again once: events may have been missed.
    fn resync_all(&self) {
        let all = self.store.state();
        tracing::info!(
            vaultsecrets = all.len(),
            "events may have been missed while the stream was down; syncing every VaultSecret"
        );
        self.ctx.metrics.stream_resyncs.inc();
        let now = Instant::now();
        for vs in all {
            if let Some(uid) = vs.uid() {
                self.ctx.changed.mark_at(&uid, now);
            }
            let _ = self.trigger.unbounded_send(ObjectRef::from(vs.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        assert!(backoff(1) <= BACKOFF_BASE.mul_f64(1.1));
        assert!(backoff(3) >= BACKOFF_BASE.mul_f64(4.0 * 0.9));
        assert!(backoff(40) <= BACKOFF_CAP.mul_f64(1.1));
        assert!(backoff(40) >= BACKOFF_CAP.mul_f64(0.9));
    }

    #[test]
    fn a_resync_only_when_events_cannot_be_replayed() {
        assert!(!must_resync(Some(12), Duration::from_secs(5)));
        assert!(must_resync(None, Duration::from_secs(5)));
        assert!(must_resync(Some(12), FEED_KEPT));
    }
}
