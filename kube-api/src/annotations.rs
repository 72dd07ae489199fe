//! The pod annotations (and the one label) of the injector, each named once, and
//! [`parse`]: annotations -> a validated [`Injection`], with errors that name the
//! annotation and the fault. `docs/injector.md` documents them in one table (a test
//! checks it names every key declared here).

use std::collections::BTreeMap;

use crate::agent::{
    AgentConfig, CONFIG_VERSION, Content, FileSpec, Format, Mode, OnChange, Signal,
};
use crate::{quantity, render};

/// Every key below starts with it.
pub const PREFIX: &str = "scaivault.io/";

/// `"true"` opts the pod in. As a **label** it is what the webhook configuration's
/// `objectSelector` matches, so pods without it never reach the injector; the same key
/// as an annotation is accepted too (for configurations that select otherwise).
pub const INJECT: &str = "scaivault.io/inject";
/// `secret-<name>: <vault path>`: one file `<name>` rendered from that secret.
pub const SECRET_PREFIX: &str = "scaivault.io/secret-";
/// `template-<name>: <template>`: the file's content in the operator's template language.
pub const TEMPLATE_PREFIX: &str = "scaivault.io/template-";
/// `format-<name>: json|env|yaml|raw:<field>`: the file's content without a template.
pub const FORMAT_PREFIX: &str = "scaivault.io/format-";
/// `file-mode-<name>: 0400`: octal permission bits of the file.
pub const FILE_MODE_PREFIX: &str = "scaivault.io/file-mode-";
/// Where the app containers see the files (read-only).
pub const MOUNT_PATH: &str = "scaivault.io/mount-path";
/// `sidecar` or `init-only`.
pub const MODE: &str = "scaivault.io/mode";
/// Comma-separated names of the containers (or init containers) that mount the files.
pub const CONTAINERS: &str = "scaivault.io/containers";
/// `none`, `signal:<SIGNAL>` or `restart`.
pub const ON_CHANGE: &str = "scaivault.io/on-change";
pub const AGENT_CPU_REQUEST: &str = "scaivault.io/agent-cpu-request";
pub const AGENT_CPU_LIMIT: &str = "scaivault.io/agent-cpu-limit";
pub const AGENT_MEMORY_REQUEST: &str = "scaivault.io/agent-memory-request";
pub const AGENT_MEMORY_LIMIT: &str = "scaivault.io/agent-memory-limit";
/// Written by the operator on pod templates it rollout-restarts (so injected pods carry it).
pub const RESTARTED_AT: &str = "scaivault.io/restartedAt";

/// Every fixed key, for the unknown-key check and the documentation test.
pub const FIXED_KEYS: [&str; 10] = [
    INJECT,
    MOUNT_PATH,
    MODE,
    CONTAINERS,
    ON_CHANGE,
    AGENT_CPU_REQUEST,
    AGENT_CPU_LIMIT,
    AGENT_MEMORY_REQUEST,
    AGENT_MEMORY_LIMIT,
    RESTARTED_AT,
];
/// Every per-file key prefix.
pub const FILE_PREFIXES: [&str; 4] = [
    SECRET_PREFIX,
    TEMPLATE_PREFIX,
    FORMAT_PREFIX,
    FILE_MODE_PREFIX,
];

pub const DEFAULT_MOUNT_PATH: &str = "/scaivault/secrets";
/// Readable by any user of the pod, like a Secret volume's default: the agent cannot
/// always run as the app's user (see the injector).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// From the agent's measured use (docs/injector.md, "Resources"): 1.4 ms of CPU per second
/// while 50 updates arrive one a second, 0.24 ms in 30 s idle: 10m is seven times the busy
/// average and keeps its CPU share on a contended node (vault-k8s asks 250m).
pub const DEFAULT_AGENT_CPU_REQUEST: &str = "10m";
/// The whole process is 7.8 MiB resident at most (VmHWM; 1.1 MiB of it its own memory,
/// the rest the mapped binary), 1.6-1.9 MiB of working set in its pod's cgroup: twice the
/// worst case, so a node charged the binary's pages still has room for the files.
pub const DEFAULT_AGENT_MEMORY_REQUEST: &str = "16Mi";
/// No CPU limit by default (throttling would delay renders, not protect anyone); a
/// memory limit, raised to the request when a larger request is annotated: room for a
/// few secrets at the vault's largest value size held while rendered (the files of a
/// memory-backed volume are charged to it too).
pub const DEFAULT_AGENT_MEMORY_LIMIT: &str = "64Mi";

