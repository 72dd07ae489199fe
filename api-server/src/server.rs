//! The commands: `dev`, `init`, `serve`, `migrate`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::audit::checkpoint::{Cadence, Checkpoints};
use crate::audit::export::{CredentialsSource, Exporter};
use crate::audit::{AuditService, AuditWriter, stored_tail};
use crate::auth::kubernetes::KubernetesAuth;
use crate::config::{
    AUDIT_DB_FILE, Cli, Command, DB_FILE, DevArgs, InitArgs, LOCK_FILE, LogFormat, MasterKeyArgs,
    MigrateArgs, RuntimeArgs, ServeArgs, StorageArgs, StorageUrl,
};
use crate::crypto::MasterKey;
use crate::events::hub::EventHub;
use crate::follower::Follower;
use crate::http::{AppState, HttpLimits, app};
use crate::jobs::leadership::{Leadership, RunnerLock};
use crate::jobs::rotation::RotationScheduler;
use crate::jobs::{AuditRetention, JobIntervals, JobRegistry, Jobs};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::secrets::Limits;
use crate::store::postgres::{PostgresSettings, PostgresStore, TlsSettings};
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::audit::SqliteAuditStore;
use crate::store::{AuditStore, Store};
use crate::vault::{Vault, root_grant};
use crate::webhooks::WebhookService;
use crate::webhooks::dispatch::Dispatcher;
use crate::webhooks::guard::AddressPolicy;

const DEV_MASTER_KEY_FILE: &str = "dev-master.key";
const DEV_ROOT_TOKEN_FILE: &str = "root-token";
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => {
            init_tracing(args.runtime.log_format);
            dev(args).await
        }
        Command::Init(args) => {
            init_tracing(LogFormat::Text);
            init(args).await
        }
        Command::Serve(args) => {
            init_tracing(args.runtime.log_format);
            serve(args).await
        }
        Command::Migrate(args) => {
            init_tracing(LogFormat::Text);
            migrate(args).await
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCAIVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// An exclusive lock on a data directory, held while the process uses it: two servers
/// on one SQLite directory would each believe they own the audit chain and the caches.
struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "the data directory {} is in use by another scaivault-server process; stop it first or pick another --data-dir",
                data_dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

/// Locks the data directory (its audit log, and its SQLite database unless `--storage`
/// names another) and opens the vault's storage.
/// `migrate`: apply pending PostgreSQL migrations (`dev` always does).
async fn open_store(
    data_dir: &Path,
    storage: &StorageArgs,
    migrate: bool,
) -> anyhow::Result<(OpenedStorage, Arc<dyn Store>)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    restrict_permissions(data_dir);
    let data_dir_lock = DataDirLock::acquire(data_dir)?;
    let (store, shared) = match storage.url().map_err(anyhow::Error::msg)? {
        None => (open_sqlite(&data_dir.join(DB_FILE))?, None),
        Some(url) => open_url(&url, storage, migrate).await?,
    };
    let opened = OpenedStorage {
        _data_dir: data_dir_lock,
        shared,
    };
    Ok((opened, store))
}

/// Held while the process serves: the data directory's lock and, on a database several
/// replicas share, what they share besides the data.
struct OpenedStorage {
    _data_dir: DataDirLock,
    shared: Option<SharedStorage>,
}

/// What replicas on one PostgreSQL database share besides the data: the audit log (kept
/// in the same database) and the lock whose holder runs the background jobs. Without it
/// (SQLite) the audit log is `audit.db` in the data directory, and the data directory's
/// lock makes this process the runner.
#[derive(Clone)]
struct SharedStorage {
    audit: Arc<dyn AuditStore>,
    runner_lock: Arc<dyn RunnerLock>,
}

fn open_sqlite(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqliteStore::open(path)
        .with_context(|| format!("opening the SQLite database {}", path.display()))?;
    Ok(Arc::new(store))
}

