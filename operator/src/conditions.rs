//! The `Ready` condition and its reasons; `lastTransitionTime` moves only on a transition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{CONDITION_READY, Condition, ConditionStatus};

/// Reasons of `Ready`, CamelCase as Kubernetes wants them.
pub mod reason {
    pub const SYNCED: &str = "Synced";
    pub const RECONCILED: &str = "Reconciled";
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    pub const LOGIN_FAILED: &str = "LoginFailed";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const TEMPLATE_ERROR: &str = "TemplateError";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    pub const VAULT_ERROR: &str = "VaultError";
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
}

/// Now, in whole seconds: what a `Time` is once stored (RFC 3339 without fractions), so
/// a status compares equal to itself read back, and an unchanged one is not rewritten.
pub fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// The new `Ready` condition, keeping the previous `lastTransitionTime` when the status
/// did not change.
pub fn ready(
    previous: &[Condition],
    status: ConditionStatus,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.r#type == CONDITION_READY && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    Condition {
        r#type: CONDITION_READY.to_owned(),
        status,
        last_transition_time,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
    }
}

/// Whether `Ready` is `True` in `conditions`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.r#type == CONDITION_READY && c.status == ConditionStatus::True)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_transitions() {
        let old = Time(Timestamp::UNIX_EPOCH);
        let prev = vec![Condition {
            r#type: CONDITION_READY.into(),
            status: ConditionStatus::True,
            last_transition_time: old.clone(),
            reason: "Synced".into(),
            message: String::new(),
            observed_generation: Some(1),
        }];
        let same = ready(&prev, ConditionStatus::True, "Synced", "m".into(), Some(2));
        assert_eq!(same.last_transition_time, old);
        assert_eq!(same.observed_generation, Some(2));
        let flipped = ready(
            &prev,
            ConditionStatus::False,
            "PermissionDenied",
            "m".into(),
            Some(2),
        );
        assert_ne!(flipped.last_transition_time, old);
        assert!(is_ready(&prev));
        assert_eq!(now().0.subsec_nanosecond(), 0);
        assert!(!is_ready(&[flipped]));
    }
}
