//! A rotation policy as written, checked and turned into the schedule storage keeps; and a
//! stored schedule turned back into the status callers see.

use scaivault_api::ErrorCode;
use scaivault_api::duration::parse_duration;
use scaivault_api::rotation::{
    DEFAULT_ROTATION_GRACE_SECS, Generator, MAX_GENERATED_FIELDS, MAX_GENERATED_LENGTH,
    MAX_GENERATED_PREFIX_CHARS, MAX_ROTATION_INTERVAL_SECS, MIN_GENERATED_LENGTH,
    MIN_ROTATION_INTERVAL_SECS, RotationPolicy, RotationState, RotationStatus, RotationStrategy,
};
use scaivault_api::secrets::SecretType;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::store::rotation::{RotationRow, Schedule};

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, message)
}

/// Checks `policy` for a secret of `secret_type` and gives what storage keeps.
pub fn schedule_of(policy: &RotationPolicy, secret_type: SecretType) -> Result<Schedule> {
    let interval = parse_duration(&policy.interval)
        .map_err(|e| invalid(format!("rotation.interval: {e}")))?
        .as_secs();
    if !(MIN_ROTATION_INTERVAL_SECS..=MAX_ROTATION_INTERVAL_SECS).contains(&interval) {
        return Err(invalid(format!(
            "rotation.interval must be from {}m to {}d",
            MIN_ROTATION_INTERVAL_SECS / 60,
            MAX_ROTATION_INTERVAL_SECS / 86_400
        )));
    }
    let grace = match &policy.grace {
        Some(g) => parse_duration(g)
            .map_err(|e| invalid(format!("rotation.grace: {e}")))?
            .as_secs(),
        None => DEFAULT_ROTATION_GRACE_SECS,
    };
    let rotate_at_minute = policy.rotate_at.as_deref().map(time_of_day).transpose()?;
    if rotate_at_minute.is_some() && interval < 86_400 {
        return Err(invalid(
            "rotation.rotate_at needs an interval of a day or more",
        ));
    }
    // Only `generate` generates: its fields must be known now. Another strategy may keep
    // a generator for later; its fields are checked when it becomes `generate`.
    let generator = policy.generator.clone().unwrap_or_default();
    match policy.strategy {
        RotationStrategy::Generate => check_generator(&generator, Some(secret_type))?,
        _ => check_generator(&generator, None)?,
    }
    Ok(Schedule {
        policy: serde_json::to_string(policy).map_err(Error::internal)?,
        strategy: policy.strategy.as_str().to_owned(),
        interval_secs: interval,
        grace_secs: grace,
        rotate_at_minute,
    })
}

/// `HH:MM` or `HH:MMZ` (UTC) as minutes after midnight.
fn time_of_day(s: &str) -> Result<u32> {
    let bad = || invalid("rotation.rotate_at must be HH:MM in UTC, e.g. 03:00Z");
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The fields a generator fills: as named, or the secret type's one field.
pub fn generated_fields(generator: &Generator, secret_type: SecretType) -> Result<Vec<String>> {
    if let Some(fields) = &generator.fields {
        return Ok(fields.clone());
    }
    let field = match secret_type {
        SecretType::Password => "password",
        SecretType::ApiKey => "api_key",
        SecretType::Token => "token",
        other => {
            return Err(invalid(format!(
                "rotation.generator.fields must name the fields to generate for a {other} secret"
            )));
        }
    };
    Ok(vec![field.to_owned()])
}

/// Checks what `generator` says; with `secret_type`, also that it can name its fields.
fn check_generator(generator: &Generator, secret_type: Option<SecretType>) -> Result<()> {
    let fields = match (secret_type, &generator.fields) {
        (Some(secret_type), _) => generated_fields(generator, secret_type)?,
        (None, Some(fields)) => fields.clone(),
        (None, None) => vec!["unnamed".to_owned()],
    };
    if fields.is_empty() || fields.len() > MAX_GENERATED_FIELDS {
        return Err(invalid(format!(
            "rotation.generator.fields must name 1 to {MAX_GENERATED_FIELDS} fields"
        )));
    }
    if fields
        .iter()
        .any(|f| f.is_empty() || f.chars().count() > 128 || f.chars().any(char::is_control))
    {
        return Err(invalid(
            "rotation.generator.fields: each field is 1 to 128 printable characters",
        ));
    }
    let length = generator.length();
    if !(MIN_GENERATED_LENGTH..=MAX_GENERATED_LENGTH).contains(&length) {
        return Err(invalid(format!(
            "rotation.generator.length must be from {MIN_GENERATED_LENGTH} to {MAX_GENERATED_LENGTH}"
        )));
    }
    if let Some(prefix) = &generator.prefix
        && (prefix.chars().count() > MAX_GENERATED_PREFIX_CHARS
            || !prefix.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(invalid(format!(
            "rotation.generator.prefix must be at most {MAX_GENERATED_PREFIX_CHARS} printable ASCII characters"
        )));
    }
    Ok(())
}

/// The policy a stored schedule was written as.
pub fn policy_of(row: &RotationRow) -> Result<RotationPolicy> {
    serde_json::from_str(&row.schedule.policy)
        .map_err(|e| Error::internal(format!("stored rotation policy of {}: {e}", row.path)))
}

/// What callers see of a secret's schedule at `now`.
pub fn status_of(row: Option<&RotationRow>, now: OffsetDateTime) -> RotationStatus {
    let Some(row) = row else {
        return RotationStatus::not_configured();
    };
    let policy = policy_of(row).ok();
    let is_overdue = now >= row.overdue_at();
    let status = if is_overdue {
        RotationState::Overdue
    } else if now >= row.next_at {
        RotationState::Due
    } else {
        RotationState::Scheduled
    };
    RotationStatus {
        status,
        strategy: policy.as_ref().map(|p| p.strategy),
        interval: policy.as_ref().map(|p| p.interval.clone()),
        next_rotation_at: Some(row.next_at),
        last_rotated_at: row.last_rotated_at,
        is_overdue,
        policy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(interval: &str, strategy: RotationStrategy) -> RotationPolicy {
        RotationPolicy {
            interval: interval.into(),
            strategy,
            generator: None,
            grace: None,
            rotate_at: None,
        }
    }

    #[test]
    fn schedules_are_checked() {
        use RotationStrategy::*;
        let ok = schedule_of(&policy("30d", External), SecretType::Generic).ok();
        assert_eq!(
            ok.map(|s| (s.interval_secs, s.grace_secs)),
            Some((30 * 86_400, DEFAULT_ROTATION_GRACE_SECS))
        );
        assert!(schedule_of(&policy("30s", External), SecretType::Generic).is_err());
        assert!(schedule_of(&policy("soon", External), SecretType::Generic).is_err());
        // `generate` needs fields it can name: a password has one, a json secret not.
        assert!(schedule_of(&policy("1d", Generate), SecretType::Password).is_ok());
        assert!(schedule_of(&policy("1d", Generate), SecretType::Json).is_err());
        let mut at = policy("1d", Manual);
        at.rotate_at = Some("03:00Z".into());
        assert_eq!(
            schedule_of(&at, SecretType::Generic)
                .map(|s| s.rotate_at_minute)
                .ok(),
            Some(Some(180))
        );
        at.rotate_at = Some("25:00".into());
        assert!(schedule_of(&at, SecretType::Generic).is_err());
        at.interval = "1h".into();
        at.rotate_at = Some("03:00".into());
        assert!(schedule_of(&at, SecretType::Generic).is_err());
    }
}