/// An annotation (or the label) that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {key}: {fault}")]
pub struct AnnotationError {
    /// `annotation` or `label`.
    pub kind: &'static str,
    pub key: String,
    pub fault: String,
}

fn fault(key: impl Into<String>, fault: impl Into<String>) -> AnnotationError {
    AnnotationError {
        kind: "annotation",
        key: key.into(),
        fault: fault.into(),
    }
}

/// Values quoted in messages stay short.
fn quoted(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() > MAX {
        format!("{:?}...", value.chars().take(MAX).collect::<String>())
    } else {
        format!("{value:?}")
    }
}

/// The agent's resources, as Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentResources {
    pub cpu_request: String,
    pub cpu_limit: Option<String>,
    pub memory_request: String,
    pub memory_limit: Option<String>,
}

/// A validated set of annotations: what to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    pub mode: Mode,
    pub mount_path: String,
    /// Sorted by name.
    pub files: Vec<FileSpec>,
    /// The containers (or init containers) that mount the files, in the pod's order.
    pub containers: Vec<String>,
    pub on_change: OnChange,
    pub resources: AgentResources,
}

impl Injection {
    /// The agent's configuration: this injection plus what the injector knows.
    pub fn agent_config(&self, vault_addr: &str, token_path: &str, ready_port: u16) -> AgentConfig {
        AgentConfig {
            version: CONFIG_VERSION,
            mode: self.mode,
            vault_addr: vault_addr.to_owned(),
            token_path: token_path.to_owned(),
            secrets_dir: self.mount_path.clone(),
            ready_port,
            files: self.files.clone(),
            on_change: self.on_change,
            containers: self.containers.clone(),
        }
    }
}

/// The parts of a pod [`parse`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct PodView<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub containers: &'a [&'a str],
    pub init_containers: &'a [&'a str],
}

fn opt_in(kind: &'static str, value: Option<&String>) -> Result<Option<bool>, AnnotationError> {
    match value.map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(AnnotationError {
            kind,
            key: INJECT.to_owned(),
            fault: format!("{} is not \"true\" or \"false\"", quoted(other)),
        }),
    }
}

/// The annotations of one file, gathered by `<name>`.
#[derive(Default)]
struct FileAnnotations<'a> {
    secret: Option<&'a str>,
    template: Option<&'a str>,
    format: Option<&'a str>,
    file_mode: Option<&'a str>,
}

