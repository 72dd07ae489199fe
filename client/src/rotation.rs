//! Rotation: forced rotation (`POST /v1/secrets/{path}/rotate`), the schedule of a secret
//! (its metadata's `rotation`), and the due/overdue query (`GET /v1/rotation/due`).

use reqwest::Method;
use scaivault_api::ErrorCode;
use scaivault_api::path::validate_prefix;
use scaivault_api::rotation::{
    DueSecret, MAX_DUE_WITHIN_HOURS, MAX_ROTATION_REASON_CHARS, RotateRequest, RotateResponse,
    RotationDueResponse, RotationPolicy,
};
use scaivault_api::secrets::{SecretMetadataInput, SecretMetadataResponse};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::paging::PageOptions;
use crate::retry::Retry;

/// Query of one page of [`Client::rotation_due`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueOptions {
    /// Secrets whose next rotation falls within this many hours from now, 1..=87600
    /// (server default 168, a week).
    pub within_hours: Option<u64>,
    /// Also list secrets past their rotation and its grace; left out otherwise.
    pub include_overdue: bool,
    /// Leading characters of the path, like `environments/production/`.
    pub prefix: Option<String>,
    /// Page size, 1..=1000 (server default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl DueOptions {
    fn query(&self) -> Result<Vec<(&'static str, String)>> {
        let mut query = Vec::new();
        if let Some(hours) = self.within_hours {
            if !(1..=MAX_DUE_WITHIN_HOURS).contains(&hours) {
                return Err(Error::invalid(
                    ErrorCode::InvalidRequest,
                    format!("within_hours must be between 1 and {MAX_DUE_WITHIN_HOURS}"),
                ));
            }
            query.push(("within_hours", hours.to_string()));
        }
        if self.include_overdue {
            query.push(("include_overdue", "true".to_owned()));
        }
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
        Ok(query)
    }
}

impl Client {
    /// Rotates now (`POST /v1/secrets/{path}/rotate`): a `generate` secret gets a new
    /// version (`outcome: rotated`); an `external` or `manual` one raises
    /// `rotation.requested` for whoever rotates it (`outcome: requested`). The reason goes
    /// to the audit record and the event. `409 rotation_not_configured` when the secret has
    /// no schedule. Retried with its `Idempotency-Key`, so a lost answer never rotates twice.
    pub async fn rotate(&self, path: &str, reason: Option<&str>) -> Result<RotateResponse> {
        if let Some(reason) = reason
            && reason.chars().count() > MAX_ROTATION_REASON_CHARS
        {
            return Err(Error::invalid(
                ErrorCode::InvalidRequest,
                format!("a rotation reason has at most {MAX_ROTATION_REASON_CHARS} characters"),
            ));
        }
        let url = self.secret_url(path, Some("rotate"))?;
        let request = RotateRequest {
            reason: reason.map(str::to_owned),
        };
        let call = self
            .call(Method::POST, url, Retry::Keyed, "rotate")
            .body(&request)?;
        self.json(call).await
    }

    /// Sets (`Some`) or removes (`None`) a secret's rotation schedule, leaving its tags,
    /// description and value alone; returns the metadata document with the new `rotation`.
    pub async fn set_rotation(
        &self,
        path: &str,
        policy: Option<RotationPolicy>,
    ) -> Result<SecretMetadataResponse> {
        let update = SecretMetadataInput {
            rotation: Some(policy),
            ..SecretMetadataInput::default()
        };
        self.update_metadata(path, &update).await
    }

    /// One page of the secrets due for rotation, in path order; only paths the caller may
    /// list. Follow `next_cursor` for the next page, or use [`Client::rotation_due_all`].
    pub async fn rotation_due(&self, options: &DueOptions) -> Result<RotationDueResponse> {
        let query = options.query()?;
        let url = self.url(["rotation", "due"])?;
        let call = self
            .call(Method::GET, url, Retry::Safe, "rotation_due")
            .query(&query);
        self.json(call).await
    }

