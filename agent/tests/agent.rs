//! `scaivault-agent` as a local process against the real server, which logs it in through
//! a real kube-apiserver (TokenReview of a real TokenRequest token): init-only and
//! sidecar mode, denials, file updates from the event stream (latency measured), atomic
//! replacement, unchanged writes, revocation on SIGTERM, on-change signals to an app
//! process, and `exec` (a child's environment, restarted on a change).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scaivault_client::api::policy::{Permission, PolicyInput, PolicyRule};
use scaivault_kube_api::agent::{
    AgentConfig, CONFIG_ENV, CONFIG_VERSION, CONTAINER_ENV, Content, FileSpec, Format, Mode,
    OnChange, Signal,
};
use scaivault_testkit::kube::{KubeEnv, namespace, service_account, service_account_token};
use scaivault_testkit::server::clean_env;
use scaivault_testkit::{Process, Server, free_port, wait_for};
use serde_json::json;

/// One apiserver and one vault per test binary (an apiserver costs ~7 s and ~300 MB).
struct Shared {
    env: KubeEnv,
    vault: Server,
}

static SHARED: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();

async fn shared() -> &'static Shared {
    SHARED
        .get_or_init(|| async {
            let env = KubeEnv::start();
            let vault = Server::dev()
                .arg("--kubernetes-kubeconfig")
                .arg(env.kubeconfig())
                // Every test logs in; the per-address login budget is not under test.
                .args(["--rate-limit-per-minute", "0"])
                .start();
            env.stop_when_process_exits(&[vault.pid().expect("vault running")], &[vault.dir()]);
            Shared { env, vault }
        })
        .await
}

/// A root client made in the calling test's runtime (a client's connections belong to
/// the runtime that made them, and each test has its own).
fn root(vault: &Server) -> scaivault_client::Client {
    scaivault_client::Client::new(vault.address.clone(), vault.token.clone()).expect("root client")
}

/// Writes a new version of `path` as root.
async fn write(vault: &scaivault_client::Client, path: &str, data: serde_json::Value) {
    let serde_json::Value::Object(data) = data else {
        panic!("a secret's value is an object");
    };
    let request = scaivault_client::api::secrets::WriteSecretRequest {
        data,
        secret_type: None,
        metadata: None,
        options: None,
    };
    vault.write(path, &request).await.expect("write");
}

/// A namespace with ServiceAccount `app`, its vault-audience token in a file, a secrets
/// directory, and `app`'s vault identity allowed `permissions` under `apps/<ns>/<granted>`.
struct Pod {
    ns: String,
    dir: tempfile::TempDir,
}

impl Pod {
    async fn new(shared: &Shared, granted: &str, permissions: Vec<Permission>) -> Pod {
        Pod::with_audience(shared, granted, permissions, "scaivault").await
    }

    async fn with_audience(
        shared: &Shared,
        granted: &str,
        permissions: Vec<Permission>,
        audience: &str,
    ) -> Pod {
        Pod::on(shared, &shared.vault, granted, permissions, audience).await
    }

    /// With its policy on `vault` (another server than the shared one).
    async fn on(
        shared: &Shared,
        vault: &Server,
        granted: &str,
        permissions: Vec<Permission>,
        audience: &str,
    ) -> Pod {
        let client = shared.env.client().await;
        let ns = namespace(&client, "agent").await;
        service_account(&client, &ns, "app").await;
        let token = service_account_token(&client, &ns, "app", audience).await;
        let dir = tempfile::Builder::new()
            .prefix("scaivault-agent-test-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        let vault = root(vault);
        let policy = vault
            .create_policy(&PolicyInput {
                name: format!("agent-{ns}"),
                description: None,
                rules: vec![PolicyRule {
                    path_pattern: format!("apps/{ns}/{granted}"),
                    permissions,
                    effect: Default::default(),
                }],
            })
            .await
            .expect("create policy");
        vault
            .bind_policy(&policy.id, &format!("k8s:{ns}/app"))
            .await
            .expect("bind policy");
        Pod { ns, dir }
    }

    fn identity(&self) -> String {
        format!("k8s:{}/app", self.ns)
    }

    fn path(&self, rest: &str) -> String {
        format!("apps/{}/{rest}", self.ns)
    }

    fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    fn config(&self, vault: &Server, mode: Mode, files: Vec<FileSpec>) -> AgentConfig {
        AgentConfig {
            version: CONFIG_VERSION,
            mode,
            vault_addr: vault.address.clone(),
            token_path: self.dir.path().join("token").display().to_string(),
            secrets_dir: self.secrets().display().to_string(),
            ready_port: free_port(),
            files,
            on_change: OnChange::None,
            containers: vec!["app".into()],
        }
    }

    fn spawn(&self, config: &AgentConfig) -> Process {
        let mut command = Command::new(agent_bin());
        clean_env(&mut command)
            .arg("run")
            .env(CONFIG_ENV, config.to_json())
            .env("SCAIVAULT_LOG", "info,scaivault_agent=debug");
        Process::spawn("agent", &mut command, &self.dir.path().join("agent.log"))
    }

    /// `scaivault-agent exec -- <command>`, `OUT` in its environment naming
    /// [`Pod::out`] (the child inherits it).
    fn spawn_exec(&self, config: &AgentConfig, command: &[&str]) -> Process {
        let mut agent = Command::new(agent_bin());
        clean_env(&mut agent)
            .args(["exec", "--grace-period-seconds", "5", "--"])
            .args(command)
            .env(CONFIG_ENV, config.to_json())
            .env("OUT", self.out())
            .env("SCAIVAULT_LOG", "info,scaivault_agent=debug");
        Process::spawn("agent", &mut agent, &self.dir.path().join("agent.log"))
    }

    /// Where a test's child or app process writes what it saw.
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn out_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.out())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The vault's active tokens of this pod's identity.
    async fn active_tokens(&self, vault: &Server) -> Vec<String> {
        root(vault)
            .list_tokens()
            .await
            .expect("list tokens")
            .tokens
            .into_iter()
            .filter(|t| t.identity_id == self.identity())
            .map(|t| t.accessor)
            .collect()
    }
}