async fn open_url(
    url: &StorageUrl,
    storage: &StorageArgs,
    migrate: bool,
) -> anyhow::Result<(Arc<dyn Store>, Option<SharedStorage>)> {
    Ok(match url {
        StorageUrl::Sqlite(path) => (open_sqlite(path)?, None),
        StorageUrl::Postgres(url) => {
            let settings = PostgresSettings {
                url: url.clone(),
                tls: TlsSettings {
                    ca_file: storage.storage_ca_file.clone(),
                },
            };
            let store = if migrate {
                PostgresStore::connect_and_migrate(&settings).await
            } else {
                PostgresStore::connect(&settings).await
            };
            let store = store.context("opening the PostgreSQL storage")?;
            let shared = SharedStorage {
                audit: Arc::new(store.audit_store()?),
                runner_lock: store.runner_lock(),
            };
            (Arc::new(store), Some(shared))
        }
    })
}

/// `scaivault-server migrate`: the schema step of an upgrade, run once (a Job, an init
/// container) before the new version's replicas start.
async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let Some(url) = args.storage.url().map_err(anyhow::Error::msg)? else {
        bail!("name the storage to migrate: --storage postgres://... (or SCAIVAULT_STORAGE)");
    };
    let (store, _) = open_url(&url, &args.storage, true).await?;
    store
        .ping()
        .await
        .context("checking the migrated storage")?;
    println!("The {} schema is current.", store.backend());
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_permissions(_dir: &Path) {}

fn limits(runtime: &RuntimeArgs) -> Limits {
    Limits {
        max_value_bytes: runtime.max_value_bytes,
    }
}

fn load_master_key(args: &MasterKeyArgs) -> anyhow::Result<MasterKey> {
    match (&args.master_key, &args.master_key_file) {
        (Some(text), _) => MasterKey::from_base64(text).context("SCAIVAULT_MASTER_KEY"),
        (None, Some(path)) => MasterKey::from_file(path).context("master key file"),
        (None, None) => bail!(
            "no master key: pass --master-key-file (or SCAIVAULT_MASTER_KEY_FILE / SCAIVAULT_MASTER_KEY)"
        ),
    }
}

async fn init(args: InitArgs) -> anyhow::Result<()> {
    let master = match (&args.key.master_key, &args.key.master_key_file) {
        (None, Some(path)) if !path.exists() => {
            let key = MasterKey::generate()?;
            key.write_new_file(path)?;
            eprintln!(
                "Generated a new master key in {} (mode 0600). Back it up: without it the data is lost.",
                path.display()
            );
            key
        }
        _ => load_master_key(&args.key)?,
    };
    let (_lock, store) =
        open_store(&args.data_dir, &args.storage, args.storage.storage_migrate).await?;
    let (_, root) = Vault::initialize(store, &master, Limits { max_value_bytes: 0 }).await?;
    println!("Initialised {}", args.data_dir.display());
    println!("Root token: {}", root.expose_secret());
    println!(
        "This token is shown once. Store it safely, then start the server with `scaivault-server serve`."
    );
    Ok(())
}

/// Dev mode keeps its master key and root token in the data directory so restarts keep
/// working; that is exactly why it is not for production.
async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let (opened, store) = open_store(&args.data_dir, &args.storage, true).await?;
    let key_path = args.data_dir.join(DEV_MASTER_KEY_FILE);
    let token_path = args.data_dir.join(DEV_ROOT_TOKEN_FILE);
    let limits = limits(&args.runtime);
    let (vault, generated_root) = if Vault::is_initialized(store.as_ref()).await? {
        (
            Vault::open(store, &MasterKey::from_file(&key_path)?, limits).await?,
            None,
        )
    } else {
        let master = MasterKey::generate()?;
        master.write_new_file(&key_path)?;
        let (vault, root) = Vault::initialize(store, &master, limits).await?;
        write_secret_file(&token_path, &root)?;
        (vault, Some(root))
    };
    let root = match (args.root_token, generated_root) {
        (Some(chosen), _) => {
            if !vault.tokens.exists(&chosen).await? {
                vault
                    .tokens
                    .issue_with(chosen.clone(), root_grant("dev root"))
                    .await?;
            }
            chosen
        }
        (None, Some(generated)) => generated,
        (None, None) => SecretString::from(
            std::fs::read_to_string(&token_path)
                .with_context(|| format!("reading {}", token_path.display()))?
                .trim()
                .to_owned(),
        ),
    };
    let listener = bind(args.listen)?;
    let address = format!("http://{}", listener.local_addr()?);
    let data_dir = std::fs::canonicalize(&args.data_dir).unwrap_or(args.data_dir.clone());
    println!(
        "==> ScaiVault dev server started. NOT for production: the master key and root token are on disk."
    );
    println!("    Address:    {address}");
    println!("    Root token: {}", root.expose_secret());
    println!("    Data dir:   {}", data_dir.display());
    println!();
    println!(
        "    export SCAIVAULT_ADDR='{address}' SCAIVAULT_TOKEN='{}'",
        root.expose_secret()
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    run_server(
        vault,
        &args.data_dir,
        opened.shared.clone(),
        &args.runtime,
        listener,
        None,
        Mode::Dev,
    )
    .await
}

