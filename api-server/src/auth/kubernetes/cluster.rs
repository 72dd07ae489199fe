//! How the server reaches the Kubernetes API: kube's own configuration, so every form a
//! kubeconfig can take works as it does for kubectl (token, tokenFile, client certificate
//! inline or as files, exec credential plugins, relative paths), and in a pod the pod's
//! ServiceAccount (token file re-read as the kubelet rotates it).
//!
//! The vault adds its own refusals on top: it sends ServiceAccount tokens to this server,
//! so the connection must be `https://` and verified.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("not running in a cluster (KUBERNETES_SERVICE_HOST is unset)")]
    NotInCluster,
    #[error("{0}")]
    Unsafe(&'static str),
}

/// The current context of a kubeconfig file.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Config, ClusterConfigError> {
    let error = |message: String| ClusterConfigError::Kubeconfig {
        path: path.to_owned(),
        message,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| error(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| error(e.to_string()))?;
    checked(config)
}

/// The pod's own ServiceAccount, as every in-cluster client finds it.
pub fn in_cluster() -> Result<kube::Config, ClusterConfigError> {
    if std::env::var("KUBERNETES_SERVICE_HOST").map_or(true, |h| h.is_empty()) {
        return Err(ClusterConfigError::NotInCluster);
    }
    let config =
        kube::Config::incluster().map_err(|e| ClusterConfigError::InCluster(e.to_string()))?;
    checked(config)
}

fn checked(config: kube::Config) -> Result<kube::Config, ClusterConfigError> {
    if config.cluster_url.scheme_str() != Some("https") {
        // A ServiceAccount token sent over plain HTTP could be replayed by anyone on path.
        return Err(ClusterConfigError::Unsafe(
            "the cluster's server must be an https:// URL",
        ));
    }
    if config.accept_invalid_certs {
        return Err(ClusterConfigError::Unsafe(
            "insecure-skip-tls-verify is refused: the vault sends tokens to this server",
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: other
  context: {cluster: c, user: nobody}
- name: test
  context: {cluster: c, user: admin}
users:
- name: admin
  user:
    token: s3cr3t-admin-token
"#;

    async fn load(text: &str) -> Result<kube::Config, ClusterConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        from_kubeconfig(&path).await
    }

    #[tokio::test]
    async fn reads_the_current_context() {
        let config = load(CONFIG).await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn takes_exec_plugins_and_token_files() {
        let exec = CONFIG.replace(
            "token: s3cr3t-admin-token",
            "exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, args: [eks, get-token]}",
        );
        assert!(load(&exec).await.is_ok());
        let file = CONFIG.replace("token: s3cr3t-admin-token", "tokenFile: sa/token");
        assert!(load(&file).await.is_ok());
    }

    #[tokio::test]
    async fn refuses_what_would_expose_tokens() {
        let plain = CONFIG.replace("https://", "http://");
        let err = load(&plain).await.unwrap_err().to_string();
        assert!(err.contains("https"), "{err}");
        let insecure = CONFIG.replace(
            "server: https://127.0.0.1:6443",
            "server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true",
        );
        let err = load(&insecure).await.unwrap_err().to_string();
        assert!(err.contains("insecure-skip-tls-verify"), "{err}");
        let missing_user = CONFIG.replace("current-context: test", "current-context: ghost");
        assert!(load(&missing_user).await.is_err());
        assert!(load("[]").await.is_err());
    }
}
