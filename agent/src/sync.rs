//! Reading a secret and writing the files made from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use scaivault_kube_api::agent::{AgentConfig, FileSpec};
use scaivault_kube_api::files::render_content;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::files::{Outcome, write_if_changed};
use crate::metrics::Metrics;
use crate::session::Session;

/// The configured files by the vault path they are rendered from (one read per path).
pub struct Files {
    pub dir: PathBuf,
    pub by_path: BTreeMap<String, Vec<FileSpec>>,
}

impl Files {
    pub fn new(config: &AgentConfig) -> Files {
        let mut by_path: BTreeMap<String, Vec<FileSpec>> = BTreeMap::new();
        for file in &config.files {
            by_path
                .entry(file.path.clone())
                .or_default()
                .push(file.clone());
        }
        Files {
            dir: PathBuf::from(&config.secrets_dir),
            by_path,
        }
    }

    /// The longest common start of every path: the stream's `path_prefix` (events are
    /// then matched to paths exactly here).
    pub fn common_prefix(&self) -> Option<String> {
        let mut paths = self.by_path.keys();
        let first = paths.next()?;
        let mut len = first.len();
        for path in paths {
            len = first
                .bytes()
                .zip(path.bytes())
                .take(len)
                .take_while(|(a, b)| a == b)
                .count();
        }
        let prefix = first.get(..len)?;
        (!prefix.is_empty() && scaivault_client::api::path::validate_prefix(prefix).is_ok())
            .then(|| prefix.to_owned())
    }

    /// Reads `path` and hands its files and the secret's data to `use_data`; the data's
    /// strings are zeroized afterwards. `None` for a path no file names.
    pub async fn with_secret<R>(
        &self,
        session: &Session,
        path: &str,
        use_data: impl FnOnce(&[FileSpec], u64, &serde_json::Map<String, Value>) -> Result<R>,
    ) -> Result<Option<R>> {
        let Some(specs) = self.by_path.get(path) else {
            return Ok(None);
        };
        let secret = session
            .client
            .read(path)
            .await
            .map_err(|e| Error::read(path, &session.identity, e))?;
        let mut data = secret.data;
        let result = use_data(specs, secret.version, &data);
        for value in data.values_mut() {
            scrub(value);
        }
        result.map(Some)
    }

    /// Reads `path` and writes its files; returns how many were written.
    pub async fn refresh(&self, session: &Session, metrics: &Metrics, path: &str) -> Result<usize> {
        let written = self
            .with_secret(session, path, |specs, version, data| {
                let written = self.write_files(metrics, specs, data)?;
                tracing::info!(%path, version, files = specs.len(), written, "rendered");
                Ok(written)
            })
            .await?;
        Ok(written.unwrap_or(0))
    }

    fn write_files(
        &self,
        metrics: &Metrics,
        specs: &[FileSpec],
        data: &serde_json::Map<String, Value>,
    ) -> Result<usize> {
        let mut written = 0;
        for spec in specs {
            let content = Zeroizing::new(render_content(&spec.name, &spec.content, data)?);
            metrics.renders.inc();
            let outcome =
                write_if_changed(&self.dir, &spec.name, &content, spec.mode).map_err(|source| {
                    Error::Write {
                        path: self.dir.join(&spec.name).display().to_string(),
                        source,
                    }
                })?;
            if outcome == Outcome::Written {
                metrics.writes.inc();
                written += 1;
                tracing::info!(file = %spec.name, path = %spec.path, "file written");
            }
        }
        Ok(written)
    }

    /// Every path, in order; the first error stops it.
    pub async fn refresh_all(&self, session: &Session, metrics: &Metrics) -> Result<usize> {
        let mut written = 0;
        for path in self.by_path.keys() {
            written += self.refresh(session, metrics, path).await?;
        }
        Ok(written)
    }
}

/// Zeroizes the strings of a secret's value before it is dropped.
fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use scaivault_kube_api::agent::{Content, Format, Mode, OnChange};

    fn files(paths: &[&str]) -> Files {
        let config = AgentConfig {
            version: scaivault_kube_api::agent::CONFIG_VERSION,
            mode: Mode::Sidecar,
            vault_addr: "http://127.0.0.1:8200".into(),
            token_path: "/t".into(),
            secrets_dir: "/s".into(),
            ready_port: 8209,
            files: paths
                .iter()
                .enumerate()
                .map(|(i, p)| FileSpec {
                    name: format!("f{i}"),
                    path: (*p).to_owned(),
                    content: Content::Format(Format::Json),
                    mode: 0o644,
                })
                .collect(),
            on_change: OnChange::None,
            containers: vec![],
        };
        Files::new(&config)
    }

    #[test]
    fn common_prefixes() {
        let cases: [(&[&str], Option<&str>); 5] = [
            (&["apps/web/db"], Some("apps/web/db")),
            (&["apps/web/db", "apps/web/api"], Some("apps/web/")),
            (
                &["apps/web/db", "apps/web/db2", "apps/web/db"],
                Some("apps/web/db"),
            ),
            (&["apps/web/db", "billing/x"], None),
            (&[], None),
        ];
        for (paths, want) in cases {
            assert_eq!(files(paths).common_prefix().as_deref(), want, "{paths:?}");
        }
        assert_eq!(files(&["a/x", "a/x", "a/y"]).by_path.len(), 2);
    }

    #[test]
    fn scrub_clears_every_string() {
        let mut v = serde_json::json!({"a": "secret", "b": ["x", {"c": "y"}], "n": 1});
        if let Value::Object(map) = &mut v {
            map.values_mut().for_each(scrub);
        }
        assert_eq!(
            v,
            serde_json::json!({"a": "", "b": ["", {"c": ""}], "n": 1})
        );
    }
}
