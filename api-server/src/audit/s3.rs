//! A small S3 client for the audit export: put, get, list and create-bucket.
//!
//! Requests are signed with AWS Signature V4 by `rusty-s3` (sans-IO, presigned URLs, hashing
//! through aws-lc-rs) and sent with `reqwest`. Path-style URLs are used whenever an endpoint is
//! given (moto, MinIO, Ceph); against AWS itself the virtual-hosted style is used unless the
//! bucket name holds a dot (which would break the TLS wildcard certificate).
//!
//! Every request carries a timeout and never follows redirects (a presigned URL must not be
//! replayed to another host). Error messages carry the operation, the HTTP status and the S3
//! error code, never credentials, signed URLs or object bodies.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The region used when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default time limit for one request, from connecting to the end of the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest S3 key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// How long a signature stays valid; requests are sent right after signing.
const SIGNATURE_TTL: Duration = Duration::from_secs(300);
/// At most this much of an error response is read.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// At most this much of the service's error message is kept.
const MAX_ERROR_MESSAGE: usize = 300;
/// Safety bound on list pagination (1000 keys a page).
const MAX_LIST_PAGES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 bucket name: {0}")]
    InvalidBucket(String),
    #[error("invalid S3 object key: {0}")]
    InvalidKey(String),
    /// A bad endpoint or region.
    #[error("invalid S3 target: {0}")]
    InvalidTarget(String),
    /// The HTTP client could not be built.
    #[error("S3 client setup failed: {0}")]
    Client(String),
    #[error("S3 {operation} timed out after {}s", timeout.as_secs_f32())]
    Timeout {
        operation: &'static str,
        timeout: Duration,
    },
    /// Connection-level failure: DNS, TCP, TLS, a broken body.
    #[error("S3 {operation} request failed: {detail}")]
    Transport {
        operation: &'static str,
        detail: String,
    },
    /// The service answered with an error status.
    #[error(
        "S3 {operation} failed: HTTP {status}, code {code}: {message}{}",
        request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default()
    )]
    Service {
        operation: &'static str,
        status: u16,
        /// The S3 error code (`NoSuchBucket`, `AccessDenied`, ...), or `Unknown`.
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// A success status with a body that could not be understood.
    #[error("S3 {operation} returned a malformed response: {detail}")]
    InvalidResponse {
        operation: &'static str,
        detail: String,
    },
}

impl S3Error {
    /// The S3 error code of a service error (`NoSuchBucket`, `AccessDenied`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (timeouts, connection failures, 5xx, throttling).
    pub fn is_retryable(&self) -> bool {
        match self {
            S3Error::Timeout { .. } | S3Error::Transport { .. } => true,
            S3Error::Service { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "Throttling" | "RequestTimeout" | "RequestTimeTooSkewed"
                    )
            }
            _ => false,
        }
    }
}

/// Access keys for S3. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// For temporary (STS) credentials; sent as `X-Amz-Security-Token` when present.
    pub session_token: Option<SecretString>,
}

impl S3Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: SecretString) -> Self {
        S3Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
        }
    }

    pub fn with_session_token(mut self, token: SecretString) -> Self {
        self.session_token = Some(token);
        self
    }

    fn signer(&self) -> Credentials {
        match &self.session_token {
            Some(token) => Credentials::new_with_token(
                self.access_key_id.clone(),
                self.secret_access_key.expose_secret(),
                token.expose_secret(),
            ),
            None => Credentials::new(
                self.access_key_id.clone(),
                self.secret_access_key.expose_secret(),
            ),
        }
    }

    /// Replaces any occurrence of the secret key or session token in `text`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let secrets = std::iter::once(self.secret_access_key.expose_secret())
            .chain(self.session_token.as_ref().map(|t| t.expose_secret()));
        for secret in secrets {
            if !secret.is_empty() && out.contains(secret) {
                out = out.replace(secret, "[redacted]");
            }
        }
        out
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Where objects go: a bucket, its region, the endpoint and the credentials.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub bucket: String,
    /// Defaults to [`DEFAULT_REGION`].
    pub region: String,
    /// A base URL such as `http://127.0.0.1:9000` for S3-compatible servers (path-style
    /// addressing); `None` means AWS at `https://s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    pub credentials: S3Credentials,
}

