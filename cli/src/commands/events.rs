//! `scaivault events ...`

use scaivault_api::events::{Event, EventsResponse};
use scaivault_client::{Client, EventsOptions, StreamItem, StreamOptions};

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
        EventsCommand::Tail {
            types,
            path_prefix,
            after,
            count,
        } => {
            let options = StreamOptions {
                types,
                path_prefix,
                after,
            };
            tail(client, format, options, count).await
        }
    }
}

/// Streams events to stdout, line by line, reconnecting from the position reached when
/// the server drops the stream (a lagging subscriber, storage briefly away).
async fn tail(
    client: &Client,
    format: OutputFormat,
    mut options: StreamOptions,
    count: Option<u64>,
) -> Result<Output, Failure> {
    let mut printed = 0;
    loop {
        let mut stream = client.event_stream(&options).await?;
        while let Some(item) = stream.next().await? {
            let StreamItem::Event(event) = item else {
                // Lagged or unavailable: open a new stream from where this one stopped.
                break;
            };
            let line = match format {
                OutputFormat::Json => serde_json::to_string(&event)
                    .map_err(|e| Failure::Local(format!("cannot print an event as JSON: {e}")))?,
                OutputFormat::Table => tail_line(&event),
            };
            println!("{line}");
            printed += 1;
            if count.is_some_and(|n| printed >= n) {
                return Ok(Output::text(String::new()));
            }
        }
        options.after = Some(stream.position());
    }
}

/// One event on one line: time, type, what, version, who, why.
fn tail_line(e: &Event) -> String {
    let subject = e
        .path
        .clone()
        .or_else(|| e.policy_id.clone())
        .or_else(|| e.webhook_id.clone())
        .unwrap_or_else(|| NONE.to_owned());
    let version = e.version.map(|v| format!(" v{v}")).unwrap_or_default();
    let reason = e
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!(
        "{} {} {subject}{version} by {}{reason}",
        time(&e.time),
        e.event_type,
        e.actor
    )
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
                .or_else(|| e.webhook_id.clone())
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
                webhook_id: None,
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
                webhook_id: None,
                version: None,
                actor: "user:alice@acme.example".into(),
                reason: None,
                seq: 12,
            },
            Event {
                id: "evt_15".into(),
                event_type: EventType::WebhookExhausted,
                time: OffsetDateTime::UNIX_EPOCH,
                path: None,
                policy_id: None,
                webhook_id: Some("wh_1".into()),
                version: None,
                actor: "system".into(),
                reason: Some("evt_9 failed".into()),
                seq: 15,
            },
        ];
        assert_eq!(
            render_events(&events),
            "SEQ  TIME                  TYPE                PATH    VERSION  ACTOR                    REASON\n\
             7    1970-01-01T00:00:00Z  rotation.requested  app/db  3        root                     compromise\n\
             12   1970-01-01T00:00:00Z  policy.changed      pol_1   -        user:alice@acme.example  -\n\
             15   1970-01-01T00:00:00Z  webhook.exhausted   wh_1    -        system                   evt_9 failed\n"
        );
        assert_eq!(
            tail_line(&events[2]),
            "1970-01-01T00:00:00Z webhook.exhausted wh_1 by system (evt_9 failed)"
        );
    }
}
