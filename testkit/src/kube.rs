//! A real kube-apiserver + etcd from `e2e/testenv.sh`, with its kubeconfig, its
//! ServiceAccount signing key and a kube [`Client`]; stopped on drop, its logs kept when
//! the test panics.
//!
//! Needs the binaries of `make e2e-env` in `${E2E_BIN_DIR:-e2e/.bin}`; the test fails
//! with that advice when they are missing (building them takes ~15 minutes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize as _;

/// An image for [`KubeEnv::start_node`], made from local files.
pub enum NodeImage<'a> {
    /// A root filesystem directory as the one layer; `entrypoint` is a JSON array.
    Rootfs {
        reference: &'a str,
        rootfs: &'a Path,
        entrypoint: &'a str,
    },
    /// One dynamically linked program at `/<its name>` with the shared libraries it
    /// links, which is the entrypoint.
    Binary {
        reference: &'a str,
        binary: &'a Path,
    },
}

/// A node of the environment.
#[derive(Clone, Debug)]
pub struct Node {
    /// For `spec.nodeName`.
    pub name: String,
    /// The node's own address on the host: pods reach a server of the test listening
    /// there (loopback is the pod's own).
    pub ip: std::net::IpAddr,
}

/// A running test environment.
pub struct KubeEnv {
    root: PathBuf,
    bin_dir: PathBuf,
    /// None once stopped.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    /// The apiserver's URL.
    pub url: String,
    /// The issuer of its ServiceAccount tokens.
    pub issuer: String,
}

fn bin_dir(root: &Path) -> PathBuf {
    match std::env::var_os("E2E_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join("e2e/.bin"),
    }
}

