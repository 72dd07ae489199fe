//! Injected pods that really run: the real kube-apiserver and node of `e2e/` (containerd,
//! runc, kubelet), the injector registered as the webhook, the agent's image made from the
//! built `scaivault-agent` binary, and a vault the pods reach at the node's address. The
//! kubelet mints each pod's projected token, the agent logs in with it, and busybox app
//! containers read the files. Needs root (the node does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::{AUDIENCE, Injector, create_when_webhook_reachable, register, webhook_config};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, ListParams, LogParams, PostParams};
use scaivault_injector::mutate::AGENT_CONTAINER;
use scaivault_testkit::kube::{KubeEnv, Node, NodeImage, namespace, service_account};
use scaivault_testkit::{Server, wait_for, wait_until};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const AGENT_IMAGE: &str = "scaivault.local/agent:e2e";
const BUSYBOX: &str = "scaivault.local/busybox:e2e";
/// Pod start-up includes the kubelet's first token request and the agent's first render.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// One apiserver, node and vault per test binary; each test has its namespace and its
/// own injector (registered for that namespace only).
struct Cluster {
    env: KubeEnv,
    node: Node,
    vault: Server,
}

static CLUSTER: tokio::sync::OnceCell<Cluster> = tokio::sync::OnceCell::const_new();

async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async {
            let env = KubeEnv::start();
            let agent = scaivault_testkit::bin::workspace_bin("scaivault-agent");
            let node = env.start_node(&[NodeImage::Binary {
                reference: AGENT_IMAGE,
                binary: &agent,
            }]);
            let vault = Server::dev()
                .listen_on(node.ip)
                .arg("--kubernetes-kubeconfig")
                .arg(env.kubeconfig())
                .args(["--kubernetes-audience", AUDIENCE])
                // Every pod logs in; the per-address login budget is not under test.
                .args(["--rate-limit-per-minute", "0"])
                .start();
            env.stop_when_process_exits(&[vault.pid().expect("vault running")], &[vault.dir()]);
            Cluster { env, node, vault }
        })
        .await
}

/// A test's namespace with ServiceAccount `app` (when `readable`, allowed to read and list,
/// so its changes are pushed, everything under `apps/<ns>/`), and an injector for it.
struct Namespace {
    name: String,
    pods: Api<Pod>,
    injector: Injector,
}

impl Namespace {
    async fn new(prefix: &str, readable: bool) -> Namespace {
        let cluster = cluster().await;
        let client = cluster.env.client().await;
        let name = namespace(&client, prefix).await;
        service_account(&client, &name, "app").await;
        if readable {
            let rules = json!([{"path_pattern": format!("apps/{name}/*"), "permissions": ["read", "list"]}]);
            cluster.vault.grant(&format!("k8s:{name}/app"), rules).await;
        }
        let config = format!("scaivault-injector-{name}");
        let injector = Injector::start_for(
            &cluster.env,
            &name,
            AGENT_IMAGE,
            &cluster.vault.address,
            &[
                "--self-signed-service",
                "scaivault-injector.scaivault-system",
                "--self-signed-ip",
                "127.0.0.1",
                "--webhook-config-name",
                &config,
            ],
        );
        register(
            &client,
            &webhook_config(&config, injector.port, &name, None),
        )
        .await;
        injector.wait_ready().await;
        Namespace {
            pods: Api::namespaced(client, &name),
            name,
            injector,
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("apps/{}/{rest}", self.name)
    }

    async fn write(&self, rest: &str, data: Value) {
        let vault = &cluster().await.vault;
        vault.write(&self.path(rest), json!({ "data": data })).await;
    }

    /// An opted-in pod on the node whose `app` container runs `script` (busybox sh).
    fn pod(&self, name: &str, annotations: Value, restart: &str, script: &str) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"scaivault.io/inject": "true"},
                         "annotations": annotations},
            "spec": {
                "nodeName": cluster_node_name(),
                "serviceAccountName": "app",
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "Never",
                                "command": ["sh", "-c", script]}],
            }
        }))
        .unwrap()
    }

    async fn create(&self, pod: &Pod) -> Pod {
        create_when_webhook_reachable(&self.pods, pod)
            .await
            .expect("pod admitted")
    }

    async fn phase(&self, pod: &str) -> String {
        let pod = self.pods.get(pod).await.unwrap();
        pod.status.and_then(|s| s.phase).unwrap_or_default()
    }

    async fn wait_phase(&self, pod: &str, want: &[&str]) -> String {
        wait_for(
            &format!("pod {pod} to be {want:?}"),
            START_TIMEOUT,
            || async {
                let phase = self.phase(pod).await;
                want.contains(&phase.as_str()).then_some(phase)
            },
        )
        .await
    }

    /// The container's log, with the runtime's timestamp of each line.
    async fn log(&self, pod: &str, container: &str) -> String {
        let params = LogParams {
            container: Some(container.to_owned()),
            timestamps: true,
            ..Default::default()
        };
        self.pods.logs(pod, &params).await.unwrap_or_default()
    }

    async fn init_status(&self, pod: &str, container: &str) -> Option<ContainerStatus> {
        let pod = self.pods.get(pod).await.ok()?;
        pod.status?
            .init_container_statuses?
            .into_iter()
            .find(|s| s.name == container)
    }

    async fn events(&self, pod: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.pods.clone().into_client(), &self.name);
        let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
        events.list(&params).await.unwrap().items
    }
}

