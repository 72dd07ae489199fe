//! Events: the change feed's records that callers may see, in the public shape webhooks
//! and the event stream carry. Which change record is which event is declared here, once.
//!
//! A record names its object and never a value; tokens, identities and the keyring are
//! the server's own bookkeeping and make no event.

pub mod hub;

use std::collections::BTreeSet;

use scaivault_api::events::{Event, EventType};

use crate::auth::Caller;
use crate::authz::{Engine, Permission, resource};
use crate::error::Result;
use crate::store::{ChangeKind, ChangeRecord, Store};

/// Who an event names as its actor when the server's own jobs made the change.
pub const SYSTEM_ACTOR: &str = "system";
/// Change records read per storage round trip while filling a page.
const CHUNK: usize = 256;
/// Most change records one request examines: past it the page comes back short, with
/// `last_seq` to go on from (records the caller may not see cost reading too).
pub const MAX_EVENTS_SCAN: usize = 10_000;

/// What an event is about, for authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Secret(&'a str),
    Policy(&'a str),
    Webhook(&'a str),
}

/// The event type of a change record, `None` for records that make no event.
pub fn event_type(record: &ChangeRecord) -> Option<EventType> {
    use ChangeKind as K;
    use EventType as E;
    Some(match record.kind {
        K::SecretWritten if record.version == Some(1) => E::SecretCreated,
        K::SecretWritten => E::SecretUpdated,
        K::SecretMetadataUpdated => E::SecretMetadataUpdated,
        K::SecretDeleted => E::SecretDeleted,
        K::SecretRestored => E::SecretRestored,
        K::SecretDestroyed => E::SecretDestroyed,
        K::SecretExpired => E::SecretExpired,
        K::RotationDue => E::RotationDue,
        K::RotationOverdue => E::RotationOverdue,
        K::RotationFailed => E::RotationFailed,
        K::RotationRequested => E::RotationRequested,
        K::RotationCompleted => E::RotationCompleted,
        K::PolicyCreated
        | K::PolicyUpdated
        | K::PolicyDeleted
        | K::BindingAdded
        | K::BindingRemoved => E::PolicyChanged,
        K::WebhookExhausted => E::WebhookExhausted,
        K::WebhookDisabled => E::WebhookDisabled,
        K::TokenCreated | K::TokenRevoked | K::IdentityCreated | K::KeyAdded | K::MetaUpdated => {
            return None;
        }
    })
}

/// The event of a change record, if it makes one.
pub fn event_of(record: &ChangeRecord) -> Option<Event> {
    let event_type = event_type(record)?;
    let subject = |of: Kind| (kind_of(event_type) == of).then(|| record.subject.clone());
    Some(Event {
        id: format!("evt_{}", record.seq),
        event_type,
        time: record.at,
        path: subject(Kind::Secret),
        policy_id: subject(Kind::Policy),
        webhook_id: subject(Kind::Webhook),
        version: record.version,
        actor: record
            .actor
            .clone()
            .unwrap_or_else(|| SYSTEM_ACTOR.to_owned()),
        reason: record.reason.clone(),
        seq: record.seq,
    })
}

/// Which kind of object an event type is about.
#[derive(PartialEq, Eq)]
enum Kind {
    Secret,
    Policy,
    Webhook,
}

fn kind_of(event_type: EventType) -> Kind {
    match event_type {
        EventType::PolicyChanged => Kind::Policy,
        EventType::WebhookExhausted | EventType::WebhookDisabled | EventType::WebhookTest => {
            Kind::Webhook
        }
        _ => Kind::Secret,
    }
}

pub fn subject_of(event: &Event) -> Option<Subject<'_>> {
    match (&event.path, &event.policy_id, &event.webhook_id) {
        (Some(path), _, _) => Some(Subject::Secret(path)),
        (None, Some(id), _) => Some(Subject::Policy(id)),
        (None, None, Some(id)) => Some(Subject::Webhook(id)),
        (None, None, None) => None,
    }
}

