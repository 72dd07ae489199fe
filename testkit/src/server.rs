//! The real `scaivault-server` binary on a free loopback port: `dev` mode (or any
//! arguments), a fresh data directory or a given one, restarts on the same data
//! directory, a known root token, optionally a movable wall clock.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{LazyLock, Mutex, mpsc};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::clock::ShiftedClock;
use crate::postgres::Postgres;
use crate::process::Process;

/// A loaded CI machine can take its time over the first SQLite fsync.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What to run again on a restart.
struct Launch {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// The stdout line prefix followed by the address.
    marker: &'static str,
}

pub struct Server {
    process: Process,
    pub address: String,
    pub token: String,
    /// Trusts the server's CA when it serves TLS.
    pub http: reqwest::Client,
    data_dir: PathBuf,
    /// Scratch directory: the log, the token file, exports, the clock's offset file.
    dir: tempfile::TempDir,
    launch: Launch,
    clock: Option<ShiftedClock>,
}

/// How to start a `dev` server; from [`Server::dev`].
#[derive(Default)]
pub struct Builder {
    bin: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    data_dir: Option<PathBuf>,
    exports: bool,
    clock: bool,
    own_storage: bool,
    listen: Option<std::net::IpAddr>,
}

impl Builder {
    /// The server binary, when the caller has `env!("CARGO_BIN_EXE_scaivault-server")`
    /// (default: found next to the test executable, see [`crate::bin`]).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Builder {
        self.bin = Some(bin.into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Builder {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Builder {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Builder {
        self.env
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Use this data directory (default: a fresh one).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.data_dir = Some(dir.into());
        self
    }

    /// File audit exports under [`Server::export_dir`].
    pub fn exports(mut self) -> Builder {
        self.exports = true;
        self
    }

    /// A wall clock the test moves with [`Server::clock`] (the LD_PRELOAD shim).
    pub fn shifted_clock(mut self) -> Builder {
        self.clock = true;
        self
    }

    /// No `--storage` from a PostgreSQL run ([`storage_args`]): the test passes its own,
    /// or tests the SQLite files themselves (their permissions, a read-only disk).
    pub fn own_storage(mut self) -> Builder {
        self.own_storage = true;
        self
    }

    /// Listen on this address (a free port) instead of 127.0.0.1: a pod of the test
    /// node reaches the node's address ([`crate::kube::Node::ip`]), not the host's loopback.
    pub fn listen_on(mut self, ip: std::net::IpAddr) -> Builder {
        self.listen = Some(ip);
        self
    }

    pub fn start(self) -> Server {
        let dir = scratch_dir();
        let token = crate::names::random_token();
        let data_dir = self.data_dir.unwrap_or_else(|| dir.path().join("data"));
        let listen = std::net::SocketAddr::new(
            self.listen.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            0,
        )
        .to_string();
        let mut args: Vec<OsString> = ["dev", "--listen", &listen, "--root-token", &token]
            .map(OsString::from)
            .into();
        args.extend(["--data-dir".into(), data_dir.clone().into()]);
        if !self.own_storage {
            args.extend(storage_args(&data_dir));
        }
        if self.exports {
            let exports = dir.path().join("exports");
            std::fs::create_dir_all(&exports).expect("create the export dir");
            args.extend(["--audit-export-dir".into(), exports.into()]);
        }
        args.extend(self.args);
        let clock = self.clock.then(|| ShiftedClock::new(dir.path()));
        let launch = Launch {
            bin: self.bin.unwrap_or_else(crate::bin::server),
            args,
            env: self.env,
            marker: "Address:",
        };
        Server::launch(launch, dir, data_dir, token, clock, reqwest::Client::new())
    }
}

/// The storage of a PostgreSQL run: one server per test binary, stopped when it exits.
static POSTGRES: LazyLock<Postgres> = LazyLock::new(Postgres::start_shared);
/// A data directory keeps its database across restarts and new servers on it.
static DATABASES: LazyLock<Mutex<HashMap<PathBuf, String>>> = LazyLock::new(Mutex::default);

/// Whether this run puts the servers' data on PostgreSQL (`SCAIVAULT_TEST_STORAGE=postgres`,
/// as `make test` does for a second pass of the server's integration suite).
pub fn on_postgres() -> bool {
    std::env::var("SCAIVAULT_TEST_STORAGE").is_ok_and(|v| v == "postgres")
}

/// `--storage <url>` of a database of this data directory's own in a PostgreSQL run;
/// nothing (SQLite in the data directory) otherwise.
pub fn storage_args(data_dir: &Path) -> Vec<OsString> {
    if !on_postgres() {
        return Vec::new();
    }
    let url = DATABASES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(data_dir.to_path_buf())
        .or_insert_with(|| POSTGRES.create_database())
        .clone();
    vec!["--storage".into(), url.into(), "--storage-migrate".into()]
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("scaivault-test-")
        .tempdir()
        .expect("create a temp dir")
}

impl Server {
    /// A `dev` server to configure.
    pub fn dev() -> Builder {
        Builder::default()
    }

    /// `scaivault-server dev` with extra flags.
    pub fn start(extra: &[&str]) -> Server {
        Server::dev().args(extra).start()
    }

    /// `scaivault-server init`, then `serve` over TLS with a certificate for 127.0.0.1
    /// and localhost signed by a fresh CA ([`Server::ca_pem`]) that no platform trusts.
    pub fn start_tls() -> Server {
        Server::start_tls_with(&[])
    }

    /// [`Server::start_tls`] with extra `serve` flags.
    pub fn start_tls_with(extra: &[&str]) -> Server {
        let dir = scratch_dir();
        crate::certs::write_server_cert(dir.path(), "server");
        let data_dir = dir.path().join("data");
        let key = dir.path().join("master.key");
        let bin = crate::bin::server();
        let mut init = Command::new(&bin);
        clean_env(&mut init)
            .args(["init", "--data-dir"])
            .arg(&data_dir)
            .arg("--master-key-file")
            .arg(&key)
            .args(storage_args(&data_dir));
        let init = init.output().expect("run scaivault-server init");
        assert!(
            init.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let token = String::from_utf8_lossy(&init.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Root token:"))
            .map(|t| t.trim().to_owned())
            .expect("init prints the root token");
        let path = |name: &str| OsString::from(dir.path().join(name));
        let mut args = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
            "--master-key-file".into(),
            key.into(),
            "--tls-cert".into(),
            path("server.pem"),
            "--tls-key".into(),
            path("server.key"),
        ];
        args.extend(storage_args(&data_dir));
        args.extend(extra.iter().map(OsString::from));
        let http = crate::certs::client_trusting(&dir.path().join("server-ca.pem"));
        let launch = Launch {
            bin,
            args,
            env: Vec::new(),
            marker: "ScaiVault listening on",
        };
        Server::launch(launch, dir, data_dir, token, None, http)
    }

    fn launch(
        launch: Launch,
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        token: String,
        clock: Option<ShiftedClock>,
        http: reqwest::Client,
    ) -> Server {
        std::fs::write(dir.path().join("root-token"), &token).expect("write the token file");
        let (process, address) = spawn(&launch, &dir.path().join("server.log"), clock.as_ref());
        Server {
            process,
            address,
            token,
            http,
            data_dir,
            dir,
            launch,
            clock,
        }
    }

    fn respawn(&mut self) {
        let (process, address) = spawn(&self.launch, &self.log_path(), self.clock.as_ref());
        self.process = process;
        self.address = address;
    }

    /// `kill -9` and start again on the same data directory (new port).
    pub fn crash_and_restart(&mut self) {
        self.process.kill();
        self.respawn();
    }

    /// SIGTERM, and wait for the exit.
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        self.process.terminate(STOP_TIMEOUT)
    }

    /// SIGTERM, a clean exit, and start again on the same data directory.
    pub fn restart_gracefully(&mut self) {
        let status = self.stop_gracefully();
        assert!(status.success(), "server exited with {status} on SIGTERM");
        self.respawn();
    }

    /// The server process, e.g. to wait for it to exit on its own.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The wall clock of a server started with [`Builder::shifted_clock`].
    pub fn clock(&self) -> &ShiftedClock {
        self.clock
            .as_ref()
            .expect("start the server with Server::dev().shifted_clock()")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request with the root token.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(&self.token, method, path)
    }

    pub fn req_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// A root-token request with an optional JSON body, the answer as JSON.
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
        crate::http::send(req).await
    }

    /// A token for a service account `identity` bound to a new policy `p-<identity>` of
    /// `rules` (as the API takes them).
    /// A policy of `rules` bound to `identity` (`sa:<name>`, `k8s:<ns>/<sa>` or
    /// `user:<name>`).
    pub async fn grant(&self, identity: &str, rules: Value) {
        let (status, policy) = self
            .call(
                Method::POST,
                "/v1/policies",
                Some(serde_json::json!({"name": format!("p-{identity}").replace('/', "-"), "rules": rules})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{policy}");
        let id = policy["id"].as_str().unwrap_or_default();
        let identity_type = match identity.split_once(':').map(|(kind, _)| kind) {
            Some("k8s") => "kubernetes",
            Some("user") => "user",
            _ => "service_account",
        };
        let binding = serde_json::json!({"identity_type": identity_type, "identity_id": identity});
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/v1/policies/{id}/bindings"),
                Some(binding),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A token of `identity`, allowed `rules` ([`Server::grant`]).
    pub async fn token_for(&self, identity: &str, rules: Value) -> String {
        self.grant(identity, rules).await;
        let (status, created) = self
            .call(
                Method::POST,
                "/v1/auth/tokens",
                Some(serde_json::json!({"identity_id": identity})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["token"].as_str().unwrap_or_default().to_owned()
    }

    /// Writes a secret and expects 200.
    pub async fn write(&self, path: &str, body: Value) -> Value {
        let (status, json) = self
            .call(Method::PUT, &format!("/v1/secrets/{path}"), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "write {path}: {json}");
        json
    }

    /// Everything the server logged (stderr) so far, across restarts.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The scratch directory (removed with the server).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where `file` audit exports land (with [`Builder::exports`]).
    pub fn export_dir(&self) -> PathBuf {
        self.dir.path().join("exports")
    }

    /// The CA of a [`Server::start_tls`] server.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("server-ca.pem")
    }

    /// A file holding the root token (for `--vault-token-file` style flags).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("root-token")
    }

    /// The running process's id (for a watchdog that must outlive the test process).
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }
}

impl Drop for Server {
    /// A failing test keeps the scratch directory (log, data, exports) for a post-mortem;
    /// the process's own drop prints the log's tail.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("server files kept in {}", self.dir.path().display());
        }
    }
}

/// Removes inherited `SCAIVAULT_*` variables so the developer's shell cannot steer a test.
pub fn clean_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SCAIVAULT_") {
            command.env_remove(name);
        }
    }
    command
}

/// Starts the server and waits for its stdout line `<marker> <address>`.
fn spawn(launch: &Launch, log: &Path, clock: Option<&ShiftedClock>) -> (Process, String) {
    let mut command = Command::new(&launch.bin);
    clean_env(&mut command)
        .args(&launch.args)
        .env("SCAIVAULT_LOG", "info")
        .envs(launch.env.iter().map(|(k, v)| (k, v)));
    if let Some(clock) = clock {
        command.envs(clock.env());
    }
    let (mut process, stdout) = Process::spawn_piped("scaivault-server", &mut command, log);
    // Read stdout on a thread: the address line, then drain so the pipe never fills.
    // Stdout is not logged: the dev banner prints the root token, which tests assert
    // never reaches the log.
    let (tx, rx) = mpsc::channel();
    let marker = launch.marker;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.trim().strip_prefix(marker) {
                let _ = tx.send(address.trim().to_owned());
            }
        }
    });
    match rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(address) => (process, address),
        Err(_) => {
            let status = process.try_wait();
            panic!(
                "scaivault-server printed no `{marker}` line (exit status {status:?}); its log:\n{}",
                process.tail()
            )
        }
    }
}
