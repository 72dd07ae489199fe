//! Input rules for secrets: limits on values, tags, descriptions and options. (List
//! cursors are sealed by `crypto::cursor`, not encoded here.)

use std::time::Duration;

use scaivault_api::ErrorCode;
use scaivault_api::duration::parse_duration;
use scaivault_api::limits::{MAX_DESCRIPTION_CHARS, MAX_MAX_VERSIONS, MAX_TAG_CHARS, MAX_TAGS};
use scaivault_api::path::validate_secret_path;
use scaivault_api::secrets::{SecretMetadataInput, WriteSecretRequest};

use crate::error::{Error, Result};

/// Configurable limits (flags on the server).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_value_bytes: usize,
}

pub struct CheckedWrite {
    pub expires_in: Option<Duration>,
}

pub fn path(path: &str) -> Result<()> {
    validate_secret_path(path).map_err(|e| {
        let code = if e.is_reserved() {
            ErrorCode::ReservedPath
        } else {
            ErrorCode::InvalidPath
        };
        Error::new(code, e.to_string())
    })
}

fn tag_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '=' | '-')
}

/// Sorted and deduplicated, so `list(set(tags + [...]))` from any client stores the same.
pub fn normalize_tags(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags.dedup();
    tags
}

impl Limits {
    pub fn check_write(&self, request: &WriteSecretRequest) -> Result<CheckedWrite> {
        // Measured as the JSON the server stores; the message never echoes the value.
        let size = serde_json::to_vec(&request.data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.max_value_bytes {
            return Err(Error::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "secret value is {size} bytes; the limit is {} bytes",
                    self.max_value_bytes
                ),
            ));
        }
        if let Some(metadata) = &request.metadata {
            self.check_metadata(metadata)?;
        }
        let mut checked = CheckedWrite { expires_in: None };
        if let Some(options) = &request.options {
            if let Some(text) = &options.expires_in {
                checked.expires_in = Some(parse_duration(text).map_err(|e| {
                    Error::new(ErrorCode::InvalidTtl, format!("options.expires_in: {e}"))
                })?);
            }
            if let Some(max) = options.max_versions
                && !(1..=MAX_MAX_VERSIONS).contains(&max)
            {
                return Err(Error::invalid(format!(
                    "options.max_versions must be between 1 and {MAX_MAX_VERSIONS}"
                )));
            }
        }
        Ok(checked)
    }

    pub fn check_metadata(&self, metadata: &SecretMetadataInput) -> Result<()> {
        if let Some(tags) = &metadata.tags {
            if tags.len() > MAX_TAGS {
                return Err(Error::new(
                    ErrorCode::InvalidTag,
                    format!("at most {MAX_TAGS} tags per secret"),
                ));
            }
            for tag in tags {
                if tag.is_empty()
                    || tag.chars().count() > MAX_TAG_CHARS
                    || !tag.chars().all(tag_char_ok)
                {
                    let shown: String = tag.chars().take(MAX_TAG_CHARS).collect();
                    return Err(Error::new(
                        ErrorCode::InvalidTag,
                        format!(
                            "tag {shown:?} must be 1..={MAX_TAG_CHARS} characters of [A-Za-z0-9._:/=-]"
                        ),
                    ));
                }
            }
        }
        if let Some(description) = &metadata.description
            && description.chars().count() > MAX_DESCRIPTION_CHARS
        {
            return Err(Error::invalid(format!(
                "description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaivault_api::secrets::WriteOptions;

    fn request(data: serde_json::Value) -> WriteSecretRequest {
        WriteSecretRequest {
            data: data.as_object().cloned().unwrap_or_default(),
            secret_type: None,
            metadata: None,
            options: None,
        }
    }

    #[test]
    fn value_size_limit_never_echoes_the_value() {
        let limits = Limits {
            max_value_bytes: 16,
        };
        let err = limits
            .check_write(&request(serde_json::json!({"k": "topsecretvalue-123"})))
            .err();
        let err = err
            .map(|e| (e.code, e.message))
            .unwrap_or((ErrorCode::Internal, String::new()));
        assert_eq!(err.0, ErrorCode::ValueTooLarge);
        assert!(!err.1.contains("topsecret"));
    }

    #[test]
    fn tags_and_options_are_checked() {
        let limits = Limits {
            max_value_bytes: 1024,
        };
        let mut r = request(serde_json::json!({}));
        r.metadata = Some(SecretMetadataInput {
            tags: Some(vec!["bad tag".into()]),
            description: None,
            rotation: None,
        });
        assert_eq!(
            limits.check_write(&r).err().map(|e| e.code),
            Some(ErrorCode::InvalidTag)
        );
        r.metadata = Some(SecretMetadataInput {
            tags: Some(vec!["x".into(); 33]),
            description: None,
            rotation: None,
        });
        assert_eq!(
            limits.check_write(&r).err().map(|e| e.code),
            Some(ErrorCode::InvalidTag)
        );
        r.metadata = None;
        r.options = Some(WriteOptions {
            expires_in: Some("1y".into()),
            ..Default::default()
        });
        assert_eq!(
            limits.check_write(&r).err().map(|e| e.code),
            Some(ErrorCode::InvalidTtl)
        );
        r.options = Some(WriteOptions {
            max_versions: Some(0),
            ..Default::default()
        });
        assert_eq!(
            limits.check_write(&r).err().map(|e| e.code),
            Some(ErrorCode::InvalidRequest)
        );
        r.options = Some(WriteOptions {
            expires_in: Some("1h".into()),
            ..Default::default()
        });
        assert_eq!(
            limits.check_write(&r).ok().and_then(|c| c.expires_in),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn tags_are_sorted_and_deduplicated() {
        assert_eq!(
            normalize_tags(vec!["b".into(), "a".into(), "b".into()]),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
