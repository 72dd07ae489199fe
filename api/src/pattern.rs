//! Path patterns of policy rules.
//!
//! A pattern is `/`-separated segments. A segment is either `**` (any number of whole
//! segments, including none) or literal characters `[A-Za-z0-9._-]` mixed with `*` (any run
//! of characters inside that one segment). Examples:
//!
//! | pattern | matches | does not match |
//! |---|---|---|
//! | `app/db/password` | `app/db/password` | `app/db`, `app/db/password/x` |
//! | `app/*/password` | `app/db/password` | `app/a/b/password` |
//! | `app/db-*` | `app/db-main`, `app/db-` | `app/db/main` |
//! | `environments/production/**` | `environments/production`, `environments/production/a/b` | `environments/staging/a` |
//! | `**/stripe` | `stripe`, `a/b/stripe` | `a/stripe/x` |
//! | `**` | everything, `sys/...` resources included | |
//!
//! Patterns are compiled once; matching is linear in the path length for practical
//! patterns and never recursive.

use crate::limits::MAX_PATH_BYTES;

/// Most segments a pattern may have.
pub const MAX_PATTERN_SEGMENTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("pattern has more than {MAX_PATTERN_SEGMENTS} segments")]
    TooManySegments,
    #[error("pattern has an empty segment (leading, trailing or doubled '/')")]
    EmptySegment,
    #[error("segment {0:?}: '**' must be a whole segment (write 'a/**', not 'a**')")]
    MisplacedDoubleStar(String),
    #[error("segment {0:?} has characters outside [A-Za-z0-9._-*]")]
    BadCharacters(String),
    #[error("segment {0:?} is not allowed ('.' and '..' are reserved)")]
    DotSegment(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A segment with `*` wildcards, split at the stars: `db-*-x` -> ["db-", "-x"].
    Glob(Vec<String>),
    AnySegments,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
}

fn compile_segment(segment: &str) -> Result<Segment, PatternError> {
    if segment.is_empty() {
        return Err(PatternError::EmptySegment);
    }
    if segment == "**" {
        return Ok(Segment::AnySegments);
    }
    if segment.contains("**") {
        return Err(PatternError::MisplacedDoubleStar(
            segment.chars().take(64).collect(),
        ));
    }
    if segment == "." || segment == ".." {
        return Err(PatternError::DotSegment(segment.to_owned()));
    }
    if !segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*'))
    {
        return Err(PatternError::BadCharacters(
            segment.chars().take(64).collect(),
        ));
    }
    if segment.contains('*') {
        Ok(Segment::Glob(
            segment.split('*').map(str::to_owned).collect(),
        ))
    } else {
        Ok(Segment::Literal(segment.to_owned()))
    }
}

