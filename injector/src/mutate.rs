//! The injection itself, a pure function: an admission request for a Pod in, a JSON patch
//! (or a denial naming the annotation at fault) out. The HTTP handler only converts.
//!
//! For a pod that opts in (`scaivault.io/inject: "true"`, see
//! [`scaivault_kube_api::annotations`]) it adds what is missing of:
//!
//! - the memory-backed `emptyDir` [`SECRETS_VOLUME`] and the projected ServiceAccount
//!   token [`TOKEN_VOLUME`] (the vault's audience), as pod volumes;
//! - a read-only mount of the secrets volume into each chosen container;
//! - the agent [`AGENT_CONTAINER`] as the first init container: a native sidecar
//!   (`restartPolicy: Always`, with a startup probe that passes after the first render, so
//!   the app starts with its files and Jobs complete) or, for `mode: init-only`, a plain
//!   init container; it mounts the secrets read-write and the token read-only;
//! - `shareProcessNamespace: true` and, in each chosen container, the environment variable
//!   [`CONTAINER_ENV`]`=<container name>` (how the agent finds the container's processes),
//!   only when `on-change` asks the agent to reach the app; `on-change: restart` is denied
//!   for a pod with `restartPolicy: Never` (the kubelet would not start the app again).
//!
//! "What is missing" makes it idempotent: a second call on its own output adds nothing
//! (`reinvocationPolicy: IfNeeded`), and a container another webhook added meanwhile still
//! gets its mount.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, Pod, PodSpec, Probe, ProjectedVolumeSource, ResourceRequirements,
    SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::admission::{AdmissionRequest, Operation};
use scaivault_kube_api::agent::{CONFIG_ENV, CONTAINER_ENV, Mode, OnChange};
use scaivault_kube_api::annotations::{self, Injection, PodView};
use serde_json::{Value, json};

/// Name of the agent's container (an init container); declared in kube-api, where the
/// operator reads it too.
pub use scaivault_kube_api::agent::AGENT_CONTAINER;
/// The memory-backed volume the agent writes the files to.
pub const SECRETS_VOLUME: &str = "scaivault-secrets";
/// The projected ServiceAccount token the agent logs in with.
pub const TOKEN_VOLUME: &str = "scaivault-token";
/// Where the agent sees the token volume, and the token's file in it.
pub const TOKEN_DIR: &str = "/var/run/secrets/scaivault";
pub const TOKEN_FILE: &str = "token";
/// The agent's user when it cannot run as the app's (the `nonroot` user of distroless images).
pub const DEFAULT_AGENT_USER: i64 = 65532;
/// The ServiceAccount of a pod that names none (what the ServiceAccount admission plugin sets).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The agent's readiness endpoint.
pub const READY_PATH: &str = "/ready";
/// Environment variables with the pod's name and namespace (downward API), for the
/// agent's logs and events.
pub const POD_NAME_ENV: &str = "SCAIVAULT_POD_NAME";
pub const POD_NAMESPACE_ENV: &str = "SCAIVAULT_POD_NAMESPACE";

/// What the injector knows that annotations do not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectorConfig {
    pub agent_image: String,
    /// The vault's URL as the agent reaches it.
    pub vault_addr: String,
    /// The audience of the projected token: the server's `--kubernetes-audience`.
    pub token_audience: String,
    /// Lifetime the kubelet requests for the token (it rotates it at 80 %).
    pub token_expiration_seconds: i64,
    /// The agent's readiness port (in the pod's network namespace, so it must not be a
    /// port an app container listens on).
    pub agent_ready_port: u16,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        InjectorConfig {
            agent_image: "scaivault-agent:latest".to_owned(),
            vault_addr: "https://scaivault.scaivault.svc:8200".to_owned(),
            token_audience: "scaivault".to_owned(),
            token_expiration_seconds: 3600,
            agent_ready_port: 8209,
        }
    }
}

