//! The injector binary against the real kube-apiserver of `e2e/`: the
//! MutatingWebhookConfiguration of `examples/injector.yaml` registered (its clientConfig
//! swapped for `https://127.0.0.1:<port>/mutate`, and narrowed to the test's namespace so
//! tests sharing the apiserver do not call each other's injector), pods created through the
//! apiserver and read back. No node runs, so pods stay Pending: the spec is what is checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{AUDIENCE, Injector, create_when_webhook_reachable, register, webhook_config};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use scaivault_injector::mutate::{AGENT_CONTAINER, SECRETS_VOLUME, TOKEN_VOLUME};
use scaivault_kube_api::agent::{AgentConfig, CONFIG_ENV, Content, Mode};
use scaivault_testkit::certs::Ca;
use scaivault_testkit::kube::{KubeEnv, namespace};
use scaivault_testkit::{repo_root, wait_for};
use serde_json::{Value, json};

static ENV: tokio::sync::OnceCell<KubeEnv> = tokio::sync::OnceCell::const_new();

async fn env() -> &'static KubeEnv {
    ENV.get_or_init(|| async {
        let env = KubeEnv::start();
        env.stop_when_process_exits(&[], &[]);
        env
    })
    .await
}

async fn ca_bundle(client: &Client, name: &str) -> Option<Vec<u8>> {
    let config = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .ok()?;
    Some(
        config
            .webhooks?
            .first()?
            .client_config
            .ca_bundle
            .as_ref()?
            .0
            .clone(),
    )
}

fn pod(name: &str, labels: Value, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            "initContainers": [{"name": "migrate", "image": "busybox",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "containers": [
                {"name": "app", "image": "busybox", "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "metrics", "image": "busybox"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }
    }))
    .unwrap()
}

fn opted_in() -> Value {
    json!({"scaivault.io/inject": "true"})
}

fn annotations() -> Value {
    json!({
        "scaivault.io/secret-db": "apps/web/db",
        "scaivault.io/template-db": "postgres://{{ .user }}:{{ .password }}@db/web",
        "scaivault.io/file-mode-db": "0400",
        "scaivault.io/containers": "app,migrate",
        "scaivault.io/on-change": "signal:SIGHUP",
    })
}

fn container<'a>(
    list: &'a [k8s_openapi::api::core::v1::Container],
    name: &str,
) -> &'a k8s_openapi::api::core::v1::Container {
    list.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn mounts(c: &k8s_openapi::api::core::v1::Container) -> Vec<(String, String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only.unwrap_or(false),
            )
        })
        .collect()
}

fn m(name: &str, path: &str, ro: bool) -> (String, String, bool) {
    (name.to_owned(), path.to_owned(), ro)
}

/// Asserts the spec the apiserver stored for an injected pod made by [`pod`] and
/// [`annotations`].
fn assert_injected(stored: &Pod) {
    let spec = stored.spec.as_ref().unwrap();
    let inits = spec.init_containers.as_deref().unwrap();
    let names: Vec<_> = inits.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [AGENT_CONTAINER, "migrate"]);
    let agent = &inits[0];
    assert_eq!(
        agent.image.as_deref(),
        Some("registry.example/scaivault-agent:e2e")
    );
    assert_eq!(
        agent.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    let probe = agent
        .startup_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/ready"));
    let sc = agent.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(1000), "the app's user, to signal it");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let requests = agent.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "10m");
    assert_eq!(requests["memory"].0, "16Mi");
    assert_eq!(
        mounts(agent),
        [
            m(SECRETS_VOLUME, "/scaivault/secrets", false),
            m(TOKEN_VOLUME, "/var/run/secrets/scaivault", true)
        ]
    );
    let config_json = agent
        .env
        .iter()
        .flatten()
        .find(|e| e.name == CONFIG_ENV)
        .and_then(|e| e.value.clone())
        .unwrap();
    let config = AgentConfig::from_json(&config_json).unwrap();
    assert_eq!(config.mode, Mode::Sidecar);
    assert_eq!(config.token_path, "/var/run/secrets/scaivault/token");
    assert_eq!(config.containers, ["migrate", "app"]);
    assert_eq!(config.files.len(), 1);
    assert_eq!(config.files[0].mode, 0o400);
    assert!(
        matches!(&config.files[0].content, Content::Template(t) if t.contains("{{ .password }}"))
    );

    assert_eq!(
        mounts(container(inits, "migrate")),
        [
            m("data", "/data", false),
            m(SECRETS_VOLUME, "/scaivault/secrets", true)
        ]
    );
    assert_eq!(
        mounts(container(&spec.containers, "app")),
        [
            m("data", "/data", false),
            m(SECRETS_VOLUME, "/scaivault/secrets", true)
        ]
    );
    assert_eq!(
        mounts(container(&spec.containers, "metrics")),
        [],
        "not chosen"
    );
    for c in inits.iter().skip(1).chain(&spec.containers) {
        assert!(
            !mounts(c).iter().any(|(n, _, _)| n == TOKEN_VOLUME),
            "token in {}",
            c.name
        );
    }
    let volumes = spec.volumes.as_deref().unwrap();
    let secrets = volumes.iter().find(|v| v.name == SECRETS_VOLUME).unwrap();
    assert_eq!(
        secrets.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    let token = volumes.iter().find(|v| v.name == TOKEN_VOLUME).unwrap();
    let projection = token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0]
        .service_account_token
        .as_ref()
        .unwrap();
    assert_eq!(projection.audience.as_deref(), Some(AUDIENCE));
    assert_eq!(projection.path, "token");
    assert!(
        volumes.iter().any(|v| v.name == "data"),
        "the pod's own volume is kept"
    );
    assert_eq!(
        spec.share_process_namespace,
        Some(true),
        "on-change: signal asks for it"
    );
}

