//! The secret path grammar.
//!
//! A path is 1..=16 segments joined by `/`, each segment `[A-Za-z0-9._-]+` but not `.` or
//! `..`, at most 512 bytes in all. Two further rules keep routes unambiguous:
//! - the last segment may not be an action word the API puts after a path
//!   (`GET /v1/secrets/app/db/metadata` must mean "metadata of app/db");
//! - the first segment may not be `sys`, which names the vault's own resources for
//!   authorization (`sys/policies`, `sys/audit`, ...).

use crate::limits::{MAX_PATH_BYTES, MAX_PATH_DEPTH};

/// An action of the API on a secret, written after its path (`{path}/metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Metadata,
    Versions,
    Restore,
    Rotate,
    Destroy,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Metadata,
        Action::Versions,
        Action::Restore,
        Action::Rotate,
        Action::Destroy,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Metadata => "metadata",
            Action::Versions => "versions",
            Action::Restore => "restore",
            Action::Rotate => "rotate",
            Action::Destroy => "destroy",
        }
    }

    pub fn parse(word: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

/// Words that may follow a secret path in a route, so no path may end with them.
pub const ACTION_WORDS: &[&str] = &[
    Action::Metadata.as_str(),
    Action::Versions.as_str(),
    Action::Restore.as_str(),
    Action::Rotate.as_str(),
    Action::Destroy.as_str(),
];

/// The grammar as an ECMA-262 regular expression, for JSON Schema `pattern` (with
/// `maxLength` = [`MAX_PATH_BYTES`] beside it): so a client generated from the OpenAPI
/// document, or a fuzzer, sends only paths the server accepts.
pub fn secret_path_pattern() -> String {
    const SEGMENT: &str = "[A-Za-z0-9._-]+";
    format!(
        "^(?!({roots})(/|$))(?!(.*/)?[.]{{1,2}}(/|$))(?!(.*/)?({words})$){SEGMENT}(/{SEGMENT}){{0,{more}}}$",
        roots = RESERVED_ROOTS.join("|"),
        words = ACTION_WORDS.join("|"),
        more = MAX_PATH_DEPTH - 1,
    )
}

/// The CEL rule (Kubernetes `x-kubernetes-validations`) that rejects a path ending with
/// an action word, for CRD fields that name a secret path.
pub fn ends_with_action_word_cel() -> String {
    format!("!self.matches('(^|/)({})$')", ACTION_WORDS.join("|"))
}

/// The message of [`ends_with_action_word_cel`].
pub fn ends_with_action_word_message() -> String {
    format!(
        "a path may not end with an action word ({})",
        ACTION_WORDS.join(", ")
    )
}

/// The segment grammar and depth of a path as a JSON Schema `pattern` (for the CRDs, whose
/// schema the apiserver checks): 1..=[`MAX_PATH_DEPTH`] segments of `[A-Za-z0-9._-]`. The
/// byte limit, dot segments and reserved words need rules of their own.
pub const PATH_REGEX: &str = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,15}$";

/// First segments kept for the vault's own resources.
pub const RESERVED_ROOTS: &[&str] = &["sys"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("path has more than {MAX_PATH_DEPTH} segments")]
    TooDeep,
    #[error("path has an empty segment (leading, trailing or doubled '/')")]
    EmptySegment,
    #[error("path segment {0:?} is not allowed ('.' and '..' are reserved)")]
    DotSegment(String),
    #[error("path segment {0:?} has characters outside [A-Za-z0-9._-]")]
    BadCharacters(String),
    #[error("a path may not end with {0:?}: it is an action word of the API ({words})", words = ACTION_WORDS.join(", "))]
    EndsWithActionWord(String),
    #[error("paths under {0:?}/ are reserved for the vault's own resources")]
    ReservedRoot(String),
}

impl PathError {
    /// Whether this is a reserved-name error (code `reserved_path`) rather than a grammar one.
    pub fn is_reserved(&self) -> bool {
        matches!(
            self,
            PathError::EndsWithActionWord(_) | PathError::ReservedRoot(_)
        )
    }
}

fn valid_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check_segment(segment: &str) -> Result<(), PathError> {
    if segment.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(PathError::DotSegment(segment.to_owned()));
    }
    if !segment.chars().all(valid_segment_char) {
        return Err(PathError::BadCharacters(truncate(segment)));
    }
    Ok(())
}