/// Why a pod is refused: the message the apiserver returns to whoever created it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denial(pub String);

impl From<annotations::AnnotationError> for Denial {
    fn from(e: annotations::AnnotationError) -> Self {
        Denial(e.to_string())
    }
}

fn deny_on(key: &str, fault: impl std::fmt::Display) -> Denial {
    Denial(format!("annotation {key}: {fault}"))
}

/// The patch for `request`: empty for anything but the creation of a pod that opts in.
pub fn mutate(
    request: &AdmissionRequest<Pod>,
    config: &InjectorConfig,
) -> Result<json_patch::Patch, Denial> {
    if request.operation != Operation::Create {
        return Ok(json_patch::Patch(Vec::new()));
    }
    let Some(pod) = request.object.as_ref() else {
        return Ok(json_patch::Patch(Vec::new()));
    };
    let ops = operations(pod, config)?;
    serde_json::from_value(Value::Array(ops))
        .map_err(|e| Denial(format!("the injector built an invalid patch: {e}")))
}

fn names(containers: &[Container]) -> Vec<&str> {
    containers.iter().map(|c| c.name.as_str()).collect()
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    // k8s-openapi types always serialize.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn add(path: String, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

fn operations(pod: &Pod, config: &InjectorConfig) -> Result<Vec<Value>, Denial> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let init = spec.init_containers.as_deref().unwrap_or_default();
    if spec.containers.iter().any(|c| c.name == AGENT_CONTAINER) {
        return Err(Denial(format!(
            "container name {AGENT_CONTAINER} is reserved for the ScaiVault agent"
        )));
    }
    let app_init: Vec<&str> = names(init)
        .into_iter()
        .filter(|n| *n != AGENT_CONTAINER)
        .collect();
    let app = names(&spec.containers);
    let Some(injection) = annotations::parse(PodView {
        labels,
        annotations,
        containers: &app,
        init_containers: &app_init,
    })?
    else {
        return Ok(Vec::new());
    };
    let injected = init.iter().any(|c| c.name == AGENT_CONTAINER);
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let mut ops = Vec::new();
    let has_volume = |name: &str| volumes.iter().any(|v| v.name == name);
    let mut new_volumes = Vec::new();
    for (name, volume) in [
        (SECRETS_VOLUME, secrets_volume()),
        (TOKEN_VOLUME, token_volume(config)),
    ] {
        match (has_volume(name), injected) {
            (false, _) => new_volumes.push(volume),
            (true, true) => {}
            (true, false) => {
                return Err(Denial(format!(
                    "the pod has a volume named {name}, a name the ScaiVault injector reserves"
                )));
            }
        }
    }
    if !injected {
        check_mount_path(&injection, init, &spec.containers)?;
    }
    if injection.on_change == OnChange::Restart && spec.restart_policy.as_deref() == Some("Never") {
        return Err(deny_on(
            annotations::ON_CHANGE,
            "restart ends the app's processes for the kubelet to start them again, but the pod's \
             restartPolicy is Never, so they would stay stopped: use restartPolicy Always or \
             OnFailure, or signal:<SIGNAL>",
        ));
    }
    for (i, volume) in new_volumes.into_iter().enumerate() {
        ops.push(if spec.volumes.is_none() && i == 0 {
            add("/spec/volumes".to_owned(), json!([to_value(&volume)]))
        } else {
            add("/spec/volumes/-".to_owned(), to_value(&volume))
        });
    }
    // Mounts before the agent is inserted at index 0, so init container indices hold.
    let mount = to_value(&VolumeMount {
        name: SECRETS_VOLUME.to_owned(),
        mount_path: injection.mount_path.clone(),
        read_only: Some(true),
        ..Default::default()
    });
    for (field, containers) in [
        ("initContainers", init),
        ("containers", &spec.containers[..]),
    ] {
        for (i, c) in containers.iter().enumerate() {
            if !injection.containers.contains(&c.name) || c.name == AGENT_CONTAINER {
                continue;
            }
            match &c.volume_mounts {
                Some(mounts) if mounts.iter().any(|m| m.name == SECRETS_VOLUME) => {}
                Some(_) => ops.push(add(
                    format!("/spec/{field}/{i}/volumeMounts/-"),
                    mount.clone(),
                )),
                None => ops.push(add(
                    format!("/spec/{field}/{i}/volumeMounts"),
                    json!([mount]),
                )),
            }
            if injection.on_change.needs_process_namespace()
                && let Some(marker) = container_marker(field, i, c)?
            {
                ops.push(marker);
            }
        }
    }
    if !injected {
        let agent = agent_container(&injection, spec, config)?;
        ops.push(match spec.init_containers {
            Some(_) => add("/spec/initContainers/0".to_owned(), to_value(&agent)),
            None => add("/spec/initContainers".to_owned(), json!([to_value(&agent)])),
        });
    }
    // A projected token needs a ServiceAccount; the ServiceAccount admission plugin
    // usually sets `default` before webhooks run, but where it does not, the pod would be
    // refused for the token volume: name the same `default`.
    let named = |n: &Option<String>| n.as_deref().is_some_and(|n| !n.is_empty());
    if !named(&spec.service_account_name) && !named(&spec.service_account) {
        ops.push(add(
            "/spec/serviceAccountName".to_owned(),
            json!(DEFAULT_SERVICE_ACCOUNT),
        ));
    }
    if injection.on_change.needs_process_namespace() && spec.share_process_namespace != Some(true) {
        ops.push(add("/spec/shareProcessNamespace".to_owned(), json!(true)));
    }
    Ok(ops)
}

