//! The operator's life: metrics server, leader election, then (as leader) both
//! controllers until SIGTERM / ctrl-c; the lease is released on the way out.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use crate::admin::{AdminClient, TokenFile};
use crate::config::Args;
use crate::context::{Context, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::crd::{VaultPolicy, VaultSecret};
use crate::lease::{LeaderElector, LeaseConfig};
use crate::mac::{self, MacKey};
use crate::metrics::Metrics;
use crate::vault_auth::VaultAuth;
use crate::{vault_policy, vault_secret};

const MAC_KEY_FIELD: &str = "key";

pub async fn kube_client(args: &Args) -> anyhow::Result<Client> {
    match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .context("kubeconfig")?;
            Client::try_from(config).context("Kubernetes client")
        }
        None => Client::try_default()
            .await
            .context("Kubernetes client (in-cluster or $KUBECONFIG)"),
    }
}

fn vault_clients(args: &Args) -> anyhow::Result<(scaivault_client::Client, Option<AdminClient>)> {
    let mut builder = scaivault_client::Client::builder(args.vault_addr.clone());
    if let Some(ca) = &args.vault_ca_file {
        builder = builder.ca_cert_file(ca.clone());
    }
    let base = builder.build().context("vault client")?;
    let admin = match &args.vault_token_file {
        Some(path) => {
            let admin = AdminClient::new(base.clone(), TokenFile::new(path));
            // A wrong path should stop the start, not surface later on every VaultPolicy.
            admin.client().map_err(anyhow::Error::msg)?;
            Some(admin)
        }
        None => None,
    };
    Ok((base, admin))
}

/// Reads the MAC key, or creates it once (a race between replicas ends in one key: the
/// loser's create fails with 409 and it reads the winner's).
async fn mac_key(client: &Client, namespace: &str, name: &str) -> anyhow::Result<MacKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(secret) = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading MAC key Secret {namespace}/{name}"))?
        {
            let key = secret
                .data
                .as_ref()
                .and_then(|d| d.get(MAC_KEY_FIELD))
                .filter(|k| k.0.len() >= 16)
                .with_context(|| {
                    format!("Secret {namespace}/{name} has no `{MAC_KEY_FIELD}` of 16+ bytes")
                })?;
            return Ok(MacKey::new(&key.0));
        }
        let key = mac::generate_key().map_err(|_| anyhow::anyhow!("generating a MAC key"))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.to_owned(),
                    MANAGED_BY_VALUE.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                MAC_KEY_FIELD.to_owned(),
                ByteString(key),
            )])),
            ..Secret::default()
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match api.create(&pp, &secret).await {
            Ok(_) => tracing::info!(secret = %format!("{namespace}/{name}"), "created the MAC key"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating MAC key Secret {namespace}/{name}"));
            }
        }
    }
    anyhow::bail!("MAC key Secret {namespace}/{name} keeps disappearing")
}

/// Generation and uid: status writes (no generation bump) do not re-trigger a
/// reconcile, and a re-created object with the same name and generation still does.
fn generation_and_uid<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    (meta.generation?, meta.uid.as_deref()).hash(&mut h);
    Some(h.finish())
}

async fn wait_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Both controllers until `stop`.
async fn run_controllers(args: &Args, ctx: Arc<Context>, stop: watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let (vs_api, vp_api, secret_api) = match &args.watch_namespace {
        Some(ns) => (
            Api::<DeserializeGuard<VaultSecret>>::namespaced(client.clone(), ns),
            Api::<DeserializeGuard<VaultPolicy>>::namespaced(client.clone(), ns),
            Api::<Secret>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<DeserializeGuard<VaultSecret>>::all(client.clone()),
            Api::<DeserializeGuard<VaultPolicy>>::all(client.clone()),
            Api::<Secret>::all(client.clone()),
        ),
    };
    let (reader, writer) = reflector::store();
    let vs_stream = watcher(vs_api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(generation_and_uid, Default::default());
    let secrets = Controller::for_stream(vs_stream, reader)
        .owns(
            secret_api,
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
        .graceful_shutdown_on(wait_stop(stop.clone()))
        .run(
            vault_secret::reconcile_guarded,
            vault_secret::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "VaultSecret controller");
            }
        });
    // VaultPolicy sees every change (the finalizer's own metadata patch included); its
    // status is written only when it changes, so that does not loop.
    let policies = Controller::new(vp_api, watcher::Config::default())
        .graceful_shutdown_on(wait_stop(stop.clone()))
        .run(
            vault_policy::reconcile_guarded,
            vault_policy::error_policy,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "VaultPolicy controller");
            }
        });
    futures::join!(secrets, policies);
}

