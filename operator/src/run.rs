//! The operator's life: metrics server, leader election, then (as leader) both
//! controllers until SIGTERM / ctrl-c; the lease is released on the way out.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::Request;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::client::ClientBuilder;
use kube::client::retry::RetryPolicy;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DeserializeGuard;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, controller, reflector, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tower::buffer::BufferLayer;
use tower::limit::RateLimitLayer;
use tower::retry::RetryLayer;
use tower::util::MapRequestLayer;

use crate::admin::{AdminClient, TokenFile};
use crate::config::Args;
use crate::context::{Context, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::crd::{VaultPolicy, VaultSecret};
use crate::fair::{Call, FairGate};
use crate::lease::{LeaderElector, LeaseConfig, LeaseRuntime};
use crate::mac::{self, MacKey};
use crate::metrics::{KubeRequestLabels, Metrics, method_label};
use crate::owned_secret::OwnedSecret;
use crate::source_index::SourceIndex;
use crate::vault_auth::VaultAuth;
use crate::{event_stream, vault_policy, vault_secret};

const MAC_KEY_FIELD: &str = "key";
/// VaultSecret reconciles the Controller runs at once, per slot of the fair gate: a due
/// object either takes a slot or is parked there and its reconcile ends at once, so this
/// only bounds the short-lived rest (and keeps the Controller's tables small).
const ADMITTED_PER_SLOT: u16 = 4;
/// VaultPolicy reconciles at once (each is a few admin calls to the vault).
const POLICY_CONCURRENCY: u16 = 4;

async fn kube_config(args: &Args) -> anyhow::Result<kube::Config> {
    match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("kubeconfig")
        }
        None => kube::Config::infer()
            .await
            .context("Kubernetes config (in-cluster or $KUBECONFIG)"),
    }
}

/// A layer counting each request in `kube_requests_total{client}`.
fn counted(
    metrics: &Arc<Metrics>,
    client: &'static str,
) -> MapRequestLayer<
    impl Fn(Request<kube::client::Body>) -> Request<kube::client::Body> + Clone + use<>,
> {
    let metrics = metrics.clone();
    MapRequestLayer::new(move |req: Request<kube::client::Body>| {
        metrics
            .kube_requests
            .get_or_create(&KubeRequestLabels {
                client,
                method: method_label(req.method()),
            })
            .inc();
        req
    })
}

/// Requests waiting for the controllers' connection; the rate limit above keeps it short.
const RETRY_BUFFER: usize = 1024;

/// Two clients of one config: the controllers' (at most `--kube-qps` requests a second;
/// the client's one request queue makes the limit shared by every clone) and the lease's,
/// with a connection pool of its own and no limit, so a renewal never waits behind
/// reconcile traffic in this process. The lease's is built inside `lease`: its request
/// queue's task runs there, and so do its connections (spawned by the tasks using it).
pub async fn kube_clients(
    args: &Args,
    metrics: &Arc<Metrics>,
    lease: &LeaseRuntime,
) -> anyhow::Result<KubeClients> {
    let config = kube_config(args).await?;
    let lease = {
        let _on_lease_thread = lease.handle().enter();
        ClientBuilder::try_from(config.clone())
            .context("Kubernetes client")?
            .with_layer(&counted(metrics, "lease"))
            .build()
    };
    let controllers = ClientBuilder::try_from(config)
        .context("Kubernetes client")?
        .with_layer(&counted(metrics, "controllers"))
        // Inside the rate limit: an answer of the apiserver's priority and fairness (429)
        // or a busy apiserver (503/504) is retried with backoff without taking more of it.
        // (A retry clones the service under it: the buffer makes that a cheap handle.)
        .with_layer(&BufferLayer::new(RETRY_BUFFER))
        .with_layer(&RetryLayer::new(RetryPolicy::default()))
        .with_layer(&RateLimitLayer::new(args.kube_qps, Duration::from_secs(1)))
        .build();
    Ok(KubeClients { controllers, lease })
}

