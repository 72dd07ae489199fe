//! The `scaivault-server` command line. Every flag can also come from a `SCAIVAULT_*`
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scaivault_api::limits::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_VALUE_BYTES};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(name = "scaivault-server", version, about = "The ScaiVault API server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Development server: SQLite in a local data directory, initialised on first start,
    /// plain HTTP on loopback, master key and root token kept on disk. Not for production.
    Dev(DevArgs),
    /// Initialise a data directory: create the keyring and print a root token once.
    Init(InitArgs),
    /// Serve an initialised data directory (TLS unless explicitly disabled).
    Serve(ServeArgs),
    /// Bring the storage's schema to this version (PostgreSQL; SQLite migrates on open).
    Migrate(MigrateArgs),
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    scaivault_api::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Settings shared by `dev` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Requests per minute per identity (token bucket); 0 disables rate limiting.
    #[arg(long, env = "SCAIVAULT_RATE_LIMIT_PER_MINUTE", default_value_t = 1000)]
    pub rate_limit_per_minute: u32,
    /// Largest secret value (its `data` as JSON) in bytes.
    #[arg(long, env = "SCAIVAULT_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "SCAIVAULT_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Requests handled at once; beyond it a request is refused at once with 503
    /// `overloaded` and `Retry-After`, so a flood cannot exhaust memory. Probes are exempt.
    #[arg(long, env = "SCAIVAULT_MAX_CONCURRENT_REQUESTS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// How long a client waits for an answer before it gets 504 `request_timeout`. A
    /// change already under way still completes and is audited.
    #[arg(long, env = "SCAIVAULT_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_request_timeout)]
    pub request_timeout: Duration,
    /// How often expired secrets are purged.
    #[arg(long, env = "SCAIVAULT_PURGE_INTERVAL", default_value = "60s", value_parser = parse_interval)]
    pub purge_interval: Duration,
    /// How often the rotation scheduler looks for secrets due (`rotation.due`, overdue,
    /// generated versions): the most a scheduled rotation waits past its time.
    #[arg(long, env = "SCAIVAULT_ROTATION_CHECK_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub rotation_check_interval: Duration,
    /// Networks webhooks may reach although they are private (e.g. an in-cluster
    /// receiver: `10.96.0.0/12`), comma-separated CIDRs. Without them webhooks reach only
    /// public addresses; loopback only in dev mode.
    #[arg(long, env = "SCAIVAULT_WEBHOOK_ALLOW_NETWORKS", value_delimiter = ',')]
    pub webhook_allow_networks: Vec<ipnet::IpNet>,
    /// How often read counts are flushed to storage.
    #[arg(long, env = "SCAIVAULT_ACCESS_FLUSH_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub access_flush_interval: Duration,
    /// Turn the audit log off (benchmarks only: without it requests leave no trace).
    #[arg(long, env = "SCAIVAULT_AUDIT_DISABLE")]
    pub audit_disable: bool,
    /// `full`: every audit commit is fsync'd before requests answer; `normal`: committed to
    /// the OS only (survives a server crash, not a power loss).
    #[arg(long, env = "SCAIVAULT_AUDIT_SYNC", value_enum, default_value = "full")]
    pub audit_sync: crate::store::sqlite::audit::AuditSync,
    /// Directory that `file` audit exports are written under (disabled when unset).
    #[arg(long, env = "SCAIVAULT_AUDIT_EXPORT_DIR")]
    pub audit_export_dir: Option<PathBuf>,
    /// Keep audit records this long (e.g. `400d`); older ones are removed behind a
    /// checkpoint that keeps the rest verifiable. Unset: keep forever.
    #[arg(long, env = "SCAIVAULT_AUDIT_RETENTION", value_parser = parse_interval)]
    pub audit_retention: Option<Duration>,
    /// Sign a checkpoint of the audit chain after this many new records (at least 1).
    #[arg(long, env = "SCAIVAULT_AUDIT_CHECKPOINT_RECORDS", default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_records: u64,
    /// ...or this long after a record no checkpoint covers yet. Together they bound what a
    /// truncation of the log's tail can remove undetected.
    #[arg(long, env = "SCAIVAULT_AUDIT_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub audit_checkpoint_interval: Duration,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    /// Log output format (logs go to stderr).
    #[arg(long, env = "SCAIVAULT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Kubernetes login (`POST /v1/auth/kubernetes/login`).
#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// Reach the cluster through this kubeconfig (its current context) instead of the
    /// pod's own ServiceAccount. The credential needs `create` on `tokenreviews`.
    #[arg(long, env = "SCAIVAULT_KUBERNETES_KUBECONFIG")]
    pub kubernetes_kubeconfig: Option<PathBuf>,
    /// The audience ServiceAccount tokens must be issued for.
    #[arg(
        long,
        env = "SCAIVAULT_KUBERNETES_AUDIENCE",
        default_value = "scaivault"
    )]
    pub kubernetes_audience: String,
    /// Lifetime of the vault tokens Kubernetes logins receive (never beyond the
    /// presented token's own expiry); at most 24h.
    #[arg(long, env = "SCAIVAULT_KUBERNETES_TOKEN_TTL", default_value = "1h", value_parser = parse_login_ttl)]
    pub kubernetes_token_ttl: Duration,
    /// Turn Kubernetes login off even when running inside a cluster.
    #[arg(
        long,
        env = "SCAIVAULT_KUBERNETES_DISABLE",
        conflicts_with = "kubernetes_kubeconfig"
    )]
    pub kubernetes_disable: bool,
}

fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    let timeout = parse_interval(s)?;
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(600) {
        return Err("must be between 1s and 10m".into());
    }
    Ok(timeout)
}

fn parse_login_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_interval(s)?;
    if ttl.is_zero() || ttl > Duration::from_secs(24 * 3600) {
        return Err("must be between 1s and 24h".into());
    }
    Ok(ttl)
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[arg(long, env = "SCAIVAULT_LISTEN", default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,
    #[arg(long, env = "SCAIVAULT_DATA_DIR", default_value = ".scaivault-dev")]
    pub data_dir: PathBuf,
    /// Use this root token (created if missing) instead of a generated one.
    #[arg(long, env = "SCAIVAULT_DEV_ROOT_TOKEN", value_parser = parse_secret, hide_env_values = true)]
    pub root_token: Option<SecretString>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Where the master key comes from.
#[derive(Debug, Clone, Args)]
pub struct MasterKeyArgs {
    /// File holding the base64 master key (`init` creates it when missing).
    #[arg(long, env = "SCAIVAULT_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The base64 master key itself (prefer the file; environments leak into /proc).
    #[arg(long, env = "SCAIVAULT_MASTER_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub master_key: Option<SecretString>,
}

/// Where the vault's data lives.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// `postgres://user:password@host:5432/db?sslmode=require` for a database several
    /// replicas share, or `sqlite:///path/to/scaivault.db`; default: SQLite in the data
    /// directory. On PostgreSQL the audit log is kept in the same database.
    // Checked when used ([`StorageArgs::url`]), not by the argument parser: clap would
    // echo a mistyped URL, password and all, in its error.
    #[arg(long, env = "SCAIVAULT_STORAGE", value_parser = parse_secret, hide_env_values = true)]
    pub storage: Option<SecretString>,
    /// PEM file of the CA that signs the PostgreSQL server's certificate (default: the
    /// system's roots). Used when the URL's `sslmode` is `prefer` (the default) or
    /// `require`; the certificate and host name are always verified.
    #[arg(long, env = "SCAIVAULT_STORAGE_CA_FILE")]
    pub storage_ca_file: Option<PathBuf>,
    /// Apply pending PostgreSQL schema migrations on start (otherwise a schema behind
    /// this version stops the start with the command to run: `scaivault-server migrate`).
    #[arg(long, env = "SCAIVAULT_STORAGE_MIGRATE")]
    pub storage_migrate: bool,
}

/// A parsed `--storage` value.
#[derive(Clone)]
pub enum StorageUrl {
    Postgres(SecretString),
    Sqlite(PathBuf),
}

/// The URL may carry the database password: never printed.
impl std::fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageUrl::Postgres(_) => f.write_str("Postgres(<redacted>)"),
            StorageUrl::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

impl StorageArgs {
    /// The `--storage` URL, parsed (`None`: SQLite in the data directory). The error
    /// names the accepted forms, never the value given.
    pub fn url(&self) -> Result<Option<StorageUrl>, String> {
        use secrecy::ExposeSecret as _;
        let Some(given) = &self.storage else {
            return Ok(None);
        };
        let text = given.expose_secret();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Some(StorageUrl::Postgres(given.clone())));
        }
        match text.strip_prefix("sqlite://") {
            Some(path) if path.starts_with('/') => Ok(Some(StorageUrl::Sqlite(PathBuf::from(path)))),
            Some(_) => Err("--storage: a sqlite URL names an absolute path: sqlite:///var/lib/scaivault/scaivault.db".into()),
            None => Err("--storage: expected postgres://user:password@host:port/db or sqlite:///path".into()),
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[arg(long, env = "SCAIVAULT_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub key: MasterKeyArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "SCAIVAULT_LISTEN", default_value = "127.0.0.1:8200")]
    pub listen: SocketAddr,
    #[arg(long, env = "SCAIVAULT_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub key: MasterKeyArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// PEM certificate chain; reloaded when the file changes.
    #[arg(long, env = "SCAIVAULT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; reloaded when the file changes.
    #[arg(long, env = "SCAIVAULT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy on a trusted network).
    #[arg(long, env = "SCAIVAULT_TLS_DISABLE", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_disable: bool,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "SCAIVAULT_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub tls_reload_interval: Duration,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub const DB_FILE: &str = "scaivault.db";
pub const AUDIT_DB_FILE: &str = "audit.db";
/// Locked by the process serving a data directory.
pub const LOCK_FILE: &str = "scaivault.lock";
