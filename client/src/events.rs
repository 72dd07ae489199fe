//! `/v1/events`: what happened to secrets and policies, read from the change feed by
//! position (`after`), oldest first.

use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::events::{
    Event, EventType, EventsResponse, MAX_EVENT_TYPE_FILTERS, MAX_EVENTS_LIMIT,
};
use scaivault_api::path::validate_prefix;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::Retry;

/// Filters and position of [`Client::events`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsOptions {
    /// Only these types (at most 32); every type when empty.
    pub types: Vec<EventType>,
    /// Only events about paths starting with this, like `environments/production/`.
    pub path_prefix: Option<String>,
    /// Events after this feed position: `last_seq` of the previous page (`0`, the default,
    /// is the oldest event kept).
    pub after: Option<u64>,
    /// Page size, 1..=1000 (server default 100).
    pub limit: Option<u32>,
}

impl EventsOptions {
    fn query(&self) -> Result<Vec<(&'static str, String)>> {
        let mut query = Vec::new();
        if !self.types.is_empty() {
            if self.types.len() > MAX_EVENT_TYPE_FILTERS {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("at most {MAX_EVENT_TYPE_FILTERS} event types in one filter"),
                ));
            }
            let names: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
            query.push(("types", names.join(",")));
        }
        if let Some(prefix) = &self.path_prefix {
            validate_prefix(prefix)
                .map_err(|e| Error::invalid(ErrorCode::InvalidPath, format!("path_prefix: {e}")))?;
            query.push(("path_prefix", prefix.clone()));
        }
        if let Some(after) = self.after {
            query.push(("after", after.to_string()));
        }
        if let Some(limit) = self.limit {
            if !(1..=MAX_EVENTS_LIMIT).contains(&(limit as usize)) {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("limit must be between 1 and {MAX_EVENTS_LIMIT}"),
                ));
            }
            query.push(("limit", limit.to_string()));
        }
        Ok(query)
    }
}

/// Page-by-page reading of the events up to the newest; see [`Client::event_pages`].
#[derive(Debug)]
pub struct EventPages<'c> {
    client: &'c Client,
    options: EventsOptions,
    done: bool,
}

impl EventPages<'_> {
    /// The next page, or `None` once the feed's end is reached. A page may be empty (none
    /// of its events was visible to the caller) and still move on.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Event>>> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.events(&self.options).await?;
        let after = self.options.after.unwrap_or(0);
        if page.last_seq <= after {
            // No further position: the end of the feed as of this request.
            self.done = true;
            return Ok((!page.events.is_empty()).then_some(page.events));
        }
        self.options.after = Some(page.last_seq);
        Ok(Some(page.events))
    }

    /// Where the next page starts: pass it as `after` to resume later.
    pub fn position(&self) -> u64 {
        self.options.after.unwrap_or(0)
    }
}

impl Client {
    /// One page of events matching `options` after `options.after`, oldest first; only
    /// events on paths the caller may list. Pass `last_seq` as `after` for the next page.
    pub async fn events(&self, options: &EventsOptions) -> Result<EventsResponse> {
        let query = options.query()?;
        let call = self
            .call(Method::GET, self.url(["events"])?, Retry::Safe, "events")
            .query(&query);
        self.json(call).await
    }

    /// Iterates the pages from `options.after` to the newest event, without holding them
    /// all in memory; [`EventPages::position`] says where to resume.
    pub fn event_pages(&self, options: &EventsOptions) -> EventPages<'_> {
        EventPages {
            client: self,
            options: options.clone(),
            done: false,
        }
    }
}

/// Filters and position of [`Client::event_stream`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Only these types (at most 32); every type when empty.
    pub types: Vec<EventType>,
    /// Only events about paths starting with this.
    pub path_prefix: Option<String>,
    /// Resume after this feed position (`seq` of the last event handled); from now on
    /// when `None`.
    pub after: Option<u64>,
}

/// What a stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(Event),
    /// The subscriber fell too far behind and the server dropped it: open a new stream
    /// with `after: Some(resume_after)` to miss nothing.
    Lagged {
        resume_after: u64,
    },
    /// Storage could not be read while catching up; resume from `resume_after` later.
    Unavailable {
        resume_after: u64,
    },
}

