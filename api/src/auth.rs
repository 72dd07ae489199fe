//! Tokens and identities.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// The kind of principal behind a token, derived from the identity id's prefix.
// The JSON Schema (feature `schemars`, for the operator's CRDs) lists only the kinds a
// policy can be bound to: root holds every permission and has no identity id to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum IdentityType {
    #[cfg_attr(feature = "schemars", schemars(skip))]
    Root,
    User,
    ServiceAccount,
    Kubernetes,
}

impl IdentityType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityType::Root => "root",
            IdentityType::User => "user",
            IdentityType::ServiceAccount => "service_account",
            IdentityType::Kubernetes => "kubernetes",
        }
    }

    pub fn parse(s: &str) -> Option<IdentityType> {
        [
            IdentityType::Root,
            IdentityType::User,
            IdentityType::ServiceAccount,
            IdentityType::Kubernetes,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "identity id {0:?} must look like user:<email>, sa:<name> or k8s:<namespace>/<serviceaccount>"
)]
pub struct IdentityIdError(pub String);

/// Parses an identity id into its type: `user:alice@acme.example`, `sa:billing-prod`,
/// `k8s:<namespace>/<serviceaccount>`.
pub fn identity_type_of(id: &str) -> Result<IdentityType, IdentityIdError> {
    let err = || IdentityIdError(id.chars().take(64).collect());
    let (kind, name) = id.split_once(':').ok_or_else(err)?;
    let name_ok = |extra: &[char]| {
        !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || extra.contains(&c)
            })
    };
    match kind {
        "user" if name_ok(&['@', '+']) => Ok(IdentityType::User),
        "sa" if name_ok(&[]) => Ok(IdentityType::ServiceAccount),
        "k8s"
            if name_ok(&['/'])
                && name.matches('/').count() == 1
                && !name.starts_with('/')
                && !name.ends_with('/') =>
        {
            Ok(IdentityType::Kubernetes)
        }
        _ => Err(err()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmIResponse {
    pub identity_id: String,
    pub identity_type: IdentityType,
    pub accessor: String,
    pub policies: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub identity_id: String,
    /// Lifetime like `1h`; default 24h, at most 30d.
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// The only response that ever carries a token in clear.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateTokenResponse {
    pub token: String,
    pub accessor: String,
    pub identity_id: String,
    pub identity_type: IdentityType,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for CreateTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token", &"<redacted>")
            .field("accessor", &self.accessor)
            .field("identity_id", &self.identity_id)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/kubernetes/login`: exchange a Kubernetes ServiceAccount token for a
/// short-lived vault token of identity `k8s:<namespace>/<serviceaccount>`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesLoginRequest {
    /// A ServiceAccount JWT (projected volume or TokenRequest) whose audience includes the
    /// server's configured audience (`scaivault` by default).
    pub jwt: String,
    /// Optional label recorded on the token (`display_name = "kubernetes/<role>"`) and in
    /// the audit log. Access comes from the policies bound to the identity, not the role.
    #[serde(default)]
    pub role: Option<String>,
}

impl std::fmt::Debug for KubernetesLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesLoginRequest")
            .field("jwt", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub accessor: String,
    pub identity_id: String,
    pub identity_type: IdentityType,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListTokensResponse {
    pub tokens: Vec<TokenInfo>,
    /// Opaque: pass it as `cursor` to get the next page; absent on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ids() {
        assert_eq!(
            identity_type_of("user:alice@acme.example"),
            Ok(IdentityType::User)
        );
        assert_eq!(
            identity_type_of("sa:billing-prod"),
            Ok(IdentityType::ServiceAccount)
        );
        assert_eq!(
            identity_type_of("k8s:team-a/default"),
            Ok(IdentityType::Kubernetes)
        );
        for bad in [
            "alice",
            "user:",
            "sa:a b",
            "k8s:noslash",
            "k8s:a/b/c",
            "k8s:/x",
            "root:x",
            "sa:a/b",
        ] {
            assert!(identity_type_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_debug_hides_the_jwt() {
        let r = KubernetesLoginRequest {
            jwt: "eyJhbGciOi.secretpart.sig".into(),
            role: Some("web".into()),
        };
        assert!(!format!("{r:?}").contains("secretpart"));
    }

    #[test]
    fn token_debug_hides_the_token() {
        let r = CreateTokenResponse {
            token: "svt_supersecret".into(),
            accessor: "acc_1".into(),
            identity_id: "sa:x".into(),
            identity_type: IdentityType::ServiceAccount,
            issued_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
        };
        assert!(!format!("{r:?}").contains("supersecret"));
    }
}