fn cluster_node_name() -> String {
    CLUSTER.get().expect("cluster started").node.name.clone()
}

/// The time of the first log line whose text is `text` (lines are `<RFC 3339> <text>`).
fn logged_at(log: &str, text: &str) -> Option<OffsetDateTime> {
    log.lines().find_map(|line| {
        let (at, rest) = line.split_once(' ')?;
        (rest == text).then(|| OffsetDateTime::parse(at, &Rfc3339).ok())?
    })
}

fn lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| l.split_once(' ').map(|(_, text)| text))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The app says whether the file was there when it started, then prints the file's
/// content each time it changes (checking every 5 ms).
const WATCHER: &str = r#"test -s /scaivault/secrets/version && echo "present at start" || echo "missing at start"
last=
while :; do
  v=$(cat /scaivault/secrets/version 2>/dev/null)
  if [ "$v" != "$last" ]; then echo "version $v"; last=$v; fi
  usleep 5000
done"#;

#[tokio::test]
async fn an_injected_pod_reads_its_file_and_each_new_version_reaches_the_running_pod() {
    let ns = Namespace::new("pod-live", true).await;
    ns.write(
        "config",
        json!({"version": "v0", "password": "never-printed"}),
    )
    .await;
    let annotations = json!({
        "scaivault.io/secret-version": ns.path("config"),
        "scaivault.io/format-version": "raw:version",
        "scaivault.io/secret-db": ns.path("config"),
        "scaivault.io/template-db": "password={{ .password }}",
        "scaivault.io/file-mode-db": "0400",
    });
    let created = ns
        .create(&ns.pod("web", annotations, "Always", WATCHER))
        .await;
    let inits = created.spec.unwrap().init_containers.unwrap();
    assert_eq!(inits[0].name, AGENT_CONTAINER, "injected by the webhook");
    ns.wait_phase("web", &["Running"]).await;
    wait_until("the app's first line", START_TIMEOUT, || async {
        lines(&ns.log("web", "app").await).contains(&"version v0")
    })
    .await;
    let log = ns.log("web", "app").await;
    assert_eq!(
        lines(&log)[..2],
        ["present at start", "version v0"],
        "the app starts after the first render"
    );
    let agent = ns.init_status("web", AGENT_CONTAINER).await.unwrap();
    assert_eq!(
        agent.started,
        Some(true),
        "the sidecar's startup probe passed"
    );
    assert_eq!(agent.restart_count, 0);

    // Each new version, from the write's answer to the running app seeing the file change.
    let mut latencies = Vec::new();
    for n in 1..=20 {
        let text = format!("version v{n}");
        ns.write(
            "config",
            json!({"version": format!("v{n}"), "password": "never-printed"}),
        )
        .await;
        let written = OffsetDateTime::from(SystemTime::now());
        // Polling would take 30 s: within 10 s, only the push stream brings it.
        let seen = wait_for(&text, Duration::from_secs(10), || async {
            logged_at(&ns.log("web", "app").await, &text)
        })
        .await;
        latencies.push(Duration::try_from(seen - written).unwrap_or_default());
    }
    latencies.sort();
    eprintln!(
        "write to the running pod's file over {} writes: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().unwrap()
    );
    // What the agent costs in the pod, from the kubelet's own accounting (the injector's
    // requests and limits are set from these figures: docs/injector.md).
    let client = ns.pods.clone().into_client();
    let stats = client
        .request::<Value>(
            http::Request::get(format!(
                "/api/v1/nodes/{}/proxy/stats/summary?only_cpu_and_memory=true",
                cluster_node_name()
            ))
            .body(Vec::new())
            .unwrap(),
        )
        .await;
    let agent_stats = stats.as_ref().ok().and_then(|summary| {
        summary["pods"]
            .as_array()?
            .iter()
            .filter(|p| p["podRef"]["namespace"] == ns.name.as_str())
            .flat_map(|p| p["containers"].as_array().cloned().unwrap_or_default())
            .find(|c| c["name"] == AGENT_CONTAINER)
    });
    match agent_stats {
        Some(c) => eprintln!(
            "agent in the pod after 21 renders: memory working set {} KiB, rss {} KiB, cpu {} ms in total",
            c["memory"]["workingSetBytes"].as_u64().unwrap_or(0) / 1024,
            c["memory"]["rssBytes"].as_u64().unwrap_or(0) / 1024,
            c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) / 1_000_000
        ),
        None => eprintln!("no kubelet stats for the agent container: {stats:?}"),
    }
    let agent_log = ns.log("web", AGENT_CONTAINER).await;
    assert!(agent_log.contains("event stream open"), "{agent_log}");
    assert!(
        !agent_log.contains("never-printed"),
        "a secret value in the agent's log"
    );
    assert!(
        ns.injector.process.logs().contains("injected"),
        "{}",
        ns.injector.process.tail()
    );
}

