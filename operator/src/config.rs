//! Command line and environment (`SCAIVAULT_*`) of `scaivault-operator`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

fn parse_duration(s: &str) -> Result<Duration, String> {
    scaivault_api::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Kubernetes operator of ScaiVault: syncs VaultSecrets into Secrets (read as each
/// namespace's ServiceAccount) and manages VaultPolicies in the vault.
#[derive(Debug, Clone, Parser)]
#[command(name = "scaivault-operator", version)]
pub struct Args {
    /// Vault address, e.g. https://scaivault.scaivault-system.svc:8200.
    #[arg(long, env = "SCAIVAULT_ADDR")]
    pub vault_addr: String,
    /// PEM CA bundle to verify the vault's certificate.
    #[arg(long, env = "SCAIVAULT_CACERT")]
    pub vault_ca_file: Option<PathBuf>,
    /// File holding the admin vault token; used only by the VaultPolicy controller
    /// (without it VaultPolicies report NoAdminToken).
    #[arg(long, env = "SCAIVAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// Audience of the ServiceAccount tokens minted for vault login.
    #[arg(long, env = "SCAIVAULT_VAULT_AUDIENCE", default_value = "scaivault")]
    pub vault_audience: String,
    /// `role` sent with every Kubernetes login, if the vault wants one.
    #[arg(long, env = "SCAIVAULT_VAULT_ROLE")]
    pub vault_role: Option<String>,
    /// Kubeconfig to use; default: in-cluster config or $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "SCAIVAULT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "SCAIVAULT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Namespace the operator runs in: holds its MAC key Secret (and the lease, unless
    /// --leader-election-namespace says otherwise).
    #[arg(
        long,
        env = "SCAIVAULT_OPERATOR_NAMESPACE",
        default_value = "scaivault-system"
    )]
    pub operator_namespace: String,
    #[arg(long, env = "SCAIVAULT_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    #[arg(
        long,
        env = "SCAIVAULT_LEASE_NAME",
        default_value = "scaivault-operator"
    )]
    pub lease_name: String,
    /// This replica's name in the lease; default `<hostname>-<pid>`.
    #[arg(long, env = "SCAIVAULT_IDENTITY")]
    pub identity: Option<String>,
    #[arg(long, env = "SCAIVAULT_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    #[arg(long, env = "SCAIVAULT_RENEW_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub renew_interval: Duration,
    /// Secret (in the operator namespace) holding the key of `status.secretMAC`;
    /// created with a random key when missing.
    #[arg(
        long,
        env = "SCAIVAULT_MAC_KEY_SECRET",
        default_value = "scaivault-operator-mac-key"
    )]
    pub mac_key_secret: String,
    /// Namespaces whose VaultPolicies are put into the vault: a comma-separated list, or
    /// `*` for all. A VaultPolicy grants vault-wide access to any identity, so by default
    /// only the operator's own namespace may declare them (those who can write there
    /// already control the operator). Elsewhere they report `NamespaceNotAllowed`.
    #[arg(long, env = "SCAIVAULT_POLICY_NAMESPACES", value_delimiter = ',')]
    pub policy_namespaces: Vec<String>,
    /// Only watch this namespace (default: all).
    #[arg(long, env = "SCAIVAULT_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// VaultSecret reconciles doing work (vault reads, apiserver writes) at once; more
    /// wait their turn, served round-robin across namespaces.
    #[arg(long, env = "SCAIVAULT_RECONCILE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
    /// Most requests per second the controllers send to the apiserver (client-side
    /// limit, like client-go's QPS; the lease has its own, unlimited connection).
    #[arg(long, env = "SCAIVAULT_KUBE_QPS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub kube_qps: u64,
    /// Follow the vault's event stream (`GET /v1/events/stream`, read with the token of
    /// --vault-token-file, which needs `list` on the synced paths) and re-read a VaultSecret's
    /// source within a second of its change; `refreshInterval` polling stays as the fallback
    /// while the stream is down. `false`: polling only.
    #[arg(long, env = "SCAIVAULT_EVENT_STREAM", default_value_t = true, action = clap::ArgAction::Set)]
    pub event_stream: bool,
    /// Watch the pods labelled `scaivault.io/inject=true` and put a Warning event
    /// `NotInjected` on each that was admitted without the agent (the injector's webhook
    /// did not see it), counted in `scaivault_operator_pods_not_injected`. Needs `list` and
    /// `watch` on pods. `false`: pods are not watched.
    #[arg(long, env = "SCAIVAULT_FLAG_UNINJECTED_PODS", default_value_t = true, action = clap::ArgAction::Set)]
    pub flag_uninjected_pods: bool,
    /// Log as JSON lines instead of plain text.
    #[arg(long, env = "SCAIVAULT_LOG_JSON")]
    pub log_json: bool,
}

impl Args {
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_else(|| "scaivault-operator".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Which namespaces may declare VaultPolicies (see `--policy-namespaces`).
    pub fn policy_namespaces(&self) -> NamespaceFilter {
        let listed: Vec<String> = self
            .policy_namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if listed.iter().any(|n| n == "*") {
            NamespaceFilter::All
        } else if listed.is_empty() {
            NamespaceFilter::Only(vec![self.operator_namespace.clone()])
        } else {
            NamespaceFilter::Only(listed)
        }
    }

    pub fn lease_namespace(&self) -> String {
        self.leader_election_namespace
            .clone()
            .unwrap_or_else(|| self.operator_namespace.clone())
    }
}

/// A set of namespaces, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceFilter {
    All,
    Only(Vec<String>),
}

impl NamespaceFilter {
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            NamespaceFilter::All => true,
            NamespaceFilter::Only(names) => names.iter().any(|n| n == namespace),
        }
    }
}

impl std::fmt::Display for NamespaceFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamespaceFilter::All => f.write_str("*"),
            NamespaceFilter::Only(names) => f.write_str(&names.join(",")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["scaivault-operator", "--vault-addr", "http://v:8200"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn policy_namespaces_default_to_the_operators_own() {
        let only_own = args(&["--operator-namespace", "vault-ops"]).policy_namespaces();
        assert!(only_own.allows("vault-ops"));
        assert!(!only_own.allows("team-a"));
        let listed = args(&["--policy-namespaces", "team-a, team-b"]).policy_namespaces();
        assert!(listed.allows("team-b") && !listed.allows("scaivault-system"));
        assert_eq!(
            args(&["--policy-namespaces", "*"]).policy_namespaces(),
            NamespaceFilter::All
        );
    }

    #[test]
    fn the_event_stream_is_on_unless_turned_off() {
        assert!(args(&[]).event_stream);
        assert!(!args(&["--event-stream", "false"]).event_stream);
        assert!(args(&["--event-stream", "true"]).event_stream);
    }

    #[test]
    fn uninjected_pods_are_flagged_unless_turned_off() {
        assert!(args(&[]).flag_uninjected_pods);
        assert!(!args(&["--flag-uninjected-pods", "false"]).flag_uninjected_pods);
    }
}
