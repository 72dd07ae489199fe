//! Narrowing a list to what its caller may list, before any row is read.
//!
//! The caller's allow rules give prefixes outside which it may list nothing; intersected
//! with the requested prefix they become disjoint key ranges, walked in path order. Each
//! row read from them is still checked with the exact matcher (deny beats allow).

use scaivault_api::limits::MAX_LIST_SCAN_ROWS;

use crate::store::Result;

/// The ranges to read, as prefixes: sorted, and none a prefix of another (so their key
/// ranges are disjoint and in path order). Empty when the caller may list nothing here.
pub fn narrow(requested: &str, allowed: &[String]) -> Vec<String> {
    let mut ranges: Vec<&str> = allowed
        .iter()
        .filter_map(|a| {
            if a.starts_with(requested) {
                Some(a.as_str())
            } else if requested.starts_with(a.as_str()) {
                Some(requested)
            } else {
                None
            }
        })
        .collect();
    ranges.sort_unstable();
    let mut kept: Vec<String> = Vec::with_capacity(ranges.len());
    for range in ranges {
        // Sorted, a prefix comes right before what it covers: comparing with the last
        // kept range is enough.
        if kept.last().is_some_and(|k| range.starts_with(k.as_str())) {
            continue;
        }
        kept.push(range.to_owned());
    }
    kept
}

/// Rows read per storage round trip while filling a page.
const CHUNK_ROWS: usize = 128;

/// Something listed by path.
pub trait Pathed {
    fn path(&self) -> &str;
}

/// One page of what `read` yields within `ranges` (see [`narrow`]) after `after`: rows
/// that `keep` accepts, in path order, at most `limit`, and the position to go on from
/// (`None` on the last page). Reads in chunks, and stops after `MAX_LIST_SCAN_ROWS`
/// rows examined (kept or not) with the position reached, so a caller who may see few of
/// many rows gets a short page instead of a long wait. `read(range, after, limit)` gives
/// rows of `range` strictly after `after`, in path order.
pub async fn page<T, F, Fut>(
    ranges: &[String],
    after: Option<String>,
    limit: usize,
    mut read: F,
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, Option<String>)>
where
    T: Pathed,
    F: FnMut(String, Option<String>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    // One more than the page, to know whether another page follows.
    let wanted = limit.saturating_add(1);
    let mut found: Vec<T> = Vec::new();
    let mut position = after;
    let mut budget = MAX_LIST_SCAN_ROWS;
    let mut cut_short = false;
    'ranges: for range in ranges {
        if position.as_deref().is_some_and(|p| passed(p, range)) {
            continue;
        }
        loop {
            if budget == 0 {
                cut_short = true;
                break 'ranges;
            }
            let chunk = (wanted - found.len()).max(CHUNK_ROWS).min(budget);
            let rows = read(range.clone(), position.clone(), chunk).await?;
            let count = rows.len();
            budget -= count;
            for row in rows {
                position = Some(row.path().to_owned());
                if keep(&row) {
                    found.push(row);
                    if found.len() == wanted {
                        break 'ranges;
                    }
                }
            }
            if count < chunk {
                break;
            }
        }
    }
    let next_after = if found.len() == wanted {
        found.truncate(limit);
        found.last().map(|r| r.path().to_owned())
    } else if cut_short {
        position
    } else {
        None
    };
    Ok((found, next_after))
}

/// Whether every path of `range` sorts before `position` (nothing left to read there).
pub fn passed(position: &str, range: &str) -> bool {
    position > range && !position.starts_with(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn narrowing_table() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("", &[], &[]),
            ("", &[""], &[""]),
            ("app/", &[""], &["app/"]),
            ("", &["team-a", "team-b"], &["team-a", "team-b"]),
            ("team-a/", &["team-a", "team-b"], &["team-a/"]),
            ("", &["team-a/x", "team-a", "team-a/y"], &["team-a"]),
            ("hr/", &["team-a"], &[]),
            ("te", &["team-a", "tx"], &["team-a"]),
            ("", &["b", "a", "b", "ab"], &["a", "b"]),
            ("", &["a/b", "a-c", "a"], &["a"]),
        ];
        for (requested, allowed, want) in cases {
            assert_eq!(
                narrow(requested, &s(allowed)),
                s(want),
                "{requested:?} {allowed:?}"
            );
        }
    }

    #[test]
    fn passed_ranges() {
        assert!(!passed("a", "a"));
        assert!(!passed("a/b", "a"));
        assert!(!passed("0", "a"));
        assert!(passed("b", "a/"));
        assert!(passed("a0", "a/"));
    }
}