impl S3Target {
    /// A target on AWS in [`DEFAULT_REGION`].
    pub fn new(bucket: impl Into<String>, credentials: S3Credentials) -> Self {
        S3Target {
            bucket: bucket.into(),
            region: DEFAULT_REGION.to_owned(),
            endpoint: None,
            credentials,
        }
    }

    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Checks the bucket name, region and endpoint and builds the addressing.
    fn bucket(&self) -> Result<Bucket, S3Error> {
        validate_bucket_name(&self.bucket)?;
        validate_region(&self.region)?;
        let (endpoint, style) = match &self.endpoint {
            Some(endpoint) => (parse_endpoint(endpoint)?, UrlStyle::Path),
            None => {
                let url = Url::parse(&format!("https://s3.{}.amazonaws.com/", self.region))
                    .map_err(|e| S3Error::InvalidTarget(format!("region: {e}")))?;
                // Dots in a virtual-hosted name do not match the `*.s3...` certificate.
                let style = if self.bucket.contains('.') {
                    UrlStyle::Path
                } else {
                    UrlStyle::VirtualHost
                };
                (url, style)
            }
        };
        Bucket::new(endpoint, style, self.bucket.clone(), self.region.clone())
            .map_err(|e| S3Error::InvalidTarget(format!("endpoint: {e}")))
    }
}

/// S3 bucket naming rules (general purpose buckets).
pub fn validate_bucket_name(name: &str) -> Result<(), S3Error> {
    let bad = |why: &str| Err(S3Error::InvalidBucket(format!("{name:?}: {why}")));
    if !(3..=63).contains(&name.len()) {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("may hold only lowercase letters, digits, '.' and '-'");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return bad("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not hold two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return bad("must not begin with 'xn--' or 'sthree-'");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return bad("must not end with '-s3alias' or '--ol-s3'");
    }
    Ok(())
}

/// S3 key rules, plus what keeps the request URL unambiguous.
pub fn validate_key(key: &str) -> Result<(), S3Error> {
    let shown: String = key.chars().take(80).collect();
    let bad = |why: &str| Err(S3Error::InvalidKey(format!("{shown:?}: {why}")));
    if key.is_empty() {
        return bad("must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad(&format!(
            "must be at most 1024 bytes of UTF-8, has {}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return bad("must not hold control characters");
    }
    if key.starts_with('/') {
        return bad("must not begin with '/'");
    }
    // URL path normalisation would resolve these and address another object.
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return bad("must not hold '.' or '..' path segments");
    }
    Ok(())
}

fn validate_prefix(prefix: &str) -> Result<(), S3Error> {
    if prefix.len() > MAX_KEY_BYTES || prefix.chars().any(char::is_control) {
        return Err(S3Error::InvalidKey(
            "list prefix: at most 1024 bytes, no control characters".into(),
        ));
    }
    Ok(())
}

fn validate_region(region: &str) -> Result<(), S3Error> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(S3Error::InvalidTarget(format!(
            "region {region:?}: lowercase letters, digits and '-' only"
        )))
    }
}