impl KubeEnv {
    pub fn start() -> KubeEnv {
        let root = crate::repo_root();
        let bin_dir = bin_dir(&root);
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
            .prefix("scaivault-kube-")
            .tempdir()
            .expect("create a temp dir");
        let out = testenv(&root, &bin_dir, "start", dir.path());
        assert!(
            out.status.success(),
            "e2e/testenv.sh start failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env: HashMap<String, String> = std::fs::read_to_string(dir.path().join("env"))
            .expect("testenv.sh writes an env file")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        KubeEnv {
            url: env["TESTENV_APISERVER_URL"].clone(),
            issuer: env["TESTENV_SA_ISSUER"].clone(),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            root,
            bin_dir,
        }
    }

    /// Adds a real node (`e2e/node.sh`: containerd, runc and the kubelet; needs root) for
    /// pods' `spec.nodeName` (there is no scheduler). It has the images
    /// `scaivault.local/pause:e2e` and `scaivault.local/busybox:e2e`, plus `images`.
    /// The node stops with the environment.
    pub fn start_node(&self, images: &[NodeImage<'_>]) -> Node {
        let mut command = Command::new("bash");
        command
            .arg(self.root.join("e2e/node.sh"))
            .arg("start")
            .arg(&self.dir_path)
            .current_dir(&self.root)
            .env("E2E_BIN_DIR", &self.bin_dir);
        for image in images {
            match image {
                NodeImage::Rootfs {
                    reference,
                    rootfs,
                    entrypoint,
                } => command
                    .arg("--image")
                    .arg(format!("{reference}={}:{entrypoint}", rootfs.display())),
                NodeImage::Binary { reference, binary } => command
                    .arg("--binary")
                    .arg(format!("{reference}={}", binary.display())),
            };
        }
        let out = command.output().expect("run e2e/node.sh");
        assert!(
            out.status.success(),
            "e2e/node.sh start failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(self.dir_path.join("env"))
            .expect("node.sh writes to the env file");
        let value = |key: &str| {
            env.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .next_back()
                .unwrap_or_else(|| panic!("node.sh writes {key}"))
                .to_owned()
        };
        Node {
            name: value("TESTENV_NODE_NAME"),
            ip: value("TESTENV_NODE_IP")
                .parse()
                .expect("TESTENV_NODE_IP is an address"),
        }
    }

    /// The environment's directory: kubeconfig, `pki/`, the apiserver and etcd logs; a
    /// place for the test's own logs too.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir_path.join("kubeconfig")
    }

    /// A client as the admin.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig()).await
    }

    /// Stops the apiserver and etcd now (what a server must survive).
    pub fn stop(&mut self) {
        // The directory must outlive `testenv.sh stop`: it finds the processes through
        // `DIR/env`. (`if self.dir.take().is_some()` dropped the `TempDir`, and so removed
        // the directory, before the block ran: stop found nothing, etcd died with its data
        // directory and every kube-apiserver stayed behind.)
        if let Some(dir) = self.dir.take() {
            let out = testenv(&self.root, &self.bin_dir, "stop", dir.path());
            if !out.status.success() {
                eprintln!(
                    "e2e/testenv.sh stop failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            drop(dir);
        }
    }

    /// For an environment in a static (shared by the tests of one process, never
    /// dropped): a detached watchdog stops it, kills `pids` and removes `dirs` once this
    /// test process is gone.
    pub fn stop_when_process_exits(&self, pids: &[u32], dirs: &[&Path]) {
        let stop = format!(
            "bash {root}/e2e/testenv.sh stop {dir} >/dev/null 2>&1",
            root = self.root.display(),
            dir = self.dir_path.display(),
        );
        let mut dirs = dirs.to_vec();
        dirs.push(&self.dir_path);
        crate::process::clean_up_after_exit(pids, &dirs, &stop, &[("E2E_BIN_DIR", &self.bin_dir)]);
    }

    /// The cluster's ServiceAccount signing key (PKCS#1 DER): tests sign tokens the
    /// apiserver would accept but for one detail, like an expiry in the past.
    pub fn signing_key_der(&self) -> Vec<u8> {
        use base64::Engine as _;
        let pem = std::fs::read_to_string(self.dir_path.join("pki/sa.key")).expect("pki/sa.key");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM body")
    }
}

fn testenv(root: &Path, bin_dir: &Path, action: &str, dir: &Path) -> Output {
    Command::new("bash")
        .arg(root.join("e2e/testenv.sh"))
        .arg(action)
        .arg(dir)
        .current_dir(root)
        .env("E2E_BIN_DIR", bin_dir)
        .output()
        .expect("run e2e/testenv.sh")
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            testenv(&self.root, &self.bin_dir, "stop", dir.path());
            eprintln!("test environment logs kept in {}", dir.keep().display());
            return;
        }
        self.stop();
    }
}

/// A client from any kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("kube client")
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// A fresh namespace named `<prefix>-…` (see [`crate::unique`]); one per test, so tests
/// sharing an apiserver do not see each other's objects.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = crate::names::unique(prefix);
    let ns = Namespace {
        metadata: named(&name),
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
        metadata: named(name),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create ServiceAccount");
}

pub async fn delete_service_account(client: &Client, ns: &str, name: &str) {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete ServiceAccount");
}

/// A TokenRequest token for the ServiceAccount (10 minutes is the API's minimum).
pub async fn service_account_token(
    client: &Client,
    ns: &str,
    name: &str,
    audience: &str,
) -> String {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_owned()]),
            expiration_seconds: Some(600),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|status| status.token)
        .expect("TokenRequest answered with a token")
}

/// Applies every CustomResourceDefinition of the YAML stream `yaml` (what `kubectl
/// apply -f` does) and waits until each is Established; returns their names.
pub async fn apply_crds(client: &Client, field_manager: &str, yaml: &str) -> Vec<String> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc).unwrap_or_else(|e| panic!("YAML: {e}"));
        if value.is_null() {
            continue;
        }
        let crd: CustomResourceDefinition =
            serde_json::from_value(value).unwrap_or_else(|e| panic!("not a CRD: {e}"));
        let name = crd.metadata.name.clone().expect("CRD name");
        api.patch(
            &name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        names.push(name);
    }
    for name in &names {
        crate::wait::wait_for(
            &format!("CRD {name} Established"),
            Duration::from_secs(60),
            || async {
                let crd = api.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
    names
}

/// How many objects of `api` satisfy `keep`, listed in pages of 500 (a bench lists 10,000).
pub async fn count_listed<K>(api: &Api<K>, mut keep: impl FnMut(&K) -> bool) -> usize
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut n = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("list objects");
        n += page.items.iter().filter(|o| keep(o)).count();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return n,
        }
    }
}
