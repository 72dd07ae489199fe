//! `/v1/audit`: queries, verification, HMAC lookup and export.

use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::audit::{
    AuditLogsResponse, AuditRecord, ExportJob, ExportRequest, IdentityAuditResponse, VerifyResponse,
};
use scaivault_api::path::validate_secret_path;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::policies::{check_id, identity_segments};
use crate::retry::Retry;

/// Largest audit page the server hands out.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Export job states ([`ExportJob::status`]).
pub const EXPORT_RUNNING: &str = "running";
pub const EXPORT_COMPLETED: &str = "completed";
pub const EXPORT_FAILED: &str = "failed";

/// A time range of an audit query. Each end is an RFC 3339 time or a `YYYY-MM-DD` date
/// (a `to` date means the end of that day, UTC); the server checks the syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl AuditRange {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(from) = &self.from {
            query.push(("from", from.clone()));
        }
        if let Some(to) = &self.to {
            query.push(("to", to.clone()));
        }
        query
    }
}

/// Filters and paging of [`Client::audit_logs`]. Records come in ascending sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditLogOptions {
    pub range: AuditRange,
    /// An identity id, like `sa:ci` or `root`.
    pub identity: Option<String>,
    /// A secret path or a resource like `sys/policies`.
    pub path: Option<String>,
    /// An action, like `secrets.read` or `policies.create`.
    pub action: Option<String>,
    /// `success`, `denied`, `unauthenticated` or `failure`.
    pub outcome: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (server default 100).
    pub limit: Option<u32>,
}

impl AuditLogOptions {
    fn query(&self) -> Result<Vec<(&'static str, String)>> {
        let mut query = self.range.query();
        for (name, value) in [
            ("identity", &self.identity),
            ("path", &self.path),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("cursor", &self.cursor),
        ] {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        if let Some(limit) = self.limit {
            if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("limit must be between 1 and {MAX_AUDIT_PAGE}"),
                ));
            }
            query.push(("limit", limit.to_string()));
        }
        Ok(query)
    }
}

#[derive(Serialize)]
struct HmacRequest<'a> {
    input: &'a str,
}

/// `POST /v1/audit/hmac` answers with this (the server has no shared wire type for it).
#[derive(Deserialize)]
struct HmacResponse {
    hmac: String,
}

/// Page-by-page iteration over the audit log; see [`Client::audit_log_pages`].
#[derive(Debug)]
pub struct AuditPages<'c> {
    client: &'c Client,
    options: AuditLogOptions,
    done: bool,
}

impl AuditPages<'_> {
    /// The next page, or `None` after the last one. A page may be empty.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditRecord>>> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.audit_logs(&self.options).await?;
        match page.next_cursor {
            // A server handing back the same cursor would make us loop forever.
            Some(next) if self.options.cursor.as_deref() == Some(next.as_str()) => {
                self.done = true;
                return Err(Error::Decode {
                    what: "audit_logs",
                    detail: "the server returned the same cursor twice".to_owned(),
                });
            }
            Some(next) => self.options.cursor = Some(next),
            None => self.done = true,
        }
        Ok(Some(page.logs))
    }
}

impl Client {
    /// One page of audit records matching `options`; follow `next_cursor` for more.
    pub async fn audit_logs(&self, options: &AuditLogOptions) -> Result<AuditLogsResponse> {
        let query = options.query()?;
        let url = self.url(["audit", "logs"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "audit_logs")
            .query(&query);
        self.json(call).await
    }

    /// Iterates the pages matching `options`, from `options.cursor` on, without holding
    /// them all in memory.
    pub fn audit_log_pages(&self, options: &AuditLogOptions) -> AuditPages<'_> {
        AuditPages {
            client: self,
            options: options.clone(),
            done: false,
        }
    }

    /// Every record matching `options`, following cursors.
    pub async fn audit_logs_all(&self, options: &AuditLogOptions) -> Result<Vec<AuditRecord>> {
        let mut pages = self.audit_log_pages(options);
        let mut records = Vec::new();
        while let Some(page) = pages.next_page().await? {
            records.extend(page);
        }
        Ok(records)
    }

