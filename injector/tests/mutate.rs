//! Table tests of the pure `mutate()`: which pods are changed and how, what is denied
//! (with the annotation named), what is preserved, and that a second call on the
//! mutated pod adds nothing (`reinvocationPolicy: IfNeeded`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use scaivault_injector::http::review;
use scaivault_injector::mutate::{
    AGENT_CONTAINER, Denial, InjectorConfig, SECRETS_VOLUME, TOKEN_VOLUME, mutate,
};
use scaivault_kube_api::agent::{
    AgentConfig, CONFIG_ENV, CONTAINER_ENV, Content, Format, OnChange, Signal,
};
use serde_json::{Value, json};

fn config() -> InjectorConfig {
    InjectorConfig {
        agent_image: "registry.example/scaivault-agent:1".into(),
        vault_addr: "https://vault.example:8200".into(),
        token_audience: "vault-aud".into(),
        token_expiration_seconds: 1800,
        agent_ready_port: 8209,
    }
}

fn review_json(pod: &Value, operation: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "d6b5c1f2-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "web",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": pod,
            "oldObject": null,
        }
    })
}

fn request(pod: &Value, operation: &str) -> AdmissionRequest<Pod> {
    let review: AdmissionReview<Pod> =
        serde_json::from_value(review_json(pod, operation)).expect("AdmissionReview");
    review.try_into().expect("request")
}

fn patch_of(pod: &Value) -> Result<json_patch::Patch, Denial> {
    mutate(&request(pod, "CREATE"), &config())
}

/// The pod after the patch, and the patch's length.
fn mutated(pod: &Value) -> (Value, usize) {
    let patch = patch_of(pod).unwrap_or_else(|d| panic!("denied: {d}"));
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("patch applies");
    // What the apiserver would then decode.
    let _: Pod = serde_json::from_value(out.clone()).expect("still a Pod");
    (out, patch.0.len())
}

fn pod(labels: Value, annotations: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "web", "labels": labels, "annotations": annotations},
        "spec": spec,
    })
}

fn app_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "busybox"}]})
}

fn opted_in(annotations: Value) -> Value {
    pod(
        json!({"scaivault.io/inject": "true"}),
        annotations,
        app_spec(),
    )
}

fn db() -> Value {
    json!({"scaivault.io/secret-db": "apps/web/db"})
}

fn with(mut base: Value, more: Value) -> Value {
    for (k, v) in more.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

fn agent(pod: &Value) -> &Value {
    container(pod, "initContainers", AGENT_CONTAINER)
}

fn agent_config(pod: &Value) -> AgentConfig {
    let env = agent(pod)["env"].as_array().unwrap();
    let json = env.iter().find(|e| e["name"] == CONFIG_ENV).unwrap()["value"]
        .as_str()
        .unwrap();
    AgentConfig::from_json(json).unwrap()
}

fn mount_names(c: &Value) -> Vec<String> {
    c["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn pods_that_do_not_opt_in_are_left_alone() {
    let junk = json!({"scaivault.io/secret-db": "apps/web/db", "scaivault.io/nonsense": "x"});
    let cases = [
        pod(json!({}), json!({}), app_spec()),
        pod(json!({}), junk.clone(), app_spec()),
        pod(
            json!({"scaivault.io/inject": "false"}),
            junk.clone(),
            app_spec(),
        ),
        pod(
            json!({"app": "web"}),
            json!({"scaivault.io/inject": "false"}),
            app_spec(),
        ),
    ];
    for p in &cases {
        assert!(patch_of(p).unwrap().0.is_empty(), "{p}");
    }
    // Only creations are mutated.
    let p = opted_in(db());
    for op in ["UPDATE", "DELETE", "CONNECT"] {
        assert!(
            mutate(&request(&p, op), &config()).unwrap().0.is_empty(),
            "{op}"
        );
    }
}

#[test]
fn a_sidecar_with_its_volumes_token_and_mounts() {
    let (out, _) = mutated(&opted_in(db()));
    let inits = out["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(
        inits[0]["name"], AGENT_CONTAINER,
        "the agent is the first init container"
    );
    let a = agent(&out);
    assert_eq!(a["image"], "registry.example/scaivault-agent:1");
    assert_eq!(a["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(
        a["startupProbe"]["httpGet"],
        json!({"path": "/ready", "port": 8209})
    );
    assert_eq!(
        a["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65532,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert_eq!(
        a["resources"],
        json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}})
    );
    assert_eq!(
        a["volumeMounts"],
        json!([
            {"name": SECRETS_VOLUME, "mountPath": "/scaivault/secrets"},
            {"name": TOKEN_VOLUME, "mountPath": "/var/run/secrets/scaivault", "readOnly": true},
        ])
    );
    assert_eq!(
        volume(&out, SECRETS_VOLUME),
        &json!({"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory"}})
    );
    assert_eq!(
        volume(&out, TOKEN_VOLUME)["projected"]["sources"],
        json!([{"serviceAccountToken": {"audience": "vault-aud", "expirationSeconds": 1800, "path": "token"}}])
    );
    let app = container(&out, "containers", "app");
    assert_eq!(
        app["volumeMounts"],
        json!([{"name": SECRETS_VOLUME, "mountPath": "/scaivault/secrets", "readOnly": true}]),
        "read-only, and no token in the app"
    );
    assert!(out["spec"].get("shareProcessNamespace").is_none());
    assert!(
        app.get("env").is_none(),
        "no process marker without on-change"
    );
    assert_eq!(
        out["spec"]["serviceAccountName"], "default",
        "a projected token needs one"
    );
    let cfg = agent_config(&out);
    assert_eq!(cfg.vault_addr, "https://vault.example:8200");
    assert_eq!(cfg.token_path, "/var/run/secrets/scaivault/token");
    assert_eq!(cfg.secrets_dir, "/scaivault/secrets");
    assert_eq!(cfg.ready_port, 8209);
    assert_eq!(cfg.containers, ["app"]);
    assert_eq!(cfg.files.len(), 1);
    assert_eq!(cfg.files[0].path, "apps/web/db");
    assert_eq!(cfg.files[0].content, Content::Format(Format::Json));
    assert_eq!(cfg.files[0].mode, 0o644);
}

