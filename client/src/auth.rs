//! `/v1/auth`: the caller's identity and tokens.

use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::auth::{
    CreateTokenRequest, CreateTokenResponse, KubernetesLoginRequest, ListTokensResponse,
    WhoAmIResponse,
};
use secrecy::{ExposeSecret, SecretString};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::paging::{PageOptions, collect_all};
use crate::retry::Retry;

impl Client {
    /// The identity behind this client's token.
    pub async fn whoami(&self) -> Result<WhoAmIResponse> {
        let url = self.url(["auth", "whoami"])?;
        self.json(self.call(Method::GET, url, Retry::Safe, "whoami"))
            .await
    }

    /// Issues a token. Retried with its `Idempotency-Key`: a repeat after a lost answer
    /// gets the first token back instead of a second one.
    pub async fn create_token(&self, request: &CreateTokenRequest) -> Result<CreateTokenResponse> {
        let url = self.url(["auth", "tokens"])?;
        let call = self
            .call(Method::POST, url, Retry::Keyed, "create_token")
            .body(request)?;
        self.json(call).await
    }

    /// Exchanges a Kubernetes ServiceAccount token (audience: the server's, `scaivault` by
    /// default) for a short-lived vault token of identity `k8s:<namespace>/<name>`. Works on
    /// a client without a token; use [`Client::with_token`] with the answer's token.
    /// Never retried: a login has no caller yet, so the server cannot scope an
    /// `Idempotency-Key` to it, and a repeat would issue a second token.
    pub async fn login_kubernetes(
        &self,
        jwt: &SecretString,
        role: Option<&str>,
    ) -> Result<CreateTokenResponse> {
        let url = self.url(["auth", "kubernetes", "login"])?;
        let request = KubernetesLoginRequest {
            jwt: jwt.expose_secret().to_owned(),
            role: role.map(str::to_owned),
        };
        let call = self
            .call(Method::POST, url, Retry::Never, "login_kubernetes")
            .body(&request)?;
        self.json(call).await
    }

    /// Every active token, oldest first (all pages: `next_cursor` is `None`).
    pub async fn list_tokens(&self) -> Result<ListTokensResponse> {
        let tokens = collect_all("list_tokens", |page| async move {
            let r = self.list_tokens_page(&page).await?;
            Ok((r.tokens, r.next_cursor))
        })
        .await?;
        Ok(ListTokensResponse {
            tokens,
            next_cursor: None,
        })
    }

    /// One page of [`Client::list_tokens`].
    pub async fn list_tokens_page(&self, page: &PageOptions) -> Result<ListTokensResponse> {
        let url = self.url(["auth", "tokens"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "list_tokens")
            .query(&page.query()?);
        self.json(call).await
    }

    /// Revokes the token with this accessor (`acc_...`).
    pub async fn revoke_token(&self, accessor: &str) -> Result<()> {
        check_accessor(accessor)?;
        let url = self.url(["auth", "tokens", accessor])?;
        self.no_content(self.call(Method::DELETE, url, Retry::Keyed, "revoke_token"))
            .await
    }
}

/// Accessors are opaque but simple; rejecting odd ones early gives a clearer error than a 404.
fn check_accessor(accessor: &str) -> Result<()> {
    let ok = !accessor.is_empty()
        && accessor.len() <= 128
        && accessor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidRequest,
            "a token accessor is 1..=128 characters of [A-Za-z0-9_-]",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors() {
        assert!(check_accessor("acc_01JABCdef-9").is_ok());
        for bad in ["", "acc/x", "acc x", "../x"] {
            assert!(check_accessor(bad).is_err(), "{bad}");
        }
    }
}
