//! S3 for the audit export, on the `object_store` crate (its AWS backend): SigV4 signing,
//! retries with backoff, multipart upload for large objects, and the standard credential
//! chain (environment, web identity / IRSA, ECS/EKS pod identity, instance metadata) when no
//! static keys are given. Path-style URLs are used whenever an endpoint is given (moto,
//! MinIO, Ceph); against AWS the virtual-hosted style is used unless the bucket name holds
//! a dot (which would break the TLS wildcard certificate).
//!
//! What stays here is the vault's own part: checking names before any request (so a bad
//! request is a 4xx, not a failed job), credentials typed as secrets, and errors that say
//! which operation failed with the S3 code, never credentials or object bodies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The region used when none is configured (nor `AWS_REGION` for the ambient chain).
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default time limit for one request, from connecting to the end of the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest S3 key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Objects larger than this go up as a multipart upload of parts this size (S3's minimum
/// part is 5 MiB); smaller ones in one PUT.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Attempts after the first for a failed request (5xx, throttling, timeouts, resets).
const MAX_RETRIES: usize = 4;
/// Parts of one multipart upload in flight at once.
const PART_CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 bucket name: {0}")]
    InvalidBucket(String),
    #[error("invalid S3 object key: {0}")]
    InvalidKey(String),
    /// A bad endpoint or region, or a client that could not be configured.
    #[error("invalid S3 target: {0}")]
    InvalidTarget(String),
    /// The request failed after its retries: the service's answer (shown as its S3 code
    /// and message) or a transport failure.
    #[error("S3 {operation} failed: {}", summary(source))]
    Store {
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },
}

impl S3Error {
    fn store(operation: &'static str) -> impl FnOnce(object_store::Error) -> S3Error {
        move |source| S3Error::Store { operation, source }
    }

    /// The S3 error code of a service error (`NoSuchBucket`, `AccessDenied`, ...).
    pub fn code(&self) -> Option<String> {
        match self {
            S3Error::Store { source, .. } => xml_text(&source.to_string(), "Code"),
            _ => None,
        }
    }

    /// Whether the bucket or the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            S3Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// The text of `<tag>` in an S3 error document inside `text`.
fn xml_text(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&format!("</{tag}>"))?;
    text.get(start..start + len).map(|t| t.trim().to_owned())
}

/// A service error as its S3 code and message (not the whole XML document); anything
/// else (a transport failure after the retries) as object_store tells it.
fn summary(source: &object_store::Error) -> String {
    let text = source.to_string();
    match (xml_text(&text, "Code"), xml_text(&text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text,
    }
}

/// Static access keys for S3. `Debug` shows the access key id only.
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
    /// Unset: `AWS_REGION`/`AWS_DEFAULT_REGION` for the ambient chain, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// A base URL such as `http://127.0.0.1:9000` for S3-compatible servers (path-style
    /// addressing); `None` means AWS at `https://s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// `None`: the standard AWS chain of the server's environment (env, web identity,
    /// container or pod identity, instance metadata).
    pub credentials: Option<S3Credentials>,
}

impl S3Target {
    /// A target on AWS with static keys.
    pub fn new(bucket: impl Into<String>, credentials: S3Credentials) -> Self {
        S3Target {
            credentials: Some(credentials),
            ..Self::ambient(bucket)
        }
    }

