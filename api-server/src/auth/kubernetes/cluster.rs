//! How the server reaches the Kubernetes API: in-cluster (the pod's ServiceAccount) or a
//! kubeconfig file (tests, servers outside the cluster).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// Where in-cluster pods find their ServiceAccount credentials.
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("not running in a cluster (KUBERNETES_SERVICE_HOST is unset)")]
    NotInCluster,
}

/// How the server authenticates its own TokenReview calls.
pub enum Credential {
    /// A fixed bearer token (kubeconfig `token`).
    Token(SecretString),
    /// A token file read on every call: projected ServiceAccount tokens are rotated by
    /// the kubelet, so a copy taken at start would expire.
    TokenFile(PathBuf),
    /// A client certificate and key (kubeconfig `client-certificate(-data)`).
    ClientCertificate { pem: SecretString },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::TokenFile(path) => f.debug_tuple("TokenFile").field(path).finish(),
            Credential::ClientCertificate { .. } => f.write_str("ClientCertificate(<redacted>)"),
        }
    }
}

/// Everything needed to call one cluster's API server.
#[derive(Debug)]
pub struct ClusterConfig {
    pub server: Url,
    /// PEM of the CA that signs the API server's certificate; the only roots trusted.
    pub ca_pem: Option<Vec<u8>>,
    pub credential: Credential,
}

impl ClusterConfig {
    /// The pod's own ServiceAccount, as every in-cluster client finds it.
    pub fn in_cluster() -> Result<ClusterConfig, ClusterConfigError> {
        Self::in_cluster_with(
            std::env::var("KUBERNETES_SERVICE_HOST").ok(),
            std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            Path::new(IN_CLUSTER_DIR),
        )
    }

    fn in_cluster_with(
        host: Option<String>,
        port: Option<String>,
        dir: &Path,
    ) -> Result<ClusterConfig, ClusterConfigError> {
        let host = host
            .filter(|h| !h.is_empty())
            .ok_or(ClusterConfigError::NotInCluster)?;
        let port = port.unwrap_or_else(|| "443".into());
        // An IPv6 service address needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let server = Url::parse(&format!("https://{host}:{port}")).map_err(|e| {
            ClusterConfigError::Kubeconfig {
                path: PathBuf::from("KUBERNETES_SERVICE_HOST"),
                message: e.to_string(),
            }
        })?;
        let ca_path = dir.join("ca.crt");
        let ca_pem = std::fs::read(&ca_path).map_err(|source| ClusterConfigError::Read {
            path: ca_path,
            source,
        })?;
        Ok(ClusterConfig {
            server,
            ca_pem: Some(ca_pem),
            credential: Credential::TokenFile(dir.join("token")),
        })
    }

    /// The current context of a kubeconfig file. Paths inside it are relative to the file.
    pub fn from_kubeconfig(path: &Path) -> Result<ClusterConfig, ClusterConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        parse_kubeconfig(&text, base).map_err(|message| ClusterConfigError::Kubeconfig {
            path: path.to_owned(),
            message,
        })
    }
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
    #[serde(rename = "certificate-authority", default)]
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-certificate", default)]
    cert_file: Option<PathBuf>,
    #[serde(rename = "client-key-data", default)]
    key_data: Option<String>,
    #[serde(rename = "client-key", default)]
    key_file: Option<PathBuf>,
}

fn find<'a, T>(items: &'a [Named<T>], name: &str, what: &str) -> Result<&'a T, String> {
    items
        .iter()
        .find(|n| n.name == name)
        .map(|n| &n.value)
        .ok_or_else(|| format!("no {what} named {name:?}"))
}

