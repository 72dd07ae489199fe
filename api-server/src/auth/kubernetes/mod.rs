//! Kubernetes login: a ServiceAccount token, verified by the cluster's TokenReview API,
//! becomes a short-lived vault token of identity `k8s:<namespace>/<serviceaccount>`.
//!
//! The vault never validates the JWT itself: the API server knows whether the token,
//! its pod and its ServiceAccount still exist, which a signature check alone cannot.

mod cluster;
mod review;

use std::time::Duration;

use scaivault_api::ErrorCode;
use scaivault_api::auth::{CreateTokenResponse, IdentityType, KubernetesLoginRequest};
use secrecy::SecretString;
use time::OffsetDateTime;

pub use cluster::ClusterConfigError;
pub use review::{ReviewError, ReviewedAccount, TokenReviewer};

use super::{Grant, TokenService};
use crate::config::KubernetesArgs;
use crate::error::{Error, Result};

/// Longest accepted JWT: far above what Kubernetes issues, low enough to bound the
/// request forwarded to the cluster.
pub const MAX_JWT_BYTES: usize = 16 * 1024;
const MAX_ROLE_CHARS: usize = 64;
/// Tokens this close to their end would expire before a client could use them.
const MIN_REMAINING: Duration = Duration::from_secs(10);

/// The Kubernetes login method, present when the server is configured for a cluster.
pub struct KubernetesAuth {
    reviewer: TokenReviewer,
    ttl: Duration,
}

impl KubernetesAuth {
    pub fn new(reviewer: TokenReviewer, ttl: Duration) -> Self {
        KubernetesAuth { reviewer, ttl }
    }

    /// The login method the flags ask for: a kubeconfig when given, the pod's own
    /// ServiceAccount when running in a cluster, none otherwise. A configuration that is
    /// asked for but unusable stops the server rather than silently disabling logins.
    pub async fn from_args(args: &KubernetesArgs) -> anyhow::Result<Option<KubernetesAuth>> {
        if args.kubernetes_disable {
            return Ok(None);
        }
        let cluster = match &args.kubernetes_kubeconfig {
            Some(path) => cluster::from_kubeconfig(path).await?,
            None => match cluster::in_cluster() {
                Ok(cluster) => cluster,
                Err(ClusterConfigError::NotInCluster) => return Ok(None),
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "{e} (pass --kubernetes-disable to run without Kubernetes login)"
                    ));
                }
            },
        };
        let server = cluster.cluster_url.clone();
        let reviewer = TokenReviewer::new(cluster, args.kubernetes_audience.clone())
            .map_err(|e| anyhow::anyhow!("kubernetes login: {e}"))?;
        tracing::info!(%server, audience = %args.kubernetes_audience, "kubernetes login enabled");
        Ok(Some(KubernetesAuth::new(
            reviewer,
            args.kubernetes_token_ttl,
        )))
    }

    pub fn audience(&self) -> &str {
        self.reviewer.audience()
    }

    /// Verifies the JWT with the cluster and issues a token for its ServiceAccount. The
    /// token lives `ttl` but never longer than the JWT it was exchanged for.
    pub async fn login(
        &self,
        tokens: &TokenService,
        request: KubernetesLoginRequest,
    ) -> Result<CreateTokenResponse> {
        let role = validate_role(request.role)?;
        let jwt = SecretString::from(request.jwt);
        let account = self.reviewer.review(&jwt).await.map_err(login_error)?;
        let now = OffsetDateTime::now_utc();
        let mut ttl = self.ttl;
        if let Some(expires) = review::jwt_expiry(&jwt) {
            let remaining = Duration::try_from(expires - now).unwrap_or(Duration::ZERO);
            if remaining < MIN_REMAINING {
                return Err(unauthenticated());
            }
            ttl = ttl.min(remaining);
        }
        let display_name = Some(match role {
            Some(role) => format!("kubernetes/{role}"),
            None => "kubernetes".to_owned(),
        });
        tokens
            .issue(Grant {
                identity_id: account.identity_id(),
                identity_type: IdentityType::Kubernetes,
                policies: Vec::new(),
                display_name,
                ttl: Some(ttl),
            })
            .await
    }
}

fn unauthenticated() -> Error {
    // One message for every rejected token: which check failed is for the server's log.
    Error::new(
        ErrorCode::Unauthenticated,
        "the Kubernetes token was not accepted (invalid, expired, revoked, or not issued for \
         this vault's audience)",
    )
}

fn login_error(e: ReviewError) -> Error {
    match e {
        ReviewError::Rejected(reason) => {
            tracing::info!(reason = %reason, "kubernetes login rejected");
            unauthenticated()
        }
        ReviewError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "TokenReview failed");
            Error::new(
                ErrorCode::UpstreamUnavailable,
                "the Kubernetes API server could not review the token; try again later",
            )
            .with_retry_after(5)
        }
    }
}

fn validate_role(role: Option<String>) -> Result<Option<String>> {
    let Some(role) = role else { return Ok(None) };
    let ok = !role.is_empty()
        && role.chars().count() <= MAX_ROLE_CHARS
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(Some(role))
    } else {
        Err(Error::invalid(format!(
            "role must be 1..={MAX_ROLE_CHARS} characters of [A-Za-z0-9._-]"
        )))
    }
}

/// Checks the request before anything is sent to the cluster.
pub fn check_request(request: &KubernetesLoginRequest) -> Result<()> {
    if request.jwt.is_empty() {
        return Err(Error::invalid("jwt is required"));
    }
    if request.jwt.len() > MAX_JWT_BYTES {
        return Err(Error::invalid(format!(
            "jwt is longer than {MAX_JWT_BYTES} bytes"
        )));
    }
    // A JWT is three base64url parts; anything else is not worth a TokenReview.
    let shaped = request.jwt.split('.').count() == 3
        && request
            .jwt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !shaped {
        return Err(unauthenticated());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(jwt: &str) -> KubernetesLoginRequest {
        KubernetesLoginRequest {
            jwt: jwt.into(),
            role: None,
        }
    }

    #[test]
    fn requests_are_checked_before_the_cluster_is_asked() {
        assert_eq!(
            check_request(&request("")).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            check_request(&request(&"a.b.".repeat(5000)))
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
        for bad in ["abc", "a.b", "a.b.c.d", "a b.c.d", "a.b.c\n"] {
            assert_eq!(
                check_request(&request(bad)).unwrap_err().code,
                ErrorCode::Unauthenticated,
                "{bad:?}"
            );
        }
        assert!(check_request(&request("eyJh.eyJz.c2ln")).is_ok());
    }

    #[test]
    fn roles_are_labels_with_a_grammar() {
        assert_eq!(validate_role(None).unwrap(), None);
        assert_eq!(
            validate_role(Some("web-app".into())).unwrap().as_deref(),
            Some("web-app")
        );
        for bad in ["", "a b", "x/y", &"r".repeat(65)] {
            assert!(validate_role(Some(bad.into())).is_err(), "{bad:?}");
        }
    }
}