    /// A target on AWS whose credentials come from the server's environment.
    pub fn ambient(bucket: impl Into<String>) -> Self {
        S3Target {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            credentials: None,
        }
    }

    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Checks the names and builds the store (no request is made).
    fn store(&self, client: &S3Client) -> Result<AmazonS3, S3Error> {
        validate_bucket_name(&self.bucket)?;
        let mut builder = match &self.credentials {
            // Static keys: nothing of the environment mixes in.
            Some(c) => {
                let b = AmazonS3Builder::new()
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(c.secret_access_key.expose_secret());
                match &c.session_token {
                    Some(token) => b.with_token(token.expose_secret()),
                    None => b,
                }
            }
            None => AmazonS3Builder::from_env(),
        };
        let region = match &self.region {
            Some(region) => Some(region.clone()),
            None if self.credentials.is_some() => Some(DEFAULT_REGION.to_owned()),
            None => None,
        };
        if let Some(region) = region {
            validate_region(&region)?;
            builder = builder.with_region(region);
        }
        let mut options = client.options.clone();
        match &self.endpoint {
            Some(endpoint) => {
                let url = parse_endpoint(endpoint)?;
                options = options.with_allow_http(url.scheme() == "http");
                builder = builder
                    .with_endpoint(url.as_str().trim_end_matches('/'))
                    .with_virtual_hosted_style_request(false);
            }
            // Dots in a virtual-hosted name do not match the `*.s3...` certificate.
            None => {
                builder = builder.with_virtual_hosted_style_request(!self.bucket.contains('.'));
            }
        }
        builder
            .with_bucket_name(&self.bucket)
            .with_client_options(options)
            .with_retry(client.retry.clone())
            .build()
            .map_err(|e| S3Error::InvalidTarget(e.to_string()))
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

/// S3 key rules, plus what `object_store` paths need: `/`-separated non-empty segments,
/// none of them `.` or `..` (a URL would resolve those and address another object).
pub fn validate_key(key: &str) -> Result<(), S3Error> {
    key_path(key).map(|_| ())
}

fn key_path(key: &str) -> Result<Path, S3Error> {
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
    if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return bad("must not begin or end with '/' or hold an empty segment");
    }
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return bad("must not hold '.' or '..' path segments");
    }
    Path::parse(key).or_else(|e| bad(&e.to_string()))
}