/// `*`-glob within one segment; `parts` are the literal pieces between the stars.
fn glob_matches(parts: &[String], text: &str) -> bool {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return text == first;
    }
    if !text.starts_with(first.as_str())
        || text.len() < first.len() + last.len()
        || !text.ends_with(last.as_str())
    {
        return false;
    }
    // Greedy left-to-right placement of the middle pieces is optimal for `*` globs.
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in &parts[1..parts.len() - 1] {
        match rest.find(piece.as_str()) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

fn segment_matches(segment: &Segment, text: &str) -> bool {
    match segment {
        Segment::Literal(l) => l == text,
        Segment::Glob(parts) => glob_matches(parts, text),
        Segment::AnySegments => true,
    }
}

impl PathPattern {
    pub fn compile(source: &str) -> Result<Self, PatternError> {
        if source.is_empty() {
            return Err(PatternError::Empty);
        }
        if source.len() > MAX_PATH_BYTES {
            return Err(PatternError::TooLong);
        }
        let raw: Vec<&str> = source.split('/').collect();
        if raw.len() > MAX_PATTERN_SEGMENTS {
            return Err(PatternError::TooManySegments);
        }
        let mut segments = Vec::with_capacity(raw.len());
        for s in raw {
            let compiled = compile_segment(s)?;
            // `**/**` is the same as `**`; collapsing keeps matching linear.
            if compiled == Segment::AnySegments && segments.last() == Some(&Segment::AnySegments) {
                continue;
            }
            segments.push(compiled);
        }
        Ok(PathPattern {
            source: source.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// A prefix every matching path starts with: the pattern's text before its first `*`,
    /// without a trailing `/` (`a/**` also matches `a`). Lists narrow their storage query
    /// to it, then check each row with [`PathPattern::matches`]. `""` for `**/x` or `*`.
    pub fn literal_prefix(&self) -> &str {
        let head = self.source.split('*').next().unwrap_or_default();
        head.strip_suffix('/').unwrap_or(head)
    }

    /// Whether `path` (a `/`-separated resource path) matches.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        // Wildcard matching with backtracking to the last `**` only: the classic linear
        // algorithm for a single kind of star, applied to whole segments.
        let (mut p, mut s) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while s < parts.len() {
            match self.segments.get(p) {
                Some(Segment::AnySegments) => {
                    star = Some((p, s));
                    p += 1;
                }
                Some(seg) if segment_matches(seg, parts[s]) => {
                    p += 1;
                    s += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        p = sp + 1;
                        s = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        self.segments[p..]
            .iter()
            .all(|seg| *seg == Segment::AnySegments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, path: &str) -> bool {
        PathPattern::compile(pattern)
            .map(|p| p.matches(path))
            .unwrap_or(false)
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("app/db/password", "app/db/password", true),
            ("app/db/password", "app/db", false),
            ("app/db/password", "app/db/password/x", false),
            ("app/*/password", "app/db/password", true),
            ("app/*/password", "app/a/b/password", false),
            ("app/*", "app", false),
            ("app/db-*", "app/db-main", true),
            ("app/db-*", "app/db-", true),
            ("app/db-*", "app/db/main", false),
            ("app/*-db-*", "app/x-db-y", true),
            ("app/*-db-*", "app/x-dby", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            (
                "environments/production/**",
                "environments/production",
                true,
            ),
            (
                "environments/production/**",
                "environments/production/billing/stripe",
                true,
            ),
            (
                "environments/production/**",
                "environments/staging/billing",
                false,
            ),
            (
                "environments/*/billing/**",
                "environments/production/billing/stripe",
                true,
            ),
            ("**/stripe", "stripe", true),
            ("**/stripe", "a/b/stripe", true),
            ("**/stripe", "a/stripe/x", false),
            ("a/**/b/**/c", "a/b/c", true),
            ("a/**/b/**/c", "a/x/b/y/z/c", true),
            ("a/**/b/**/c", "a/x/c", false),
            ("**", "anything/at/all", true),
            ("**", "sys/policies", true),
            ("*", "one", true),
            ("*", "one/two", false),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(m(pattern, path), *want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn literal_prefixes() {
        let cases: &[(&str, &str)] = &[
            ("app/db/password", "app/db/password"),
            ("app/*/password", "app"),
            ("app/db-*", "app/db-"),
            ("environments/production/**", "environments/production"),
            ("**/stripe", ""),
            ("**", ""),
            ("*", ""),
        ];
        for (pattern, want) in cases {
            let got = PathPattern::compile(pattern).map(|p| p.literal_prefix().to_owned());
            assert_eq!(got.as_deref(), Ok(*want), "{pattern}");
        }
    }

    #[test]
    fn malformed_patterns_are_rejected_with_reasons() {
        let cases: &[(&str, PatternError)] = &[
            ("", PatternError::Empty),
            ("/a", PatternError::EmptySegment),
            ("a//b", PatternError::EmptySegment),
            ("a/", PatternError::EmptySegment),
            ("a**", PatternError::MisplacedDoubleStar("a**".into())),
            ("a/b c", PatternError::BadCharacters("b c".into())),
            ("a/?", PatternError::BadCharacters("?".into())),
            ("a/../b", PatternError::DotSegment("..".into())),
        ];
        for (pattern, want) in cases {
            assert_eq!(
                PathPattern::compile(pattern).err().as_ref(),
                Some(want),
                "{pattern:?}"
            );
        }
    }

    /// A slow, obviously correct matcher to compare against.
    fn reference(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.first(), path.first()) {
            (None, None) => true,
            (Some(&"**"), _) => {
                reference(&pattern[1..], path)
                    || (!path.is_empty() && reference(pattern, &path[1..]))
            }
            (Some(p), Some(s)) => {
                let seg_ok = if p.contains('*') {
                    let parts: Vec<String> = p.split('*').map(str::to_owned).collect();
                    glob_reference(&parts.iter().map(String::as_str).collect::<Vec<_>>(), s)
                } else {
                    p == s
                };
                seg_ok && reference(&pattern[1..], &path[1..])
            }
            _ => false,
        }
    }

    fn glob_reference(parts: &[&str], text: &str) -> bool {
        if parts.len() == 1 {
            return parts[0] == text;
        }
        let Some(rest) = text.strip_prefix(parts[0]) else {
            return false;
        };
        (0..=rest.len())
            .any(|i| rest.is_char_boundary(i) && glob_reference(&parts[1..], &rest[i..]))
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_matcher(
            pattern in prop::collection::vec(prop_oneof!["a", "b", "\\*", "a\\*", "\\*b", "\\*\\*"], 1..5),
            path in prop::collection::vec(prop_oneof!["a", "b", "ab", "ba", "aa"], 1..6),
        ) {
            let source = pattern.join("/");
            if let Ok(compiled) = PathPattern::compile(&source) {
                let path_str = path.join("/");
                let pattern_refs: Vec<&str> = pattern.iter().map(String::as_str).collect();
                let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
                prop_assert_eq!(compiled.matches(&path_str), reference(&pattern_refs, &path_refs), "{} vs {}", source, path_str);
            }
        }

        #[test]
        fn every_match_starts_with_the_literal_prefix(
            pattern in prop::collection::vec(prop_oneof!["a", "b", "\\*", "a\\*", "\\*b", "\\*\\*"], 1..5),
            path in prop::collection::vec(prop_oneof!["a", "b", "ab", "ba", "aa"], 1..6),
        ) {
            let source = pattern.join("/");
            if let Ok(compiled) = PathPattern::compile(&source) {
                let path_str = path.join("/");
                if compiled.matches(&path_str) {
                    prop_assert!(path_str.starts_with(compiled.literal_prefix()), "{} vs {}", source, path_str);
                }
            }
        }

        #[test]
        fn compile_never_panics(s in "\\PC{0,60}") {
            let _ = PathPattern::compile(&s);
        }

        #[test]
        fn a_literal_pattern_matches_exactly_itself(path in "[a-z]{1,4}(/[a-z]{1,4}){0,4}", other in "[a-z]{1,4}(/[a-z]{1,4}){0,4}") {
            let p = PathPattern::compile(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(p.matches(&path));
            prop_assert_eq!(p.matches(&other), path == other);
        }
    }
}