/// The agent under test: `SCAIVAULT_AGENT_BIN` (e.g. a release build, to measure its
/// memory) or this package's debug binary.
fn agent_bin() -> PathBuf {
    std::env::var_os("SCAIVAULT_AGENT_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scaivault-agent")))
}

fn file(name: &str, path: &str, content: Content, mode: u32) -> FileSpec {
    FileSpec {
        name: name.into(),
        path: path.into(),
        content,
        mode,
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn init_only_renders_every_file_with_its_mode_and_exits_0() {
    let shared = shared().await;
    let pod = Pod::new(shared, "**", vec![Permission::Read]).await;
    let vault = root(&shared.vault);
    let password = format!("pw-{}", scaivault_testkit::random_token());
    let db = pod.path("web/db");
    write(
        &vault,
        &db,
        json!({"user": "app", "password": password, "port": 5432}),
    )
    .await;
    let config = pod.config(
        &shared.vault,
        Mode::InitOnly,
        vec![
            file(
                "dsn",
                &db,
                Content::Template(
                    "postgres://{{ .user }}:{{ .password }}@db:{{ .port }}/web".into(),
                ),
                0o400,
            ),
            file("db.env", &db, Content::Format(Format::Env), 0o640),
            file("db.json", &db, Content::Format(Format::Json), 0o644),
            file("db.yaml", &db, Content::Format(Format::Yaml), 0o644),
            file(
                "password",
                &db,
                Content::Format(Format::Raw("password".into())),
                0o600,
            ),
        ],
    );
    let mut agent = pod.spawn(&config);
    let status = agent.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "init-only exited with {status}:\n{}",
        agent.tail()
    );

    let dir = pod.secrets();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(
        read("dsn"),
        format!("postgres://app:{password}@db:5432/web")
    );
    assert_eq!(
        read("db.env"),
        format!("password={password}\nport=5432\nuser=app\n")
    );
    let parsed: serde_json::Value = serde_json::from_str(&read("db.json")).unwrap();
    assert_eq!(
        parsed,
        json!({"user": "app", "password": password, "port": 5432})
    );
    assert_eq!(
        read("db.yaml"),
        format!("password: \"{password}\"\nport: 5432\nuser: \"app\"\n")
    );
    assert_eq!(read("password"), password);
    for (name, mode) in [
        ("dsn", 0o400),
        ("db.env", 0o640),
        ("db.json", 0o644),
        ("db.yaml", 0o644),
        ("password", 0o600),
    ] {
        assert_eq!(mode_of(&dir.join(name)), mode, "mode of {name}");
    }
    // Nothing else: no temporary file is left behind.
    assert_eq!(
        names_in(&dir),
        ["db.env", "db.json", "db.yaml", "dsn", "password"]
    );
    let logs = agent.logs();
    assert!(
        !logs.contains(&password),
        "a secret value in the log:\n{logs}"
    );
    // It no longer needs its token, and revoked it.
    assert_eq!(pod.active_tokens(&shared.vault).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_denied_path_exits_non_zero_naming_the_path_and_the_permission() {
    let shared = shared().await;
    let pod = Pod::new(shared, "allowed/**", vec![Permission::Read]).await;
    let vault = root(&shared.vault);
    let (allowed, denied) = (pod.path("allowed/db"), pod.path("other/db"));
    let value = format!("v-{}", scaivault_testkit::random_token());
    for path in [&allowed, &denied] {
        write(&vault, path, json!({"password": value})).await;
    }
    let raw = || Content::Format(Format::Raw("password".into()));
    for mode in [Mode::InitOnly, Mode::Sidecar] {
        let config = pod.config(
            &shared.vault,
            mode,
            vec![
                file("a", &allowed, raw(), 0o644),
                file("b", &denied, raw(), 0o644),
            ],
        );
        let mut agent = pod.spawn(&config);
        let status = agent.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(4), "{mode:?}:\n{}", agent.tail());
        let logs = agent.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("exiting"))
            .unwrap_or_default();
        assert!(
            line.contains(&format!(
                "secret {denied}: permission `read` denied to {}",
                pod.identity()
            )),
            "{mode:?}: {line}"
        );
        assert!(!logs.contains(&value), "a secret value in the log:\n{logs}");
        assert!(!pod.secrets().join("b").exists());
    }
}

#[tokio::test]
async fn a_refused_login_exits_non_zero_saying_so() {
    let shared = shared().await;
    // A token the apiserver issued for another audience: the vault refuses it.
    let pod = Pod::with_audience(shared, "**", vec![Permission::Read], "not-the-vault").await;
    let config = pod.config(
        &shared.vault,
        Mode::InitOnly,
        vec![file(
            "a",
            &pod.path("db"),
            Content::Format(Format::Json),
            0o644,
        )],
    );
    let mut agent = pod.spawn(&config);
    let status = agent.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "{}", agent.tail());
    assert!(
        agent.logs().contains("Kubernetes login to") && agent.logs().contains("unauthenticated"),
        "{}",
        agent.tail()
    );
    assert_eq!(names_in(&pod.secrets()), Vec::<String>::new());
}