/// An open event stream; see [`Client::event_stream`].
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    position: u64,
    /// Whether `position` is known: given by the caller, announced by the server when the
    /// stream opened, or an event's.
    known: bool,
}

/// The server sends a heartbeat every 15 s: three missed ones mean the connection is gone.
const STREAM_SILENCE: std::time::Duration = std::time::Duration::from_secs(45);

impl EventStream {
    /// The next item, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamItem>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(item) = self.parse(&block)? {
                    return Ok(Some(item));
                }
                continue;
            }
            let chunk = tokio::time::timeout(STREAM_SILENCE, self.response.chunk())
                .await
                .map_err(|_| Error::StreamSilent(STREAM_SILENCE))?
                .map_err(Error::Transport)?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Where to resume after what was delivered so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// [`Self::position`] once it is known: the caller gave one, or the server announced
    /// where the stream starts (its first message), or an event came. `None` only when
    /// the stream was lost before its first message.
    pub fn resume_after(&self) -> Option<u64> {
        self.known.then_some(self.position)
    }

    fn parse(&mut self, block: &str) -> Result<Option<StreamItem>> {
        let (mut kind, mut id, mut data) = (None, None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse::<u64>().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        // A comment (the heartbeat) has no event.
        let Some(kind) = kind else {
            return Ok(None);
        };
        let position = id.unwrap_or(self.position);
        if kind == "position" {
            // Where the stream starts: resume from here even if no event comes.
            self.position = position;
            self.known = true;
            return Ok(None);
        }
        // A type a newer server sends that this client does not know: not for us.
        if !matches!(kind.as_str(), "lagged" | "unavailable") && EventType::parse(&kind).is_none() {
            return Ok(None);
        }
        Ok(Some(match kind.as_str() {
            "lagged" => StreamItem::Lagged {
                resume_after: position,
            },
            "unavailable" => StreamItem::Unavailable {
                resume_after: position,
            },
            _ => {
                let event: Event = serde_json::from_str(&data).map_err(|e| Error::Decode {
                    what: "event stream",
                    detail: e.to_string(),
                })?;
                self.position = event.seq;
                self.known = true;
                StreamItem::Event(event)
            }
        }))
    }
}

impl Client {
    /// Events as they happen (`GET /v1/events/stream`), from `options.after` (replayed
    /// from the change feed first) or from now on. Each event arrives once, in order;
    /// after a disconnect, open a new stream with `after: Some(stream.position())`.
    pub async fn event_stream(&self, options: &StreamOptions) -> Result<EventStream> {
        let query = EventsOptions {
            types: options.types.clone(),
            path_prefix: options.path_prefix.clone(),
            after: None,
            limit: None,
        }
        .query()?;
        let response = self
            .open_stream(self.url(["events", "stream"])?, &query, options.after)
            .await?;
        Ok(EventStream {
            response,
            buffer: String::new(),
            position: options.after.unwrap_or(0),
            known: options.after.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_options_become_a_query() {
        let options = EventsOptions {
            types: vec![EventType::RotationDue, EventType::SecretUpdated],
            path_prefix: Some("app/".into()),
            after: Some(12),
            limit: Some(10),
        };
        assert_eq!(
            options.query().ok(),
            Some(vec![
                ("types", "rotation.due,secret.updated".to_owned()),
                ("path_prefix", "app/".to_owned()),
                ("after", "12".to_owned()),
                ("limit", "10".to_owned()),
            ])
        );
        assert_eq!(EventsOptions::default().query().ok(), Some(vec![]));
    }

    #[test]
    fn events_options_are_checked() {
        let too_many = EventsOptions {
            types: vec![EventType::SecretCreated; MAX_EVENT_TYPE_FILTERS + 1],
            ..EventsOptions::default()
        };
        for bad in [
            too_many,
            EventsOptions {
                limit: Some(0),
                ..EventsOptions::default()
            },
            EventsOptions {
                limit: Some(1001),
                ..EventsOptions::default()
            },
            EventsOptions {
                path_prefix: Some("../".into()),
                ..EventsOptions::default()
            },
        ] {
            assert!(bad.query().is_err(), "{bad:?}");
        }
    }
}
