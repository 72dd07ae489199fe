//! Timestamps are stored as integer milliseconds since the Unix epoch, in UTC.

use time::OffsetDateTime;

pub fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The current time at the precision storage keeps, so a write's response and a later
/// read report the same instant.
pub fn now_millis() -> OffsetDateTime {
    from_millis(to_millis(OffsetDateTime::now_utc()))
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_millisecond_precision() {
        let t = OffsetDateTime::from_unix_timestamp(1_714_478_460)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(from_millis(to_millis(t)), t);
    }
}