#[tokio::test]
async fn pods_that_exit_complete_with_the_native_sidecar_and_in_init_only_mode() {
    let ns = Namespace::new("pod-job", true).await;
    ns.write("config", json!({"version": "v7"})).await;
    let read_once = "echo \"version $(cat /scaivault/secrets/version)\"";
    let sidecar = json!({
        "scaivault.io/secret-version": ns.path("config"),
        "scaivault.io/format-version": "raw:version",
    });
    let mut init_only = sidecar.clone();
    init_only["scaivault.io/mode"] = json!("init-only");
    ns.create(&ns.pod("job", sidecar, "Never", read_once)).await;
    ns.create(&ns.pod("init", init_only, "Never", read_once))
        .await;
    for pod in ["job", "init"] {
        assert_eq!(
            ns.wait_phase(pod, &["Succeeded", "Failed"]).await,
            "Succeeded",
            "pod {pod}"
        );
        assert_eq!(
            lines(&ns.log(pod, "app").await),
            ["version v7"],
            "pod {pod}"
        );
    }
    let agent = ns.init_status("init", AGENT_CONTAINER).await.unwrap();
    let done = agent.state.and_then(|s| s.terminated).unwrap();
    assert_eq!(done.exit_code, 0, "init-only renders once and exits");
}

#[tokio::test]
async fn an_unlabelled_pod_runs_while_the_injector_is_stopped() {
    let mut ns = Namespace::new("pod-down", false).await;
    ns.injector.process.terminate(Duration::from_secs(10));
    let plain: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain"},
        "spec": {
            "nodeName": cluster_node_name(),
            "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", "echo up; sleep 3600"]}],
        }
    }))
    .unwrap();
    ns.pods
        .create(&PostParams::default(), &plain)
        .await
        .expect("an unlabelled pod is admitted with the injector down");
    ns.wait_phase("plain", &["Running"]).await;
    wait_until("the app's line", START_TIMEOUT, || async {
        lines(&ns.log("plain", "app").await) == ["up"]
    })
    .await;
    let opted_in = ns.pod(
        "opted-in",
        json!({"scaivault.io/secret-version": ns.path("config")}),
        "Always",
        "sleep 3600",
    );
    let message = ns
        .pods
        .create(&PostParams::default(), &opted_in)
        .await
        .expect_err("an opted-in pod is refused rather than started without its secrets")
        .to_string();
    assert!(message.contains("failed calling webhook"), "{message}");
}