/// `dev` or `serve`: dev mode lets webhooks reach loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dev,
    Serve,
}

fn write_secret_file(path: &Path, secret: &SecretString) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(secret.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    reload_interval: Duration,
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let master = load_master_key(&args.key)?;
    let (opened, store) =
        open_store(&args.data_dir, &args.storage, args.storage.storage_migrate).await?;
    let vault = Vault::open(store, &master, limits(&args.runtime)).await?;
    drop(master);
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            reload_interval: args.tls_reload_interval,
        }),
        _ if args.tls_disable => {
            tracing::warn!("TLS is disabled: serve only behind a TLS-terminating proxy");
            None
        }
        _ => bail!(
            "TLS needs --tls-cert and --tls-key (or --tls-disable behind a TLS-terminating proxy)"
        ),
    };
    let listener = bind(args.listen)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "ScaiVault listening on {scheme}://{}",
        listener.local_addr()?
    );
    run_server(
        vault,
        &args.data_dir,
        opened.shared.clone(),
        &args.runtime,
        listener,
        tls,
        Mode::Serve,
    )
    .await
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the certificate when either file changes; a broken new pair is logged and the
/// old one keeps serving.
fn watch_certificates(config: RustlsConfig, files: TlsFiles, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut seen = (modified(&files.cert), modified(&files.key));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(files.reload_interval) => {}
                _ = shutdown.changed() => return,
            }
            let now = (modified(&files.cert), modified(&files.key));
            if now == seen {
                continue;
            }
            match config.reload_from_pem_file(&files.cert, &files.key).await {
                Ok(()) => {
                    tracing::info!("TLS certificate reloaded");
                    seen = now;
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one")
                }
            }
        }
    });
}

