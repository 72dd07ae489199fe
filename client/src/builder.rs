//! Configuring a [`Client`]: address, token, trust roots, retries, timeouts.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use scaivault_api::ErrorCode;
use secrecy::{ExposeSecret, SecretString};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Where the CLI and `from_env` look when nothing is configured: the dev server.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";
/// Environment variables read by [`ClientBuilder::from_env`].
pub const ENV_ADDRESS: &str = "SCAIVAULT_ADDR";
pub const ENV_TOKEN: &str = "SCAIVAULT_TOKEN";
pub const ENV_CA_CERT: &str = "SCAIVAULT_CACERT";

/// Builds a [`Client`]. TLS certificates are always verified against the platform's
/// roots, plus the CA given with [`ClientBuilder::ca_cert_file`] / [`ClientBuilder::ca_cert_pem`].
#[derive(Debug)]
pub struct ClientBuilder {
    address: String,
    token: Option<SecretString>,
    ca_cert: Option<CaCert>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
}

#[derive(Debug)]
enum CaCert {
    File(PathBuf),
    Pem(Vec<u8>),
}

impl ClientBuilder {
    pub fn new(address: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            address: address.into(),
            token: None,
            ca_cert: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Address from `SCAIVAULT_ADDR` (default [`DEFAULT_ADDRESS`]), token from
    /// `SCAIVAULT_TOKEN`, extra CA from `SCAIVAULT_CACERT` (a PEM file).
    pub fn from_env() -> ClientBuilder {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut builder = ClientBuilder::new(
            non_empty(ENV_ADDRESS).unwrap_or_else(|| DEFAULT_ADDRESS.to_owned()),
        );
        if let Some(token) = non_empty(ENV_TOKEN) {
            builder = builder.token(token);
        }
        if let Some(path) = non_empty(ENV_CA_CERT) {
            builder = builder.ca_cert_file(path);
        }
        builder
    }

    /// The bearer token; without one only `health` works.
    pub fn token(mut self, token: impl Into<SecretString>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// Also trust the CA certificate(s) in this PEM file (read by [`ClientBuilder::build`]).
    pub fn ca_cert_file(mut self, path: impl Into<PathBuf>) -> ClientBuilder {
        self.ca_cert = Some(CaCert::File(path.into()));
        self
    }

    /// Also trust the CA certificate(s) in this PEM bundle.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientBuilder {
        self.ca_cert = Some(CaCert::Pem(pem.into()));
        self
    }

    pub fn retry_policy(mut self, retry: RetryPolicy) -> ClientBuilder {
        self.retry = retry;
        self
    }

    /// Retries after the first attempt (default 3); `0` disables retrying.
    pub fn max_retries(mut self, max_retries: u32) -> ClientBuilder {
        self.retry.max_retries = max_retries;
        self
    }

    /// Total time allowed for one attempt (default 30s).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client> {
        let base_url = parse_address(&self.address)?;
        if let Some(token) = &self.token {
            check_token(token)?;
        }
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("scaivault-client/", env!("CARGO_PKG_VERSION")))
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            // A redirect would carry the token to wherever it points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &self.ca_cert {
            let pem = match ca {
                CaCert::Pem(pem) => pem.clone(),
                CaCert::File(path) => std::fs::read(path).map_err(|e| {
                    Error::invalid(
                        ErrorCode::InvalidRequest,
                        format!("cannot read CA certificate file {}: {e}", path.display()),
                    )
                })?,
            };
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("invalid CA certificate PEM: {e}"),
                )
            })?;
            if certs.is_empty() {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    "the CA certificate PEM holds no certificate",
                ));
            }
            http = http.tls_certs_merge(certs);
        }
        let http = http.build().map_err(Error::Transport)?;
        Ok(Client::from_parts(http, base_url, self.token, self.retry))
    }
}

/// Accepts `http(s)://host[:port][/prefix]`; anything else is a configuration mistake.
fn parse_address(address: &str) -> Result<Url> {
    let invalid = |why: &str| {
        Error::invalid(
            ErrorCode::InvalidRequest,
            format!("invalid server address {address:?}: {why}"),
        )
    };
    let url = Url::parse(address.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials belong in the token, not the address"));
    }
    Ok(url)
}

/// A token that cannot go into a header would fail every request; say so once, up front,
/// without echoing it.
pub(crate) fn check_token(token: &SecretString) -> Result<()> {
    let value = token.expose_secret();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            ErrorCode::InvalidRequest,
            "the token is empty or contains whitespace or non-ASCII characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "http://127.0.0.1:8200",
            "https://vault.example",
            "https://vault.example/prefix/",
        ] {
            assert!(parse_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:8200",
            "ftp://x",
            "http://u:p@x",
            "http://x/?a=b",
            "mailto:a@b",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_tokens_are_rejected_without_being_echoed() {
        let err = ClientBuilder::new(DEFAULT_ADDRESS)
            .token("svt_abc def")
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains("svt_abc"), "{err}");
    }

    #[test]
    fn builder_debug_hides_the_token() {
        let builder = ClientBuilder::new(DEFAULT_ADDRESS).token("svt_supersecret");
        assert!(!format!("{builder:?}").contains("supersecret"));
    }

    #[test]
    fn missing_ca_file_is_an_input_error() {
        let err = ClientBuilder::new(DEFAULT_ADDRESS)
            .ca_cert_file("/nonexistent/ca.pem")
            .build()
            .err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
    }
}
