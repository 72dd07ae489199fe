//! The one pagination rule of every list endpoint.
//!
//! A page holds at most `limit` items (`DEFAULT_LIST_LIMIT` when absent, at most
//! `MAX_LIST_LIMIT`). Its `next_cursor` is the position after its last item, sealed by
//! [`crate::crypto::cursor`] to the list, the caller's identity and the query parameters
//! the handler binds, with an expiry of `LIST_CURSOR_TTL_SECS`. So a cursor reveals no
//! path, name or sequence number, and another caller, another query or an altered cursor
//! gets `400 invalid_cursor`. Authorisation happens before paging, in the handler or the
//! service: a page only ever holds what the caller may see.

use scaivault_api::ErrorCode;
use scaivault_api::limits::{DEFAULT_LIST_LIMIT, LIST_CURSOR_TTL_SECS, MAX_LIST_LIMIT};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::crypto::cursor::{CursorError, CursorKey, CursorScope};
use crate::error::{Error, Result};

/// The page size a request asked for, checked against the declared bounds.
pub fn limit(requested: Option<usize>) -> Result<usize> {
    let limit = requested.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}"
        )));
    }
    Ok(limit)
}

/// Page parameters of a list that takes no filter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (opaque; only for the same caller and query).
    pub cursor: Option<String>,
}

/// A page of items and the sealed cursor of the next one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn now_unix() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

fn cursor_error(e: CursorError) -> Error {
    match e {
        CursorError::Rejected | CursorError::Expired => {
            Error::new(ErrorCode::InvalidCursor, e.to_string())
        }
        CursorError::Seal => Error::internal(e),
    }
}

/// Opens and seals the cursors of one list request.
pub struct Pager<'a> {
    key: &'a CursorKey,
    scope: CursorScope,
}

impl<'a> Pager<'a> {
    /// Cursors of `list` for this caller; bind the query with [`Pager::bind`].
    pub fn new(key: &'a CursorKey, list: &str, caller: &Caller) -> Self {
        Pager {
            key,
            scope: CursorScope::new(list, &caller.identity_id),
        }
    }

    /// Binds a query parameter that selects rows (not `limit`, not display options).
    pub fn bind(mut self, name: &str, value: Option<&str>) -> Self {
        self.scope = self.scope.with(name, value);
        self
    }

    /// The position a cursor of this list, caller and query stands for.
    pub fn open(&self, cursor: Option<&str>) -> Result<Option<String>> {
        cursor
            .map(|c| {
                self.key
                    .open(&self.scope, c, now_unix())
                    .map_err(cursor_error)
            })
            .transpose()
    }

    /// The cursor a client gets for `next` (the position after the page's last item).
    pub fn seal(&self, next: Option<String>) -> Result<Option<String>> {
        next.map(|position| {
            self.key
                .seal(
                    &self.scope,
                    &position,
                    now_unix().saturating_add(LIST_CURSOR_TTL_SECS),
                )
                .map_err(cursor_error)
        })
        .transpose()
    }

    /// Pages a list held in memory (the caller may see all of it). `position` gives each
    /// item's unique sort key; the page continues after the cursor's position.
    pub fn page<T>(
        &self,
        mut items: Vec<T>,
        requested_limit: Option<usize>,
        cursor: Option<&str>,
        position: impl Fn(&T) -> String,
    ) -> Result<Page<T>> {
        let limit = limit(requested_limit)?;
        let after = self.open(cursor)?;
        let mut keyed: Vec<(String, T)> = items.drain(..).map(|i| (position(&i), i)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest = keyed
            .into_iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a));
        let page: Vec<(String, T)> = rest.by_ref().take(limit).collect();
        let next = if rest.next().is_some() {
            page.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(Page {
            items: page.into_iter().map(|(_, i)| i).collect(),
            next_cursor: self.seal(next)?,
        })
    }
}