#[tokio::test]
async fn a_pod_whose_identity_may_not_read_the_path_is_told_why() {
    let ns = Namespace::new("pod-denied", false).await;
    ns.write("config", json!({"version": "v1"})).await;
    let path = ns.path("config");
    ns.create(&ns.pod(
        "denied",
        json!({"scaivault.io/secret-version": path}),
        "Always",
        "sleep 3600",
    ))
    .await;
    let message = format!(
        "secret {path}: permission `read` denied to k8s:{}/app",
        ns.name
    );
    // The agent's own log, and the container status the kubelet keeps (its last lines).
    let status = wait_for(
        "the agent to end with the denial",
        START_TIMEOUT,
        || async {
            let status = ns.init_status("denied", AGENT_CONTAINER).await?;
            let terminated = status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.clone())
                .or_else(|| status.state.as_ref()?.terminated.clone())?;
            Some((status, terminated))
        },
    )
    .await;
    let (status, terminated) = status;
    assert_eq!(terminated.exit_code, 4, "exit code of a denied read");
    assert!(
        terminated
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&message),
        "termination message: {:?}",
        terminated.message
    );
    assert!(ns.log("denied", AGENT_CONTAINER).await.contains(&message));
    assert_ne!(status.started, Some(true));
    // The app never starts without its files.
    let pod = ns.pods.get("denied").await.unwrap();
    let apps = pod
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default();
    assert!(
        apps.iter()
            .all(|a| a.state.as_ref().is_none_or(|s| s.running.is_none())),
        "the app runs without its files: {apps:?}"
    );
    // And the kubelet's Warning event on the pod names the agent's container (`kubectl
    // describe pod` shows it next to the container's last state, with the message above).
    wait_until("a Warning event about the agent", START_TIMEOUT, || async {
        ns.events("denied").await.iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains(AGENT_CONTAINER))
        })
    })
    .await;
}

#[tokio::test]
async fn on_change_signals_or_restarts_the_app_in_its_pod() {
    let ns = Namespace::new("pod-signal", true).await;
    ns.write("config", json!({"version": "v1"})).await;
    let on_change = |how: &str| {
        json!({
            "scaivault.io/secret-version": ns.path("config"),
            "scaivault.io/format-version": "raw:version",
            "scaivault.io/on-change": how,
        })
    };
    // The agent may signal only its own user's processes: the app runs as 1000.
    let as_user = |mut pod: Pod| {
        pod.spec.as_mut().unwrap().security_context =
            Some(serde_json::from_value(json!({"runAsUser": 1000, "runAsGroup": 1000})).unwrap());
        pod
    };
    // `sleep & wait`: a trap runs as soon as the signal arrives.
    let hup = r#"trap 'echo "hup $(cat /scaivault/secrets/version)"' HUP
echo "start $(cat /scaivault/secrets/version)"
while :; do sleep 1 & wait $!; done"#;
    let plain = r#"echo "start $(cat /scaivault/secrets/version)"
while :; do sleep 1 & wait $!; done"#;
    ns.create(&as_user(ns.pod(
        "hup",
        on_change("signal:SIGHUP"),
        "Always",
        hup,
    )))
    .await;
    ns.create(&as_user(ns.pod(
        "restart",
        on_change("restart"),
        "Always",
        plain,
    )))
    .await;
    for pod in ["hup", "restart"] {
        ns.wait_phase(pod, &["Running"]).await;
        wait_until(&format!("{pod} started"), START_TIMEOUT, || async {
            lines(&ns.log(pod, "app").await) == ["start v1"]
        })
        .await;
    }

    ns.write("config", json!({"version": "v2"})).await;
    // The same process, signalled once, reads the new file.
    wait_until("the app's SIGHUP", START_TIMEOUT, || async {
        lines(&ns.log("hup", "app").await) == ["start v1", "hup v2"]
    })
    .await;
    // The app ended by the agent, started again by the kubelet, with the new file.
    wait_until("the app restarted", START_TIMEOUT, || async {
        lines(&ns.log("restart", "app").await) == ["start v2"]
    })
    .await;
    let pod = ns.pods.get("restart").await.unwrap();
    let app = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(app.restart_count, 1, "{app:?}");
    let agent = ns.init_status("restart", AGENT_CONTAINER).await.unwrap();
    assert_eq!(agent.restart_count, 0, "the agent itself keeps running");
    // An unchanged value: no signal.
    ns.write("config", json!({"version": "v2"})).await;
    ns.write("config", json!({"version": "v3"})).await;
    wait_until("the second SIGHUP", START_TIMEOUT, || async {
        lines(&ns.log("hup", "app").await).len() >= 3
    })
    .await;
    assert_eq!(
        lines(&ns.log("hup", "app").await),
        ["start v1", "hup v2", "hup v3"],
        "one signal per real change"
    );
}