/// The op adding [`CONTAINER_ENV`]`=<name>` to chosen container `c` (at `field`/`i`), by
/// which the agent finds the container's processes for `on-change`; none if it is there.
fn container_marker(field: &str, i: usize, c: &Container) -> Result<Option<Value>, Denial> {
    let marker = EnvVar {
        name: CONTAINER_ENV.to_owned(),
        value: Some(c.name.clone()),
        ..Default::default()
    };
    match &c.env {
        Some(env) => match env.iter().find(|e| e.name == CONTAINER_ENV) {
            Some(e) if *e == marker => Ok(None),
            Some(_) => Err(deny_on(
                annotations::ON_CHANGE,
                format!(
                    "container {} sets the environment variable {CONTAINER_ENV}, which the \
                     ScaiVault injector reserves to mark the container's processes",
                    c.name
                ),
            )),
            None => Ok(Some(add(
                format!("/spec/{field}/{i}/env/-"),
                to_value(&marker),
            ))),
        },
        None => Ok(Some(add(
            format!("/spec/{field}/{i}/env"),
            json!([to_value(&marker)]),
        ))),
    }
}

/// The mount path must not be taken in a chosen container, nor overlap the agent's token.
fn check_mount_path(
    injection: &Injection,
    init: &[Container],
    containers: &[Container],
) -> Result<(), Denial> {
    let path = injection.mount_path.as_str();
    let overlaps = |a: &str, b: &str| {
        let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
        a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
    };
    if overlaps(path, TOKEN_DIR) {
        return Err(deny_on(
            annotations::MOUNT_PATH,
            format!("{path} overlaps {TOKEN_DIR}, where the agent's token is mounted"),
        ));
    }
    for c in init.iter().chain(containers) {
        if !injection.containers.contains(&c.name) {
            continue;
        }
        if let Some(m) = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path.trim_end_matches('/') == path)
        {
            return Err(deny_on(
                annotations::MOUNT_PATH,
                format!(
                    "container {} already mounts volume {} at {path}; choose another path",
                    c.name, m.name
                ),
            ));
        }
    }
    Ok(())
}