async fn run_server(
    vault: Vault,
    data_dir: &Path,
    shared: Option<SharedStorage>,
    runtime: &RuntimeArgs,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    mode: Mode,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(JobRegistry::default());
    let kubernetes = KubernetesAuth::from_args(&runtime.kubernetes).await?;
    let audit_store: Arc<dyn AuditStore> = match &shared {
        Some(shared) => Arc::clone(&shared.audit),
        None => Arc::new(
            SqliteAuditStore::open(&data_dir.join(AUDIT_DB_FILE), runtime.audit_sync)
                .context("opening the audit database")?,
        ),
    };
    let tail = stored_tail(audit_store.as_ref())
        .await
        .context("reading the audit log")?;
    let checkpoints = Arc::new(
        Checkpoints::open(
            Arc::clone(&vault.store),
            Arc::clone(&vault.audit_signer),
            audit_store.as_ref(),
            vault.audit_signer_is_new,
            &tail,
        )
        .await
        .context("writing the audit checkpoint")?,
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let leadership = match &shared {
        Some(shared) => Leadership::campaign(
            Arc::clone(&vault.store),
            Arc::clone(&shared.runner_lock),
            shutdown_rx.clone(),
        ),
        None => Leadership::sole(&vault.store)
            .await
            .context("beginning the job runner's term")?,
    };
    let jobs = Arc::new(Jobs {
        store: Arc::clone(&vault.store),
        access: Arc::clone(&vault.access),
        registry: Arc::clone(&registry),
        metrics: Arc::clone(&metrics),
        intervals: JobIntervals {
            expiry_purge: runtime.purge_interval,
            access_flush: runtime.access_flush_interval,
            token_purge: Duration::from_secs(3600),
        },
        leadership: leadership.clone(),
        audit_retention: runtime.audit_retention.map(|keep| AuditRetention {
            store: Arc::clone(&audit_store),
            checkpoints: Arc::clone(&checkpoints),
            keep,
        }),
    });
    let mut job_handles = Arc::clone(&jobs).spawn(shutdown_rx.clone());
    let writer = if runtime.audit_disable {
        tracing::warn!("the audit log is disabled: requests leave no trace");
        None
    } else {
        let (writer, tail) = AuditWriter::start(
            Arc::clone(&audit_store),
            crate::audit::record::ChainKey::new(&vault.audit_chain_key),
            tail,
        )
        .context("starting the audit log")?;
        let cadence = Cadence {
            records: runtime.audit_checkpoint_records,
            interval: runtime.audit_checkpoint_interval,
        };
        job_handles.push(Arc::clone(&checkpoints).spawn(tail, cadence, shutdown_rx.clone()));
        Some(writer)
    };
    let audit = AuditService::new(
        Arc::clone(&audit_store),
        writer,
        Arc::clone(&checkpoints),
        &vault.audit_hmac_key,
        &vault.audit_chain_key,
    );
    let vault = Arc::new(vault);
    job_handles.push(jobs.spawn_rotation(
        Arc::new(RotationScheduler {
            vault: Arc::clone(&vault),
            audit: audit.writer.clone(),
        }),
        runtime.rotation_check_interval,
        shutdown_rx.clone(),
    ));
    let exporter = Arc::new(Exporter::new(
        Arc::clone(&audit_store),
        runtime.audit_export_dir.clone(),
        leadership.clone(),
        Arc::clone(&vault) as Arc<dyn CredentialsSource>,
    ));
    job_handles.push(Arc::clone(&exporter).spawn_resumer(shutdown_rx.clone()));
    // On SQLite this process is the only writer and keeps its memory current itself;
    // replicas on a shared database learn each other's changes from the feed.
    if shared.is_some() {
        let follower = Follower::start(Arc::clone(&vault))
            .await
            .context("starting to follow the change feed")?;
        job_handles.push(follower.spawn(shutdown_rx.clone()));
    }
    let events = EventHub::start(Arc::clone(&vault.store), shutdown_rx.clone())
        .await
        .context("starting the event hub")?;
    let webhooks = Arc::new(
        WebhookService::new(
            Arc::clone(&vault.store),
            Arc::clone(&vault.barrier),
            AddressPolicy {
                allowed: runtime.webhook_allow_networks.clone(),
                loopback: mode == Mode::Dev,
            },
        )
        .context("starting webhook delivery")?,
    );
    job_handles.push(
        Arc::new(Dispatcher::new(
            Arc::clone(&webhooks),
            audit.writer.clone(),
            Arc::clone(&vault.authz),
            leadership.clone(),
            Arc::clone(&metrics),
        ))
        .spawn(shutdown_rx.clone()),
    );
    let state = Arc::new(AppState {
        webhooks,
        audit,
        exporter,
        events,
        vault,
        leadership,
        limiter: RateLimiter::new(runtime.rate_limit_per_minute),
        metrics,
        jobs: registry,
        started: Instant::now(),
        kubernetes,
        limits: HttpLimits {
            max_body_bytes: runtime.max_body_bytes,
            max_concurrent_requests: runtime.max_concurrent_requests as usize,
            request_timeout: runtime.request_timeout,
        },
        readiness: Default::default(),
    });
    spawn_limiter_pruning(Arc::clone(&state), shutdown_rx.clone());
    let router = app(Arc::clone(&state));
    let handle = Handle::new();
    let signal_handle = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        signal_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        Some(files) => {
            let config = RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .context("loading TLS certificate and key")?;
            watch_certificates(config.clone(), files, shutdown_rx.clone());
            axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await
        }
    };
    let _ = shutdown_tx.send(true);
    for h in job_handles {
        let _ = h.await;
    }
    // Reads counted since the last flush would otherwise be lost on a clean stop.
    if let Err(e) = jobs.flush_access_counts().await {
        tracing::warn!(error = %e, "final access-count flush failed");
    }
    served.context("server error")
}

fn spawn_limiter_pruning(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(300)) => state.limiter.prune_idle(),
                _ = shutdown.changed() => return,
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
