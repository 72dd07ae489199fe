//! The client and the one place that talks HTTP: URL building, auth, retries, decoding.

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use scaivault_api::ErrorCode;
use scaivault_api::idempotency::KEY_HEADER as IDEMPOTENCY_KEY;
use scaivault_api::path::validate_secret_path;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builder::{ClientBuilder, check_token};
use crate::error::{Error, Result};
use crate::retry::{Retry, RetryPolicy};

/// How long a stream may last in all: far beyond any session (reqwest has no "never").
const STREAM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// An async ScaiVault client. Cheap to clone: clones share the connection pool.
///
/// The token is kept in a [`SecretString`], so `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: Url,
    token: Option<SecretString>,
    retry: RetryPolicy,
}

/// One request to send: built by the endpoint methods, executed by [`Client::execute`].
pub(crate) struct Call {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    retry: Retry,
    /// Sent as `Idempotency-Key` by every attempt of a [`Retry::Keyed`] call: made once
    /// per call, so the server can tell a retry from a new request.
    idempotency_key: Option<String>,
    /// Names the endpoint in decode errors.
    what: &'static str,
}

/// A successful (or explicitly accepted) answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Client {
    /// A client for `address` (like `https://vault.example:8200`) authenticating with `token`.
    pub fn new(address: impl Into<String>, token: impl Into<SecretString>) -> Result<Client> {
        ClientBuilder::new(address).token(token).build()
    }

    /// A client configured from `SCAIVAULT_ADDR`, `SCAIVAULT_TOKEN` and `SCAIVAULT_CACERT`.
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env().build()
    }

    pub fn builder(address: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(address)
    }

    pub(crate) fn from_parts(
        http: reqwest::Client,
        base_url: Url,
        token: Option<SecretString>,
        retry: RetryPolicy,
    ) -> Client {
        Client {
            http,
            base_url,
            token,
            retry,
        }
    }

    /// The same client acting as someone else, sharing the connection pool: for services
    /// that call the vault on behalf of many identities (one token per namespace).
    pub fn with_token(&self, token: impl Into<SecretString>) -> Result<Client> {
        let token = token.into();
        check_token(&token)?;
        Ok(Client {
            token: Some(token),
            ..self.clone()
        })
    }

    /// The server address this client talks to.
    pub fn address(&self) -> &Url {
        &self.base_url
    }

    /// `/v1/<segments...>` under the base address; every segment is percent-encoded on
    /// its own, so no input can add path segments, a query or a fragment.
    pub(crate) fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Result<Url> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| {
                Error::invalid(
                    ErrorCode::InvalidRequest,
                    "the server address cannot take a path",
                )
            })?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(url)
    }

    /// `/v1/secrets/<path>[/<action>]` for a path that passed the grammar check.
    pub(crate) fn secret_url(&self, path: &str, action: Option<&str>) -> Result<Url> {
        check_path(path)?;
        self.url(
            std::iter::once("secrets")
                .chain(path.split('/'))
                .chain(action),
        )
    }

    pub(crate) fn call(&self, method: Method, url: Url, retry: Retry, what: &'static str) -> Call {
        Call {
            method,
            url,
            body: None,
            retry,
            idempotency_key: (retry == Retry::Keyed).then(|| uuid::Uuid::new_v4().to_string()),
            what,
        }
    }

    /// Sends the call, retrying as the policy allows, and returns a 2xx answer (or one
    /// with a status in `accept`); every other answer becomes an [`Error::Api`].
    pub(crate) async fn execute(&self, call: &Call, accept: &[StatusCode]) -> Result<Answer> {
        let mut retries_done = 0;
        loop {
            let (error, delay) = match self.send_once(call).await {
                Ok(answer) if answer.status.is_success() || accept.contains(&answer.status) => {
                    return Ok(answer);
                }
                Ok(answer) => {
                    let error = Error::from_response(answer.status, &answer.headers, &answer.body);
                    let delay = match &error {
                        Error::Api {
                            status,
                            code,
                            retry_after,
                            ..
                        } => self.retry.delay_before_retry(
                            call.retry,
                            retries_done,
                            *status,
                            *code,
                            *retry_after,
                            fastrand::f64(),
                        ),
                        _ => None,
                    };
                    (error, delay)
                }
                Err(error) => {
                    let delay = error
                        .is_lost_answer()
                        .then(|| {
                            self.retry.delay_after_lost_answer(
                                call.retry,
                                retries_done,
                                fastrand::f64(),
                            )
                        })
                        .flatten();
                    (error, delay)
                }
            };
            match delay {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    retries_done += 1;
                }
                None => return Err(error),
            }
        }
    }

    /// A request to `url` with the client's token, accepting `accept`.
    fn authorized(&self, method: Method, url: Url, accept: &'static str) -> Result<RequestBuilder> {
        let mut request = self.http.request(method, url).header(ACCEPT, accept);
        if let Some(token) = &self.token {
            // Checked for header-safety when the client was built.
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| {
                    Error::invalid(
                        ErrorCode::InvalidRequest,
                        "the token cannot be sent in a header",
                    )
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        Ok(request)
    }

    /// Opens a streaming answer (Server-Sent Events): the request is sent once, a 2xx
    /// answer is returned with its body unread, and no overall timeout applies (the
    /// stream lasts until closed; the reader watches its heartbeats instead).
    pub(crate) async fn open_stream(
        &self,
        url: Url,
        query: &[(&'static str, String)],
        last_event_id: Option<u64>,
    ) -> Result<reqwest::Response> {
        let mut request = self
            .authorized(Method::GET, url, "text/event-stream")?
            .query(query)
            .timeout(STREAM_LIFETIME);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.map_err(Error::Transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.bytes().await.map_err(Error::Transport)?;
        Err(Error::from_response(status, &headers, &body))
    }

    async fn send_once(&self, call: &Call) -> Result<Answer> {
        let mut request =
            self.authorized(call.method.clone(), call.url.clone(), "application/json")?;
        if let Some(key) = &call.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(Error::Transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(Error::Transport)?.to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Executes and decodes the JSON body.
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let answer = self.execute(&call, &[]).await?;
        decode(call.what, &answer.body)
    }

    /// Executes a call whose success has no body (204).
    pub(crate) async fn no_content(&self, call: Call) -> Result<()> {
        self.execute(&call, &[]).await.map(|_| ())
    }
}

impl Call {
    pub(crate) fn what(&self) -> &'static str {
        self.what
    }

    /// Serializes the body once, so retries resend the same bytes.
    pub(crate) fn body(mut self, body: &impl Serialize) -> Result<Call> {
        let bytes = serde_json::to_vec(body).map_err(|_| {
            Error::invalid(
                ErrorCode::InvalidJson,
                format!("cannot serialize the request to {}", self.what),
            )
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub(crate) fn query(mut self, pairs: &[(&str, String)]) -> Call {
        if !pairs.is_empty() {
            let mut query = self.url.query_pairs_mut();
            for (key, value) in pairs {
                query.append_pair(key, value);
            }
        }
        self
    }
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::decode(what, &e))
}

/// The secret path grammar, checked before anything is sent.
pub(crate) fn check_path(path: &str) -> Result<()> {
    validate_secret_path(path).map_err(|e| {
        let code = if e.is_reserved() {
            ErrorCode::ReservedPath
        } else {
            ErrorCode::InvalidPath
        };
        Error::invalid(code, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> Option<Client> {
        ClientBuilder::new(address).build().ok()
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = Client::new("http://127.0.0.1:8200", "svt_first_secret").ok();
        let other = c
            .as_ref()
            .and_then(|c| c.with_token("svt_second_secret").ok());
        let text = format!("{c:?} {other:?}");
        assert!(text.contains("127.0.0.1"), "{text}");
        assert!(
            !text.contains("first_secret") && !text.contains("second_secret"),
            "{text}"
        );
        let bad = c.as_ref().map(|c| c.with_token("not a token").is_err());
        assert_eq!(bad, Some(true));
    }

    #[test]
    fn secret_urls_are_built_segment_by_segment() {
        let Some(c) = client("http://127.0.0.1:8200") else {
            unreachable!("valid address")
        };
        let url = c
            .secret_url("app/db", Some("metadata"))
            .map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/secrets/app/db/metadata")
        );
        let url = c
            .secret_url("environments/prod/x.y_z-1", None)
            .map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/secrets/environments/prod/x.y_z-1")
        );
    }

    #[test]
    fn a_path_prefix_in_the_address_is_kept() {
        let Some(c) = client("https://vault.example/scaivault/") else {
            unreachable!("valid address")
        };
        let url = c.url(["auth", "whoami"]).map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("https://vault.example/scaivault/v1/auth/whoami")
        );
    }

    #[test]
    fn bad_paths_never_become_urls() {
        let Some(c) = client("http://127.0.0.1:8200") else {
            unreachable!("valid address")
        };
        for (bad, code) in [
            ("../sys/keys", ErrorCode::InvalidPath),
            ("a/b?x=1", ErrorCode::InvalidPath),
            ("a%2Fb", ErrorCode::InvalidPath),
            ("app/db/metadata", ErrorCode::ReservedPath),
            ("sys/keys", ErrorCode::ReservedPath),
        ] {
            let err = c.secret_url(bad, None).err();
            assert_eq!(err.and_then(|e| e.code()), Some(code), "{bad}");
        }
    }

    #[test]
    fn other_segments_are_percent_encoded() {
        let Some(c) = client("http://127.0.0.1:8200") else {
            unreachable!("valid address")
        };
        let url = c
            .url(["auth", "tokens", "acc/../x?y#z"])
            .map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("http://127.0.0.1:8200/v1/auth/tokens/acc%2F..%2Fx%3Fy%23z")
        );
    }

    #[test]
    fn queries_are_encoded() {
        let Some(c) = client("http://127.0.0.1:8200") else {
            unreachable!("valid address")
        };
        let Ok(url) = c.url(["secrets"]) else {
            unreachable!("valid url")
        };
        let call = c
            .call(Method::GET, url, Retry::Safe, "list")
            .query(&[("prefix", "a b&c".to_owned()), ("limit", "5".to_owned())]);
        assert_eq!(call.url.query(), Some("prefix=a+b%26c&limit=5"));
    }
}
