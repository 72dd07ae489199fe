//! What only the operator's tests need on top of `scaivault-testkit`: the operator
//! process ([`Operator`]), the CRDs of `crds/`, and one test environment and vault per
//! test binary ([`shared`]).
// Each test binary uses a different part of this module and of its re-exports.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use kube::Client;
use scaivault_client::api::policy::{Permission, PolicyInput, PolicyRule};
pub use scaivault_testkit::kube::{KubeEnv, count_listed, namespace, service_account};
use scaivault_testkit::{Process, wait_for_blocking};
pub use scaivault_testkit::{Server, repo_root, wait_for};

pub const TEST_FIELD_MANAGER: &str = "scaivault-test";

/// Applies every file of `crds/` (what `kubectl apply -f crds/` does) and waits for
/// Established.
pub async fn install_crds(client: &Client) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("crds"))
        .expect("read crds/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut names = Vec::new();
    for path in files {
        let yaml = std::fs::read_to_string(&path).expect("read CRD file");
        names.extend(scaivault_testkit::kube::apply_crds(client, TEST_FIELD_MANAGER, &yaml).await);
    }
    assert_eq!(names.len(), 2, "crds/ should hold two CRDs: {names:?}");
}

/// A root-token client of a (plain HTTP) vault.
pub fn root(vault: &Server) -> scaivault_client::Client {
    scaivault_client::Client::new(vault.address.clone(), vault.token.clone()).expect("root client")
}

/// A root-made policy granting read under `prefix/**` to `k8s:<ns>/<sa>`.
pub async fn grant_read(vault: &scaivault_client::Client, ns: &str, sa: &str, prefix: &str) {
    let policy = vault
        .create_policy(&PolicyInput {
            name: format!("test-{ns}-{sa}"),
            description: None,
            rules: vec![PolicyRule {
                path_pattern: format!("{prefix}/**"),
                permissions: vec![Permission::Read],
                effect: Default::default(),
            }],
        })
        .await
        .expect("create policy");
    vault
        .bind_policy(&policy.id, &format!("k8s:{ns}/{sa}"))
        .await
        .expect("bind policy");
}

/// The test environment and vault server shared by every test of one test binary
/// (starting an apiserver per test would cost ~7 s and ~300 MB each). Statics are never
/// dropped, so a watchdog process stops both once the test process is gone.
pub struct Shared {
    pub env: KubeEnv,
    pub vault: Server,
}

static SHARED: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();

pub async fn shared() -> &'static Shared {
    shared_with(&[]).await
}

/// `shared()`, the vault started with `vault_args` by whichever test comes first.
pub async fn shared_with(vault_args: &'static [&'static str]) -> &'static Shared {
    SHARED
        .get_or_init(|| async {
            let env = KubeEnv::start();
            install_crds(&env.client().await).await;
            // Kubernetes login against the test environment.
            let vault = Server::dev()
                .arg("--kubernetes-kubeconfig")
                .arg(env.kubeconfig())
                .args(vault_args)
                .start();
            env.stop_when_process_exits(&[vault.pid().expect("vault running")], &[vault.dir()]);
            Shared { env, vault }
        })
        .await
}

/// One `scaivault-operator` process watching one namespace (which also holds its lease
/// and MAC key), so tests running side by side do not see each other's objects.
pub struct Operator {
    process: Option<Process>,
    pub identity: String,
    pub metrics_url: String,
    pub log_path: PathBuf,
    args: Vec<String>,
    log_filter: String,
}

impl Operator {
    pub fn start(shared: &Shared, ns: &str, identity: &str, extra: &[&str]) -> Operator {
        let mut op = Operator::new_in(shared, ns, identity, extra);
        op.spawn();
        op
    }

    /// With another kubeconfig (another Kubernetes identity) and operator namespace.
    pub fn start_as(
        shared: &Shared,
        kubeconfig: &Path,
        operator_ns: &str,
        ns: &str,
        identity: &str,
        extra: &[&str],
    ) -> Operator {
        let mut args = leader_args(shared, kubeconfig, operator_ns, ns, identity);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut op = Operator::new(shared, &format!("{ns}-{identity}"), identity, args);
        op.spawn();
        op
    }

    /// [`Operator::start`] not started yet, to set [`Operator::log_filter`] first.
    pub fn new_in(shared: &Shared, ns: &str, identity: &str, extra: &[&str]) -> Operator {
        let mut args = leader_args(shared, &shared.env.kubeconfig(), ns, ns, identity);
        args.extend(extra.iter().map(|s| s.to_string()));
        Operator::new(shared, &format!("{ns}-{identity}"), identity, args)
    }