    /// Who touched a secret (the server returns at most 1000 records from `range.from`).
    /// Reserved paths like `sys/policies`, which appear in records of policy requests,
    /// are accepted too.
    pub async fn audit_secret(&self, path: &str, range: &AuditRange) -> Result<AuditLogsResponse> {
        if let Err(e) = validate_secret_path(path)
            && !e.is_reserved()
        {
            return Err(Error::invalid(ErrorCode::InvalidPath, e.to_string()));
        }
        let url = self.url(["audit", "secrets"].into_iter().chain(path.split('/')))?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "audit_secret")
            .query(&range.query());
        self.json(call).await
    }

    /// Everything an identity did in `range`, with a summary.
    pub async fn audit_identity(
        &self,
        identity_id: &str,
        range: &AuditRange,
    ) -> Result<IdentityAuditResponse> {
        let segments = identity_segments(identity_id)?;
        let url = self.url(["audit", "identities"].into_iter().chain(segments))?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "audit_identity")
            .query(&range.query());
        self.json(call).await
    }

    /// Re-computes the hash chain over `range`; `verified: false` names the first broken
    /// record.
    pub async fn audit_verify(&self, range: &AuditRange) -> Result<VerifyResponse> {
        let url = self.url(["audit", "verify"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "audit_verify")
            .query(&range.query());
        self.json(call).await
    }

    /// The HMAC of a value (like a token accessor) as it appears in audit records.
    /// Computes, changes nothing: retried like a read.
    pub async fn audit_hmac(&self, input: &str) -> Result<String> {
        let url = self.url(["audit", "hmac"])?;
        let call = self
            .call(Method::POST, url, Retry::Safe, "audit_hmac")
            .body(&HmacRequest { input })?;
        let answer: HmacResponse = self.json(call).await?;
        Ok(answer.hmac)
    }

    /// Starts an export job (`202`); poll [`Client::audit_export_status`] until its
    /// status is no longer `running`. Retried with its `Idempotency-Key`: a repeat after a
    /// lost answer gets the first job back instead of starting a second.
    pub async fn audit_export(&self, request: &ExportRequest) -> Result<ExportJob> {
        let url = self.url(["audit", "export"])?;
        let call = self
            .call(Method::POST, url, Retry::Keyed, "audit_export")
            .body(request)?;
        self.json(call).await
    }

    /// An export job's progress and the objects it wrote.
    pub async fn audit_export_status(&self, id: &str) -> Result<ExportJob> {
        let url = self.url(["audit", "exports", check_id("export id", id)?])?;
        self.json(self.call(Method::GET, url, Retry::Safe, "audit_export_status"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_become_a_query() {
        let options = AuditLogOptions {
            range: AuditRange {
                from: Some("2026-11-01".into()),
                to: None,
            },
            identity: Some("sa:ci".into()),
            outcome: Some("denied".into()),
            limit: Some(10),
            cursor: Some("42".into()),
            ..AuditLogOptions::default()
        };
        assert_eq!(
            options.query().ok(),
            Some(vec![
                ("from", "2026-11-01".to_owned()),
                ("identity", "sa:ci".to_owned()),
                ("outcome", "denied".to_owned()),
                ("cursor", "42".to_owned()),
                ("limit", "10".to_owned()),
            ])
        );
        assert_eq!(AuditLogOptions::default().query().ok(), Some(vec![]));
        for limit in [0, 1001] {
            let bad = AuditLogOptions {
                limit: Some(limit),
                ..AuditLogOptions::default()
            };
            assert!(bad.query().is_err(), "{limit}");
        }
    }

    #[tokio::test]
    async fn bad_paths_and_ids_are_refused_before_sending() {
        // Nothing listens on port 1: reaching the network would be a transport error.
        let Ok(c) = Client::builder("http://127.0.0.1:1").build() else {
            unreachable!("valid address")
        };
        let range = AuditRange::default();
        for bad in ["../x", "a//b", "a/b?c"] {
            let err = c.audit_secret(bad, &range).await.err();
            assert_eq!(
                err.and_then(|e| e.code()),
                Some(ErrorCode::InvalidPath),
                "{bad}"
            );
        }
        let err = c.audit_identity("k8s:ns/..", &range).await.err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
        let err = c.audit_export_status("exp_1/../x").await.err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
        // Reserved paths are fine for audit queries: they reach the (absent) server.
        let err = c.audit_secret("sys/policies", &range).await.err();
        assert!(matches!(err, Some(Error::Transport(_))), "{err:?}");
    }
}
