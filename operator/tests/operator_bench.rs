//! `make bench-operator` (bench/operator/README.md): the operator at scale against the real
//! kube-apiserver of `e2e/` and a real `scaivault-server dev`, release builds. Ignored, so
//! `cargo test` / `make test` never run it.
//!
//! For `BENCH_OPERATOR_SIZE` VaultSecrets across 10 namespaces (one ServiceAccount each,
//! `refreshInterval` `BENCH_OPERATOR_REFRESH`): the cold sync time (operator started with
//! every VaultSecret already created, until all are `Ready`), the steady-state requests
//! to the apiserver over `BENCH_OPERATOR_STEADY_SECONDS` (counted by the operator and by
//! the apiserver's `apiserver_request_total`), the operator's RSS, and the same after an
//! operator restart. Prints one `BENCH-OPERATOR {json}` line and writes it to
//! `$BENCH_OPERATOR_OUT/operator-<size>.json` when set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod eso;

use std::time::{Duration, Instant};

use common::{
    Operator, count_listed, grant_read, namespace, root, service_account, shared_with, wait_for,
};
use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, PostParams};
use scaivault_client::api::secrets::WriteSecretRequest;
use scaivault_operator::crd::{ConditionStatus, VaultSecret};
use serde_json::{Value, json};

const NAMESPACES: usize = 10;
/// Requests in flight while loading the vault and the apiserver.
const LOAD_CONCURRENCY: usize = 32;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Sum of the samples whose line starts with `prefix`.
fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// VmRSS and VmHWM of a process, MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn apiserver_requests(client: &Client) -> f64 {
    let text = client
        .request_text(
            axum::http::Request::get("/metrics")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .expect("apiserver /metrics");
    sum(&text, "apiserver_request_total{")
}

/// What the operator and the apiserver have counted so far.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    kube_requests: f64,
    kube_writes: f64,
    lease_requests: f64,
    vault_reads: f64,
    secret_writes: f64,
    reconciles_ok: f64,
    apiserver: f64,
}

async fn counts(op: &Operator, client: &Client) -> Counts {
    let text = op.metrics().await.expect("operator /metrics");
    let ctl = "scaivault_operator_kube_requests_total{client=\"controllers\"";
    Counts {
        kube_requests: sum(&text, ctl),
        kube_writes: ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .map(|m| sum(&text, &format!("{ctl},method=\"{m}\"}}")))
            .sum(),
        lease_requests: sum(
            &text,
            "scaivault_operator_kube_requests_total{client=\"lease\"",
        ),
        vault_reads: sum(&text, "scaivault_operator_vault_reads_total"),
        secret_writes: sum(&text, "scaivault_operator_secret_writes_total"),
        reconciles_ok: sum(
            &text,
            "scaivault_operator_reconciles_total{kind=\"VaultSecret\",result=\"ok\"}",
        ),
        apiserver: apiserver_requests(client).await,
    }
}

async fn ready_total(client: &Client, namespaces: &[String]) -> usize {
    let mut n = 0;
    for ns in namespaces {
        let api = Api::<VaultSecret>::namespaced(client.clone(), ns);
        n += count_listed(&api, |vs| {
            vs.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == ConditionStatus::True)
            })
        })
        .await;
    }
    n
}