fn parse_endpoint(endpoint: &str) -> Result<Url, S3Error> {
    let bad = |why: &str| Err(S3Error::InvalidTarget(format!("endpoint: {why}")));
    let Ok(mut url) = Url::parse(endpoint) else {
        return bad("not a valid URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("scheme must be http or https");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("missing host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not hold user info; credentials go in the target's credentials");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("must not hold a query or fragment");
    }
    // Joining "<bucket>/" onto "http://host/base" would drop "base".
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An S3 client: one connection pool, shared by clones.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    timeout: Duration,
}

impl S3Client {
    /// A client with [`DEFAULT_TIMEOUT`] per request.
    pub fn new() -> Result<Self, S3Error> {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// A client whose every request, connection to last body byte, must end within `timeout`.
    pub fn with_timeout(timeout: Duration) -> Result<Self, S3Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| S3Error::Client(e.without_url().to_string()))?;
        Ok(S3Client { http, timeout })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Uploads one object (single PUT; S3 allows up to 5 GiB).
    #[tracing::instrument(skip(self, target, body), fields(bucket = %target.bucket, bytes = body.len()))]
    pub async fn put_object(
        &self,
        target: &S3Target,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        const OP: &str = "PutObject";
        validate_key(key)?;
        let bucket = target.bucket()?;
        let credentials = target.credentials.signer();
        let url = bucket
            .put_object(Some(&credentials), key)
            .sign(SIGNATURE_TTL);
        let request = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            // hyper leaves the length out of an empty body, and S3 answers 411 without it.
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body);
        self.send(target, OP, request).await?;
        Ok(())
    }

    /// Downloads one object whole.
    #[tracing::instrument(skip(self, target), fields(bucket = %target.bucket))]
    pub async fn get_object(&self, target: &S3Target, key: &str) -> Result<Vec<u8>, S3Error> {
        const OP: &str = "GetObject";
        validate_key(key)?;
        let bucket = target.bucket()?;
        let credentials = target.credentials.signer();
        let url = bucket
            .get_object(Some(&credentials), key)
            .sign(SIGNATURE_TTL);
        let response = self.send(target, OP, self.http.get(url)).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(target, OP, e))?;
        Ok(body.to_vec())
    }

    /// All keys that begin with `prefix` (every page), in S3's (lexicographic) order.
    #[tracing::instrument(skip(self, target), fields(bucket = %target.bucket))]
    pub async fn list_objects(
        &self,
        target: &S3Target,
        prefix: &str,
    ) -> Result<Vec<String>, S3Error> {
        const OP: &str = "ListObjectsV2";
        validate_prefix(prefix)?;
        let bucket = target.bucket()?;
        let credentials = target.credentials.signer();
        let mut keys = Vec::new();
        let mut continuation: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut action = bucket.list_objects_v2(Some(&credentials));
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(token) = &continuation {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(SIGNATURE_TTL);
            let response = self.send(target, OP, self.http.get(url)).await?;
            let text = response
                .text()
                .await
                .map_err(|e| self.transport(target, OP, e))?;
            let page =
                ListObjectsV2::parse_response(&text).map_err(|e| S3Error::InvalidResponse {
                    operation: OP,
                    detail: format!("list XML: {e}"),
                })?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(token) if !token.is_empty() => continuation = Some(token),
                _ => return Ok(keys),
            }
        }
        Err(S3Error::InvalidResponse {
            operation: OP,
            detail: format!("more than {MAX_LIST_PAGES} pages"),
        })
    }

    /// Creates the bucket, in the target's region.
    #[tracing::instrument(skip(self, target), fields(bucket = %target.bucket))]
    pub async fn create_bucket(&self, target: &S3Target) -> Result<(), S3Error> {
        const OP: &str = "CreateBucket";
        let bucket = target.bucket()?;
        let credentials = target.credentials.signer();
        let url = bucket.create_bucket(&credentials).sign(SIGNATURE_TTL);
        // us-east-1 takes no location constraint; every other region requires one.
        let body = if target.region == DEFAULT_REGION {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                target.region
            )
        };
        let request = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body);
        self.send(target, OP, request).await?;
        Ok(())
    }

    /// Sends a request; a non-2xx answer becomes [`S3Error::Service`].
    async fn send(
        &self,
        target: &S3Target,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, S3Error> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport(target, operation, e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.service_error(target, operation, response).await)
    }

    async fn service_error(
        &self,
        target: &S3Target,
        operation: &'static str,
        mut response: reqwest::Response,
    ) -> S3Error {
        let status = response.status();
        let header_request_id = response
            .headers()
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        // A failure while reading the error body leaves what was read.
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        let text = String::from_utf8_lossy(&body);
        let code = xml_text(&text, "Code")
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
            .map_or_else(|| fallback_code(status).to_owned(), str::to_owned);
        let message = xml_text(&text, "Message")
            .map(|m| {
                unescape_xml(m)
                    .chars()
                    .take(MAX_ERROR_MESSAGE)
                    .collect::<String>()
            })
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
        let request_id = xml_text(&text, "RequestId")
            .map(str::to_owned)
            .or(header_request_id)
            .map(|id| id.chars().take(128).collect::<String>());
        let credentials = &target.credentials;
        S3Error::Service {
            operation,
            status: status.as_u16(),
            code,
            message: credentials.scrub(&message),
            request_id: request_id.map(|id| credentials.scrub(&id)),
        }
    }

    fn transport(&self, target: &S3Target, operation: &'static str, e: reqwest::Error) -> S3Error {
        if e.is_timeout() {
            return S3Error::Timeout {
                operation,
                timeout: self.timeout,
            };
        }
        // The URL is presigned (access key id, signature, session token): drop it.
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        S3Error::Transport {
            operation,
            detail: target.credentials.scrub(&detail),
        }
    }
}

/// S3 leaves the body empty for HEAD and some proxies answer without XML.
fn fallback_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        301 | 307 => "PermanentRedirect",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NotFound",
        409 => "Conflict",
        411 => "MissingContentLength",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    }
}

