//! Narrowing a list to what its caller may list, before any row is read.
//!
//! The caller's allow rules give prefixes outside which it may list nothing; intersected
//! with the requested prefix they become disjoint key ranges, walked in path order. Each
//! row read from them is still checked with the exact matcher (deny beats allow).

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