/// `scaivault-agent exec` as a pod's entrypoint: busybox with the agent binary, the shared
/// libraries it links and the CA bundle mounted from the host (an app image would carry
/// them), its configuration written by hand, a projected token of the vault's audience.
#[tokio::test]
async fn exec_mode_restarts_the_child_with_the_new_environment_in_a_pod() {
    use scaivault_kube_api::agent::{
        AgentConfig, CONFIG_ENV, CONFIG_VERSION, Content, FileSpec, Format, Mode, OnChange,
    };
    let cluster = cluster().await;
    let ns = Namespace::new("pod-exec", true).await;
    ns.write("config", json!({"version": "v1"})).await;
    let config = AgentConfig {
        version: CONFIG_VERSION,
        mode: Mode::Sidecar,
        vault_addr: cluster.vault.address.clone(),
        token_path: "/var/run/secrets/scaivault/token".into(),
        secrets_dir: "/tmp".into(),
        ready_port: 0,
        files: vec![FileSpec {
            name: "version".into(),
            path: ns.path("config"),
            content: Content::Format(Format::Raw("version".into())),
            mode: 0o400,
        }],
        on_change: OnChange::None,
        containers: vec![],
    };
    let agent = scaivault_testkit::bin::workspace_bin("scaivault-agent");
    let host_dir = |path: &str, name: &str| json!({"name": name, "hostPath": {"path": path, "type": "Directory"}});
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "exec"},
        "spec": {
            "nodeName": cluster_node_name(),
            "serviceAccountName": "app",
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "volumes": [
                {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                    "path": "token", "audience": AUDIENCE, "expirationSeconds": 3600}}]}},
                host_dir(agent.parent().unwrap().to_str().unwrap(), "agent"),
                host_dir("/lib/x86_64-linux-gnu", "lib"),
                host_dir("/lib64", "lib64"),
                host_dir("/etc/ssl/certs", "certs"),
            ],
            "containers": [{
                "name": "app", "image": BUSYBOX, "imagePullPolicy": "Never",
                "command": [
                    "/agent/scaivault-agent", "exec", "--",
                    "sh", "-c", "echo \"start $VERSION\"; while :; do sleep 1 & wait $!; done"
                ],
                "env": [{"name": CONFIG_ENV, "value": config.to_json()}],
                "volumeMounts": [
                    {"name": "token", "mountPath": "/var/run/secrets/scaivault", "readOnly": true},
                    {"name": "agent", "mountPath": "/agent", "readOnly": true},
                    {"name": "lib", "mountPath": "/lib/x86_64-linux-gnu", "readOnly": true},
                    {"name": "lib64", "mountPath": "/lib64", "readOnly": true},
                    {"name": "certs", "mountPath": "/etc/ssl/certs", "readOnly": true},
                ],
            }],
        }
    }))
    .unwrap();
    ns.pods.create(&PostParams::default(), &pod).await.unwrap();
    ns.wait_phase("exec", &["Running"]).await;
    let child_lines = |log: String| -> Vec<String> {
        lines(&log)
            .into_iter()
            .filter(|l| l.starts_with("start "))
            .map(str::to_owned)
            .collect()
    };
    wait_until("the child started", START_TIMEOUT, || async {
        child_lines(ns.log("exec", "app").await) == ["start v1"]
    })
    .await;
    ns.write("config", json!({"version": "v2"})).await;
    wait_until("the child restarted", START_TIMEOUT, || async {
        child_lines(ns.log("exec", "app").await) == ["start v1", "start v2"]
    })
    .await;
    let pod = ns.pods.get("exec").await.unwrap();
    let app = &pod.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        app.restart_count, 0,
        "the agent restarted its child, not the kubelet the container"
    );
}