/// Resolves on SIGTERM or ctrl-c.
async fn signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM; ctrl-c only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.renew_interval < args.lease_duration,
        "--renew-interval ({:?}) must be shorter than --lease-duration ({:?})",
        args.renew_interval,
        args.lease_duration
    );
    let client = kube_client(&args).await?;
    let (base, admin) = vault_clients(&args)?;
    let identity = args.identity();
    let metrics = Arc::new(Metrics::default());

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested");
        stop_tx.send_replace(true);
    });

    let (addr, http) = crate::metrics::serve(
        args.metrics_addr,
        metrics.clone(),
        wait_stop(stop_rx.clone()),
    )
    .await
    .with_context(|| format!("binding the metrics address {}", args.metrics_addr))?;
    // Tests and humans read this line to find a port-0 address.
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    metrics.set_ready(true);

    let elector = LeaderElector::new(
        client.clone(),
        LeaseConfig {
            namespace: args.lease_namespace(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: args.lease_duration,
            renew_interval: args.renew_interval,
        },
    );
    let (leader_tx, mut leader_rx) = watch::channel(false);
    let election = tokio::spawn(elector.run(leader_tx, stop_rx.clone()));

    tracing::info!(%identity, lease = %args.lease_name, "waiting for leadership");
    let mut stop = stop_rx.clone();
    tokio::select! {
        r = leader_rx.wait_for(|l| *l) => { r.context("leader election ended")?; }
        _ = stop.wait_for(|s| *s) => {}
    }
    let mut outcome = Ok(());
    if !*stop_rx.borrow() {
        metrics.leader.set(1);
        tracing::info!(%identity, "leading; starting controllers");
        let mac_key = mac_key(&client, &args.operator_namespace, &args.mac_key_secret).await?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(identity.clone()),
            },
        );
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder,
            metrics: metrics.clone(),
            vault_auth: VaultAuth::new(
                client.clone(),
                base,
                args.vault_audience.clone(),
                args.vault_role.clone(),
                metrics.clone(),
            ),
            admin,
            policy_namespaces: args.policy_namespaces(),
            mac_key,
            secret_backoff: Default::default(),
            policy_backoff: Default::default(),
            last_synced: Default::default(),
        });
        tokio::select! {
            () = run_controllers(&args, ctx, stop_rx.clone()) => {}
            // Someone else holds the lease now, or the election task died: stop writing
            // at once. Exiting (non-zero) lets the process restart and contend again as
            // a standby. (The election task also ends on shutdown, closing the channel:
            // that is not a loss, and the controllers then finish on their own.)
            () = async {
                if leader_rx.wait_for(|l| !*l).await.is_err() && *stop_rx.borrow() {
                    std::future::pending::<()>().await;
                }
            } => {
                outcome = Err(anyhow::anyhow!("lost the leader lease; exiting"));
            }
        }
        metrics.leader.set(0);
    }
    let elector = match election.await {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "leader election task failed");
            None
        }
    };
    if let Some(elector) = elector {
        match elector.release().await {
            Ok(()) => tracing::info!("released the leader lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the leader lease failed"),
        }
    }
    metrics.set_ready(false);
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "metrics server");
    }
    tracing::info!("stopped");
    outcome
}