#[test]
fn a_missing_or_invalid_configuration_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(
        &AgentConfig {
            version: CONFIG_VERSION,
            mode: Mode::InitOnly,
            vault_addr: "http://127.0.0.1:1".into(),
            token_path: "/nonexistent".into(),
            secrets_dir: dir.path().display().to_string(),
            ready_port: 0,
            files: vec![file("a", "apps/a", Content::Format(Format::Json), 0o644)],
            on_change: OnChange::None,
            containers: vec![],
        }
        .to_json(),
    )
    .unwrap();
    newer["version"] = 9.into();
    let newer = newer.to_string();
    for (config, says) in [
        (None, "SCAIVAULT_AGENT_CONFIG is not set"),
        (Some("{\"version\": 1}"), "not a valid agent configuration"),
        (Some(newer.as_str()), "has version 9"),
    ] {
        let mut command = Command::new(agent_bin());
        clean_env(&mut command).arg("run");
        if let Some(config) = config {
            command.env(CONFIG_ENV, config);
        }
        let log = dir.path().join("agent.log");
        let _ = std::fs::remove_file(&log);
        let mut agent = Process::spawn("agent", &mut command, &log);
        let status = agent.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{config:?}: {}", agent.tail());
        assert!(agent.logs().contains(says), "{config:?}: {}", agent.tail());
    }
}

