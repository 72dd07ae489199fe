//! Human durations like `30m`, `1h`, `7d`, `1h30m`, as the cookbook writes them.

use std::time::Duration;

/// Largest duration accepted anywhere (ten years).
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    /// The input is not echoed: a mistyped field could hold anything.
    #[error(
        "duration is not of the form <number><unit> with unit s, m, h or d (e.g. 30m, 1h, 7d, 1h30m)"
    )]
    Malformed,
    #[error("duration must be at least 1s")]
    Zero,
    #[error("duration is longer than 3650d")]
    TooLong,
}

/// Parses `<n><unit>` groups (`s`, `m`, `h`, `d`), e.g. `90s`, `1h30m`, `168h`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed;
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(malformed()),
        };
        if digits.is_empty() || digits.len() > 12 {
            return Err(malformed());
        }
        let n: u64 = digits.parse().map_err(|_| malformed())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationError::TooLong)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(malformed());
    }
    let duration = Duration::from_secs(total);
    if duration.is_zero() {
        return Err(DurationError::Zero);
    }
    if duration > MAX_DURATION {
        return Err(DurationError::TooLong);
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_in_the_docs() {
        let cases = [
            ("30m", 1800),
            ("1h", 3600),
            ("7d", 604_800),
            ("168h", 604_800),
            ("15m", 900),
            ("1h30m", 5400),
            ("90s", 90),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "",
            "h",
            "10",
            "1x",
            "1.5h",
            "-1h",
            "1h 30m",
            "99999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(parse_duration("3651d"), Err(DurationError::TooLong));
    }

    proptest! {
        #[test]
        fn n_minutes_is_60n_seconds(n in 1u64..100_000) {
            prop_assert_eq!(parse_duration(&format!("{n}m")), Ok(Duration::from_secs(n * 60)));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
        }
    }
}
