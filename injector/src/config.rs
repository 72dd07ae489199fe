//! Command line and environment (`SCAIVAULT_INJECTOR_*`, `SCAIVAULT_*`) of `scaivault-injector`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser};

use crate::mutate::InjectorConfig;

fn parse_duration(s: &str) -> Result<Duration, String> {
    scaivault_api::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Mutating admission webhook of ScaiVault: adds the agent, a memory-backed secrets
/// volume and a vault-audience ServiceAccount token to pods that opt in
/// (`scaivault.io/inject: "true"`).
#[derive(Debug, Clone, Parser)]
#[command(name = "scaivault-injector", version)]
#[command(group(ArgGroup::new("tls").required(true).args(["tls_cert_file", "self_signed_service"])))]
pub struct Args {
    /// Address of the HTTPS listener (`/mutate`, `/healthz`, `/readyz`).
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve (reloaded when the file changes).
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA of --tls-cert-file: with --webhook-config-name, kept as the webhooks'
    /// caBundle (re-read when it changes). Without it something else (cert-manager's
    /// cainjector) must keep caBundle current.
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_TLS_CA_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_ca_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "SCAIVAULT_INJECTOR_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Self-managed TLS for the Service `<service>.<namespace>`: an in-memory CA, a
    /// serving certificate for the Service's DNS names, and the CA patched into the
    /// caBundle of --webhook-config-name. One replica only (each replica would make its
    /// own CA); use certificate files for more.
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_SELF_SIGNED_SERVICE",
        requires = "webhook_config_name",
        conflicts_with = "tls_cert_file"
    )]
    pub self_signed_service: Option<String>,
    /// IP addresses the self-managed certificate also names (comma-separated), e.g. when
    /// the webhook is called by URL.
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_SELF_SIGNED_IPS",
        value_delimiter = ',',
        requires = "self_signed_service"
    )]
    pub self_signed_ip: Vec<IpAddr>,
    /// MutatingWebhookConfiguration whose caBundle the injector keeps current.
    #[arg(long, env = "SCAIVAULT_INJECTOR_WEBHOOK_CONFIG_NAME")]
    pub webhook_config_name: Option<String>,
    /// Kubeconfig for patching caBundle; default: in-cluster config or $KUBECONFIG.
    #[arg(long, env = "SCAIVAULT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Image of the agent container.
    #[arg(long, env = "SCAIVAULT_INJECTOR_AGENT_IMAGE")]
    pub agent_image: String,
    /// Vault address as the agent reaches it, e.g. https://scaivault.scaivault.svc:8200.
    #[arg(long, env = "SCAIVAULT_ADDR")]
    pub vault_addr: String,
    /// Audience of the projected token: the server's --kubernetes-audience.
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_TOKEN_AUDIENCE",
        default_value = "scaivault"
    )]
    pub token_audience: String,
    /// Lifetime of the projected token (the kubelet renews it at 80 %; 600 at least).
    #[arg(long, env = "SCAIVAULT_INJECTOR_TOKEN_EXPIRATION_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(600..=86400))]
    pub token_expiration_seconds: i64,
    /// Port of the agent's readiness endpoint, in the pod's network namespace.
    #[arg(
        long,
        env = "SCAIVAULT_INJECTOR_AGENT_READY_PORT",
        default_value_t = 8209
    )]
    pub agent_ready_port: u16,
    /// Log as JSON lines.
    #[arg(long, env = "SCAIVAULT_LOG_JSON")]
    pub log_json: bool,
}

impl Args {
    pub fn injector_config(&self) -> InjectorConfig {
        InjectorConfig {
            agent_image: self.agent_image.clone(),
            vault_addr: self.vault_addr.clone(),
            token_audience: self.token_audience.clone(),
            token_expiration_seconds: self.token_expiration_seconds,
            agent_ready_port: self.agent_ready_port,
        }
    }
}
