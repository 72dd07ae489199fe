//! Logging in with the pod's projected ServiceAccount token, and the vault token that
//! comes of it.

use std::path::Path;
use std::time::Duration;

use scaivault_client::Client;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Recorded as the token's `display_name` (`kubernetes/scaivault-agent`) in the audit log.
pub const LOGIN_ROLE: &str = "scaivault-agent";
/// A token is renewed after this share of its lifetime.
const RENEW_AT: f64 = 2.0 / 3.0;
/// Never renew more often than this, however short the token.
const MIN_RENEW: Duration = Duration::from_secs(1);

/// A logged-in client.
#[derive(Debug)]
pub struct Session {
    /// Sends the vault token.
    pub client: Client,
    /// Names the token for revocation and in logs (not a secret).
    pub accessor: String,
    /// `k8s:<namespace>/<serviceaccount>`.
    pub identity: String,
    /// From the server's issue and expiry times (not the local clock's), if it expires.
    lifetime: Option<Duration>,
}

impl Session {
    /// Reads the token file (again: the kubelet rotates it) and logs in.
    pub async fn login(base: &Client, token_path: &str) -> Result<Session> {
        let jwt = read_token(Path::new(token_path))?;
        let answer = base
            .login_kubernetes(&jwt, Some(LOGIN_ROLE))
            .await
            .map_err(|source| Error::Login {
                addr: base.address().to_string(),
                source,
            })?;
        let lifetime = answer.expires_at.map(|expires| {
            let millis = (expires - answer.issued_at).whole_milliseconds().max(0);
            Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
        });
        let (accessor, identity) = (answer.accessor.clone(), answer.identity_id.clone());
        let token = SecretString::from(answer.token);
        let client = base.with_token(token).map_err(|source| Error::Login {
            addr: base.address().to_string(),
            source,
        })?;
        tracing::info!(%identity, %accessor, ?lifetime, "logged in");
        Ok(Session {
            client,
            accessor,
            identity,
            lifetime,
        })
    }

    /// When to log in again, from now: after two thirds of the token's lifetime.
    pub fn renew_after(&self) -> Option<Duration> {
        self.lifetime.map(|l| l.mul_f64(RENEW_AT).max(MIN_RENEW))
    }

    /// Revokes the vault token (best effort, bounded: the pod is stopping).
    pub async fn revoke(&self) {
        match tokio::time::timeout(
            Duration::from_secs(5),
            self.client.revoke_token(&self.accessor),
        )
        .await
        {
            Ok(Ok(())) => tracing::info!(accessor = %self.accessor, "vault token revoked"),
            Ok(Err(e)) => {
                tracing::warn!(accessor = %self.accessor, error = %e, "could not revoke the vault token")
            }
            Err(_) => {
                tracing::warn!(accessor = %self.accessor, "revoking the vault token timed out")
            }
        }
    }
}

/// The JWT, trimmed (the kubelet writes none, a hand-made file may end with a newline).
fn read_token(path: &Path) -> Result<SecretString> {
    let raw = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
            path: path.display().to_string(),
            source,
        })?,
    );
    let jwt = raw.trim();
    if jwt.is_empty() {
        return Err(Error::TokenFile {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(SecretString::from(jwt.to_owned()))
}
