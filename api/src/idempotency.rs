//! The `Idempotency-Key` request header: its names and limits, declared once for the
//! server (which enforces them) and the clients (which generate conforming keys).
//!
//! A mutating request that carries a key is run at most once per caller identity and
//! key: a repeat with the same method, path, query and body gets the first answer back
//! (marked with [`REPLAYED_HEADER`]), a repeat with anything else is refused with
//! `422 idempotency_key_reused`, and a repeat while the first is still running gets
//! `409 idempotency_key_in_flight`. This follows the IETF httpapi draft
//! "The Idempotency-Key HTTP Header Field".

/// Request header carrying the key.
pub const KEY_HEADER: &str = "idempotency-key";
/// Response header set to `true` on an answer replayed from the first attempt.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";

/// Shortest accepted key: shorter keys invite collisions between unrelated calls.
pub const MIN_KEY_CHARS: usize = 8;
/// Longest accepted key (a UUID is 36).
pub const MAX_KEY_CHARS: usize = 128;
/// How long a key and its answer are kept after the first request.
pub const KEY_TTL_SECS: u64 = 24 * 3600;
/// Largest answer body kept for replay. Every mutating answer of the API is far below
/// it (the largest, a policy, is bounded by the request body limit).
pub const MAX_STORED_RESPONSE_BYTES: usize = 1024 * 1024;
/// A key whose first request started longer ago than this and never stored its answer
/// (the server stopped mid-request) may be used again; until then repeats get 409. Well
/// past the longest `--request-timeout` (10 min), since a timed-out request's work goes on.
pub const IN_FLIGHT_LEASE_SECS: u64 = 15 * 60;

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Idempotency-Key must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} characters, got {0}")]
    Length(usize),
    #[error(
        "Idempotency-Key may contain only ASCII letters, digits and `-_.:` (a UUID is a good key)"
    )]
    Charset,
}

/// Checks a key as sent in the header and returns it without the optional surrounding
/// double quotes (the draft's structured-field string form, `"…"`).
pub fn validate_key(raw: &str) -> Result<&str, KeyError> {
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    let chars = key.chars().count();
    if !(MIN_KEY_CHARS..=MAX_KEY_CHARS).contains(&chars) {
        return Err(KeyError::Length(chars));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(KeyError::Charset);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for (raw, expected) in [
            (
                "8e03978e-40d5-43e8-bc93-6894a57f9324",
                Ok("8e03978e-40d5-43e8-bc93-6894a57f9324"),
            ),
            ("\"8e03978e-40d5\"", Ok("8e03978e-40d5")),
            ("deploy:42.retry_1", Ok("deploy:42.retry_1")),
            ("short", Err(KeyError::Length(5))),
            ("", Err(KeyError::Length(0))),
            ("\"\"", Err(KeyError::Length(0))),
            ("has space in it", Err(KeyError::Charset)),
            ("slash/is/not/ok", Err(KeyError::Charset)),
            ("ünïcödé-key", Err(KeyError::Charset)),
            ("\"unbalanced-quote", Err(KeyError::Charset)),
        ] {
            assert_eq!(validate_key(raw), expected, "{raw:?}");
        }
        let longest = "k".repeat(MAX_KEY_CHARS);
        assert_eq!(validate_key(&longest), Ok(longest.as_str()));
        assert_eq!(
            validate_key(&"k".repeat(MAX_KEY_CHARS + 1)),
            Err(KeyError::Length(MAX_KEY_CHARS + 1))
        );
    }
}