/// `GET url` -> status and body, or None while nothing answers.
/// Waits until the running `agent` has written `want` into `target`; fails at once,
/// with its log, should it exit first.
async fn first_render(agent: &mut Process, target: &Path, want: &str) {
    wait_for("the first render", Duration::from_secs(30), || {
        let exited = agent.try_wait().map(|s| format!("{s}:\n{}", agent.tail()));
        let target = target.to_path_buf();
        async move {
            if let Some(exited) = exited {
                panic!("the agent exited ({exited})");
            }
            (std::fs::read_to_string(&target).ok()? == want).then_some(())
        }
    })
    .await;
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// A counter's value from the agent's `/metrics`.
async fn metric(base: &str, name: &str) -> u64 {
    let (_, body) = get(&format!("{base}/metrics")).await.expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The value of the big file for version `i`: the same length each time, so a partial
/// write would show as a wrong length or a mixed body.
fn big_value(i: usize) -> String {
    let marker = char::from(b'a' + (i % 26) as u8);
    format!("v{i:03}-{}", marker.to_string().repeat(60 * 1024))
}

fn whole(content: &[u8]) -> bool {
    let Some(body) = content.get(5..) else {
        return false;
    };
    content.len() == 5 + 60 * 1024
        && content.starts_with(b"v")
        && body.iter().all(|b| *b == body[0])
}

#[tokio::test]
async fn sidecar_keeps_files_current_atomically_and_revokes_its_token_on_sigterm() {
    let shared = shared().await;
    let pod = Pod::new(shared, "**", vec![Permission::Read, Permission::List]).await;
    let vault = root(&shared.vault);
    let path = pod.path("web/big");
    write(&vault, &path, json!({"big": big_value(0), "n": 0})).await;
    let config = pod.config(
        &shared.vault,
        Mode::Sidecar,
        vec![
            file(
                "big",
                &path,
                Content::Format(Format::Raw("big".into())),
                0o644,
            ),
            file("n", &path, Content::Template("n={{ .n }}".into()), 0o640),
        ],
    );
    let base = format!("http://127.0.0.1:{}", config.ready_port);
    let mut agent = pod.spawn(&config);

    // /ready: 503 until the first render (if a probe is quick enough to see it), then 200
    // with the files in place.
    let ready = wait_for(
        "the agent's /ready to answer 200",
        Duration::from_secs(30),
        || {
            let exited = agent
                .try_wait()
                .map(|status| format!("{status}:\n{}", agent.tail()));
            let url = format!("{base}/ready");
            async move {
                if let Some(exited) = exited {
                    panic!("the agent exited ({exited})");
                }
                match get(&url).await {
                    Some((200, _)) => Some(true),
                    Some((503, _)) => None,
                    Some((status, body)) => panic!("/ready answered {status}: {body}"),
                    None => None,
                }
            }
        },
    )
    .await;
    assert!(ready);
    let dir = pod.secrets();
    assert_eq!(
        std::fs::read(dir.join("big")).unwrap(),
        big_value(0).as_bytes()
    );
    assert_eq!(std::fs::read_to_string(dir.join("n")).unwrap(), "n=0");
    assert_eq!(mode_of(&dir.join("n")), 0o640);
    assert_eq!(
        metric(&base, "scaivault_agent_event_stream_connected").await,
        1
    );
    let accessors = pod.active_tokens(&shared.vault).await;
    assert_eq!(accessors.len(), 1, "one vault token: {accessors:?}");

    // A reader opens and reads the file all the time: it must never see a partial one.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, partial) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (stop, reads, partial, big) = (
            stop.clone(),
            reads.clone(),
            partial.clone(),
            dir.join("big"),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let content = std::fs::read(&big).unwrap();
                reads.fetch_add(1, Ordering::Relaxed);
                if !whole(&content) {
                    partial.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // 20 new versions: from the write request to the new content in the file.
    let mut latencies = Vec::new();
    for i in 1..=20 {
        let want = big_value(i);
        let started = Instant::now();
        write(&vault, &path, json!({"big": want, "n": i})).await;
        let deadline = started + Duration::from_secs(1);
        loop {
            if std::fs::read(dir.join("big")).unwrap() == want.as_bytes() {
                latencies.push(started.elapsed());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "version {i} did not reach the file within 1 s:\n{}",
                agent.tail()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The second file of the same secret follows right after.
        wait_for("the second file", Duration::from_secs(1), || {
            let n = std::fs::read_to_string(dir.join("n")).unwrap();
            std::future::ready((n == format!("n={i}")).then_some(()))
        })
        .await;
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "write-to-file latency over {} writes: p50 {p50:?}, p99 {p99:?}, min {:?}",
        latencies.len(),
        latencies[0]
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");

    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let (reads, partial) = (
        reads.load(Ordering::Relaxed),
        partial.load(Ordering::Relaxed),
    );
    println!("reader: {reads} reads of the file during the writes, {partial} partial");
    assert!(reads > 20, "the reader read only {reads} times");
    assert_eq!(partial, 0, "a reader saw a partial file");

    // The same value again (a new version): rendered, but the files are not rewritten.
    let before = std::fs::metadata(dir.join("big")).unwrap();
    let (renders, writes) = (
        metric(&base, "scaivault_agent_renders_total").await,
        metric(&base, "scaivault_agent_file_writes_total").await,
    );
    write(&vault, &path, json!({"big": big_value(20), "n": 20})).await;
    wait_for(
        "the unchanged version to be rendered",
        Duration::from_secs(5),
        || async {
            (metric(&base, "scaivault_agent_renders_total").await >= renders + 2).then_some(())
        },
    )
    .await;
    let after = std::fs::metadata(dir.join("big")).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "an unchanged file was rewritten"
    );
    assert_eq!(
        metric(&base, "scaivault_agent_file_writes_total").await,
        writes
    );
    assert_eq!(metric(&base, "scaivault_agent_errors_total").await, 0);

    print_memory("sidecar", &agent);

    let logs = agent.logs();
    assert!(
        !logs.contains(&big_value(20)[..64]),
        "a secret value in the log"
    );

    // SIGTERM: the token is revoked, then the agent exits 0.
    let status = agent.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit on SIGTERM: {status}\n{}",
        agent.tail()
    );
    assert_eq!(pod.active_tokens(&shared.vault).await, Vec::<String>::new());
    let err = root(&shared.vault)
        .revoke_token(&accessors[0])
        .await
        .expect_err("the agent's token is already revoked");
    assert!(err.is_not_found(), "{err}");
    assert!(
        agent.logs().contains("vault token revoked"),
        "{}",
        agent.tail()
    );
}

/// Memory, from the kernel's view of the running agent.
fn print_memory(what: &str, agent: &Process) {
    let pid = agent.id().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let memory: Vec<String> = status
        .lines()
        .filter(|l| {
            ["VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    println!(
        "agent {} ({what}): {}",
        agent_bin().display(),
        memory.join(", ")
    );
}

/// A TCP proxy in front of the vault that the test can cut: open connections are
/// dropped and new ones refused while it is down (what a network cut or a restarting
/// vault does to the agent), the vault itself keeps running.
struct Proxy {
    url: String,
    down: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let down = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (down, connections) = (down.clone(), connections.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            })
        };
        Proxy {
            url,
            down,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test]
async fn after_a_cut_the_stream_resumes_from_its_position_and_replays_what_was_missed() {
    let shared = shared().await;
    let pod = Pod::new(shared, "**", vec![Permission::Read, Permission::List]).await;
    let vault = root(&shared.vault);
    let path = pod.path("web/db");
    write(&vault, &path, json!({"password": "one"})).await;
    let proxy = Proxy::start(&shared.vault.address).await;
    let mut config = pod.config(
        &shared.vault,
        Mode::Sidecar,
        vec![file(
            "password",
            &path,
            Content::Format(Format::Raw("password".into())),
            0o644,
        )],
    );
    config.vault_addr = proxy.url.clone();
    let base = format!("http://127.0.0.1:{}", config.ready_port);
    let mut agent = pod.spawn(&config);
    let target = pod.secrets().join("password");
    first_render(&mut agent, &target, "one").await;
    wait_for("the stream to open", Duration::from_secs(10), || async {
        (metric(&base, "scaivault_agent_event_stream_connected").await == 1).then_some(())
    })
    .await;
    // A write that reaches the file through the stream first, so its position is known.
    write(&vault, &path, json!({"password": "two"})).await;
    wait_for("version two in the file", Duration::from_secs(5), || {
        std::future::ready(
            (std::fs::read_to_string(&target).is_ok_and(|c| c == "two")).then_some(()),
        )
    })
    .await;

    proxy.cut();
    wait_for(
        "the agent to notice the cut",
        Duration::from_secs(10),
        || async {
            (metric(&base, "scaivault_agent_event_stream_connected").await == 0).then_some(())
        },
    )
    .await;
    // Written while the agent cannot reach the vault.
    write(&vault, &path, json!({"password": "three"})).await;
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "two");
    proxy.restore();
    // Well before the first poll (30 s): the reopened stream replays the missed event.
    let started = Instant::now();
    wait_for(
        "the missed version in the file",
        Duration::from_secs(15),
        || {
            std::future::ready(
                (std::fs::read_to_string(&target).is_ok_and(|c| c == "three")).then_some(()),
            )
        },
    )
    .await;
    println!(
        "missed version in the file {:?} after the vault was reachable again",
        started.elapsed()
    );
    assert_eq!(
        metric(&base, "scaivault_agent_polls_total").await,
        0,
        "replayed, not polled"
    );
    assert!(metric(&base, "scaivault_agent_event_stream_reconnects_total").await >= 1);
    assert_eq!(
        metric(&base, "scaivault_agent_event_stream_connected").await,
        1
    );
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", agent.tail());
}

#[tokio::test]
async fn a_short_lived_vault_token_is_renewed_in_time_and_the_stream_moves_to_the_new_one() {
    let shared = shared().await;
    // Vault tokens of 6 s: the agent logs in again after 4 s, reading the token file again.
    let short = Server::dev()
        .arg("--kubernetes-kubeconfig")
        .arg(shared.env.kubeconfig())
        .args([
            "--rate-limit-per-minute",
            "0",
            "--kubernetes-token-ttl",
            "6s",
        ])
        .start();
    let pod = Pod::on(
        shared,
        &short,
        "**",
        vec![Permission::Read, Permission::List],
        "scaivault",
    )
    .await;
    let vault = root(&short);
    let path = pod.path("web/db");
    write(&vault, &path, json!({"password": "one"})).await;
    let config = pod.config(
        &short,
        Mode::Sidecar,
        vec![file(
            "password",
            &path,
            Content::Format(Format::Raw("password".into())),
            0o644,
        )],
    );
    let base = format!("http://127.0.0.1:{}", config.ready_port);
    let mut agent = pod.spawn(&config);
    let target = pod.secrets().join("password");
    first_render(&mut agent, &target, "one").await;
    // Two renewals: past the first token's expiry.
    wait_for("two renewals", Duration::from_secs(20), || async {
        (metric(&base, "scaivault_agent_logins_total").await >= 3).then_some(())
    })
    .await;
    // Each renewal revoked the token it replaced.
    let revoked = agent.logs().matches("vault token revoked").count();
    assert!(revoked >= 2, "{revoked} revocations:\n{}", agent.tail());
    // The stream runs on the current token: a write still arrives at once.
    let started = Instant::now();
    write(&vault, &path, json!({"password": "two"})).await;
    wait_for("version two in the file", Duration::from_secs(2), || {
        std::future::ready(
            std::fs::read_to_string(&target)
                .is_ok_and(|c| c == "two")
                .then_some(()),
        )
    })
    .await;
    println!(
        "after two renewals, a write reached the file in {:?}",
        started.elapsed()
    );
    assert_eq!(metric(&base, "scaivault_agent_errors_total").await, 0);
    assert_eq!(metric(&base, "scaivault_agent_polls_total").await, 0);
    assert_eq!(
        metric(&base, "scaivault_agent_event_stream_connected").await,
        1
    );
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", agent.tail());
}

#[tokio::test]
async fn a_path_without_list_permission_is_polled_while_the_stream_is_up() {
    let shared = shared().await;
    // `read` alone: the stream shows this identity no event on the path.
    let pod = Pod::new(shared, "**", vec![Permission::Read]).await;
    let vault = root(&shared.vault);
    let path = pod.path("web/db");
    write(&vault, &path, json!({"password": "one"})).await;
    let config = pod.config(
        &shared.vault,
        Mode::Sidecar,
        vec![file(
            "password",
            &path,
            Content::Format(Format::Raw("password".into())),
            0o644,
        )],
    );
    let base = format!("http://127.0.0.1:{}", config.ready_port);
    let mut agent = pod.spawn(&config);
    let target = pod.secrets().join("password");
    first_render(&mut agent, &target, "one").await;
    wait_for("the warning about `list`", Duration::from_secs(5), || {
        std::future::ready(
            agent
                .logs()
                .contains("no `list` permission on this path")
                .then_some(()),
        )
    })
    .await;
    write(&vault, &path, json!({"password": "two"})).await;
    // One polling interval (30 s ± 10 %), while the stream stays connected.
    let started = Instant::now();
    wait_for(
        "the polled version in the file",
        Duration::from_secs(40),
        || {
            std::future::ready(
                std::fs::read_to_string(&target)
                    .is_ok_and(|c| c == "two")
                    .then_some(()),
            )
        },
    )
    .await;
    println!(
        "without `list`: polled into the file after {:?}",
        started.elapsed()
    );
    assert!(metric(&base, "scaivault_agent_polls_total").await >= 1);
    assert_eq!(
        metric(&base, "scaivault_agent_event_stream_connected").await,
        1
    );
    assert_eq!(
        metric(&base, "scaivault_agent_event_stream_events_total").await,
        0
    );
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", agent.tail());
}

/// Waits until `pod.out()` has `n` lines; fails at once, with its log, should the agent
/// exit first.
async fn out_lines(pod: &Pod, agent: &mut Process, n: usize, timeout: Duration) -> Vec<String> {
    wait_for(
        &format!("{n} lines in {}", pod.out().display()),
        timeout,
        || {
            let exited = agent.try_wait().map(|s| format!("{s}:\n{}", agent.tail()));
            let lines = pod.out_lines();
            async move {
                if let Some(exited) = exited {
                    panic!("the agent exited ({exited})");
                }
                (lines.len() >= n).then_some(lines)
            }
        },
    )
    .await
}

#[tokio::test]
async fn exec_gives_the_child_its_secrets_restarts_it_on_a_change_and_stops_it_on_sigterm() {
    let shared = shared().await;
    let pod = Pod::new(shared, "**", vec![Permission::Read, Permission::List]).await;
    let vault = root(&shared.vault);
    let path = pod.path("web/db");
    let (one, two) = (
        format!("one-{}", scaivault_testkit::random_token()),
        format!("two-{}", scaivault_testkit::random_token()),
    );
    write(&vault, &path, json!({"password": one, "user": "app"})).await;
    let config = pod.config(
        &shared.vault,
        Mode::Sidecar,
        vec![
            file("db", &path, Content::Format(Format::Env), 0o644),
            file(
                "api-key",
                &path,
                Content::Format(Format::Raw("password".into())),
                0o644,
            ),
        ],
    );
    let base = format!("http://127.0.0.1:{}", config.ready_port);
    // Each start appends one line: its pid (`exec` keeps it), the variables it got, and
    // whether the agent's configuration leaked into its environment.
    let script = r#"echo "$$ $API_KEY $user $password ${SCAIVAULT_AGENT_CONFIG:-unset}" >> "$OUT"; exec sleep 1000"#;
    let mut agent = pod.spawn_exec(&config, &["sh", "-c", script]);
    let lines = out_lines(&pod, &mut agent, 1, Duration::from_secs(30)).await;
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(first[1..], [one.as_str(), "app", one.as_str(), "unset"]);
    let first_pid = first[0].to_owned();
    assert_eq!(
        metric(&base, "scaivault_agent_child_restarts_total").await,
        0
    );

    // A new version: the child is restarted with the new value.
    let started = Instant::now();
    write(&vault, &path, json!({"password": two, "user": "app"})).await;
    let lines = out_lines(&pod, &mut agent, 2, Duration::from_secs(15)).await;
    println!(
        "exec: the restarted child had the new value {:?} after the write",
        started.elapsed()
    );
    let second: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(second[1..], [two.as_str(), "app", two.as_str(), "unset"]);
    assert_ne!(second[0], first_pid, "a new process");
    assert!(
        !Path::new(&format!("/proc/{first_pid}")).exists(),
        "the first child is gone"
    );
    assert_eq!(
        metric(&base, "scaivault_agent_child_restarts_total").await,
        1
    );

    // The same value again, then a third: events are handled in order, so the third
    // child's line comes right after the second's unless the unchanged value restarted it.
    let three = format!("three-{}", scaivault_testkit::random_token());
    write(&vault, &path, json!({"password": two, "user": "app"})).await;
    write(&vault, &path, json!({"password": three, "user": "app"})).await;
    let lines = out_lines(&pod, &mut agent, 3, Duration::from_secs(15)).await;
    let third: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(
        third[1..],
        [three.as_str(), "app", three.as_str(), "unset"],
        "restarted for an unchanged value: {lines:?}"
    );
    assert_eq!(
        metric(&base, "scaivault_agent_child_restarts_total").await,
        2
    );
    assert_eq!(metric(&base, "scaivault_agent_errors_total").await, 0);

    print_memory("exec", &agent);

    // SIGTERM: forwarded, the child ends, the token is revoked, exit 0.
    let status = agent.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit on SIGTERM: {status}\n{}",
        agent.tail()
    );
    assert!(
        !Path::new(&format!("/proc/{}", third[0])).exists(),
        "the child is gone"
    );
    assert_eq!(pod.active_tokens(&shared.vault).await, Vec::<String>::new());
    let logs = agent.logs();
    assert!(logs.contains("vault token revoked"), "{}", agent.tail());
    for value in [&one, &two, &three] {
        assert!(
            !logs.contains(value.as_str()),
            "a secret value in the log:\n{logs}"
        );
    }
}

#[tokio::test]
async fn exec_exits_with_the_childs_code_and_revokes_its_token() {
    let shared = shared().await;
    let pod = Pod::new(shared, "**", vec![Permission::Read, Permission::List]).await;
    let vault = root(&shared.vault);
    let path = pod.path("web/db");
    write(&vault, &path, json!({"password": "pw"})).await;
    let mut config = pod.config(
        &shared.vault,
        Mode::Sidecar,
        vec![file(
            "password",
            &path,
            Content::Format(Format::Raw("password".into())),
            0o644,
        )],
    );
    config.ready_port = 0;
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["sh", "-c", r#"[ "$PASSWORD" = pw ] && exit 7"#],
            7,
            "the child exited",
        ),
        (&["sh", "-c", "exit 0"], 0, "the child exited"),
        (&["sh", "-c", "kill -USR1 $$"], 128 + 10, "the child exited"),
        (
            &["/nonexistent/scaivault-test-app"],
            127,
            "cannot start the command \"/nonexistent/scaivault-test-app\"",
        ),
    ];
    for (command, code, says) in cases {
        let mut agent = pod.spawn_exec(&config, command);
        let status = agent.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(code), "{command:?}:\n{}", agent.tail());
        assert!(
            agent.logs().contains(says),
            "{command:?}:\n{}",
            agent.tail()
        );
        assert_eq!(
            pod.active_tokens(&shared.vault).await,
            Vec::<String>::new(),
            "{command:?}: the token is revoked"
        );
        let _ = std::fs::remove_file(agent.log_path());
    }
}

#[test]
fn exec_refuses_variable_names_that_collide_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        version: CONFIG_VERSION,
        mode: Mode::Sidecar,
        vault_addr: "http://127.0.0.1:1".into(),
        token_path: "/nonexistent".into(),
        secrets_dir: dir.path().display().to_string(),
        ready_port: 0,
        files: vec![
            file("api-key", "apps/a", Content::Format(Format::Json), 0o644),
            file("api_key", "apps/b", Content::Format(Format::Json), 0o644),
        ],
        on_change: OnChange::None,
        containers: vec![],
    };
    let mut command = Command::new(agent_bin());
    clean_env(&mut command)
        .args(["exec", "--", "true"])
        .env(CONFIG_ENV, config.to_json());
    let mut agent = Process::spawn("agent", &mut command, &dir.path().join("agent.log"));
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", agent.tail());
    assert!(
        agent
            .logs()
            .contains("files \"api-key\" and \"api_key\" would both be the variable API_KEY"),
        "{}",
        agent.tail()
    );
}

