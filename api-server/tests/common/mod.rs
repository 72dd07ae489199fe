//! Runs the real `scaivault-server` binary on a free loopback port for integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod kube;
pub mod moto;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_scaivault-server");

pub struct Server {
    pub child: Child,
    pub address: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub extra_args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
}

fn random_token() -> String {
    use std::time::SystemTime;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("svt_test_{nanos:x}_{}", std::process::id())
}

/// Reads stdout until the dev banner's `Address:` line appears.
fn wait_for_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("server exited before printing its address");
        }
        if let Some(rest) = line.trim().strip_prefix("Address:") {
            let address = rest.trim().to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                    sink.clear();
                }
            });
            return address;
        }
    }
    panic!("server did not print its address in time");
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut server = Self::spawn_in(
            data_dir,
            random_token(),
            extra.iter().map(|s| s.to_string()).collect(),
            tmp.path().join("server.log"),
        );
        server._tmp = Some(tmp);
        server
    }

    fn spawn_in(
        data_dir: PathBuf,
        token: String,
        extra_args: Vec<String>,
        log_path: PathBuf,
    ) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut child = Command::new(BIN)
            .arg("dev")
            .args(["--listen", "127.0.0.1:0", "--root-token", &token])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&extra_args)
            .env("SCAIVAULT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn scaivault-server");
        let address = wait_for_address(&mut child);
        Server {
            child,
            address,
            token,
            data_dir,
            log_path,
            extra_args,
            _tmp: None,
            http: reqwest::Client::new(),
        }
    }

    /// `kill -9` and start again on the same data directory (new port).
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let tmp = self._tmp.take();
        let next = Self::spawn_in(
            self.data_dir.clone(),
            self.token.clone(),
            self.extra_args.clone(),
            self.log_path.clone(),
        );
        // The old process is dead already; dropping it only reaps nothing.
        *self = next;
        self._tmp = tmp;
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop_gracefully(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart_gracefully(&mut self) {
        assert!(self.stop_gracefully().success());
        let tmp = self._tmp.take();
        let next = Self::spawn_in(
            self.data_dir.clone(),
            self.token.clone(),
            self.extra_args.clone(),
            self.log_path.clone(),
        );
        *self = next;
        self._tmp = tmp;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    pub fn req_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.req(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req).await
    }

    pub async fn write(&self, path: &str, body: Value) -> Value {
        let (status, json) = self
            .call(Method::PUT, &format!("/v1/secrets/{path}"), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "write {path}: {json}");
        json
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn send(req: RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

/// Asserts the error envelope and returns its code.
pub fn error_code(body: &Value) -> String {
    let err = body
        .get("error")
        .unwrap_or_else(|| panic!("not an error envelope: {body}"));
    assert!(err["message"].is_string(), "{body}");
    assert!(
        err["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_") || !id.is_empty()),
        "{body}"
    );
    err["code"].as_str().unwrap().to_owned()
}