/// A key prefix that ends at a segment boundary (`scaivault/2026-04/`), or `""`.
fn prefix_path(prefix: &str) -> Result<Option<Path>, S3Error> {
    match prefix.trim_end_matches('/') {
        "" => Ok(None),
        p => key_path(p).map(Some),
    }
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
    let Ok(url) = Url::parse(endpoint) else {
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
    Ok(url)
}

/// Timeouts and retries of every request; cheap to clone.
#[derive(Debug, Clone)]
pub struct S3Client {
    options: ClientOptions,
    retry: RetryConfig,
    timeout: Duration,
}

impl S3Client {
    /// A client with [`DEFAULT_TIMEOUT`] per request.
    pub fn new() -> Result<Self, S3Error> {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// A client whose every request, connection to last body byte, must end within
    /// `timeout`; retries of one request end within four times that.
    pub fn with_timeout(timeout: Duration) -> Result<Self, S3Error> {
        let options = ClientOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout.min(Duration::from_secs(10)));
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: MAX_RETRIES,
            retry_timeout: timeout * 4,
        };
        Ok(S3Client {
            options,
            retry,
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Uploads one object: one PUT up to [`PART_BYTES`], a multipart upload above.
    #[tracing::instrument(skip(self, target, body), fields(bucket = %target.bucket, bytes = body.len()))]
    pub async fn put_object(
        &self,
        target: &S3Target,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        let path = key_path(key)?;
        let store = target.store(self)?;
        let attributes = Attributes::from_iter([(Attribute::ContentType, content_type.to_owned())]);
        if body.len() <= PART_BYTES {
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            store
                .put_opts(&path, PutPayload::from(body), opts)
                .await
                .map_err(S3Error::store("PutObject"))?;
            return Ok(());
        }
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(S3Error::store("CreateMultipartUpload"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        for chunk in body.chunks(PART_BYTES) {
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                // Best effort: S3 keeps an abandoned upload's parts until it is aborted.
                let _ = writer.abort().await;
                return Err(S3Error::store("UploadPart")(e));
            }
            writer.write(chunk);
        }
        writer
            .finish()
            .await
            .map_err(S3Error::store("CompleteMultipartUpload"))?;
        Ok(())
    }

    /// Downloads one object whole.
    #[tracing::instrument(skip(self, target), fields(bucket = %target.bucket))]
    pub async fn get_object(&self, target: &S3Target, key: &str) -> Result<Vec<u8>, S3Error> {
        let path = key_path(key)?;
        let store = target.store(self)?;
        let result = store
            .get(&path)
            .await
            .map_err(S3Error::store("GetObject"))?;
        let bytes = result.bytes().await.map_err(S3Error::store("GetObject"))?;
        Ok(bytes.to_vec())
    }

    /// The ETag S3 gives an object; a multipart object's ends with `-<parts>`.
    pub async fn object_etag(&self, target: &S3Target, key: &str) -> Result<String, S3Error> {
        let path = key_path(key)?;
        let meta = target
            .store(self)?
            .head(&path)
            .await
            .map_err(S3Error::store("HeadObject"))?;
        Ok(meta.e_tag.unwrap_or_default())
    }

    /// All keys under `prefix` (every page), in S3's (lexicographic) order. The prefix ends
    /// at a segment boundary: `a/b/` and `a/b` both list `a/b/...`, never `a/bc`.
    #[tracing::instrument(skip(self, target), fields(bucket = %target.bucket))]
    pub async fn list_objects(
        &self,
        target: &S3Target,
        prefix: &str,
    ) -> Result<Vec<String>, S3Error> {
        let prefix = prefix_path(prefix)?;
        let store: Arc<dyn ObjectStore> = Arc::new(target.store(self)?);
        let objects: Vec<_> = store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(S3Error::store("ListObjectsV2"))?;
        let mut keys: Vec<String> = objects.into_iter().map(|o| o.location.into()).collect();
        keys.sort();
        Ok(keys)
    }
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
            assert_eq!(key_path(ok).unwrap().as_ref(), ok, "stored as given");
        }
        for bad in [
            "",
            &"k".repeat(1025),
            "/abs",
            "a/../b",
            "./a",
            "a/..",
            "a//b",
            "dir/",
            "line\nbreak",
            "nul\0",
        ] {
            let err = validate_key(bad).unwrap_err();
            assert!(matches!(err, S3Error::InvalidKey(_)), "{bad:?}: {err}");
        }
        // A multi-byte key is measured in bytes.
        assert!(validate_key(&"é".repeat(513)).is_err());
        assert_eq!(prefix_path("").unwrap(), None);
        assert_eq!(prefix_path("a/b/").unwrap(), Some(Path::from("a/b")));
    }

    #[test]
    fn endpoints() {
        assert!(parse_endpoint("http://127.0.0.1:9000").is_ok());
        assert!(parse_endpoint("https://minio.local/s3").is_ok());
        for bad in ["ftp://x", "not a url", "http://u:p@host", "http://h/?q=1"] {
            assert!(matches!(
                parse_endpoint(bad),
                Err(S3Error::InvalidTarget(_))
            ));
        }
    }

    #[test]
    fn targets_are_checked_before_any_request() {
        let client = S3Client::new().unwrap();
        let ok = S3Target::new("audit", creds()).with_endpoint("http://127.0.0.1:9000/s3");
        assert!(ok.store(&client).is_ok());
        let bad_region = S3Target::new("audit", creds()).with_region("evil.com/x");
        assert!(matches!(
            bad_region.store(&client),
            Err(S3Error::InvalidTarget(_))
        ));
        let bad_bucket = S3Target::new("Bad_Bucket", creds());
        assert!(matches!(
            bad_bucket.store(&client),
            Err(S3Error::InvalidBucket(_))
        ));
    }

    #[test]
    fn service_errors_show_their_code_and_message() {
        let xml = "Error performing PUT http://h/b/k - 404: <?xml version=\"1.0\"?><Error>\
                   <Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_text(xml, "Missing"), None);
        let err = S3Error::Store {
            operation: "PutObject",
            source: object_store::Error::Generic {
                store: "S3",
                source: xml.into(),
            },
        };
        assert_eq!(
            err.to_string(),
            "S3 PutObject failed: NoSuchBucket: The bucket does not exist"
        );
        assert_eq!(err.code().as_deref(), Some("NoSuchBucket"));
    }

    #[test]
    fn debug_redacts() {
        let shown = format!("{:?}", S3Target::new("audit", creds()));
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("s3cr3t-KEY-value"));
        assert!(!shown.contains("session-TOKEN-value"));
    }
}
