//! Kubernetes resource quantities (`10m`, `16Mi`, `0.5`, `1e3`): the grammar of
//! `resource.Quantity` for non-negative values, checked before a pod is admitted so a bad
//! annotation is refused by the injector with its name rather than by the apiserver later.

/// The value of `quantity` in base units (cores, bytes), or `None` when it is not a
/// non-negative Kubernetes quantity. Good enough to compare a request with a limit.
pub fn parse(quantity: &str) -> Option<f64> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let dots = number.chars().filter(|c| *c == '.').count();
    if digits == 0 || dots > 1 || number.contains('+') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp => {
            let e = exp.strip_prefix(['e', 'E'])?;
            let body = e.strip_prefix(['+', '-']).unwrap_or(e);
            if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            10f64.powi(e.parse().ok()?)
        }
    };
    Some(value * scale)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse;

    #[test]
    fn quantities() {
        let cases: [(&str, Option<f64>); 16] = [
            ("10m", Some(0.01)),
            ("1", Some(1.0)),
            ("0.5", Some(0.5)),
            ("+2", Some(2.0)),
            ("16Mi", Some(16.0 * 1024.0 * 1024.0)),
            ("1Gi", Some(1024f64.powi(3))),
            ("128k", Some(128e3)),
            ("1e3", Some(1e3)),
            ("5E-1", Some(0.5)),
            ("", None),
            ("m", None),
            ("-1", None),
            ("1.2.3", None),
            ("10 m", None),
            ("10MB", None),
            ("1e", None),
        ];
        for (q, want) in cases {
            match (parse(q), want) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 1e-9 * want, "{q}"),
                (got, want) => assert_eq!(got, want, "{q}"),
            }
        }
    }
}