/// Keep error messages short even for absurd input.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Validates a secret path for writing or reading.
pub fn validate_secret_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_PATH_DEPTH {
        return Err(PathError::TooDeep);
    }
    for segment in &segments {
        check_segment(segment)?;
    }
    if let Some(last) = segments.last()
        && ACTION_WORDS.contains(last)
    {
        return Err(PathError::EndsWithActionWord((*last).to_owned()));
    }
    if let Some(first) = segments.first()
        && RESERVED_ROOTS.contains(first)
    {
        return Err(PathError::ReservedRoot((*first).to_owned()));
    }
    Ok(())
}

/// Validates a list prefix: like a path, but may be empty, end with `/`, or stop mid-segment.
pub fn validate_prefix(prefix: &str) -> Result<(), PathError> {
    if prefix.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments.len() > MAX_PATH_DEPTH {
        return Err(PathError::TooDeep);
    }
    let last_index = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        // The last segment of a prefix may be a partial name like "." of ".env".
        if i == last_index && !prefix.ends_with('/') {
            if segment.is_empty() {
                return Err(PathError::EmptySegment);
            }
            if !segment.chars().all(valid_segment_char) {
                return Err(PathError::BadCharacters(truncate(segment)));
            }
        } else {
            check_segment(segment)?;
        }
    }
    Ok(())
}

/// Splits a route tail like `app/db/metadata` into the secret path and a trailing action.
pub fn split_action(tail: &str) -> (&str, Option<&str>) {
    match tail.rsplit_once('/') {
        Some((path, last)) if ACTION_WORDS.contains(&last) => (path, Some(last)),
        _ => (tail, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_regex_allows_the_depth_of_the_grammar() {
        let repeat = format!("{{0,{}}}$", MAX_PATH_DEPTH - 1);
        assert!(PATH_REGEX.ends_with(&repeat), "{PATH_REGEX} vs {repeat}");
    }

    #[test]
    fn accepts_the_cookbook_paths() {
        for path in [
            "environments/production/billing/database",
            "app/db/password",
            "app/config",
            "test/oauth-token",
            "infra/aws/audit-uploader",
            "old/path",
            "a",
            "v1.2_x-y",
        ] {
            assert_eq!(validate_secret_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn rejects_bad_paths_with_the_right_reason() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::Empty),
            ("/a", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("a//b", PathError::EmptySegment),
            ("a/../b", PathError::DotSegment("..".into())),
            ("a/./b", PathError::DotSegment(".".into())),
            ("a/b c", PathError::BadCharacters("b c".into())),
            ("a/b%2F", PathError::BadCharacters("b%2F".into())),
            (
                "app/db/metadata",
                PathError::EndsWithActionWord("metadata".into()),
            ),
            (
                "app/restore",
                PathError::EndsWithActionWord("restore".into()),
            ),
            ("sys/policies/x", PathError::ReservedRoot("sys".into())),
        ];
        for (path, want) in cases {
            assert_eq!(validate_secret_path(path).as_ref(), Err(want), "{path:?}");
        }
        assert_eq!(
            validate_secret_path(&"a".repeat(513)),
            Err(PathError::TooLong)
        );
        assert_eq!(
            validate_secret_path(&["a"; 17].join("/")),
            Err(PathError::TooDeep)
        );
    }

    #[test]
    fn action_words_are_the_actions() {
        assert_eq!(ACTION_WORDS.len(), Action::ALL.len());
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(
            ends_with_action_word_cel(),
            "!self.matches('(^|/)(metadata|versions|restore|rotate|destroy)$')"
        );
    }

    #[test]
    fn action_words_are_fine_inside_a_path() {
        assert_eq!(validate_secret_path("metadata/x"), Ok(()));
        assert_eq!(validate_secret_path("app/versions/x"), Ok(()));
    }

    #[test]
    fn split_action_recognises_trailing_actions_only() {
        assert_eq!(
            split_action("app/db/metadata"),
            ("app/db", Some("metadata"))
        );
        assert_eq!(split_action("app/db"), ("app/db", None));
        assert_eq!(split_action("metadata"), ("metadata", None));
        assert_eq!(
            split_action("old/path/restore"),
            ("old/path", Some("restore"))
        );
    }

    #[test]
    fn prefixes() {
        for ok in ["", "environments/staging/", "env", "app/db", "app/.e"] {
            assert_eq!(validate_prefix(ok), Ok(()), "{ok:?}");
        }
        for bad in ["/", "a//", "a/../", "a b"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_paths_round_trip_through_split_action(segs in prop::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,8}", 1..6)) {
            let path = segs.join("/");
            if validate_secret_path(&path).is_ok() {
                let with_action = format!("{path}/metadata");
                prop_assert_eq!(split_action(&with_action), (path.as_str(), Some("metadata")));
                prop_assert_eq!(split_action(&path), (path.as_str(), None));
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = validate_secret_path(&s);
            let _ = validate_prefix(&s);
        }
    }
}