#[tokio::test]
async fn sidecar_on_change_signals_the_apps_main_process_once_per_change() {
    let shared = shared().await;
    let pod = Pod::new(shared, "**", vec![Permission::Read, Permission::List]).await;
    let vault = root(&shared.vault);
    let path = pod.path("web/db");
    write(&vault, &path, json!({"password": "one", "user": "app"})).await;
    // The container's name is the test's own: other tests' processes never match it.
    let container = format!("app-{}", scaivault_testkit::random_token());
    let mut config = pod.config(
        &shared.vault,
        Mode::Sidecar,
        vec![
            file(
                "password",
                &path,
                Content::Format(Format::Raw("password".into())),
                0o644,
            ),
            file(
                "user",
                &path,
                Content::Format(Format::Raw("user".into())),
                0o644,
            ),
        ],
    );
    config.on_change = OnChange::Signal(Signal::Hup);
    config.containers = vec![container.clone()];
    let base = format!("http://127.0.0.1:{}", config.ready_port);
    let mut agent = pod.spawn(&config);
    first_render(&mut agent, &pod.secrets().join("password"), "one").await;

    // The "app", started after the first render as in a pod, as the same user, with the
    // marker the injector sets; its `sleep` children inherit it and must not be signalled.
    // Each HUP appends the `user` file as the app reads it then; the first line says the
    // trap is set (a HUP before it would end the shell).
    let mut app_command = Command::new("sh");
    app_command
        .args([
            "-c",
            r#"trap 'echo "hup $(cat "$USER_FILE")" >> "$OUT"' HUP; echo trapped >> "$OUT"; while :; do sleep 0.1; done"#,
        ])
        .env(CONTAINER_ENV, &container)
        .env("USER_FILE", pod.secrets().join("user"))
        .env("OUT", pod.out());
    let mut app = Process::spawn("app", &mut app_command, &pod.dir.path().join("app.log"));
    out_lines(&pod, &mut agent, 1, Duration::from_secs(10)).await;

    // A new version changes both files: one signal.
    let started = Instant::now();
    write(&vault, &path, json!({"password": "two", "user": "app2"})).await;
    let lines = out_lines(&pod, &mut agent, 2, Duration::from_secs(10)).await;
    println!(
        "on-change: the app had its SIGHUP {:?} after the write",
        started.elapsed()
    );
    assert_eq!(lines, ["trapped", "hup app2"]);

    // The same value again, then a new one. Events are handled in order, so once the app
    // has the new value's signal, every signal before it was sent too: two in all (none
    // for the unchanged value, one for the change of two files).
    write(&vault, &path, json!({"password": "two", "user": "app2"})).await;
    write(&vault, &path, json!({"password": "two", "user": "app3"})).await;
    let lines = wait_for(
        "the new value's signal",
        Duration::from_secs(10),
        || async {
            let lines = pod.out_lines();
            lines.iter().any(|l| l == "hup app3").then_some(lines)
        },
    )
    .await;
    assert_eq!(lines, ["trapped", "hup app2", "hup app3"]);
    assert_eq!(metric(&base, "scaivault_agent_app_signals_total").await, 2);
    assert_eq!(
        metric(&base, "scaivault_agent_app_signal_misses_total").await,
        0
    );
    let logs = agent.logs();
    assert!(
        logs.contains(&format!("container={container}")) && logs.contains("signal=\"SIGHUP\""),
        "{}",
        agent.tail()
    );
    assert!(app.try_wait().is_none(), "the app still runs");

    // Without the app: a change is a warning and a miss, not an error.
    app.kill();
    write(&vault, &path, json!({"password": "three", "user": "app2"})).await;
    wait_for(
        "the miss to be counted",
        Duration::from_secs(10),
        || async {
            (metric(&base, "scaivault_agent_app_signal_misses_total").await == 1).then_some(())
        },
    )
    .await;
    assert!(
        agent
            .logs()
            .contains("no process of the app containers found")
    );
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", agent.tail());
}