#[test]
fn the_annotation_alone_opts_in_too() {
    let p = pod(
        json!({}),
        with(db(), json!({"scaivault.io/inject": "true"})),
        app_spec(),
    );
    let (out, _) = mutated(&p);
    agent(&out);
}

#[test]
fn init_only_is_a_plain_init_container() {
    let (out, _) = mutated(&opted_in(with(
        db(),
        json!({"scaivault.io/mode": "init-only"}),
    )));
    let a = agent(&out);
    assert!(a.get("restartPolicy").is_none(), "{a}");
    assert!(
        a.get("startupProbe").is_none(),
        "init containers have no probes"
    );
    assert_eq!(
        agent_config(&out).mode,
        scaivault_kube_api::agent::Mode::InitOnly
    );
}

#[test]
fn annotations_shape_the_agent_and_the_mounts() {
    let spec = json!({
        "initContainers": [{"name": "migrate", "image": "busybox"}],
        "containers": [{"name": "app", "image": "busybox"}, {"name": "proxy", "image": "envoy"}],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000},
    });
    let annotations = with(
        db(),
        json!({
            "scaivault.io/template-db": "postgres://{{ .user }}:{{ .password }}@db/app",
            "scaivault.io/file-mode-db": "0400",
            "scaivault.io/secret-api": "apps/web/api",
            "scaivault.io/format-api": "raw:token",
            "scaivault.io/mount-path": "/etc/app/secrets",
            "scaivault.io/containers": "app,migrate",
            "scaivault.io/on-change": "signal:SIGHUP",
            "scaivault.io/agent-cpu-request": "20m",
            "scaivault.io/agent-cpu-limit": "200m",
            "scaivault.io/agent-memory-request": "24Mi",
            "scaivault.io/agent-memory-limit": "48Mi",
        }),
    );
    let (out, _) = mutated(&pod(
        json!({"scaivault.io/inject": "true"}),
        annotations,
        spec,
    ));
    let inits: Vec<_> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inits,
        [AGENT_CONTAINER, "migrate"],
        "the agent starts before the app's init containers"
    );
    let mount =
        json!([{"name": SECRETS_VOLUME, "mountPath": "/etc/app/secrets", "readOnly": true}]);
    assert_eq!(
        container(&out, "initContainers", "migrate")["volumeMounts"],
        mount
    );
    assert_eq!(container(&out, "containers", "app")["volumeMounts"], mount);
    assert!(
        container(&out, "containers", "proxy")
            .get("volumeMounts")
            .is_none(),
        "not chosen"
    );
    // on-change: each chosen container carries the marker the agent finds its processes by.
    for (list, name) in [("initContainers", "migrate"), ("containers", "app")] {
        assert_eq!(
            container(&out, list, name)["env"],
            json!([{"name": CONTAINER_ENV, "value": name}]),
            "{name}"
        );
    }
    assert!(container(&out, "containers", "proxy").get("env").is_none());
    let a = agent(&out);
    assert_eq!(a["volumeMounts"][0]["mountPath"], "/etc/app/secrets");
    assert_eq!(
        a["securityContext"]["runAsUser"], 1000,
        "as the app's user, to signal it"
    );
    assert_eq!(a["securityContext"]["runAsGroup"], 3000);
    assert_eq!(
        a["resources"],
        json!({"requests": {"cpu": "20m", "memory": "24Mi"}, "limits": {"cpu": "200m", "memory": "48Mi"}})
    );
    assert_eq!(out["spec"]["shareProcessNamespace"], true);
    let cfg = agent_config(&out);
    assert_eq!(cfg.on_change, OnChange::Signal(Signal::Hup));
    assert_eq!(cfg.containers, ["migrate", "app"]);
    assert_eq!(cfg.secrets_dir, "/etc/app/secrets");
    assert_eq!(cfg.files[0].name, "api");
    assert_eq!(
        cfg.files[0].content,
        Content::Format(Format::Raw("token".into()))
    );
    assert_eq!(cfg.files[1].mode, 0o400);
    assert_eq!(
        cfg.files[1].content,
        Content::Template("postgres://{{ .user }}:{{ .password }}@db/app".into())
    );
}

