//! The event hub: one reader of the change feed per server, fanning its events out in
//! memory to every stream subscriber (`GET /v1/events/stream`), so a thousand subscribers
//! cost one feed read per change, not a thousand.
//!
//! Each subscriber has a bounded view of the hub's ring ([`STREAM_BUFFER`] events): one
//! that falls further behind is told where it stopped and dropped, and resumes from
//! there with `Last-Event-ID` (the feed keeps a week); the hub never waits for anyone.
//! It also passes on token revocations, so a revoked token's streams end at once.

use std::sync::Arc;
use std::time::Duration;

use scaivault_api::events::Event;
use tokio::sync::{Notify, broadcast, watch};

use super::event_of;
use crate::store::{ChangeKind, Result, Store};

/// Events a subscriber may fall behind the hub before it is dropped.
pub const STREAM_BUFFER: usize = 1024;
/// The feed is read this often even without a wake (one lost with a connection).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Records read per feed round trip.
const CHUNK: usize = 256;

/// What the hub fans out: the events, and the revocations streams must stop for.
#[derive(Debug, Clone)]
pub enum HubItem {
    Event(Arc<Event>),
    /// The token with this accessor was revoked: its streams end.
    Revoked(Arc<str>),
}

pub struct EventHub {
    events: broadcast::Sender<HubItem>,
}

impl EventHub {
    /// Starts following the feed from its end; stops at `shutdown`.
    pub async fn start(
        store: Arc<dyn Store>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<EventHub>> {
        let notify = Arc::new(Notify::new());
        store.notify_changes(Arc::clone(&notify));
        let start = store.last_change_seq().await?;
        let (events, _) = broadcast::channel(STREAM_BUFFER);
        let hub = Arc::new(EventHub {
            events: events.clone(),
        });
        tokio::spawn(async move {
            let mut at = start;
            loop {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
                loop {
                    let records = match store.changes_after(at, CHUNK).await {
                        Ok(records) => records,
                        Err(e) => {
                            tracing::debug!(error = %e, "reading the change feed for the event hub");
                            break;
                        }
                    };
                    let read = records.len();
                    for record in records {
                        at = record.seq;
                        let item = match event_of(&record) {
                            Some(event) => HubItem::Event(Arc::new(event)),
                            None if record.kind == ChangeKind::TokenRevoked => {
                                HubItem::Revoked(record.subject.as_str().into())
                            }
                            None => continue,
                        };
                        // No subscriber is not an error.
                        let _ = events.send(item);
                    }
                    if read < CHUNK {
                        break;
                    }
                }
            }
        });
        Ok(hub)
    }

    /// The events published from now on. The hub publishes an event only once its record
    /// is in the feed, so a subscriber that subscribes, then reads the feed to its end,
    /// has every event: those before on the feed, those after on the receiver (some on
    /// both: it skips `seq`s it has sent).
    pub fn subscribe(&self) -> broadcast::Receiver<HubItem> {
        self.events.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }
}
