//! Shared by the operator's tests: the real kube-apiserver of `e2e/` (`TestEnv`), the
//! real `scaivault-server dev` binary (`VaultServer`), the operator binary (`Operator`),
//! and helpers (namespaces, CRD install, polling).
//!
//! Needs the binaries of `make e2e-env` in `${E2E_BIN_DIR:-e2e/.bin}` and
//! `target/<profile>/scaivault-server` (built by `make test` / `cargo build --workspace`);
//! without them the tests fail saying what to run.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused_imports
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub const TEST_FIELD_MANAGER: &str = "scaivault-test";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

pub fn e2e_bin_dir(root: &Path) -> PathBuf {
    match std::env::var_os("E2E_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join("e2e/.bin"),
    }
}

/// A running test environment; stopped on drop, even when the test panics.
pub struct TestEnv {
    pub root: PathBuf,
    pub bin_dir: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn start() -> TestEnv {
        let root = repo_root();
        let bin_dir = e2e_bin_dir(&root);
        let missing: Vec<_> = ["kube-apiserver", "etcd", "testenv-tool"]
            .into_iter()
            .filter(|b| !bin_dir.join(b).is_file())
            .collect();
        assert!(
            missing.is_empty(),
            "e2e binaries {missing:?} missing in {}: run `make e2e-env` first \
             (or point E2E_BIN_DIR at a directory holding them)",
            bin_dir.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("scaivault-op-test-")
            .tempdir()
            .expect("temp dir");
        let env = TestEnv { root, bin_dir, dir };
        let out = env.testenv("start");
        assert!(
            out.status.success(),
            "e2e/testenv.sh start failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    pub fn testenv(&self, action: &str) -> std::process::Output {
        Command::new("bash")
            .arg(self.root.join("e2e/testenv.sh"))
            .arg(action)
            .arg(self.dir.path())
            .current_dir(&self.root)
            .env("E2E_BIN_DIR", &self.bin_dir)
            .output()
            .expect("run e2e/testenv.sh")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig()).await
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let out = self.testenv("stop");
        if !out.status.success() {
            eprintln!(
                "e2e/testenv.sh stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::thread::panicking() {
            // keep the apiserver and etcd logs for the failure
            let dir = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("temp dir"));
            eprintln!("test environment kept in {}", dir.keep().display());
        }
    }
}

pub async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// No controller-manager runs, so ServiceAccounts (even `default`) are made by hand.
pub async fn service_account(client: &Client, ns: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create ServiceAccount");
}

/// Applies every file of `crds/` (what `kubectl apply -f crds/` does) and waits for Established.
pub async fn install_crds(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let dir = repo_root().join("crds");
    let mut names = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("read crds/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("read CRD file");
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(
            &name,
            &PatchParams::apply(TEST_FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {}: {e}", path.display()));
        names.push(name);
    }
    assert_eq!(names.len(), 2, "crds/ should hold two CRDs");
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api.get(&name).await.expect("get CRD");
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "CRD {name} not Established in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// How many objects of `api` satisfy `keep`, listed in pages of 500 (a bench lists 10,000).
pub async fn count_listed<K>(api: &Api<K>, mut keep: impl FnMut(&K) -> bool) -> usize
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut n = 0;
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("list objects");
        n += page.items.iter().filter(|o| keep(o)).count();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return n,
        }
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A binary of the workspace next to this test executable (`target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} missing: build the workspace first (`cargo build --workspace`, which `make test` does)",
        bin.display()
    );
    bin
}

/// `scaivault-server dev` on a free port with its own data dir, a known root token and
/// Kubernetes login against the test environment.
pub struct VaultServer {
    pub child: Child,
    pub address: String,
    pub root_token: String,
    pub token_file: PathBuf,
    pub dir: tempfile::TempDir,
}

impl VaultServer {
    pub fn start(kubeconfig: &Path) -> VaultServer {
        VaultServer::start_with(kubeconfig, &[])
    }

    /// With extra `scaivault-server dev` flags.
    pub fn start_with(kubeconfig: &Path, extra: &[&str]) -> VaultServer {
        let dir = tempfile::Builder::new()
            .prefix("scaivault-op-vault-")
            .tempdir()
            .expect("temp dir");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root_token = format!("svt_optest_{nanos:x}_{}", std::process::id());
        let token_file = dir.path().join("root-token");
        std::fs::write(&token_file, &root_token).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(workspace_bin("scaivault-server"))
            .arg("dev")
            .args(["--listen", "127.0.0.1:0", "--root-token", &root_token])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--kubernetes-kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .env("SCAIVAULT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn scaivault-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut line = String::new();
        let address = loop {
            line.clear();
            assert!(
                Instant::now() < deadline,
                "scaivault-server printed no address"
            );
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                panic!(
                    "scaivault-server exited: {}",
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
                );
            }
            if let Some(rest) = line.trim().strip_prefix("Address:") {
                break rest.trim().to_owned();
            }
        };
        // keep draining stdout so the server never blocks on a full pipe
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        VaultServer {
            child,
            address,
            root_token,
            token_file,
            dir,
        }
    }

    pub fn root(&self) -> scaivault_client::Client {
        scaivault_client::Client::new(self.address.clone(), self.root_token.clone())
            .expect("root client")
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test environment and vault server shared by every test of one test binary
/// (starting an apiserver per test would cost ~7 s and ~300 MB each). Statics are never
/// dropped, so a watchdog process stops both once the test process is gone.
pub struct Shared {
    pub env: TestEnv,
    pub vault: VaultServer,
}

static SHARED: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();

pub async fn shared() -> &'static Shared {
    shared_with(&[]).await
}

/// `shared()`, the vault started with `vault_args` by whichever test comes first.
pub async fn shared_with(vault_args: &'static [&'static str]) -> &'static Shared {
    SHARED
        .get_or_init(|| async {
            let env = TestEnv::start();
            let client = env.client().await;
            install_crds(&client).await;
            let vault = VaultServer::start_with(&env.kubeconfig(), vault_args);
            let script = format!(
                "while kill -0 {test} 2>/dev/null; do sleep 0.5; done; kill {vault} 2>/dev/null; \
                 bash {root}/e2e/testenv.sh stop {dir} >/dev/null 2>&1; rm -rf {dir} {vdir}",
                test = std::process::id(),
                vault = vault.child.id(),
                root = env.root.display(),
                dir = env.dir.path().display(),
                vdir = vault.dir.path().display(),
            );
            // Deliberately never waited for: it must outlive this process.
            #[allow(clippy::zombie_processes)]
            let _watchdog = Command::new("bash")
                .args(["-c", &script])
                .env("E2E_BIN_DIR", &env.bin_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn watchdog");
            Shared { env, vault }
        })
        .await
}

/// One `scaivault-operator` process watching one namespace (which also holds its lease
/// and MAC key), so tests running side by side do not see each other's objects.
pub struct Operator {
    pub child: Option<Child>,
    pub identity: String,
    pub metrics_url: String,
    pub log_path: PathBuf,
    args: Vec<String>,
}

impl Operator {
    pub fn start(shared: &Shared, ns: &str, identity: &str, extra: &[&str]) -> Operator {
        Operator::start_as(shared, &shared.env.kubeconfig(), ns, ns, identity, extra)
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
        let mut args: Vec<String> = vec![
            "--vault-addr".into(),
            shared.vault.address.clone(),
            "--vault-token-file".into(),
            shared.vault.token_file.display().to_string(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--operator-namespace".into(),
            operator_ns.into(),
            "--watch-namespace".into(),
            ns.into(),
            "--identity".into(),
            identity.into(),
            "--lease-duration".into(),
            "4s".into(),
            "--renew-interval".into(),
            "1s".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Operator::start_args(shared, &format!("{ns}-{identity}"), identity, args)
    }

    /// With exactly `args` (plus a port-0 metrics address); the log goes to
    /// `operator-<log_name>.log` in the test environment's directory.
    pub fn start_args(
        shared: &Shared,
        log_name: &str,
        identity: &str,
        args: Vec<String>,
    ) -> Operator {
        let log_path = shared
            .env
            .dir
            .path()
            .join(format!("operator-{log_name}.log"));
        let mut op = Operator {
            child: None,
            identity: identity.to_owned(),
            metrics_url: String::new(),
            log_path,
            args,
        };
        op.spawn();
        op
    }

    /// Starts the process again with the same arguments (after it exited on its own).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let start_len = log.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let child = Command::new(env!("CARGO_BIN_EXE_scaivault-operator"))
            .args(&self.args)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("SCAIVAULT_LOG", "info,kube=warn")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn scaivault-operator");
        self.child = Some(child);
        // The operator logs the address it bound (port 0 = a free one).
        let deadline = Instant::now() + Duration::from_secs(20);
        self.metrics_url = loop {
            let logs = self.logs();
            let fresh = logs.get(start_len..).unwrap_or_default();
            if let Some(addr) = fresh
                .lines()
                .filter(|l| l.contains("serving /metrics"))
                .find_map(|l| l.split("addr=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
            {
                break format!("http://{addr}");
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("operator exited ({status}) at start:\n{fresh}");
            }
            assert!(
                Instant::now() < deadline,
                "operator did not log its metrics address:\n{fresh}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
    }

    /// SIGTERM (graceful: releases the lease) and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("operator running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("operator did not stop on SIGTERM in 20 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit on its own within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("operator running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "operator still running after {timeout:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to release the lease.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Same arguments, new process (new metrics port).
    pub fn restart(&mut self) {
        assert!(
            self.terminate().success(),
            "operator exited badly:\n{}",
            self.logs()
        );
        self.spawn();
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- operator {} log ---\n{}", self.identity, self.logs());
        }
    }
}
