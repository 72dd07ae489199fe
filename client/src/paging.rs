//! Paging of the lists that return everything in pages: limit, cursor, and a walker
//! that follows `next_cursor` to the end.

use std::future::Future;

use scaivault_api::ErrorCode;
use scaivault_api::limits::MAX_LIST_LIMIT;

use crate::error::{Error, Result};

/// One page of a list: page size and where to go on from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOptions {
    /// Page size, 1..=1000 (server default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: opaque, valid for the same caller and the same
    /// filters only, for an hour.
    pub cursor: Option<String>,
}

impl PageOptions {
    pub(crate) fn query(&self) -> Result<Vec<(&'static str, String)>> {
        let mut query = Vec::new();
        if let Some(limit) = self.limit {
            if !(1..=MAX_LIST_LIMIT).contains(&(limit as usize)) {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("limit must be between 1 and {MAX_LIST_LIMIT}"),
                ));
            }
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        Ok(query)
    }
}

/// Fetches pages of the largest size until `next_cursor` runs out; `fetch` answers one
/// page and its `next_cursor`.
pub(crate) async fn collect_all<T, F, Fut>(what: &'static str, mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(PageOptions) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut items = Vec::new();
    let mut options = PageOptions {
        limit: u32::try_from(MAX_LIST_LIMIT).ok(),
        cursor: None,
    };
    loop {
        let (page, next) = fetch(options.clone()).await?;
        items.extend(page);
        match next {
            // A server handing back the same cursor would make us loop forever.
            Some(next) if options.cursor.as_deref() == Some(next.as_str()) => {
                return Err(Error::Decode {
                    what,
                    detail: "the server returned the same cursor twice".to_owned(),
                });
            }
            Some(next) => options.cursor = Some(next),
            None => return Ok(items),
        }
    }
}