/// Whether `caller` may see events about `subject`: `list` on a secret's path, `read` on
/// the vault's policies or webhooks.
pub fn visible_to(authz: &Engine, caller: &Caller, subject: Subject<'_>) -> bool {
    match subject {
        Subject::Secret(path) => authz.allows(caller, Permission::List, path),
        Subject::Policy(_) => authz.allows(caller, Permission::Read, resource::POLICIES),
        Subject::Webhook(_) => authz.allows(caller, Permission::Read, resource::WEBHOOKS),
    }
}

/// Which events a caller asked for.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `None`: every type.
    pub types: Option<BTreeSet<EventType>>,
    /// Only events about secrets under this prefix (policy events have no path).
    pub path_prefix: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        let typed = self
            .types
            .as_ref()
            .is_none_or(|types| types.contains(&event.event_type));
        let under = match &self.path_prefix {
            None => true,
            Some(prefix) => event
                .path
                .as_deref()
                .is_some_and(|p| p.starts_with(prefix.as_str())),
        };
        typed && under
    }
}

/// A page of events after `after`.
#[derive(Debug)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The position reached: the last event's `seq` on a full page, else the newest
    /// record examined.
    pub last_seq: u64,
}

/// Events after `after` that `filter` selects and `visible` lets the caller see, at most
/// `limit`.
pub async fn list(
    store: &dyn Store,
    after: u64,
    limit: usize,
    filter: &EventFilter,
    visible: impl Fn(Subject<'_>) -> bool,
) -> Result<EventPage> {
    let mut events = Vec::new();
    let mut position = after;
    let mut scanned = 0;
    while events.len() < limit && scanned < MAX_EVENTS_SCAN {
        let records = store.changes_after(position, CHUNK).await?;
        let read = records.len();
        for record in records {
            scanned += 1;
            position = record.seq;
            let Some(event) = event_of(&record) else {
                continue;
            };
            if filter.matches(&event) && subject_of(&event).is_some_and(&visible) {
                events.push(event);
                if events.len() == limit {
                    break;
                }
            }
        }
        if read < CHUNK {
            break;
        }
    }
    Ok(EventPage {
        events,
        last_seq: position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn record(kind: ChangeKind, version: Option<u64>) -> ChangeRecord {
        ChangeRecord {
            seq: 7,
            at: OffsetDateTime::UNIX_EPOCH,
            kind,
            subject: "app/db".into(),
            version,
            actor: None,
            reason: None,
        }
    }

    #[test]
    fn first_versions_are_created_later_ones_updated() {
        let created = event_of(&record(ChangeKind::SecretWritten, Some(1)));
        let updated = event_of(&record(ChangeKind::SecretWritten, Some(2)));
        assert_eq!(
            created.map(|e| e.event_type),
            Some(EventType::SecretCreated)
        );
        assert_eq!(
            updated.map(|e| e.event_type),
            Some(EventType::SecretUpdated)
        );
    }

    #[test]
    fn bookkeeping_makes_no_event_and_jobs_act_as_system() {
        assert!(event_of(&record(ChangeKind::TokenRevoked, None)).is_none());
        assert!(event_of(&record(ChangeKind::KeyAdded, None)).is_none());
        let due = event_of(&record(ChangeKind::RotationDue, None));
        assert_eq!(due.as_ref().map(|e| e.actor.as_str()), Some(SYSTEM_ACTOR));
        assert_eq!(due.map(|e| e.id), Some("evt_7".to_owned()));
    }

    #[test]
    fn policy_events_name_the_policy_not_a_path() {
        let event = event_of(&record(ChangeKind::BindingAdded, None));
        assert_eq!(
            event.map(|e| (e.event_type, e.path, e.policy_id)),
            Some((EventType::PolicyChanged, None, Some("app/db".into())))
        );
    }
}
