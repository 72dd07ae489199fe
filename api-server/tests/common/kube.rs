//! A real kube-apiserver + etcd from `e2e/testenv.sh`, reached with plain HTTP calls.
//!
//! Needs the binaries of `make e2e-env` in `${E2E_BIN_DIR:-e2e/.bin}`; the test fails
//! with that advice when they are missing (building them takes ~15 minutes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct Cluster {
    root: PathBuf,
    bin_dir: PathBuf,
    dir: Option<tempfile::TempDir>,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub issuer: String,
    admin_token: String,
    http: reqwest::Client,
}

impl Cluster {
    pub fn start() -> Cluster {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin_dir = match std::env::var_os("E2E_BIN_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => root.join("e2e/.bin"),
        };
        for bin in ["kube-apiserver", "etcd", "testenv-tool"] {
            assert!(
                bin_dir.join(bin).is_file(),
                "{bin} missing in {}: run `make e2e-env` first",
                bin_dir.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("scaivault-k8s-login-")
            .tempdir()
            .unwrap();
        let out = testenv(&root, &bin_dir, "start", dir.path());
        assert!(
            out.status.success(),
            "e2e/testenv.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env: HashMap<String, String> = std::fs::read_to_string(dir.path().join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let ca = std::fs::read(&env["TESTENV_CA_FILE"]).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .build()
            .unwrap();
        let admin_token = std::fs::read_to_string(&env["TESTENV_ADMIN_TOKEN_FILE"])
            .unwrap()
            .trim()
            .to_owned();
        Cluster {
            url: env["TESTENV_APISERVER_URL"].clone(),
            kubeconfig: PathBuf::from(&env["KUBECONFIG"]),
            issuer: env["TESTENV_SA_ISSUER"].clone(),
            root,
            bin_dir,
            dir: Some(dir),
            admin_token,
            http,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Stops the apiserver and etcd now (the vault must then answer 503).
    pub fn stop(&mut self) {
        if let Some(dir) = self.dir.take() {
            testenv(&self.root, &self.bin_dir, "stop", dir.path());
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs an object and expects `201 Created`.
    async fn create(&self, path: &str, object: Value) {
        let (status, body) = self.call(Method::POST, path, Some(object)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    pub async fn create_namespace(&self, name: &str) {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.create("/api/v1/namespaces", object).await;
    }

    pub async fn create_service_account(&self, namespace: &str, name: &str) {
        let object =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
        self.create(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
            object,
        )
        .await;
    }

    pub async fn delete_service_account(&self, namespace: &str, name: &str) {
        let (status, body) = self
            .call(
                Method::DELETE,
                &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A TokenRequest token for the ServiceAccount (10 minutes is the API's minimum).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"),
                Some(
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"audiences": [audience], "expirationSeconds": 600}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["status"]["token"].as_str().unwrap().to_owned()
    }

    /// The cluster's ServiceAccount signing key (PKCS#1 DER): tests sign tokens the
    /// apiserver would accept but for one detail, like an expiry in the past.
    pub fn signing_key_der(&self) -> Vec<u8> {
        use base64::Engine as _;
        let pem = std::fs::read_to_string(self.dir().join("pki/sa.key")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}

fn testenv(root: &Path, bin_dir: &Path, action: &str, dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(root.join("e2e/testenv.sh"))
        .arg(action)
        .arg(dir)
        .env("E2E_BIN_DIR", bin_dir)
        .output()
        .unwrap()
}

impl Drop for Cluster {
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