/// What the pod asks for: `Ok(None)` when it does not opt in (then nothing else is
/// looked at), the first fault found otherwise.
pub fn parse(pod: PodView<'_>) -> Result<Option<Injection>, AnnotationError> {
    let label = opt_in("label", pod.labels.get(INJECT))?;
    let annotation = opt_in("annotation", pod.annotations.get(INJECT))?;
    match (label, annotation) {
        (Some(true), Some(false)) | (Some(false), Some(true)) => {
            return Err(fault(
                INJECT,
                "the label and the annotation scaivault.io/inject disagree",
            ));
        }
        (Some(true), _) | (_, Some(true)) => {}
        _ => return Ok(None),
    }
    let mut files: BTreeMap<&str, FileAnnotations<'_>> = BTreeMap::new();
    for (key, value) in pod.annotations {
        let Some(_) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if FIXED_KEYS.contains(&key.as_str()) {
            continue;
        }
        let Some((prefix, name)) = FILE_PREFIXES
            .iter()
            .find_map(|p| key.strip_prefix(p).map(|name| (*p, name)))
        else {
            return Err(fault(
                key,
                "unknown ScaiVault annotation (see docs/injector.md for the annotations)",
            ));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with('.')
        {
            return Err(fault(
                key,
                format!(
                    "{} is not a file name (letters, digits, '-', '_', '.'; not starting with '.')",
                    quoted(name)
                ),
            ));
        }
        let file = files.entry(name).or_default();
        let slot = match prefix {
            SECRET_PREFIX => &mut file.secret,
            TEMPLATE_PREFIX => &mut file.template,
            FORMAT_PREFIX => &mut file.format,
            _ => &mut file.file_mode,
        };
        *slot = Some(value.as_str());
    }
    let files = files
        .into_iter()
        .map(|(name, file)| file_spec(name, &file))
        .collect::<Result<Vec<_>, _>>()?;
    if files.is_empty() {
        return Err(fault(
            INJECT,
            "the pod opts in but no scaivault.io/secret-<name> annotation names a secret",
        ));
    }
    let mode = match pod.annotations.get(MODE).map(String::as_str) {
        None | Some("sidecar") => Mode::Sidecar,
        Some("init-only") => Mode::InitOnly,
        Some(other) => {
            return Err(fault(
                MODE,
                format!("{} is not sidecar or init-only", quoted(other)),
            ));
        }
    };
    let mount_path = match pod.annotations.get(MOUNT_PATH) {
        None => DEFAULT_MOUNT_PATH.to_owned(),
        Some(path) => mount_path(path)?,
    };
    let containers = containers(&pod)?;
    let on_change = match pod.annotations.get(ON_CHANGE).map(String::as_str) {
        None | Some("none") => OnChange::None,
        Some("restart") => OnChange::Restart,
        Some(other) => match other.strip_prefix("signal:") {
            Some(name) => OnChange::Signal(Signal::parse(name).ok_or_else(|| {
                fault(
                    ON_CHANGE,
                    format!(
                        "{} is not one of the signals {}",
                        quoted(name),
                        Signal::ALL.map(Signal::as_str).join(", ")
                    ),
                )
            })?),
            None => {
                return Err(fault(
                    ON_CHANGE,
                    format!("{} is not none, signal:<SIGNAL> or restart", quoted(other)),
                ));
            }
        },
    };
    if mode == Mode::InitOnly && on_change != OnChange::None {
        return Err(fault(
            ON_CHANGE,
            "an init-only agent renders once and exits, so it cannot act on changes: use mode sidecar",
        ));
    }
    Ok(Some(Injection {
        mode,
        mount_path,
        files,
        containers,
        on_change,
        resources: resources(pod.annotations)?,
    }))
}

fn file_spec(name: &str, file: &FileAnnotations<'_>) -> Result<FileSpec, AnnotationError> {
    let key = |prefix: &str| format!("{prefix}{name}");
    let Some(path) = file.secret else {
        let other = [
            (TEMPLATE_PREFIX, file.template),
            (FORMAT_PREFIX, file.format),
            (FILE_MODE_PREFIX, file.file_mode),
        ]
        .into_iter()
        .find_map(|(p, v)| v.map(|_| p))
        .unwrap_or(TEMPLATE_PREFIX);
        return Err(fault(
            key(other),
            format!("there is no {} naming the secret", key(SECRET_PREFIX)),
        ));
    };
    scaivault_api::path::validate_secret_path(path)
        .map_err(|e| fault(key(SECRET_PREFIX), e.to_string()))?;
    let content = match (file.template, file.format) {
        (Some(_), Some(_)) => {
            return Err(fault(
                key(FORMAT_PREFIX),
                format!(
                    "a file has a template or a format, not both (drop {} or this one)",
                    key(TEMPLATE_PREFIX)
                ),
            ));
        }
        (Some(template), None) => {
            render::check_template(name, template)
                .map_err(|e| fault(key(TEMPLATE_PREFIX), e.to_string()))?;
            Content::Template(template.to_owned())
        }
        (None, format) => Content::Format(match format {
            None | Some("json") => Format::Json,
            Some("env") => Format::Env,
            Some("yaml") => Format::Yaml,
            Some(other) => match other.strip_prefix("raw:") {
                Some(field)
                    if !field.is_empty()
                        && field.len() <= 253
                        && field
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
                {
                    Format::Raw(field.to_owned())
                }
                _ => {
                    return Err(fault(
                        key(FORMAT_PREFIX),
                        format!("{} is not json, env, yaml or raw:<field>", quoted(other)),
                    ));
                }
            },
        }),
    };
    let mode = match file.file_mode {
        None => DEFAULT_FILE_MODE,
        Some(text) => u32::from_str_radix(text, 8)
            .ok()
            .filter(|m| *m <= 0o777 && text.len() <= 4 && !text.starts_with('+'))
            .ok_or_else(|| {
                fault(
                    key(FILE_MODE_PREFIX),
                    format!(
                        "{} is not octal permission bits like 0400 or 0644",
                        quoted(text)
                    ),
                )
            })?,
    };
    if mode & 0o400 == 0 {
        return Err(fault(
            key(FILE_MODE_PREFIX),
            format!("mode {mode:04o} does not let the file's owner read it"),
        ));
    }
    Ok(FileSpec {
        name: name.to_owned(),
        path: path.to_owned(),
        content,
        mode,
    })
}

fn mount_path(path: &str) -> Result<String, AnnotationError> {
    let bad = |why: &str| fault(MOUNT_PATH, format!("{}: {why}", quoted(path)));
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("not an absolute path"));
    };
    if path.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad("the root directory cannot be a mount path"));
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad("empty, '.' or '..' segments are not allowed"));
        }
    }
    if path.contains(':') {
        return Err(bad("':' is not allowed in a mount path"));
    }
    Ok(format!("/{rest}"))
}