#[tokio::test]
async fn self_managed_injector_mutates_opted_in_pods_and_denies_invalid_ones() {
    let env = env().await;
    let client = env.client().await;
    let ns = namespace(&client, "inj-self").await;
    let name = format!("scaivault-injector-{ns}");
    let injector = Injector::start(
        env,
        &ns,
        &[
            "--self-signed-service",
            "scaivault-injector.scaivault-system",
            "--self-signed-ip",
            "127.0.0.1",
            "--webhook-config-name",
            &name,
        ],
    );
    // Registered after the injector started: it publishes the caBundle once it exists.
    register(&client, &webhook_config(&name, injector.port, &ns, None)).await;
    injector.wait_ready().await;
    let bundle = ca_bundle(&client, &name).await.expect("caBundle published");
    assert!(
        String::from_utf8(bundle)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let created = create_when_webhook_reachable(&pods, &pod("web", opted_in(), annotations()))
        .await
        .expect("opted-in pod admitted");
    assert_injected(&created);
    // Read back as stored, not only as answered.
    assert_injected(&pods.get("web").await.unwrap());

    // An invalid annotation: denied, with the annotation and the fault in the message.
    let mut bad = annotations();
    bad["scaivault.io/format-key"] = json!("xml");
    bad["scaivault.io/secret-key"] = json!("apps/web/key");
    let err = pods
        .create(&PostParams::default(), &pod("bad", opted_in(), bad))
        .await
        .expect_err("an invalid annotation is denied");
    let message = err.to_string();
    assert!(
        message.contains("denied the request: annotation scaivault.io/format-key: \"xml\" is not json, env, yaml or raw:<field>"),
        "{message}"
    );
    assert!(pods.get_opt("bad").await.unwrap().is_none());
    let mut bad = annotations();
    bad["scaivault.io/template-db"] = json!("{{ .password");
    let message = pods
        .create(&PostParams::default(), &pod("bad", opted_in(), bad))
        .await
        .expect_err("a broken template is denied")
        .to_string();
    assert!(
        message.contains("annotation scaivault.io/template-db: template of key \"db\": unclosed"),
        "{message}"
    );

    // A pod without the label never reaches the injector: nothing added.
    let plain = pods
        .create(
            &PostParams::default(),
            &pod("plain", json!({}), annotations()),
        )
        .await
        .expect("an unlabelled pod is admitted");
    let inits = plain.spec.unwrap().init_containers.unwrap();
    assert_eq!(inits.len(), 1, "no agent without the label");
    assert!(
        injector.process.logs().contains("injected"),
        "{}",
        injector.process.tail()
    );
}

#[tokio::test]
async fn pods_without_the_label_are_admitted_while_the_injector_is_down() {
    let env = env().await;
    let client = env.client().await;
    let ns = namespace(&client, "inj-down").await;
    let name = format!("scaivault-injector-{ns}");
    let mut injector = Injector::start(
        env,
        &ns,
        &[
            "--self-signed-service",
            "inj.scaivault-system",
            "--self-signed-ip",
            "127.0.0.1",
            "--webhook-config-name",
            &name,
        ],
    );
    register(&client, &webhook_config(&name, injector.port, &ns, None)).await;
    injector.wait_ready().await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    create_when_webhook_reachable(&pods, &pod("before", opted_in(), annotations()))
        .await
        .expect("the webhook works");
    injector.process.terminate(Duration::from_secs(10));

    let started = Instant::now();
    let plain = pods
        .create(
            &PostParams::default(),
            &pod("plain", json!({"app": "web"}), json!({})),
        )
        .await
        .expect("an unlabelled pod is admitted with the injector down");
    let elapsed = started.elapsed();
    assert_eq!(plain.spec.unwrap().init_containers.unwrap().len(), 1);
    // Not even the webhook's 5 s timeout: the apiserver never called it.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    // Annotations alone do not opt in with the example configuration.
    pods.create(
        &PostParams::default(),
        &pod("annotated", json!({}), with_inject(annotations())),
    )
    .await
    .expect("an annotated but unlabelled pod is admitted");

    // An opted-in pod is refused rather than started without its secrets.
    let message = pods
        .create(
            &PostParams::default(),
            &pod("opted-in", opted_in(), annotations()),
        )
        .await
        .expect_err("failurePolicy: Fail for opted-in pods")
        .to_string();
    assert!(message.contains("failed calling webhook"), "{message}");
}

fn with_inject(mut annotations: Value) -> Value {
    annotations["scaivault.io/inject"] = json!("true");
    annotations
}

fn write_atomically(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The certificate the injector serves now, through a client trusting `ca_pem`.
async fn served(port: u16, ca_pem: &str) -> Option<Vec<u8>> {
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .tls_info(true)
        .build()
        .unwrap();
    let response = http
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()?;
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn rotated_certificate_files_are_served_without_a_restart() {
    let env = env().await;
    let client = env.client().await;
    let ns = namespace(&client, "inj-rotate").await;
    let name = format!("scaivault-injector-{ns}");
    let dir: PathBuf = env.dir().join(format!("tls-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("injector-ca-1");
    let first = ca.leaf(&["127.0.0.1"]);
    write_atomically(&dir, "ca.pem", &ca.pem());
    write_atomically(&dir, "tls.crt", &first.cert_pem);
    write_atomically(&dir, "tls.key", &first.key_pem);
    let path = |f: &str| dir.join(f).display().to_string();
    let mut injector = Injector::start(
        env,
        &ns,
        &[
            "--tls-cert-file",
            &path("tls.crt"),
            "--tls-key-file",
            &path("tls.key"),
            "--tls-ca-file",
            &path("ca.pem"),
            "--tls-reload-interval",
            "1s",
            "--webhook-config-name",
            &name,
        ],
    );
    register(&client, &webhook_config(&name, injector.port, &ns, None)).await;
    injector.wait_ready().await;
    assert_eq!(
        ca_bundle(&client, &name).await.unwrap(),
        ca.pem().into_bytes(),
        "caBundle from --tls-ca-file"
    );
    assert_eq!(
        served(injector.port, &ca.pem()).await.unwrap(),
        der(&first.cert_pem)
    );
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    create_when_webhook_reachable(&pods, &pod("one", opted_in(), annotations()))
        .await
        .expect("admitted with the first certificate");

    // A new certificate from the same CA: served without a restart.
    let second = ca.leaf(&["127.0.0.1"]);
    write_atomically(&dir, "tls.key", &second.key_pem);
    write_atomically(&dir, "tls.crt", &second.cert_pem);
    let want = der(&second.cert_pem);
    wait_for(
        "the second certificate served",
        Duration::from_secs(20),
        || async { (served(injector.port, &ca.pem()).await? == want).then_some(()) },
    )
    .await;
    assert!(injector.process.try_wait().is_none(), "the same process");
    let stored = pods
        .create(
            &PostParams::default(),
            &pod("two", opted_in(), annotations()),
        )
        .await
        .expect("admitted with the second certificate");
    assert_injected(&stored);

    // A new CA too: the injector publishes it as the caBundle, and the apiserver follows.
    let ca2 = Ca::new("injector-ca-2");
    let third = ca2.leaf(&["127.0.0.1"]);
    write_atomically(&dir, "tls.key", &third.key_pem);
    write_atomically(&dir, "tls.crt", &third.cert_pem);
    write_atomically(&dir, "ca.pem", &ca2.pem());
    let want = ca2.pem().into_bytes();
    wait_for(
        "caBundle of the new CA",
        Duration::from_secs(20),
        || async { (ca_bundle(&client, &name).await? == want).then_some(()) },
    )
    .await;
    let stored = create_when_webhook_reachable(&pods, &pod("three", opted_in(), annotations()))
        .await
        .expect("admitted after the CA rotation");
    assert_injected(&stored);
    assert!(
        injector.process.try_wait().is_none(),
        "still the same process"
    );
}

/// Every object of `examples/injector.yaml` passes the apiserver's validation (a
/// server-side dry run; the namespace is really created so namespaced objects can be
/// checked in it).
#[tokio::test]
async fn the_example_manifest_is_valid() {
    use kube::api::{DynamicObject, PatchParams};
    use kube::core::GroupVersionKind;
    let env = env().await;
    let client = env.client().await;
    let yaml = std::fs::read_to_string(repo_root().join("examples/injector.yaml")).unwrap();
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let value = <Value as serde::Deserialize>::deserialize(doc).unwrap();
        let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let types = object.types.clone().expect("apiVersion and kind");
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", types.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", types.kind));
        let name = object.metadata.name.clone().unwrap();
        let api: Api<DynamicObject> = match (caps.scope, object.metadata.namespace.as_deref()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            _ => Api::all_with(client.clone(), &resource),
        };
        let mut params = PatchParams::apply("scaivault-test");
        // The namespace for real (a dry-run one does not exist for the rest).
        params.dry_run = types.kind != "Namespace";
        api.patch(&name, &params, &kube::api::Patch::Apply(&value))
            .await
            .unwrap_or_else(|e| panic!("{} {name} is refused: {e}", types.kind));
        kinds.push(types.kind);
    }
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration"
        ]
    );
}