    /// Every secret due matching `options`, following cursors from `options.cursor` on.
    pub async fn rotation_due_all(&self, options: &DueOptions) -> Result<Vec<DueSecret>> {
        let mut options = options.clone();
        let mut due = Vec::new();
        loop {
            let page = self.rotation_due(&options).await?;
            due.extend(page.secrets);
            match page.next_cursor {
                // A server handing back the same cursor would make us loop forever.
                Some(next) if options.cursor.as_deref() == Some(next.as_str()) => {
                    return Err(Error::Decode {
                        what: "rotation_due",
                        detail: "the server returned the same cursor twice".to_owned(),
                    });
                }
                Some(next) => options.cursor = Some(next),
                None => return Ok(due),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_options_become_a_query() {
        let options = DueOptions {
            within_hours: Some(24),
            include_overdue: true,
            prefix: Some("environments/production/".into()),
            limit: Some(50),
            cursor: Some("YXBw".into()),
        };
        assert_eq!(
            options.query().ok(),
            Some(vec![
                ("within_hours", "24".to_owned()),
                ("include_overdue", "true".to_owned()),
                ("prefix", "environments/production/".to_owned()),
                ("limit", "50".to_owned()),
                ("cursor", "YXBw".to_owned()),
            ])
        );
        // The server's defaults (a week, overdue left out) are not spelled out.
        assert_eq!(DueOptions::default().query().ok(), Some(vec![]));
    }

    #[test]
    fn due_options_are_checked() {
        for bad in [
            DueOptions {
                within_hours: Some(MAX_DUE_WITHIN_HOURS + 1),
                ..DueOptions::default()
            },
            DueOptions {
                within_hours: Some(0),
                ..DueOptions::default()
            },
            DueOptions {
                limit: Some(0),
                ..DueOptions::default()
            },
            DueOptions {
                limit: Some(1001),
                ..DueOptions::default()
            },
            DueOptions {
                prefix: Some("a//".into()),
                ..DueOptions::default()
            },
        ] {
            assert!(bad.query().is_err(), "{bad:?}");
        }
        let longest = DueOptions {
            within_hours: Some(MAX_DUE_WITHIN_HOURS),
            ..DueOptions::default()
        };
        assert!(longest.query().is_ok());
    }

    #[tokio::test]
    async fn bad_rotations_are_refused_before_sending() {
        // Nothing listens on port 1: reaching the network would be a transport error.
        let Ok(c) = Client::builder("http://127.0.0.1:1").build() else {
            unreachable!("valid address")
        };
        let err = c.rotate("../x", None).await.err();
        assert_eq!(err.and_then(|e| e.code()), Some(ErrorCode::InvalidPath));
        let long = "x".repeat(MAX_ROTATION_REASON_CHARS + 1);
        let err = c.rotate("app/db", Some(&long)).await.err();
        assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
        // At the limit (counted in characters, not bytes) it is sent.
        let longest = "é".repeat(MAX_ROTATION_REASON_CHARS);
        let err = c.rotate("app/db", Some(&longest)).await.err();
        assert!(matches!(err, Some(Error::Transport(_))), "{err:?}");
    }

    #[test]
    fn clearing_a_schedule_sends_null_and_setting_one_sends_it_whole() {
        let clear = SecretMetadataInput {
            rotation: Some(None),
            ..SecretMetadataInput::default()
        };
        assert_eq!(
            serde_json::to_value(&clear).ok(),
            Some(serde_json::json!({"rotation": null}))
        );
        let set = SecretMetadataInput {
            rotation: Some(Some(RotationPolicy {
                interval: "30d".into(),
                strategy: scaivault_api::rotation::RotationStrategy::Generate,
                generator: None,
                grace: Some("24h".into()),
                rotate_at: None,
            })),
            ..SecretMetadataInput::default()
        };
        assert_eq!(
            serde_json::to_value(&set).ok(),
            Some(serde_json::json!({
                "rotation": {"interval": "30d", "strategy": "generate", "grace": "24h"}
            }))
        );
    }
}