#[test]
fn existing_init_containers_volumes_and_mounts_are_preserved() {
    let spec = json!({
        "initContainers": [{"name": "migrate", "image": "busybox",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "containers": [
            {"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "side", "image": "busybox"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "shareProcessNamespace": false,
        "serviceAccountName": "web",
    });
    let before = pod(json!({"scaivault.io/inject": "true"}), db(), spec);
    let (out, _) = mutated(&before);
    let vols: Vec<_> = out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(
        vols,
        [json!("data"), json!(SECRETS_VOLUME), json!(TOKEN_VOLUME)]
    );
    assert_eq!(out["spec"]["volumes"][0], before["spec"]["volumes"][0]);
    assert_eq!(
        out["spec"]["initContainers"][1], before["spec"]["initContainers"][0],
        "not chosen: untouched"
    );
    assert_eq!(
        mount_names(container(&out, "containers", "app")),
        ["data", SECRETS_VOLUME]
    );
    assert_eq!(
        mount_names(container(&out, "containers", "side")),
        [SECRETS_VOLUME]
    );
    assert_eq!(
        out["spec"]["shareProcessNamespace"], false,
        "untouched without on-change"
    );
}

#[test]
fn a_second_invocation_adds_nothing() {
    let spec_with_init = json!({
        "initContainers": [{"name": "migrate", "image": "busybox", "securityContext": {"runAsUser": 10}}],
        "containers": [{"name": "app", "image": "busybox", "securityContext": {"runAsUser": 10}},
                       {"name": "b", "image": "busybox", "securityContext": {"runAsUser": 10},
                        "env": [{"name": "OTHER", "value": "x"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "restartPolicy": "OnFailure",
    });
    let cases = [
        opted_in(db()),
        opted_in(with(db(), json!({"scaivault.io/mode": "init-only"}))),
        pod(
            json!({"scaivault.io/inject": "true"}),
            with(
                db(),
                json!({"scaivault.io/containers": "migrate,b", "scaivault.io/on-change": "restart"}),
            ),
            spec_with_init.clone(),
        ),
        pod(json!({"scaivault.io/inject": "true"}), db(), spec_with_init),
    ];
    for p in &cases {
        let (once, n) = mutated(p);
        assert!(n > 0);
        let again = patch_of(&once).unwrap();
        assert!(again.0.is_empty(), "second call on {p} added {again:?}");
    }
    // The marker is appended to an existing env list.
    let (once, _) = mutated(&cases[2]);
    assert_eq!(
        container(&once, "containers", "b")["env"],
        json!([{"name": "OTHER", "value": "x"}, {"name": CONTAINER_ENV, "value": "b"}])
    );
}

#[test]
fn a_container_added_by_a_later_webhook_gets_its_mount_on_reinvocation() {
    let (mut once, _) = mutated(&opted_in(db()));
    once["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "mesh-proxy", "image": "proxy"}));
    let (twice, n) = mutated(&once);
    assert_eq!(n, 1, "only the new container's mount");
    assert_eq!(
        mount_names(container(&twice, "containers", "mesh-proxy")),
        [SECRETS_VOLUME]
    );
    assert_eq!(
        twice["spec"]["initContainers"].as_array().unwrap().len(),
        1,
        "no second agent"
    );
}

#[test]
fn invalid_input_is_denied_naming_the_annotation() {
    let with_user =
        json!({"containers": [{"name": "app", "image": "x"}], "securityContext": {"runAsUser": 0}});
    let cases: Vec<(Value, &str)> = vec![
        (
            opted_in(json!({})),
            "annotation scaivault.io/inject: the pod opts in but no scaivault.io/secret-<name>",
        ),
        (
            pod(json!({"scaivault.io/inject": "yes"}), db(), app_spec()),
            "label scaivault.io/inject: \"yes\"",
        ),
        (
            opted_in(with(db(), json!({"scaivault.io/format-db": "xml"}))),
            "annotation scaivault.io/format-db: \"xml\" is not json",
        ),
        (
            opted_in(with(db(), json!({"scaivault.io/template-db": "{{ .user "}))),
            "annotation scaivault.io/template-db: template of key \"db\": unclosed",
        ),
        (
            opted_in(json!({"scaivault.io/secret-db": "sys/policies"})),
            "annotation scaivault.io/secret-db: paths under \"sys\"/ are reserved",
        ),
        (
            opted_in(with(db(), json!({"scaivault.io/containers": "app,worker"}))),
            "annotation scaivault.io/containers: the pod has no container \"worker\"",
        ),
        (
            opted_in(with(db(), json!({"scaivault.io/secrets-api": "apps/x"}))),
            "annotation scaivault.io/secrets-api: unknown",
        ),
        (
            opted_in(with(
                db(),
                json!({"scaivault.io/agent-memory-request": "lots"}),
            )),
            "annotation scaivault.io/agent-memory-request: \"lots\" is not a Kubernetes quantity",
        ),
        (
            opted_in(with(
                db(),
                json!({"scaivault.io/on-change": "signal:SIGHUP"}),
            )),
            "annotation scaivault.io/on-change: the agent runs as non-root",
        ),
        (
            pod(
                json!({"scaivault.io/inject": "true"}),
                with(db(), json!({"scaivault.io/on-change": "restart"})),
                with_user,
            ),
            "annotation scaivault.io/on-change: the agent runs as non-root",
        ),
        (
            pod(
                json!({"scaivault.io/inject": "true"}),
                with(db(), json!({"scaivault.io/on-change": "restart"})),
                json!({"containers": [{"name": "app", "image": "x"}], "securityContext": {"runAsUser": 10}, "restartPolicy": "Never"}),
            ),
            "annotation scaivault.io/on-change: restart ends the app's processes for the kubelet to start them again, but the pod's restartPolicy is Never",
        ),
        (
            pod(
                json!({"scaivault.io/inject": "true"}),
                with(db(), json!({"scaivault.io/on-change": "signal:SIGHUP"})),
                json!({"containers": [{"name": "app", "image": "x", "env": [{"name": CONTAINER_ENV, "value": "web"}]}], "securityContext": {"runAsUser": 10}}),
            ),
            "annotation scaivault.io/on-change: container app sets the environment variable SCAIVAULT_CONTAINER",
        ),
        (
            opted_in(with(
                db(),
                json!({"scaivault.io/mount-path": "/var/run/secrets"}),
            )),
            "annotation scaivault.io/mount-path: /var/run/secrets overlaps",
        ),
        (
            pod(
                json!({"scaivault.io/inject": "true"}),
                with(db(), json!({"scaivault.io/mount-path": "/data"})),
                json!({"containers": [{"name": "app", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/data"}]}], "volumes": [{"name": "d", "emptyDir": {}}]}),
            ),
            "annotation scaivault.io/mount-path: container app already mounts volume d at /data",
        ),
        (
            pod(
                json!({"scaivault.io/inject": "true"}),
                db(),
                json!({"containers": [{"name": "app", "image": "x"}], "volumes": [{"name": SECRETS_VOLUME, "emptyDir": {}}]}),
            ),
            "the pod has a volume named scaivault-secrets",
        ),
        (
            pod(
                json!({"scaivault.io/inject": "true"}),
                db(),
                json!({"containers": [{"name": AGENT_CONTAINER, "image": "x"}]}),
            ),
            "container name scaivault-agent is reserved",
        ),
    ];
    for (p, want) in cases {
        let denial = patch_of(&p).expect_err(want);
        assert!(
            denial.0.starts_with(want),
            "{:?} does not start with {want:?}",
            denial.0
        );
    }
}

#[test]
fn the_handler_only_converts() {
    let cfg = config();
    let body = |p: &Value| serde_json::to_vec(&review_json(p, "CREATE")).unwrap();
    let answer = |b: &[u8]| serde_json::to_value(review(b, &cfg)).unwrap();

    let ok = answer(&body(&opted_in(db())));
    let response = &ok["response"];
    assert_eq!(response["uid"], "d6b5c1f2-0000-4000-8000-000000000001");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    // kube-core writes the patch's bytes as a JSON array (Go decodes either form).
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(patch, patch_of(&opted_in(db())).unwrap());

    let plain = answer(&body(&pod(json!({}), json!({}), app_spec())));
    assert_eq!(plain["response"]["allowed"], true);
    assert!(plain["response"].get("patch").is_none());

    let denied = answer(&body(&opted_in(json!({"scaivault.io/secret-db": "a//b"}))));
    assert_eq!(denied["response"]["allowed"], false);
    let message = denied["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("annotation scaivault.io/secret-db: "),
        "{message}"
    );

    let garbage = answer(b"{not json");
    assert_eq!(garbage["response"]["allowed"], false);
}