/// Waits until this operator process has reconciled `n` VaultSecrets successfully.
async fn wait_reconciled(op: &Operator, n: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    wait_for(&format!("{n} VaultSecrets reconciled"), timeout, || async {
        let text = op.metrics().await?;
        let ok = sum(
            &text,
            "scaivault_operator_reconciles_total{kind=\"VaultSecret\",result=\"ok\"}",
        );
        (ok >= n as f64).then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by make bench-operator"]
async fn operator_at_scale() {
    let n: usize = env_or("BENCH_OPERATOR_SIZE", "1000").parse().unwrap();
    let steady_secs: u64 = env_or("BENCH_OPERATOR_STEADY_SECONDS", "150")
        .parse()
        .unwrap();
    let refresh = env_or("BENCH_OPERATOR_REFRESH", "1m");
    let extra = env_or("BENCH_OPERATOR_ARGS", "");
    // The vault's per-identity rate limit (1,000/min by default) is not what is measured.
    let shared = shared_with(&["--rate-limit-per-minute", "0"]).await;
    let client = shared.env.client().await;
    let vault = root(&shared.vault);
    let operator_ns = namespace(&client, "bench-operator").await;
    let mut namespaces = Vec::new();
    for i in 0..NAMESPACES {
        let ns = namespace(&client, &format!("bench-{i}")).await;
        service_account(&client, &ns, "app").await;
        grant_read(&vault, &ns, "app", &format!("bench/{ns}")).await;
        namespaces.push(ns);
    }
    let items: Vec<(String, usize)> = (0..n)
        .map(|i| (namespaces[i % NAMESPACES].clone(), i))
        .collect();

    let load_average_at_start = loadavg();
    let load = Instant::now();
    stream::iter(items.iter().cloned())
        .for_each_concurrent(LOAD_CONCURRENCY, |(ns, i)| {
            let vault = vault.clone();
            async move {
                let Value::Object(data) = json!({"value": format!("v{i}-{}", "x".repeat(64))})
                else {
                    unreachable!()
                };
                let request = WriteSecretRequest {
                    data,
                    secret_type: None,
                    metadata: None,
                    options: None,
                };
                vault
                    .write(&format!("bench/{ns}/s{i}"), &request)
                    .await
                    .expect("vault write");
            }
        })
        .await;
    stream::iter(items.iter().cloned())
        .for_each_concurrent(LOAD_CONCURRENCY, |(ns, i)| {
            let client = client.clone();
            let refresh = refresh.clone();
            async move {
                let vs: VaultSecret = serde_json::from_value(json!({
                    "apiVersion": "scaivault.io/v1alpha1", "kind": "VaultSecret",
                    "metadata": {"name": format!("s{i}")},
                    "spec": {"path": format!("bench/{ns}/s{i}"), "serviceAccountName": "app",
                             "refreshInterval": refresh, "target": {"name": format!("s{i}")}},
                }))
                .unwrap();
                Api::<VaultSecret>::namespaced(client, &ns)
                    .create(&PostParams::default(), &vs)
                    .await
                    .expect("create VaultSecret");
            }
        })
        .await;
    let load_secs = load.elapsed().as_secs_f64();

    let mut args: Vec<String> = [
        "--vault-addr",
        &shared.vault.address,
        "--kubeconfig",
        &shared.env.kubeconfig().display().to_string(),
        "--operator-namespace",
        &operator_ns,
        "--identity",
        "bench-operator",
        "--vault-token-file",
        &shared.vault.token_file().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.split_whitespace().map(str::to_owned));
    let timeout = Duration::from_secs(120 + n as u64 / 10);

    // Cold sync: every VaultSecret exists before the operator starts.
    let spawned = Instant::now();
    let mut op = Operator::start_args(shared, "bench", "bench-operator", args);
    wait_reconciled(&op, n, timeout).await;
    // The counter also counts a second sync of one object: confirm on the objects.
    wait_for("every VaultSecret Ready", timeout, || async {
        (ready_total(&client, &namespaces).await == n).then_some(())
    })
    .await;
    let cold = spawned.elapsed();
    let pid = op.pid().unwrap();
    let after_cold = counts(&op, &client).await;
    let rss_cold = rss_mib(pid);

    // Steady state: a measurement window of several refresh intervals.
    tokio::time::sleep(Duration::from_secs(steady_secs)).await;
    let after_steady = counts(&op, &client).await;
    let rss_steady = rss_mib(pid);
    let minutes = steady_secs as f64 / 60.0;
    let per_thousand = 1000.0 / n as f64;
    let rate = |a: f64, b: f64| (b - a) / minutes * per_thousand;

    // Restart: a new process over the same objects must rewrite nothing.
    let restarted = Instant::now();
    assert!(op.terminate().success(), "{}", op.logs());
    op.spawn();
    wait_reconciled(&op, n, timeout).await;
    let restart = restarted.elapsed();
    let after_restart = counts(&op, &client).await;
    let rss_restart = rss_mib(op.pid().unwrap());
    assert_eq!(
        after_restart.secret_writes, 0.0,
        "the restart rewrote Secrets"
    );
    // The peer runs alone on the apiserver.
    assert!(op.terminate().success(), "{}", op.logs());

    let mut result = json!({
        "size": n,
        // Other work on the machine skews every figure; the ratios less so (same run).
        "loadavg_at_start": load_average_at_start,
        "loadavg_before_peer": loadavg(),
        "namespaces": NAMESPACES,
        "refresh_interval": refresh,
        "operator_args": extra,
        "load_seconds": load_secs,
        "cold_sync_seconds": cold.as_secs_f64(),
        "cold_sync_per_second": n as f64 / cold.as_secs_f64(),
        "cold": {
            "kube_requests": after_cold.kube_requests,
            "kube_writes": after_cold.kube_writes,
            "vault_reads": after_cold.vault_reads,
            "secret_writes": after_cold.secret_writes,
            "rss_mib": rss_cold.0, "peak_rss_mib": rss_cold.1,
        },
        "steady": {
            "seconds": steady_secs,
            "operator_requests_per_min_per_1000": rate(after_cold.kube_requests, after_steady.kube_requests),
            "operator_writes_per_min_per_1000": rate(after_cold.kube_writes, after_steady.kube_writes),
            "lease_requests_per_min": (after_steady.lease_requests - after_cold.lease_requests) / minutes,
            "apiserver_requests_per_min_per_1000": rate(after_cold.apiserver, after_steady.apiserver),
            "vault_reads_per_min_per_1000": rate(after_cold.vault_reads, after_steady.vault_reads),
            "reconciles_per_min_per_1000": rate(after_cold.reconciles_ok, after_steady.reconciles_ok),
            "rss_mib": rss_steady.0, "peak_rss_mib": rss_steady.1,
        },
        "restart": {
            "all_reconciled_seconds": restart.as_secs_f64(),
            "kube_requests": after_restart.kube_requests,
            "kube_writes": after_restart.kube_writes,
            "vault_reads": after_restart.vault_reads,
            "secret_writes": after_restart.secret_writes,
            "rss_mib": rss_restart.0, "peak_rss_mib": rss_restart.1,
        },
    });
    // Kept before the peer runs, so a peer that fails loses nothing of this run.
    save(&result);
    if let Some(bin) = std::env::var_os("BENCH_ESO_BIN").filter(|b| !b.is_empty()) {
        let peer = eso_peer(
            &shared.env,
            &client,
            bin.into(),
            n,
            &refresh,
            steady_secs,
            timeout,
        )
        .await;
        result["ratios"] = ratios(&result, &peer);
        result["eso"] = peer;
        result["loadavg_at_end"] = loadavg();
        save(&result);
    }
    println!("BENCH-OPERATOR {result}");
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Writes `$BENCH_OPERATOR_OUT/operator-<size>.json` when the variable is set.
fn save(result: &Value) {
    if let Ok(dir) = std::env::var("BENCH_OPERATOR_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/operator-{}.json", result["size"]),
            serde_json::to_string_pretty(result).unwrap(),
        )
        .unwrap();
    }
}

/// Polls `probe` every 100 ms until it holds or `timeout` passes; whether it held.
async fn within<F, Fut>(timeout: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// ScaiVault / ESO for the figures both runs measure (below 1 = ScaiVault needs less).
fn ratios(ours: &Value, eso: &Value) -> Value {
    let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!(a / b),
        _ => Value::Null,
    };
    json!({
        "cold_sync_seconds": ratio(&ours["cold_sync_seconds"], &eso["cold_sync_seconds"]),
        "cold_kube_requests": ratio(&ours["cold"]["kube_requests"], &eso["cold"]["kube_requests"]),
        "steady_operator_requests_per_min": ratio(
            &ours["steady"]["operator_requests_per_min_per_1000"],
            &eso["steady"]["operator_requests_per_min_per_1000"]),
        "steady_apiserver_requests_per_min": ratio(
            &ours["steady"]["apiserver_requests_per_min_per_1000"],
            &eso["steady"]["apiserver_requests_per_min_per_1000"]),
        "steady_rss": ratio(&ours["steady"]["rss_mib"], &eso["steady"]["rss_mib"]),
        "peak_rss": ratio(&ours["steady"]["peak_rss_mib"], &eso["steady"]["peak_rss_mib"]),
        "restart_seconds": ratio(&ours["restart"]["all_reconciled_seconds"], &eso["restart"]["all_reconciled_seconds"]),
    })
}

/// The same workload for External Secrets Operator: the same N values in OpenBao, N
/// ExternalSecrets in 10 other namespaces, ESO started once all exist.
async fn eso_peer(
    env: &common::KubeEnv,
    client: &Client,
    bin: std::path::PathBuf,
    n: usize,
    refresh: &str,
    steady_secs: u64,
    timeout: Duration,
) -> Value {
    let crds = std::env::var_os("BENCH_ESO_CRDS").expect("BENCH_ESO_CRDS: the ESO CRD bundle");
    eso::install_crds(client, std::path::Path::new(&crds)).await;
    let bao = eso::OpenBao::start(&env.dir().join("openbao.log")).await;
    let load = Instant::now();
    let namespaces = eso::load(client, &bao, n, NAMESPACES, refresh, LOAD_CONCURRENCY).await;
    let load_secs = load.elapsed().as_secs_f64();
    let args: Vec<String> = env_or("BENCH_ESO_ARGS", "")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let spawned = Instant::now();
    let mut eso = eso::Eso::start(
        bin,
        env.kubeconfig(),
        args.clone(),
        env.dir().join("eso.log"),
    );
    // The peer may be far slower: a run that does not finish is reported, not failed.
    let synced = within(timeout, || async {
        eso::ready_total(client, &namespaces).await == n
    })
    .await;
    let cold = spawned.elapsed();
    if !synced {
        let ready = eso::ready_total(client, &namespaces).await;
        let rss = rss_mib(eso.pid());
        eso.terminate();
        return json!({
            "version": env_or("BENCH_ESO_VERSION", "unknown"),
            "args": args.join(" "),
            "cold_sync_seconds": Value::Null,
            "cold": {"ready_after_timeout": ready, "timeout_seconds": timeout.as_secs(),
                     "rss_mib": rss.0, "peak_rss_mib": rss.1},
        });
    }
    let after_cold = eso.counts().await.expect("ESO /metrics");
    let api_cold = apiserver_requests(client).await;
    let rss_cold = rss_mib(eso.pid());

    tokio::time::sleep(Duration::from_secs(steady_secs)).await;
    let after_steady = eso.counts().await.expect("ESO /metrics");
    let api_steady = apiserver_requests(client).await;
    let rss_steady = rss_mib(eso.pid());
    let minutes = steady_secs as f64 / 60.0;
    let per_thousand = 1000.0 / n as f64;
    let rate = |a: f64, b: f64| (b - a) / minutes * per_thousand;

    let restarted = Instant::now();
    eso.terminate();
    eso.spawn();
    let restart_done = within(timeout, || async {
        eso.counts()
            .await
            .is_some_and(|c| c.reconciles_ok >= n as f64)
    })
    .await;
    let restart = restarted.elapsed();
    let after_restart = eso.counts().await.expect("ESO /metrics");
    let rss_restart = rss_mib(eso.pid());
    eso.terminate();
    drop(bao);

    json!({
        "version": env_or("BENCH_ESO_VERSION", "unknown"),
        "args": args.join(" "),
        "auth": "token (SecretStore per namespace); ScaiVault logs in with each ServiceAccount",
        "load_seconds": load_secs,
        "cold_sync_seconds": cold.as_secs_f64(),
        "cold_sync_per_second": n as f64 / cold.as_secs_f64(),
        "cold": {
            "kube_requests": after_cold.kube_requests,
            "kube_writes": after_cold.kube_writes,
            "rss_mib": rss_cold.0, "peak_rss_mib": rss_cold.1,
        },
        "steady": {
            "seconds": steady_secs,
            "operator_requests_per_min_per_1000": rate(after_cold.kube_requests, after_steady.kube_requests),
            "operator_writes_per_min_per_1000": rate(after_cold.kube_writes, after_steady.kube_writes),
            "apiserver_requests_per_min_per_1000": rate(api_cold, api_steady),
            "reconciles_per_min_per_1000": rate(after_cold.reconciles_ok, after_steady.reconciles_ok),
            "rss_mib": rss_steady.0, "peak_rss_mib": rss_steady.1,
        },
        "restart": {
            "all_reconciled_seconds": restart_done.then_some(restart.as_secs_f64()),
            "kube_requests": after_restart.kube_requests,
            "kube_writes": after_restart.kube_writes,
            "rss_mib": rss_restart.0, "peak_rss_mib": rss_restart.1,
        },
    })
}
