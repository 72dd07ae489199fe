//! `/v1/sys`: the keyring, and `/v1/health`.

use reqwest::{Method, StatusCode};
use scaivault_api::health::{DetailedHealthResponse, HealthResponse};
use scaivault_api::sys::{KeyInfo, KeysResponse};

use crate::client::{Client, decode};
use crate::error::{Error, Result};
use crate::retry::Retry;

impl Client {
    /// Makes a new data key active for new writes. Retried with its `Idempotency-Key`:
    /// a repeat after a lost answer gets the first answer back, not a second key.
    pub async fn rotate_keys(&self) -> Result<KeyInfo> {
        let url = self.url(["sys", "keys", "rotate"])?;
        self.json(self.call(Method::POST, url, Retry::Keyed, "rotate_keys"))
            .await
    }

    pub async fn keys(&self) -> Result<KeysResponse> {
        let url = self.url(["sys", "keys"])?;
        self.json(self.call(Method::GET, url, Retry::Safe, "keys"))
            .await
    }

    /// Unauthenticated liveness. A 503 carrying a health document is returned as that
    /// document (status `down`), not as an error, and is not retried: a health check
    /// should report the state now, not wait for it to change.
    pub async fn health(&self) -> Result<HealthResponse> {
        let url = self.url(["health"])?;
        self.health_document(self.call(Method::GET, url, Retry::Never, "health"))
            .await
    }

    /// Unauthenticated readiness: `ok` when storage and the audit log can be written. A
    /// server that cannot (its 503) answers a document with status `down`, handled like
    /// [`Client::health`]; what a load balancer or a deploy script waits on.
    pub async fn ready(&self) -> Result<HealthResponse> {
        let url = self.url(["health", "ready"])?;
        self.health_document(self.call(Method::GET, url, Retry::Never, "ready"))
            .await
    }

    /// Per-component health (authenticated); 503 handled like [`Client::health`].
    pub async fn health_detailed(&self) -> Result<DetailedHealthResponse> {
        let url = self.url(["health", "detailed"])?;
        self.health_document(self.call(Method::GET, url, Retry::Never, "health_detailed"))
            .await
    }

    async fn health_document<T: serde::de::DeserializeOwned>(
        &self,
        call: crate::client::Call,
    ) -> Result<T> {
        let what = call.what();
        let answer = self
            .execute(&call, &[StatusCode::SERVICE_UNAVAILABLE])
            .await?;
        if answer.status.is_success() {
            return decode(what, &answer.body);
        }
        // A 503 is either a health document saying "down" or an ordinary error envelope.
        decode(what, &answer.body)
            .map_err(|_: Error| Error::from_response(answer.status, &answer.headers, &answer.body))
    }
}
