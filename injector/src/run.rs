//! Starts the injector: certificate source, caBundle upkeep, the HTTPS server, graceful
//! shutdown on SIGTERM.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;

use crate::ca_bundle;
use crate::config::Args;
use crate::http::{AppState, app};
use crate::tls::{self, CertResolver, Files, SelfManaged};

/// In-flight reviews get this long after SIGTERM (the apiserver's timeout is shorter).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn kube_client(args: &Args) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("Kubernetes client configuration")?,
    };
    kube::Client::try_from(config).context("Kubernetes client")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // `_keep`: the self-managed CA never changes, but its channel must stay open.
    let (resolver, ca, _keep) = match (
        &args.tls_cert_file,
        &args.tls_key_file,
        &args.self_signed_service,
    ) {
        (Some(cert), Some(key), _) => {
            let files = Files {
                cert: cert.clone(),
                key: key.clone(),
                ca: args.tls_ca_file.clone(),
            };
            let resolver = CertResolver::new(files.load()?);
            let (ca_tx, ca_rx) = watch::channel(files.load_ca()?);
            tls::watch_files(
                files,
                Arc::clone(&resolver),
                ca_tx,
                args.tls_reload_interval,
            );
            (resolver, ca_rx, None)
        }
        (_, _, Some(service)) => {
            let managed = SelfManaged::new(service, &args.self_signed_ip)?;
            let resolver = CertResolver::new(managed.issue()?);
            let (ca_tx, ca_rx) = watch::channel(Some(managed.ca_pem().into_bytes()));
            managed.keep_renewed(Arc::clone(&resolver));
            (resolver, ca_rx, Some(ca_tx))
        }
        _ => {
            anyhow::bail!("TLS needs --tls-cert-file and --tls-key-file, or --self-signed-service")
        }
    };
    let publishes = args.webhook_config_name.is_some() && ca.borrow().is_some();
    let ready = Arc::new(AtomicBool::new(!publishes));
    if let (Some(name), true) = (&args.webhook_config_name, publishes) {
        let client = kube_client(&args).await?;
        ca_bundle::keep_current(client, name.clone(), ca, Arc::clone(&ready));
    }
    let state = Arc::new(AppState {
        config: args.injector_config(),
        ready,
    });
    let config = RustlsConfig::from_config(Arc::new(tls::server_config(resolver)?));
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    listener.set_nonblocking(true)?;
    tracing::info!(addr = %listener.local_addr()?, "scaivault-injector listening (https)");
    let handle = Handle::new();
    let signal_handle = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        signal_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(app(state).into_make_service())
        .await
        .context("server error")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