fn containers(pod: &PodView<'_>) -> Result<Vec<String>, AnnotationError> {
    let Some(list) = pod.annotations.get(CONTAINERS) else {
        return Ok(pod.containers.iter().map(|c| (*c).to_owned()).collect());
    };
    let mut chosen: Vec<&str> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(fault(CONTAINERS, "an empty container name in the list"));
        }
        if !pod.containers.contains(&name) && !pod.init_containers.contains(&name) {
            return Err(fault(
                CONTAINERS,
                format!("the pod has no container {}", quoted(name)),
            ));
        }
        if chosen.contains(&name) {
            return Err(fault(
                CONTAINERS,
                format!("{} is named twice", quoted(name)),
            ));
        }
        chosen.push(name);
    }
    // The pod's order: init containers first, as they start.
    Ok(pod
        .init_containers
        .iter()
        .chain(pod.containers)
        .filter(|c| chosen.contains(c))
        .map(|c| (*c).to_owned())
        .collect())
}

fn resources(annotations: &BTreeMap<String, String>) -> Result<AgentResources, AnnotationError> {
    let get = |key: &str| -> Result<Option<(String, f64)>, AnnotationError> {
        let Some(text) = annotations.get(key) else {
            return Ok(None);
        };
        let value = quantity::parse(text).ok_or_else(|| {
            fault(
                key,
                format!(
                    "{} is not a Kubernetes quantity like 10m, 0.5, 16Mi or 1Gi",
                    quoted(text)
                ),
            )
        })?;
        Ok(Some((text.clone(), value)))
    };
    let pair = |request_key: &str,
                default_request: &str,
                limit_key: &str,
                default_limit: Option<&str>|
     -> Result<(String, Option<String>), AnnotationError> {
        let default = |q: &str| (q.to_owned(), quantity::parse(q).unwrap_or(0.0));
        let request = get(request_key)?.unwrap_or_else(|| default(default_request));
        let limit = match get(limit_key)? {
            Some(limit) if limit.1 < request.1 => {
                return Err(fault(
                    limit_key,
                    format!(
                        "{} is below the request {} ({request_key})",
                        limit.0, request.0
                    ),
                ));
            }
            Some(limit) => Some(limit.0),
            None => default_limit.map(default).map(|limit| {
                if limit.1 < request.1 {
                    request.0.clone()
                } else {
                    limit.0
                }
            }),
        };
        Ok((request.0, limit))
    };
    let (cpu_request, cpu_limit) = pair(
        AGENT_CPU_REQUEST,
        DEFAULT_AGENT_CPU_REQUEST,
        AGENT_CPU_LIMIT,
        None,
    )?;
    let (memory_request, memory_limit) = pair(
        AGENT_MEMORY_REQUEST,
        DEFAULT_AGENT_MEMORY_REQUEST,
        AGENT_MEMORY_LIMIT,
        Some(DEFAULT_AGENT_MEMORY_LIMIT),
    )?;
    Ok(AgentResources {
        cpu_request,
        cpu_limit,
        memory_request,
        memory_limit,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Annotations, the key a fault must name, and words its message must contain.
    type FaultCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse_with(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Result<Option<Injection>, AnnotationError> {
        let labels = map(labels);
        let annotations = map(annotations);
        parse(PodView {
            labels: &labels,
            annotations: &annotations,
            containers: &["app", "side"],
            init_containers: &["migrate"],
        })
    }

    const OPT_IN: (&str, &str) = (INJECT, "true");

    fn parsed(annotations: &[(&str, &str)]) -> Injection {
        parse_with(&[OPT_IN], annotations)
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("opted in")
    }

    #[test]
    fn without_opt_in_nothing_is_parsed() {
        let junk = [("scaivault.io/nonsense", "x")];
        assert_eq!(parse_with(&[], &junk), Ok(None));
        assert_eq!(parse_with(&[(INJECT, "false")], &junk), Ok(None));
        assert_eq!(parse_with(&[], &[(INJECT, "false"), junk[0]]), Ok(None));
    }

    #[test]
    fn label_or_annotation_opts_in() {
        let secret = ("scaivault.io/secret-db", "apps/web/db");
        assert!(parse_with(&[OPT_IN], &[secret]).unwrap().is_some());
        assert!(parse_with(&[], &[OPT_IN, secret]).unwrap().is_some());
        assert!(parse_with(&[OPT_IN], &[OPT_IN, secret]).unwrap().is_some());
        let err = parse_with(&[OPT_IN], &[(INJECT, "false"), secret]).unwrap_err();
        assert_eq!(err.key, INJECT);
        let err = parse_with(&[(INJECT, "yes")], &[secret]).unwrap_err();
        assert_eq!((err.kind, err.key.as_str()), ("label", INJECT));
        assert!(err.to_string().contains("\"yes\""), "{err}");
    }

    #[test]
    fn defaults() {
        let i = parsed(&[("scaivault.io/secret-db", "apps/web/db")]);
        assert_eq!(i.mode, Mode::Sidecar);
        assert_eq!(i.mount_path, DEFAULT_MOUNT_PATH);
        assert_eq!(i.containers, ["app", "side"]);
        assert_eq!(i.on_change, OnChange::None);
        assert_eq!(
            i.files,
            [FileSpec {
                name: "db".into(),
                path: "apps/web/db".into(),
                content: Content::Format(Format::Json),
                mode: DEFAULT_FILE_MODE,
            }]
        );
        assert_eq!(
            i.resources,
            AgentResources {
                cpu_request: "10m".into(),
                cpu_limit: None,
                memory_request: "16Mi".into(),
                memory_limit: Some("64Mi".into()),
            }
        );
    }

    #[test]
    fn every_annotation_is_read() {
        let i = parsed(&[
            ("scaivault.io/secret-db", "apps/web/db"),
            (
                "scaivault.io/template-db",
                "postgres://{{ .user }}:{{ .password }}@db",
            ),
            ("scaivault.io/file-mode-db", "0400"),
            ("scaivault.io/secret-api.env", "apps/web/api"),
            ("scaivault.io/format-api.env", "env"),
            ("scaivault.io/secret-key", "apps/web/api"),
            ("scaivault.io/format-key", "raw:private_key"),
            ("scaivault.io/secret-y", "apps/web/api"),
            ("scaivault.io/format-y", "yaml"),
            (MOUNT_PATH, "/etc/secrets/"),
            (CONTAINERS, "side, migrate"),
            (ON_CHANGE, "signal:SIGHUP"),
            (AGENT_CPU_REQUEST, "50m"),
            (AGENT_CPU_LIMIT, "1"),
            (AGENT_MEMORY_REQUEST, "128Mi"),
            (RESTARTED_AT, "2026-01-01T00:00:00Z"),
        ]);
        let names: Vec<_> = i.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["api.env", "db", "key", "y"]);
        assert_eq!(i.files[0].content, Content::Format(Format::Env));
        assert_eq!(
            i.files[1].content,
            Content::Template("postgres://{{ .user }}:{{ .password }}@db".into())
        );
        assert_eq!(i.files[1].mode, 0o400);
        assert_eq!(
            i.files[2].content,
            Content::Format(Format::Raw("private_key".into()))
        );
        assert_eq!(i.files[3].content, Content::Format(Format::Yaml));
        assert_eq!(i.mount_path, "/etc/secrets");
        assert_eq!(i.containers, ["migrate", "side"]);
        assert_eq!(i.on_change, OnChange::Signal(Signal::Hup));
        assert_eq!(i.resources.cpu_limit.as_deref(), Some("1"));
        // A request above the default memory limit raises the limit with it.
        assert_eq!(i.resources.memory_limit.as_deref(), Some("128Mi"));
        let i = parsed(&[
            ("scaivault.io/secret-db", "apps/web/db"),
            (MODE, "init-only"),
            (ON_CHANGE, "none"),
        ]);
        assert_eq!(i.mode, Mode::InitOnly);
        let i = parsed(&[
            ("scaivault.io/secret-db", "apps/web/db"),
            (ON_CHANGE, "restart"),
        ]);
        assert_eq!(i.on_change, OnChange::Restart);
    }

    #[test]
    fn faults_name_the_annotation() {
        let db = ("scaivault.io/secret-db", "apps/web/db");
        let cases: &[FaultCase<'_>] = &[
            (&[], INJECT, "no scaivault.io/secret-<name>"),
            (
                &[db, ("scaivault.io/secrets-db", "x")],
                "scaivault.io/secrets-db",
                "unknown",
            ),
            (
                &[("scaivault.io/secret-db", "sys/x")],
                "scaivault.io/secret-db",
                "reserved",
            ),
            (
                &[("scaivault.io/secret-db", "a//b")],
                "scaivault.io/secret-db",
                "empty segment",
            ),
            (
                &[("scaivault.io/secret-.x", "a")],
                "scaivault.io/secret-.x",
                "not a file name",
            ),
            (
                &[("scaivault.io/template-db", "x")],
                "scaivault.io/template-db",
                "no scaivault.io/secret-db",
            ),
            (
                &[("scaivault.io/format-db", "json")],
                "scaivault.io/format-db",
                "no scaivault.io/secret-db",
            ),
            (
                &[db, ("scaivault.io/template-db", "{{ .a")],
                "scaivault.io/template-db",
                "unclosed",
            ),
            (
                &[db, ("scaivault.io/template-db", "{{ a }}")],
                "scaivault.io/template-db",
                "expression at byte 0",
            ),
            (
                &[
                    db,
                    ("scaivault.io/template-db", "x"),
                    ("scaivault.io/format-db", "json"),
                ],
                "scaivault.io/format-db",
                "not both",
            ),
            (
                &[db, ("scaivault.io/format-db", "xml")],
                "scaivault.io/format-db",
                "\"xml\" is not json",
            ),
            (
                &[db, ("scaivault.io/format-db", "raw:")],
                "scaivault.io/format-db",
                "raw:<field>",
            ),
            (
                &[db, ("scaivault.io/file-mode-db", "644x")],
                "scaivault.io/file-mode-db",
                "octal",
            ),
            (
                &[db, ("scaivault.io/file-mode-db", "01777")],
                "scaivault.io/file-mode-db",
                "octal",
            ),
            (
                &[db, ("scaivault.io/file-mode-db", "0044")],
                "scaivault.io/file-mode-db",
                "owner read",
            ),
            (&[db, (MODE, "daemon")], MODE, "sidecar or init-only"),
            (&[db, (MOUNT_PATH, "relative")], MOUNT_PATH, "absolute"),
            (&[db, (MOUNT_PATH, "/")], MOUNT_PATH, "root"),
            (&[db, (MOUNT_PATH, "/a/../etc")], MOUNT_PATH, "'..'"),
            (
                &[db, (CONTAINERS, "app,nope")],
                CONTAINERS,
                "no container \"nope\"",
            ),
            (&[db, (CONTAINERS, "app,,side")], CONTAINERS, "empty"),
            (&[db, (CONTAINERS, "app,app")], CONTAINERS, "twice"),
            (&[db, (ON_CHANGE, "signal:SIGKILL")], ON_CHANGE, "SIGHUP"),
            (&[db, (ON_CHANGE, "reload")], ON_CHANGE, "none, signal"),
            (
                &[db, (MODE, "init-only"), (ON_CHANGE, "restart")],
                ON_CHANGE,
                "init-only",
            ),
            (
                &[db, (AGENT_CPU_REQUEST, "lots")],
                AGENT_CPU_REQUEST,
                "quantity",
            ),
            (
                &[db, (AGENT_MEMORY_LIMIT, "8Mi")],
                AGENT_MEMORY_LIMIT,
                "below the request",
            ),
            (
                &[db, (AGENT_CPU_REQUEST, "2"), (AGENT_CPU_LIMIT, "1")],
                AGENT_CPU_LIMIT,
                "below",
            ),
        ];
        for (annotations, key, words) in cases {
            let err = parse_with(&[OPT_IN], annotations).expect_err(key);
            assert_eq!(err.key, *key, "{err}");
            assert_eq!(err.kind, "annotation", "{err}");
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("annotation {key}: ")),
                "{message}"
            );
            assert!(message.contains(words), "{message} lacks {words:?}");
        }
    }

    #[test]
    fn the_documentation_names_every_annotation() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/injector.md"))
                .expect("docs/injector.md");
        for key in FIXED_KEYS.iter().chain(FILE_PREFIXES.iter()) {
            let short = key.trim_start_matches(PREFIX);
            assert!(
                doc.contains(&format!("`{short}")),
                "docs/injector.md does not document {key}"
            );
        }
    }
}
