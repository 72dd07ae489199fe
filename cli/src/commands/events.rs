//! `scaivault events ...`

use scaivault_api::events::{Event, EventsResponse};
use scaivault_client::{Client, EventsOptions};

use super::render;
use crate::args::{EventsCommand, OutputFormat};
use crate::failure::Failure;
use crate::output::{NONE, Output, Table, opt_text, time};

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: EventsCommand,
) -> Result<Output, Failure> {
    match command {
        EventsCommand::List {
            types,
            path_prefix,
            after,
            limit,
            all,
        } => {
            let options = EventsOptions {
                types,
                path_prefix,
                after,
                limit,
            };
            let page = if all {
                let mut pages = client.event_pages(&options);
                let mut events = Vec::new();
                while let Some(page) = pages.next_page().await? {
                    events.extend(page);
                }
                EventsResponse {
                    events,
                    last_seq: pages.position(),
                }
            } else {
                client.events(&options).await?
            };
            let output = render(format, &page, |page| render_events(&page.events))?;
            // The position is in the JSON document; people get it on stderr.
            Ok(match format {
                OutputFormat::Table if page.last_seq > after.unwrap_or(0) => {
                    output.with_note(format!("next: add --after {}", page.last_seq))
                }
                _ => output,
            })
        }
    }
}

fn render_events(events: &[Event]) -> String {
    let mut table =
        Table::with_header(["SEQ", "TIME", "TYPE", "PATH", "VERSION", "ACTOR", "REASON"]);
    for e in events {
        table.row(vec![
            e.seq.to_string(),
            time(&e.time),
            e.event_type.to_string(),
            e.path
                .clone()
                .or_else(|| e.policy_id.clone())
                .unwrap_or_else(|| NONE.to_owned()),
            e.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| NONE.to_owned()),
            e.actor.clone(),
            opt_text(&e.reason),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_api::events::EventType;
    use time::OffsetDateTime;

    #[test]
    fn events_render_one_per_line_with_their_object() {
        let events = [
            Event {
                id: "evt_7".into(),
                event_type: EventType::RotationRequested,
                time: OffsetDateTime::UNIX_EPOCH,
                path: Some("app/db".into()),
                policy_id: None,
                version: Some(3),
                actor: "root".into(),
                reason: Some("compromise".into()),
                seq: 7,
            },
            Event {
                id: "evt_12".into(),
                event_type: EventType::PolicyChanged,
                time: OffsetDateTime::UNIX_EPOCH,
                path: None,
                policy_id: Some("pol_1".into()),
                version: None,
                actor: "user:alice@acme.example".into(),
                reason: None,
                seq: 12,
            },
        ];
        assert_eq!(
            render_events(&events),
            "SEQ  TIME                  TYPE                PATH    VERSION  ACTOR                    REASON\n\
             7    1970-01-01T00:00:00Z  rotation.requested  app/db  3        root                     compromise\n\
             12   1970-01-01T00:00:00Z  policy.changed      pol_1   -        user:alice@acme.example  -\n"
        );
    }
}
