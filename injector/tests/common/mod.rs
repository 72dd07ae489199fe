//! What the injector's suites share: the injector binary as a process, and the example
//! MutatingWebhookConfiguration pointed at it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use scaivault_testkit::kube::KubeEnv;
use scaivault_testkit::{Process, repo_root, wait_for, wait_for_blocking};
use serde_json::{Value, json};

pub const AUDIENCE: &str = "vault-e2e";

pub struct Injector {
    pub process: Process,
    pub port: u16,
}

impl Injector {
    /// With an agent image and a vault that need not exist (the spec is what is checked).
    pub fn start(env: &KubeEnv, name: &str, tls: &[&str]) -> Injector {
        Injector::start_for(
            env,
            name,
            "registry.example/scaivault-agent:e2e",
            "https://vault.example:8200",
            tls,
        )
    }

    pub fn start_for(
        env: &KubeEnv,
        name: &str,
        agent_image: &str,
        vault_addr: &str,
        tls: &[&str],
    ) -> Injector {
        // Port 0: the injector binds a free port itself and logs it (a port picked here
        // could be taken by another test's process before the injector binds it).
        let mut command = Command::new(env!("CARGO_BIN_EXE_scaivault-injector"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(["--agent-image", agent_image])
            .args(["--vault-addr", vault_addr])
            .args(["--token-audience", AUDIENCE])
            .arg("--kubeconfig")
            .arg(env.kubeconfig())
            .args(tls)
            .env("SCAIVAULT_LOG", "info,scaivault_injector=debug");
        let log = env.dir().join(format!("injector-{name}.log"));
        let mut process = Process::spawn(&format!("injector {name}"), &mut command, &log);
        let port = wait_for_blocking("the injector's address", Duration::from_secs(30), || {
            if let Some(status) = process.try_wait() {
                panic!("the injector exited ({status}):\n{}", process.tail());
            }
            process.logs().lines().find_map(|line| {
                let (_, addr) = line.split_once("listening (https) addr=127.0.0.1:")?;
                addr.split_whitespace().next()?.parse().ok()
            })
        });
        Injector { process, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// `/readyz` answers 200 (caBundle published, when the injector publishes it).
    pub async fn wait_ready(&self) {
        // HTTP/1 and no idle connection kept: a test that stops the injector next blocks
        // its runtime, so an HTTP/2 connection could not answer the server's GOAWAY and
        // the graceful shutdown would wait its whole grace period for it.
        let http = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .http1_only()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = self.url("/readyz");
        wait_for("the injector ready", Duration::from_secs(30), || async {
            let r = http.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }
}

/// The example's MutatingWebhookConfiguration, named `name`, calling `port`, for `ns` only.
pub fn webhook_config(
    name: &str,
    port: u16,
    ns: &str,
    ca: Option<&str>,
) -> MutatingWebhookConfiguration {
    let yaml = std::fs::read_to_string(repo_root().join("examples/injector.yaml")).unwrap();
    let mut config = serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "MutatingWebhookConfiguration")
        .expect("examples/injector.yaml has a MutatingWebhookConfiguration");
    config["metadata"]["name"] = json!(name);
    let webhook = &mut config["webhooks"][0];
    webhook["clientConfig"] = json!({"url": format!("https://127.0.0.1:{port}/mutate")});
    if let Some(ca) = ca {
        use base64::Engine as _;
        webhook["clientConfig"]["caBundle"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    webhook["namespaceSelector"]["matchExpressions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}));
    serde_json::from_value(config).unwrap()
}

pub async fn register(client: &Client, config: &MutatingWebhookConfiguration) {
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), config)
        .await
        .expect("create MutatingWebhookConfiguration");
}

/// Creates the pod, retrying while the apiserver cannot call the webhook yet (it picks up
/// a new configuration or caBundle within moments); any other answer is returned.
pub async fn create_when_webhook_reachable(api: &Api<Pod>, pod: &Pod) -> Result<Pod, kube::Error> {
    wait_for(
        "the apiserver to reach the injector",
        Duration::from_secs(30),
        || async {
            match api.create(&PostParams::default(), pod).await {
                Err(e) if e.to_string().contains("failed calling webhook") => {
                    eprintln!("not yet: {e}");
                    None
                }
                other => Some(other),
            }
        },
    )
    .await
}