/// Inline `*-data` (base64) or a file path, relative to the kubeconfig's directory.
fn data_or_file(
    data: Option<&str>,
    file: Option<&Path>,
    base: &Path,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = data {
        return STANDARD
            .decode(data.trim())
            .map(Some)
            .map_err(|e| format!("invalid base64: {e}"));
    }
    match file {
        Some(file) => {
            let path = base.join(file);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        None => Ok(None),
    }
}

fn parse_kubeconfig(text: &str, base: &Path) -> Result<ClusterConfig, String> {
    let config: Kubeconfig = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let context_name = config
        .current_context
        .filter(|c| !c.is_empty())
        .or_else(|| config.contexts.first().map(|c| c.name.clone()))
        .ok_or("no current-context and no contexts")?;
    let context = find(&config.contexts, &context_name, "context")?;
    let cluster = find(&config.clusters, &context.cluster, "cluster")?;
    let default_user = UserEntry::default();
    let user = match &context.user {
        Some(name) => find(&config.users, name, "user")?,
        None => &default_user,
    };
    let server = Url::parse(&cluster.server).map_err(|e| format!("server: {e}"))?;
    if server.scheme() != "https" {
        // A ServiceAccount token sent over plain HTTP could be replayed by anyone on path.
        return Err("the cluster's server must be an https:// URL".into());
    }
    let ca_pem = data_or_file(cluster.ca_data.as_deref(), cluster.ca_file.as_deref(), base)
        .map_err(|e| format!("certificate-authority: {e}"))?;
    let credential = if let Some(token) = &user.token {
        Credential::Token(SecretString::from(token.clone()))
    } else if let Some(file) = &user.token_file {
        Credential::TokenFile(base.join(file))
    } else {
        let cert = data_or_file(user.cert_data.as_deref(), user.cert_file.as_deref(), base)
            .map_err(|e| format!("client-certificate: {e}"))?;
        let key = data_or_file(user.key_data.as_deref(), user.key_file.as_deref(), base)
            .map_err(|e| format!("client-key: {e}"))?;
        match (cert, key) {
            (Some(mut cert), Some(key)) => {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
                let pem = String::from_utf8(cert)
                    .map_err(|_| "client certificate or key is not PEM text".to_owned())?;
                Credential::ClientCertificate {
                    pem: SecretString::from(pem),
                }
            }
            _ => {
                return Err(
                    "the user has no token, tokenFile or client certificate and key (exec and \
                     auth-provider plugins are not supported)"
                        .into(),
                );
            }
        }
    };
    Ok(ClusterConfig {
        server,
        ca_pem,
        credential,
    })
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
    certificate-authority-data: LS0tLS1CRUdJTg==
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

    #[test]
    fn reads_the_current_context() {
        let config = parse_kubeconfig(CONFIG, Path::new("/tmp")).unwrap();
        assert_eq!(config.server.as_str(), "https://127.0.0.1:6443/");
        assert_eq!(config.ca_pem.as_deref(), Some(&b"-----BEGIN"[..]));
        assert!(matches!(config.credential, Credential::Token(_)));
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let plain = CONFIG.replace("https://", "http://");
        assert!(
            parse_kubeconfig(&plain, Path::new("/"))
                .unwrap_err()
                .contains("https")
        );
        let missing_user = CONFIG.replace("user: admin}", "user: ghost}");
        assert!(
            parse_kubeconfig(&missing_user, Path::new("/"))
                .unwrap_err()
                .contains("ghost")
        );
        let exec = CONFIG.replace("token: s3cr3t-admin-token", "exec: {command: aws}");
        assert!(
            parse_kubeconfig(&exec, Path::new("/"))
                .unwrap_err()
                .contains("exec")
        );
        assert!(parse_kubeconfig("[]", Path::new("/")).is_err());
    }

    #[test]
    fn in_cluster_uses_the_service_and_the_mounted_account() {
        let dir = tempfile::tempdir().unwrap();
        let none = ClusterConfig::in_cluster_with(None, None, dir.path());
        assert!(matches!(none, Err(ClusterConfigError::NotInCluster)));
        let no_ca = ClusterConfig::in_cluster_with(Some("10.0.0.1".into()), None, dir.path());
        assert!(matches!(no_ca, Err(ClusterConfigError::Read { .. })));
        std::fs::write(dir.path().join("ca.crt"), "PEM").unwrap();
        let v4 = ClusterConfig::in_cluster_with(Some("10.0.0.1".into()), None, dir.path()).unwrap();
        assert_eq!(v4.server.as_str(), "https://10.0.0.1/");
        assert!(
            matches!(v4.credential, Credential::TokenFile(ref p) if p == &dir.path().join("token"))
        );
        let v6 =
            ClusterConfig::in_cluster_with(Some("fd00::1".into()), Some("6443".into()), dir.path())
                .unwrap();
        assert_eq!(v6.server.as_str(), "https://[fd00::1]:6443/");
    }

    #[test]
    fn token_file_is_relative_to_the_kubeconfig() {
        let config = CONFIG.replace("token: s3cr3t-admin-token", "tokenFile: sa/token");
        let parsed = parse_kubeconfig(&config, Path::new("/etc/kube")).unwrap();
        match parsed.credential {
            Credential::TokenFile(path) => assert_eq!(path, Path::new("/etc/kube/sa/token")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