    /// With exactly `args` (plus a port-0 metrics address); the log goes to
    /// `operator-<log_name>.log` in the test environment's directory.
    pub fn start_args(
        shared: &Shared,
        log_name: &str,
        identity: &str,
        args: Vec<String>,
    ) -> Operator {
        let mut op = Operator::new(shared, log_name, identity, args);
        op.spawn();
        op
    }

    /// Not started yet; [`Operator::log_filter`] then [`Operator::spawn`].
    pub fn new(shared: &Shared, log_name: &str, identity: &str, args: Vec<String>) -> Operator {
        Operator {
            process: None,
            identity: identity.to_owned(),
            metrics_url: String::new(),
            log_path: shared.env.dir().join(format!("operator-{log_name}.log")),
            args,
            log_filter: "info,kube=warn".to_owned(),
        }
    }

    /// The process's `SCAIVAULT_LOG` (default `info,kube=warn`).
    pub fn log_filter(mut self, filter: &str) -> Operator {
        self.log_filter = filter.to_owned();
        self
    }

    /// Starts the process (again) with the same arguments.
    pub fn spawn(&mut self) {
        let start_len = std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0) as usize;
        let mut process = Process::spawn(
            &format!("operator {}", self.identity),
            Command::new(env!("CARGO_BIN_EXE_scaivault-operator"))
                .args(&self.args)
                .args(["--metrics-addr", "127.0.0.1:0"])
                .env("SCAIVAULT_LOG", &self.log_filter)
                .env_remove("KUBECONFIG"),
            &self.log_path,
        );
        // The operator logs the address it bound (port 0 = a free one).
        let addr = wait_for_blocking(
            "the operator's metrics address",
            Duration::from_secs(20),
            || {
                if let Some(status) = process.try_wait() {
                    panic!("operator exited ({status}) at start:\n{}", process.tail());
                }
                let logs = process.logs();
                logs.get(start_len..)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("serving /metrics"))
                    .find_map(|l| l.split("addr=").nth(1))
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            },
        );
        self.metrics_url = format!("http://{addr}");
        self.process = Some(process);
    }

    fn process(&mut self) -> &mut Process {
        self.process.as_mut().expect("operator started")
    }

    /// SIGTERM (graceful: releases the lease) and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process().terminate(Duration::from_secs(20))
    }

    /// Waits for the process to exit on its own within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process().wait_exit(timeout)
    }

    /// SIGKILL: no chance to release the lease.
    pub fn kill(&mut self) {
        self.process().kill();
    }

    /// Same arguments, new process (new metrics port).
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "operator exited badly:\n{}", self.logs());
        self.spawn();
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::id)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `/metrics` text, or None while the server is not up.
    pub async fn metrics(&self) -> Option<String> {
        let resp = reqwest::get(format!("{}/metrics", self.metrics_url))
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// The value of one sample line (`name{labels} value`), matched by its prefix.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = self.metrics().await?;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub async fn wait_leader(&self) {
        wait_for(
            &format!("{} to lead", self.identity),
            Duration::from_secs(30),
            || async {
                (self.metric("scaivault_operator_leader ").await == Some(1.0)).then_some(())
            },
        )
        .await;
    }
}

/// The flags of a replica taking part in leader election with a short lease.
fn leader_args(
    shared: &Shared,
    kubeconfig: &Path,
    operator_ns: &str,
    ns: &str,
    identity: &str,
) -> Vec<String> {
    [
        "--vault-addr",
        &shared.vault.address,
        "--vault-token-file",
        &shared.vault.token_file().display().to_string(),
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--operator-namespace",
        operator_ns,
        "--watch-namespace",
        ns,
        "--identity",
        identity,
        "--lease-duration",
        "4s",
        "--renew-interval",
        "1s",
    ]
    .map(str::to_owned)
    .into()
}

/// Writes a secret (`data` a JSON object) with the root client; its new version.
pub async fn write(vault: &scaivault_client::Client, path: &str, data: serde_json::Value) -> u64 {
    let serde_json::Value::Object(data) = data else {
        panic!("data must be an object")
    };
    let request = scaivault_client::api::secrets::WriteSecretRequest {
        data,
        secret_type: None,
        metadata: None,
        options: None,
    };
    vault
        .write(path, &request)
        .await
        .expect("vault write")
        .version
}

/// Creates a VaultSecret `name` of `spec` in `ns`.
pub async fn create_vault_secret(
    client: &Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> scaivault_operator::crd::VaultSecret {
    use kube::api::{Api, PostParams};
    let vs: scaivault_operator::crd::VaultSecret = serde_json::from_value(serde_json::json!({
        "apiVersion": "scaivault.io/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("VaultSecret");
    Api::<scaivault_operator::crd::VaultSecret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &vs)
        .await
        .expect("create VaultSecret")
}
