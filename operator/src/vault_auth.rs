//! Vault clients acting as a namespace's ServiceAccount (no confused deputy): mint a
//! short-lived ServiceAccount token with the TokenRequest API, exchange it at
//! `/v1/auth/kubernetes/login`, and cache the vault token per identity until shortly
//! before it expires. The operator's own admin token is never used for VaultSecret reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use secrecy::SecretString;

use crate::metrics::Metrics;

/// Lifetime asked for the ServiceAccount token; 10 minutes is the API's minimum and the
/// token is used once, right away.
pub const SA_TOKEN_SECONDS: i64 = 600;
/// A cached vault token is replaced this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long to keep a vault token whose answer carried no expiry.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ServiceAccount {namespace}/{name} does not exist")]
    NoServiceAccount { namespace: String, name: String },
    #[error("minting a token for ServiceAccount {namespace}/{name}: {source}")]
    TokenRequest {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the TokenRequest for ServiceAccount {namespace}/{name} returned no token")]
    EmptyToken { namespace: String, name: String },
    #[error("vault login as k8s:{namespace}/{name} failed: {source}")]
    Login {
        namespace: String,
        name: String,
        #[source]
        source: scaivault_client::Error,
    },
}

struct Cached {
    client: scaivault_client::Client,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

pub struct VaultAuth {
    kube: Client,
    /// Client without a token; `with_token` shares its connection pool.
    base: scaivault_client::Client,
    audience: String,
    role: Option<String>,
    metrics: Arc<Metrics>,
    /// One slot per `(namespace, serviceaccount)`; its async lock makes concurrent
    /// reconciles of one namespace share a single login.
    cache: Mutex<HashMap<(String, String), Slot>>,
}

impl VaultAuth {
    pub fn new(
        kube: Client,
        base: scaivault_client::Client,
        audience: String,
        role: Option<String>,
        metrics: Arc<Metrics>,
    ) -> VaultAuth {
        VaultAuth {
            kube,
            base,
            audience,
            role,
            metrics,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, namespace: &str, name: &str) -> Slot {
        match self.cache.lock() {
            Ok(mut map) => map
                .entry((namespace.to_owned(), name.to_owned()))
                .or_default()
                .clone(),
            // A poisoned map: work uncached rather than fail.
            Err(_) => Slot::default(),
        }
    }

    /// A vault client authenticated as `k8s:<namespace>/<name>`.
    pub async fn client_for(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<scaivault_client::Client, Error> {
        let slot = self.slot(namespace, name);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.client.clone());
        }
        let jwt = self.service_account_token(namespace, name).await?;
        let login_err = |source| Error::Login {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        };
        self.metrics.vault_logins.inc();
        let answer = self
            .base
            .login_kubernetes(&jwt, self.role.as_deref())
            .await
            .map_err(login_err)?;
        let lifetime = answer
            .expires_at
            .map(|at| {
                let left = at - time::OffsetDateTime::now_utc();
                Duration::try_from(left).unwrap_or_default()
            })
            .unwrap_or(DEFAULT_CACHE + REFRESH_MARGIN);
        // Refresh a margin before expiry, or halfway for very short tokens.
        let keep = lifetime.checked_sub(REFRESH_MARGIN).unwrap_or(lifetime / 2);
        let client = self
            .base
            .with_token(SecretString::from(answer.token))
            .map_err(login_err)?;
        *cached = Some(Cached {
            client: client.clone(),
            refresh_at: Instant::now() + keep,
        });
        Ok(client)
    }

    /// Forgets the cached token (the vault said 401: revoked or expired early).
    pub async fn invalidate(&self, namespace: &str, name: &str) {
        let slot = self.slot(namespace, name);
        *slot.lock().await = None;
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<SecretString, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.kube.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![self.audience.clone()]),
                expiration_seconds: Some(SA_TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| match source {
                kube::Error::Api(s) if s.code == 404 => Error::NoServiceAccount {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                },
                source => Error::TokenRequest {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    source,
                },
            })?;
        // The token goes straight into a SecretString; the TokenRequest (whose Debug
        // would print it) is dropped here.
        match answer.status.and_then(|s| s.token) {
            Some(token) if !token.is_empty() => Ok(SecretString::from(token)),
            _ => Err(Error::EmptyToken {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
        }
    }
}
