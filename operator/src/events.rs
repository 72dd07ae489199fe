//! Kubernetes Events about the objects the operator reconciles.
//!
//! kube-runtime's `Recorder` keeps every Event it publishes for six minutes so that a
//! repeat becomes a count on one Event (a series) instead of a new object. That is what
//! warnings need: a failing VaultSecret warns again on every retry. The Normal events of
//! a sync (Created, Updated, DriftRepaired, ...) each report a distinct change and are not
//! repeated, so caching them only costs memory: after a cold sync of 10,000 VaultSecrets
//! the cache held one full Event per object (about 2 KiB each, a third of the operator's
//! heap). Normal events are therefore created directly, and only warnings go through the
//! Recorder.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};

/// The longest note the apiserver accepts on an events.k8s.io/v1 Event (1 kB).
const MAX_NOTE_BYTES: usize = 1024;

pub struct Events {
    client: Client,
    reporter: Reporter,
    /// Folds repeated warnings into series.
    warnings: Recorder,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Events {
        Events {
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    /// Publishes one Event about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let note = truncated(note);
        match type_ {
            EventType::Warning => {
                let event = Event {
                    type_,
                    reason: reason.to_owned(),
                    note: Some(note),
                    action: action.to_owned(),
                    secondary: None,
                };
                self.warnings.publish(&event, regarding).await
            }
            EventType::Normal => {
                let namespace = regarding.namespace.as_deref().unwrap_or("default");
                let event = self.normal(regarding, reason, action, note);
                Api::<KubeEvent>::namespaced(self.client.clone(), namespace)
                    .create(&PostParams::default(), &event)
                    .await
                    .map(drop)
            }
        }
    }

    fn normal(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) -> KubeEvent {
        let now = Timestamp::now();
        // The Recorder's naming: the object's name and the time, unique per object unless
        // two events about it fall in the same nanosecond.
        let name = format!(
            "{}.{:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller),
            now.as_nanosecond()
        );
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some("Normal".to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..KubeEvent::default()
        }
    }
}

/// Cuts a note to what the apiserver accepts, on a character boundary; a longer note
/// would make the whole Event be rejected.
fn truncated(mut note: String) -> String {
    if note.len() > MAX_NOTE_BYTES {
        let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit_the_apiserver_limit() {
        assert_eq!(truncated("short".to_owned()), "short");
        let long = "é".repeat(MAX_NOTE_BYTES);
        let cut = truncated(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