fn secrets_volume() -> Volume {
    Volume {
        name: SECRETS_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn token_volume(config: &InjectorConfig) -> Volume {
    Volume {
        name: TOKEN_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(config.token_audience.clone()),
                    expiration_seconds: Some(config.token_expiration_seconds),
                    path: TOKEN_FILE.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            // The kubelet makes the token the agent's own (0600) as only it mounts it.
            default_mode: None,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The app's user and group, when every chosen container runs as the same ones.
fn app_identity(injection: &Injection, spec: &PodSpec) -> (Option<i64>, Option<i64>) {
    let pod = spec.security_context.as_ref();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter(|c| injection.containers.contains(&c.name));
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for c in all {
        let own = c.security_context.as_ref();
        users.push(
            own.and_then(|s| s.run_as_user)
                .or(pod.and_then(|s| s.run_as_user)),
        );
        groups.push(
            own.and_then(|s| s.run_as_group)
                .or(pod.and_then(|s| s.run_as_group)),
        );
    }
    let same = |ids: Vec<Option<i64>>| {
        let first = *ids.first()?;
        ids.iter().all(|id| *id == first).then_some(first)?
    };
    (same(users), same(groups))
}

fn agent_container(
    injection: &Injection,
    spec: &PodSpec,
    config: &InjectorConfig,
) -> Result<Container, Denial> {
    let (app_user, app_group) = app_identity(injection, spec);
    // Running as the app's user lets restrictive file modes (0400) work and lets the
    // agent signal the app without any capability; root is never an option.
    let user = app_user.filter(|uid| *uid != 0);
    if injection.on_change.needs_process_namespace() && user.is_none() {
        return Err(deny_on(
            annotations::ON_CHANGE,
            format!(
                "the agent runs as non-root with no capabilities and can signal only processes of its own user: \
                 set one non-zero runAsUser for the pod (or the same one on containers {})",
                injection.containers.join(", ")
            ),
        ));
    }
    let agent_config = injection.agent_config(
        &config.vault_addr,
        &format!("{TOKEN_DIR}/{TOKEN_FILE}"),
        config.agent_ready_port,
    );
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let resources = &injection.resources;
    let quantities = |cpu: Option<&String>, memory: Option<&String>| {
        let map: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), Quantity(v?.clone()))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let sidecar = injection.mode == Mode::Sidecar;
    Ok(Container {
        name: AGENT_CONTAINER.to_owned(),
        image: Some(config.agent_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec!["run".to_owned()]),
        env: Some(vec![
            EnvVar {
                name: CONFIG_ENV.to_owned(),
                value: Some(agent_config.to_json()),
                ..Default::default()
            },
            EnvVar {
                name: POD_NAME_ENV.to_owned(),
                value_from: Some(field("metadata.name")),
                ..Default::default()
            },
            EnvVar {
                name: POD_NAMESPACE_ENV.to_owned(),
                value_from: Some(field("metadata.namespace")),
                ..Default::default()
            },
        ]),
        restart_policy: sidecar.then(|| "Always".to_owned()),
        startup_probe: sidecar.then(|| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(READY_PATH.to_owned()),
                port: IntOrString::Int(i32::from(config.agent_ready_port)),
                ..Default::default()
            }),
            period_seconds: Some(1),
            timeout_seconds: Some(1),
            // Up to five minutes for the first render (a vault that is restarting).
            failure_threshold: Some(300),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: quantities(
                Some(&resources.cpu_request),
                Some(&resources.memory_request),
            ),
            limits: quantities(
                resources.cpu_limit.as_ref(),
                resources.memory_limit.as_ref(),
            ),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(user.unwrap_or(DEFAULT_AGENT_USER)),
            run_as_group: Some(app_group.filter(|g| *g != 0).unwrap_or(DEFAULT_AGENT_USER)),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: SECRETS_VOLUME.to_owned(),
                mount_path: injection.mount_path.clone(),
                ..Default::default()
            },
            VolumeMount {
                name: TOKEN_VOLUME.to_owned(),
                mount_path: TOKEN_DIR.to_owned(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    })
}