pub struct KubeClients {
    pub controllers: Client,
    pub lease: Client,
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

/// Both controllers, and the watch of pods admitted without the agent, until `stop`.
/// `secret_writer` fills `ctx.secrets` from the watch of owned Secrets.
async fn run_controllers(
    args: &Args,
    ctx: Arc<Context>,
    secret_writer: reflector::store::Writer<OwnedSecret>,
    secrets_ready: watch::Sender<bool>,
    calls: futures::channel::mpsc::UnboundedReceiver<Call>,
    stop: watch::Receiver<bool>,
) {
    let client = ctx.client.clone();
    let ctx_for_purge = ctx.clone();
    let ctx_for_ready = ctx.clone();
    let ctx_for_pods = ctx.clone();
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
    // Which VaultSecrets read which vault path, for the event stream (none without it);
    // kept from the watch before the store takes each change (`source_index`).
    let index = args.event_stream.then(|| Arc::new(SourceIndex::default()));
    let vs_stream = watcher(vs_api, watcher::Config::default())
        .default_backoff()
        .modify(|vs| vault_secret::slim(vs.meta_mut()))
        .inspect_ok({
            let index = index.clone();
            let store = reader.clone();
            move |event| {
                if let Some(index) = &index {
                    index.observe(event, &store);
                }
            }
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(generation_and_uid, Default::default());
    let mac_key = ctx.mac_key.clone();
    // The owned Secrets go into the cache as `OwnedSecret`s, and a change of one
    // reconciles the VaultSecrets owning it.
    let owned_secrets = reflector::reflector(
        secret_writer,
        watcher(
            secret_api,
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
        .default_backoff()
        .map_ok(move |event| OwnedSecret::project_event(event, &mac_key)),
    )
    .touched_objects()
    .filter_map(|secret| {
        std::future::ready(match secret {
            Ok(secret) => Some(futures::stream::iter(secret.owners().collect::<Vec<_>>())),
            Err(e) => {
                tracing::debug!(error = %e, "owned Secret watch");
                None
            }
        })
    })
    .flatten();
    // The fair gate's calls: parked objects whose turn has come. One that is gone gives
    // its slot back at once.
    let calls = {
        let store = reader.clone();
        let gate = ctx.gate.clone();
        calls.filter_map(move |call| {
            let obj = ObjectRef::new(&call.name).within(&call.namespace);
            std::future::ready(if store.get(&obj).is_some() {
                Some(obj)
            } else {
                gate.forfeit(&call.namespace, &call.name);
                None
            })
        })
    };
    // VaultSecrets whose source the vault's event stream reported changed.
    let (changed_tx, changed_rx) = futures::channel::mpsc::unbounded();
    let subscription = {
        let subscription = index.map(|index| event_stream::Subscription {
            ctx: ctx.clone(),
            index,
            store: reader.clone(),
            trigger: changed_tx,
        });
        let stop = stop.clone();
        async move {
            match subscription {
                Some(s) => s.run(stop).await,
                None => tracing::info!(
                    "--event-stream=false: VaultSecrets refresh on their refreshInterval only"
                ),
            }
        }
    };
    let admitted = args.reconcile_concurrency.saturating_mul(ADMITTED_PER_SLOT);
    let secrets = Controller::for_stream(vs_stream, reader)
        .with_config(controller::Config::default().concurrency(admitted))
        .reconcile_on(owned_secrets)
        .reconcile_on(calls)
        .reconcile_on(changed_rx)
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
        .with_config(controller::Config::default().concurrency(POLICY_CONCURRENCY))
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
    // Shared vault reads are dropped once too old to be shared.
    let purge = {
        let ctx = ctx_for_purge;
        let mut stop = stop.clone();
        async move {
            let mut tick = tokio::time::interval(crate::shared_reads::PURGE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => ctx.reads.purge(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    };
    // Pods that opted in to the agent but were admitted without it.
    let not_injected = {
        let ctx = ctx_for_pods;
        let namespace = args.watch_namespace.clone();
        let enabled = args.flag_uninjected_pods;
        let stop = stop.clone();
        async move {
            if enabled {
                crate::not_injected::run(ctx, namespace, stop).await;
            } else {
                tracing::info!("--flag-uninjected-pods=false: pods are not watched");
            }
        }
    };
    // One waiter on the store (it wakes only one), many on the watch channel.
    let ready = {
        let store = ctx_for_ready.secrets.clone();
        async move {
            if store.wait_until_ready().await.is_ok() {
                secrets_ready.send_replace(true);
            }
        }
    };
    futures::join!(secrets, policies, purge, ready, subscription, not_injected);
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
    let metrics = Arc::new(Metrics::default());
    let lease_runtime = LeaseRuntime::start().context("starting the lease thread")?;
    let kube = kube_clients(&args, &metrics, &lease_runtime).await?;
    let client = kube.controllers;
    let (base, admin) = vault_clients(&args)?;
    let identity = args.identity();

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
        kube.lease,
        LeaseConfig {
            namespace: args.lease_namespace(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: args.lease_duration,
            renew_interval: args.renew_interval,
        },
    );
    let (leader_tx, mut leader_rx) = watch::channel(false);
    // On the lease thread: renewals never wait for the controllers' thread.
    let mut election = lease_runtime
        .handle()
        .spawn(elector.run(leader_tx, stop_rx.clone()));

    tracing::info!(%identity, lease = %args.lease_name, "waiting for leadership");
    let mut stop = stop_rx.clone();
    tokio::select! {
        r = leader_rx.wait_for(|l| *l) => {
            if r.is_err() {
                // The election task ended before we ever led: it failed.
                let why = match (&mut election).await {
                    Ok(_) => "leader election ended".to_owned(),
                    Err(e) => format!("leader election task failed: {e}"),
                };
                metrics.set_unhealthy(why.clone());
                anyhow::bail!(why);
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    if !*stop_rx.borrow() {
        metrics.leader.set(1);
        tracing::info!(%identity, "leading; starting controllers");
        let lost = async {
            // Resolves once leadership is gone: `false` published, or the election task
            // ended without a shutdown (it failed).
            if leader_rx.wait_for(|l| !*l).await.is_err() && *stop_rx.borrow() {
                std::future::pending::<()>().await;
            }
        };
        let lead = async {
            let mac_key =
                Arc::new(mac_key(&client, &args.operator_namespace, &args.mac_key_secret).await?);
            let (secrets, secret_writer) = reflector::store();
            let (secrets_ready_tx, secrets_ready) = watch::channel(false);
            let (calls_tx, calls_rx) = futures::channel::mpsc::unbounded();
            let events = crate::events::Events::new(
                client.clone(),
                Reporter {
                    controller: FIELD_MANAGER.to_owned(),
                    instance: Some(identity.clone()),
                },
            );
            let ctx = Arc::new(Context {
                client: client.clone(),
                events,
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
                gate: FairGate::new(usize::from(args.reconcile_concurrency), calls_tx),
                secrets,
                secrets_ready,
                reads: Default::default(),
                changed: Default::default(),
                epoch: std::time::Instant::now(),
            });
            run_controllers(
                &args,
                ctx,
                secret_writer,
                secrets_ready_tx,
                calls_rx,
                stop_rx.clone(),
            )
            .await;
            anyhow::Ok(())
        };
        tokio::select! {
            r = lead => {
                if let Err(e) = r {
                    metrics.set_unhealthy(format!("{e:#}"));
                    return Err(e);
                }
                if !*stop_rx.borrow() {
                    let why = "the controllers stopped on their own".to_owned();
                    metrics.set_unhealthy(why.clone());
                    anyhow::bail!(why);
                }
            }
            // Someone else holds the lease now, or renewals kept failing: stop writing at
            // once (dropping the controllers cancels their reconciles) and exit non-zero,
            // so the pod restarts and contends again as a standby. Nothing here waits on
            // the metrics server or on the apiserver beyond a short, bounded release.
            () = lost => {
                metrics.leader.set(0);
                let why = match (&mut election).await {
                    Ok((elector, Some(why))) => {
                        release(&lease_runtime, elector, &args).await;
                        format!("lost the leader lease: {why}")
                    }
                    Ok((_, None)) => "lost the leader lease".to_owned(),
                    Err(e) => format!("leader election task failed: {e}"),
                };
                metrics.set_unhealthy(why.clone());
                anyhow::bail!(why);
            }
        }
        metrics.leader.set(0);
    }
    match election.await {
        Ok((elector, _)) => release(&lease_runtime, elector, &args).await,
        Err(e) => tracing::warn!(error = %e, "leader election task failed"),
    }
    metrics.set_ready(false);
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "metrics server");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Gives the lease up if we still hold it, so a standby takes over at once; bounded by
/// the renew interval (a slow apiserver must not hold the exit back). On the lease
/// thread, where the lease's client lives.
async fn release(lease: &LeaseRuntime, elector: LeaderElector, args: &Args) {
    let within = args.renew_interval;
    let released = lease
        .handle()
        .spawn(async move { tokio::time::timeout(within, elector.release()).await });
    match released.await {
        Ok(Ok(Ok(()))) => tracing::info!("released the leader lease"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader lease failed"),
        Ok(Err(_)) => tracing::warn!("releasing the leader lease timed out"),
        Err(e) => tracing::warn!(error = %e, "releasing the leader lease: task failed"),
    }
}