/// The text of the first `<tag>...</tag>`; enough for S3's flat `<Error>` document.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml.get(start..)?.find(&close)?;
    xml.get(start..start + len).map(str::trim)
}

fn unescape_xml(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn creds() -> S3Credentials {
        S3Credentials::new("AKIDEXAMPLE", SecretString::from("s3cr3t-KEY-value"))
            .with_session_token(SecretString::from("session-TOKEN-value"))
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "a.b.c", "audit-2026", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "under_score",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "x-s3alias",
            "spa ce",
            "",
        ] {
            let err = validate_bucket_name(bad).unwrap_err();
            assert!(matches!(err, S3Error::InvalidBucket(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn keys() {
        for ok in [
            "a",
            "scaivault/2026-04/part-00000.jsonl",
            "with space/and+plus=eq&amp?q#h",
            "ünïcødé/ключ",
            "a.b/.hidden/..x",
            &"k".repeat(1024),
        ] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            &"k".repeat(1025),
            "/abs",
            "a/../b",
            "./a",
            "a/..",
            "line\nbreak",
            "nul\0",
        ] {
            let err = validate_key(bad).unwrap_err();
            assert!(matches!(err, S3Error::InvalidKey(_)), "{bad:?}: {err}");
        }
        // A multi-byte key is measured in bytes.
        assert!(validate_key(&"é".repeat(513)).is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:9000").unwrap().as_str(),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(
            parse_endpoint("https://minio.local/s3").unwrap().as_str(),
            "https://minio.local/s3/"
        );
        for bad in ["ftp://x", "not a url", "http://u:p@host", "http://h/?q=1"] {
            assert!(matches!(
                parse_endpoint(bad),
                Err(S3Error::InvalidTarget(_))
            ));
        }
    }

    #[test]
    fn addressing() {
        let path = S3Target::new("audit", creds()).with_endpoint("http://127.0.0.1:9000/s3");
        assert_eq!(
            path.bucket().unwrap().base_url().as_str(),
            "http://127.0.0.1:9000/s3/audit/"
        );
        let aws = S3Target::new("audit", creds()).with_region("eu-west-1");
        assert_eq!(
            aws.bucket().unwrap().base_url().as_str(),
            "https://audit.s3.eu-west-1.amazonaws.com/"
        );
        let dotted = S3Target::new("audit.example", creds());
        assert_eq!(
            dotted.bucket().unwrap().base_url().as_str(),
            "https://s3.us-east-1.amazonaws.com/audit.example/"
        );
        let bad_region = S3Target::new("audit", creds()).with_region("evil.com/x");
        assert!(matches!(
            bad_region.bucket(),
            Err(S3Error::InvalidTarget(_))
        ));
    }

    #[test]
    fn signed_url_carries_the_session_token() {
        let target = S3Target::new("audit", creds()).with_endpoint("http://127.0.0.1:9000");
        let bucket = target.bucket().unwrap();
        let signer = target.credentials.signer();
        let url = bucket.get_object(Some(&signer), "k").sign(SIGNATURE_TTL);
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(query.contains(&("X-Amz-Security-Token".into(), "session-TOKEN-value".into())));
        assert!(!url.as_str().contains("s3cr3t-KEY-value"));
    }

    #[test]
    fn debug_redacts() {
        let shown = format!("{:?}", S3Target::new("audit", creds()));
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("s3cr3t-KEY-value"));
        assert!(!shown.contains("session-TOKEN-value"));
    }

    #[test]
    fn scrub_and_error_xml() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                   <Message>bad &amp; s3cr3t-KEY-value</Message><RequestId>r1</RequestId></Error>";
        assert_eq!(xml_text(xml, "Code"), Some("SignatureDoesNotMatch"));
        let message = unescape_xml(xml_text(xml, "Message").unwrap());
        assert_eq!(creds().scrub(&message), "bad & [redacted]");
        assert_eq!(xml_text(xml, "Missing"), None);
    }

    #[test]
    fn retryable() {
        let service = |status, code: &str| S3Error::Service {
            operation: "PutObject",
            status,
            code: code.into(),
            message: String::new(),
            request_id: None,
        };
        assert!(service(503, "SlowDown").is_retryable());
        assert!(service(400, "RequestTimeout").is_retryable());
        assert!(!service(404, "NoSuchBucket").is_retryable());
        assert!(!S3Error::InvalidKey("x".into()).is_retryable());
        assert_eq!(service(404, "NoSuchBucket").code(), Some("NoSuchBucket"));
    }
}
