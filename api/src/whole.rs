//! Whole numbers as JSON has them: `88` and `88.0` are one number (RFC 8259 has a single
//! number type, and JSON Schema's `integer` takes both), so integer fields of request
//! bodies accept either spelling.

use serde::{Deserialize, Deserializer, de};

/// For `#[serde(default, deserialize_with = "crate::whole::option")]` on `Option<u32>`,
/// `Option<u64>`, ... fields.
pub fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| de::Error::custom("expected a whole number in range"))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "super::option")]
        n: Option<u32>,
    }

    fn n(json: &str) -> Option<Option<u32>> {
        serde_json::from_str::<Probe>(json).ok().map(|p| p.n)
    }

    #[test]
    fn integral_floats_are_whole_numbers() {
        assert_eq!(n(r#"{"n": 88}"#), Some(Some(88)));
        assert_eq!(n(r#"{"n": 88.0}"#), Some(Some(88)));
        assert_eq!(n(r#"{"n": null}"#), Some(None));
        assert_eq!(n("{}"), Some(None));
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 5000000000}"#,
            r#"{"n": "1"}"#,
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
