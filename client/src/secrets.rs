//! `/v1/secrets` and `/v1/batch/read`.

use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::limits::MAX_BATCH_PATHS;
use scaivault_api::path::validate_prefix;
use scaivault_api::secrets::{
    BatchReadRequest, BatchReadResponse, ListSecretsResponse, SecretListItem, SecretMetadataInput,
    SecretMetadataResponse, SecretResponse, VersionsResponse, WriteSecretRequest,
    WriteSecretResponse,
};

use crate::client::{Client, check_path};
use crate::error::{Error, Result};
use crate::paging::PageOptions;
use crate::retry::Retry;

/// Query of one page of [`Client::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Leading characters of the path, like `environments/staging/`.
    pub prefix: Option<String>,
    /// Page size, 1..=1000 (server default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Adds description, created_at, expires_at, version_count and deleted_at to each item.
    pub include_metadata: bool,
    /// Also list soft-deleted secrets.
    pub include_deleted: bool,
}

impl ListOptions {
    fn query(&self) -> Result<Vec<(&'static str, String)>> {
        let mut query = Vec::new();
        if let Some(prefix) = &self.prefix {
            validate_prefix(prefix)
                .map_err(|e| Error::invalid(ErrorCode::InvalidPath, format!("prefix: {e}")))?;
            query.push(("prefix", prefix.clone()));
        }
        let page = PageOptions {
            limit: self.limit,
            cursor: self.cursor.clone(),
        };
        query.extend(page.query()?);
        if self.include_metadata {
            query.push(("include_metadata", "true".to_owned()));
        }
        if self.include_deleted {
            query.push(("include_deleted", "true".to_owned()));
        }
        Ok(query)
    }
}

impl Client {
    /// Writes a new version (`PUT /v1/secrets/{path}`). Retried (with one
    /// `Idempotency-Key`, so it is applied once) as [`crate::RetryPolicy`] describes.
    pub async fn write(
        &self,
        path: &str,
        request: &WriteSecretRequest,
    ) -> Result<WriteSecretResponse> {
        let url = self.secret_url(path, None)?;
        let call = self
            .call(Method::PUT, url, Retry::Keyed, "write")
            .body(request)?;
        self.json(call).await
    }

    /// Reads the current version.
    pub async fn read(&self, path: &str) -> Result<SecretResponse> {
        let url = self.secret_url(path, None)?;
        self.json(self.call(Method::GET, url, Retry::Safe, "read"))
            .await
    }

    /// Reads one version.
    pub async fn read_version(&self, path: &str, version: u64) -> Result<SecretResponse> {
        let url = self.secret_url(path, None)?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "read")
            .query(&[("version", version.to_string())]);
        self.json(call).await
    }

    /// Everything about a secret except its value.
    pub async fn metadata(&self, path: &str) -> Result<SecretMetadataResponse> {
        let url = self.secret_url(path, Some("metadata"))?;
        self.json(self.call(Method::GET, url, Retry::Safe, "metadata"))
            .await
    }

    /// Replaces the fields given (`tags`, `description`, `rotation`: `Some(None)` removes
    /// the schedule); returns the metadata document.
    pub async fn update_metadata(
        &self,
        path: &str,
        update: &SecretMetadataInput,
    ) -> Result<SecretMetadataResponse> {
        let url = self.secret_url(path, Some("metadata"))?;
        let call = self
            .call(Method::PATCH, url, Retry::Keyed, "update_metadata")
            .body(update)?;
        self.json(call).await
    }

    /// One page of secrets, sorted by path; follow `next_cursor` for the next one.
    pub async fn list(&self, options: &ListOptions) -> Result<ListSecretsResponse> {
        let query = options.query()?;
        let call = self
            .call(Method::GET, self.url(["secrets"])?, Retry::Safe, "list")
            .query(&query);
        self.json(call).await
    }

    /// Every secret matching `options`, following cursors from `options.cursor` on.
    pub async fn list_all(&self, options: &ListOptions) -> Result<Vec<SecretListItem>> {
        let mut options = options.clone();
        let mut items = Vec::new();
        loop {
            let page = self.list(&options).await?;
            items.extend(page.secrets);
            match page.next_cursor {
                // A server handing back the same cursor would make us loop forever.
                Some(next) if options.cursor.as_deref() == Some(next.as_str()) => {
                    return Err(Error::Decode {
                        what: "list",
                        detail: "the server returned the same cursor twice".to_owned(),
                    });
                }
                Some(next) => options.cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Reads up to 100 secrets at once; per-path failures are in `errors`.
    pub async fn batch_read(&self, paths: &[String]) -> Result<BatchReadResponse> {
        if paths.is_empty() || paths.len() > MAX_BATCH_PATHS {
            return Err(Error::invalid(
                ErrorCode::InvalidRequest,
                format!("a batch read takes 1 to {MAX_BATCH_PATHS} paths"),
            ));
        }
        for path in paths {
            check_path(path)?;
        }
        let request = BatchReadRequest {
            paths: paths.to_vec(),
        };
        let call = self
            .call(
                Method::POST,
                self.url(["batch", "read"])?,
                Retry::Safe,
                "batch_read",
            )
            .body(&request)?;
        self.json(call).await
    }

    /// Soft delete: versions are kept and [`Client::restore`] undoes it.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let url = self.secret_url(path, None)?;
        self.no_content(self.call(Method::DELETE, url, Retry::Keyed, "delete"))
            .await
    }

    /// Permanent delete: every version is erased.
    pub async fn destroy(&self, path: &str) -> Result<()> {
        let url = self.secret_url(path, None)?;
        let call = self
            .call(Method::DELETE, url, Retry::Keyed, "destroy")
            .query(&[("destroy", "true".to_owned())]);
        self.no_content(call).await
    }

    /// Undoes a soft delete; `409 not_deleted` when the secret is not deleted.
    pub async fn restore(&self, path: &str) -> Result<SecretMetadataResponse> {
        let url = self.secret_url(path, Some("restore"))?;
        self.json(self.call(Method::POST, url, Retry::Keyed, "restore"))
            .await
    }

    /// The retained versions, without values.
    pub async fn versions(&self, path: &str) -> Result<VersionsResponse> {
        let url = self.secret_url(path, Some("versions"))?;
        self.json(self.call(Method::GET, url, Retry::Safe, "versions"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_become_a_query() {
        let options = ListOptions {
            prefix: Some("environments/staging/".into()),
            limit: Some(50),
            cursor: Some("YXBw".into()),
            include_metadata: true,
            include_deleted: false,
        };
        let query = options.query().ok();
        assert_eq!(
            query,
            Some(vec![
                ("prefix", "environments/staging/".to_owned()),
                ("limit", "50".to_owned()),
                ("cursor", "YXBw".to_owned()),
                ("include_metadata", "true".to_owned()),
            ])
        );
        assert_eq!(ListOptions::default().query().ok(), Some(vec![]));
    }

    #[test]
    fn list_options_are_checked() {
        for bad in [
            ListOptions {
                limit: Some(0),
                ..ListOptions::default()
            },
            ListOptions {
                limit: Some(1001),
                ..ListOptions::default()
            },
            ListOptions {
                prefix: Some("a//".into()),
                ..ListOptions::default()
            },
        ] {
            assert!(bad.query().is_err(), "{bad:?}");
        }
    }
}
