//! The TokenReview call and what its answer means.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

const TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The cluster answered: this token is not acceptable (the reason is for logs only).
    #[error("token rejected: {0}")]
    Rejected(String),
    /// The cluster could not be asked or refused to answer.
    #[error("{0}")]
    Unavailable(String),
}

/// The ServiceAccount a reviewed token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewedAccount {
    pub namespace: String,
    pub name: String,
}

impl ReviewedAccount {
    pub fn identity_id(&self) -> String {
        format!("k8s:{}/{}", self.namespace, self.name)
    }
}

pub struct TokenReviewer {
    /// kube's client: TLS against the cluster's CA only, and the credential of the
    /// configuration (refreshed token files, exec plugins, client certificates).
    client: kube::Client,
    /// A token file is read here on every call rather than by kube, which sends the file
    /// as it is: a trailing newline (as `echo` writes one) makes the header invalid.
    token_file: Option<std::path::PathBuf>,
    audience: String,
}

impl TokenReviewer {
    pub fn new(mut cluster: kube::Config, audience: String) -> Result<TokenReviewer, String> {
        cluster.connect_timeout = Some(TIMEOUT);
        cluster.read_timeout = Some(TIMEOUT);
        cluster.write_timeout = Some(TIMEOUT);
        // kube prefers an inline token to the file, so the file counts only without one.
        let token_file = match cluster.auth_info.token {
            None => cluster.auth_info.token_file.take().map(Into::into),
            Some(_) => None,
        };
        let client = kube::Client::try_from(cluster).map_err(|e| e.to_string())?;
        Ok(TokenReviewer {
            client,
            token_file,
            audience,
        })
    }

    /// The token of the token file, read now: projected ServiceAccount tokens are rotated
    /// by the kubelet, so a copy taken at start would expire.
    async fn file_token(&self) -> Result<Option<SecretString>, ReviewError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| ReviewError::Unavailable(format!("reading {}: {e}", path.display())))?;
        Ok(Some(SecretString::from(text.trim().to_owned())))
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Asks the API server whether `jwt` is a live token for our audience.
    pub async fn review(&self, jwt: &SecretString) -> Result<ReviewedAccount, ReviewError> {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": jwt.expose_secret(), "audiences": [self.audience]},
        });
        let mut request = http::Request::post(TOKEN_REVIEWS)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(token) = self.file_token().await? {
            request = request.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            );
        }
        let request = request
            .body(body.to_string().into_bytes())
            .map_err(|e| ReviewError::Unavailable(format!("TokenReview request: {e}")))?;
        let review: TokenReview = self.client.request(request).await.map_err(|e| match e {
            // 401/403 here mean the vault's own credential lacks `create tokenreviews`.
            kube::Error::Api(status) if matches!(status.code, 401 | 403) => {
                ReviewError::Unavailable(format!(
                    "TokenReview answered HTTP {} (the vault's cluster credential needs create \
                     on tokenreviews.authentication.k8s.io)",
                    status.code
                ))
            }
            other => ReviewError::Unavailable(format!("TokenReview: {other}")),
        })?;
        interpret(review, &self.audience)
    }
}

#[derive(Debug, Deserialize)]
struct TokenReview {
    #[serde(default)]
    status: ReviewStatus,
}

#[derive(Debug, Default, Deserialize)]
struct ReviewStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    user: ReviewUser,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ReviewUser {
    #[serde(default)]
    username: String,
}

fn is_dns_label_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
}

/// What a TokenReview answer means for a login. Only ServiceAccount tokens reviewed for
/// our audience are accepted: a user's token or one minted for another service is not.
fn interpret(review: TokenReview, audience: &str) -> Result<ReviewedAccount, ReviewError> {
    let status = review.status;
    if !status.authenticated {
        return Err(ReviewError::Rejected(
            status
                .error
                .unwrap_or_else(|| "not authenticated".to_owned()),
        ));
    }
    // An API server that ignored `spec.audiences` would answer without them: the token
    // might have been issued for anyone, so that is a rejection too.
    if !status.audiences.iter().any(|a| a == audience) {
        return Err(ReviewError::Rejected(format!(
            "token audiences {:?} do not include {audience:?}",
            status.audiences
        )));
    }
    let account = status
        .user
        .username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| is_dns_label_like(ns) && is_dns_label_like(name))
        .map(|(ns, name)| ReviewedAccount {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        });
    account.ok_or_else(|| {
        ReviewError::Rejected(format!(
            "{:?} is not a ServiceAccount",
            status.user.username
        ))
    })
}

/// The `exp` claim of a JWT the cluster has already vouched for (read, not verified).
pub fn jwt_expiry(jwt: &SecretString) -> Option<OffsetDateTime> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<i64>,
    }
    let payload = jwt.expose_secret().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    OffsetDateTime::from_unix_timestamp(claims.exp?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn review(value: serde_json::Value) -> TokenReview {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn accepts_a_service_account_reviewed_for_our_audience() {
        let ok = review(json!({"status": {
            "authenticated": true,
            "user": {"username": "system:serviceaccount:team-a:web"},
            "audiences": ["scaivault"]}}));
        let account = interpret(ok, "scaivault").unwrap();
        assert_eq!(account.identity_id(), "k8s:team-a/web");
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            json!({"status": {"authenticated": false, "error": "expired"}}),
            json!({"status": {}}),
            json!({}),
            json!({"status": {"authenticated": true,
                "user": {"username": "system:serviceaccount:a:b"}}}),
            json!({"status": {"authenticated": true, "audiences": ["other"],
                "user": {"username": "system:serviceaccount:a:b"}}}),
            json!({"status": {"authenticated": true, "audiences": ["scaivault"],
                "user": {"username": "alice"}}}),
            json!({"status": {"authenticated": true, "audiences": ["scaivault"],
                "user": {"username": "system:serviceaccount:a"}}}),
            json!({"status": {"authenticated": true, "audiences": ["scaivault"],
                "user": {"username": "system:serviceaccount:a:b:c"}}}),
            json!({"status": {"authenticated": true, "audiences": ["scaivault"],
                "user": {"username": "system:serviceaccount:A/x:b"}}}),
        ];
        for case in cases {
            let text = case.to_string();
            assert!(
                matches!(
                    interpret(review(case), "scaivault"),
                    Err(ReviewError::Rejected(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn reads_the_expiry_claim() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1900000000,"sub":"x"}"#);
        let jwt = SecretString::from(format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"));
        assert_eq!(jwt_expiry(&jwt).unwrap().unix_timestamp(), 1_900_000_000);
        assert_eq!(jwt_expiry(&SecretString::from("a.b.c".to_owned())), None);
    }
}
