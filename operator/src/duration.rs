//! `refreshInterval` values: `<n><unit>` groups with unit s, m, h or d (`30s`, `1h30m`),
//! the grammar of `crd::DURATION_PATTERN`. Parsed here again because the apiserver's
//! pattern check is the only thing standing between a user and this code.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("duration {0:?} is not <n><unit> groups with unit s, m, h or d (e.g. 30s, 1h30m)")]
    Syntax(String),
    #[error("duration {0:?} must be greater than zero")]
    Zero(String),
}

/// Parses `1h30m`-style durations; overflow saturates (the largest value the grammar
/// allows is far below `u64` seconds anyway).
pub fn parse(text: &str) -> Result<Duration, Error> {
    let syntax = || Error::Syntax(text.to_owned());
    if text.is_empty() || text.len() > 32 {
        return Err(syntax());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(u64::from(d)),
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(syntax()),
        };
        let n = number.take().ok_or_else(syntax)?;
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if number.is_some() {
        return Err(syntax());
    }
    if total == 0 {
        return Err(Error::Zero(text.to_owned()));
    }
    Ok(Duration::from_secs(total))
}

/// `base` scattered uniformly over ±10 %, so objects created together do not refresh
/// together forever.
pub fn jitter(base: Duration) -> Duration {
    let factor = 0.9 + fastrand::f64() * 0.2;
    base.mul_f64(factor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grammar() {
        for (text, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("7d", 604_800),
            ("1d2h3m4s", 93_784),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["", "10", "s", "1x", "1h 2m", "-1s", "1.5h", "h1"] {
            assert!(
                matches!(parse(bad), Err(Error::Syntax(_))),
                "{bad:?} should be a syntax error"
            );
        }
        assert_eq!(parse("0s"), Err(Error::Zero("0s".into())));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jitter(base);
            assert!(
                j >= Duration::from_secs(90) && j <= Duration::from_secs(110),
                "{j:?}"
            );
        }
    }
}
