//! What the injector tells the agent: [`AgentConfig`], serialized as JSON into the one
//! environment variable [`CONFIG_ENV`] of the agent's container. The injector builds it
//! from annotations it has already validated ([`crate::annotations::parse`]); the agent
//! deserializes the same type, so the two cannot drift apart.
//!
//! It holds paths, templates and names, never a secret value (it is visible in the pod
//! spec). Unknown fields are refused and [`AgentConfig::version`] is checked: an agent
//! older than its injector fails at start with a clear message instead of ignoring a
//! setting it does not know.

use serde::{Deserialize, Serialize};

/// Name of the agent's container (an init container) in an injected pod: what the injector
/// adds, and what the operator looks for to tell an injected pod from one admitted without.
pub const AGENT_CONTAINER: &str = "scaivault-agent";
/// The agent container's environment variable holding the JSON.
pub const CONFIG_ENV: &str = "SCAIVAULT_AGENT_CONFIG";
/// The format version this crate writes and reads.
pub const CONFIG_VERSION: u32 = 1;
/// The marker the injector puts into each chosen app container's environment when
/// `on_change` is set, valued with the container's name: how the agent tells, in the
/// shared process namespace, which processes belong to which container.
pub const CONTAINER_ENV: &str = "SCAIVAULT_CONTAINER";

/// Whether the agent keeps running beside the app or renders once and exits.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A native sidecar (init container with `restartPolicy: Always`): renders, becomes
    /// started (its startup probe passes), then keeps the files current.
    #[default]
    Sidecar,
    /// A plain init container: renders once and exits 0, or non-zero on any failure.
    InitOnly,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::InitOnly => "init-only",
        }
    }
}

/// A signal the agent may send to the app's processes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    #[serde(rename = "SIGHUP")]
    Hup,
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGQUIT")]
    Quit,
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGUSR1")]
    Usr1,
    #[serde(rename = "SIGUSR2")]
    Usr2,
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Term,
        Signal::Usr1,
        Signal::Usr2,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Term => "SIGTERM",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
        }
    }

    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What the agent does when a file's content really changed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OnChange {
    /// Nothing: the app re-reads its files itself.
    #[default]
    None,
    /// Send this signal to the app containers' processes (needs the shared process namespace).
    Signal(Signal),
    /// End the app containers' processes so the kubelet restarts them (shared process
    /// namespace too).
    Restart,
}

impl OnChange {
    /// Whether the agent must see the app's processes (`shareProcessNamespace: true`).
    pub const fn needs_process_namespace(self) -> bool {
        !matches!(self, OnChange::None)
    }
}

/// How a file's content is made from the vault secret's data when there is no template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Format {
    /// The whole data as one JSON object.
    #[default]
    Json,
    /// `KEY=value` lines, one per top-level field (values quoted as a shell would need).
    Env,
    /// The whole data as YAML.
    Yaml,
    /// One field's value as is (a string as its text, anything else as JSON).
    Raw(String),
}

/// Where a file's content comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Content {
    /// A template in the operator's language ([`crate::render`]), already syntax-checked.
    Template(String),
    Format(Format),
}

/// One file the agent writes into [`AgentConfig::secrets_dir`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSpec {
    /// File name, also the `<name>` of its annotations.
    pub name: String,
    /// Vault secret path it is rendered from.
    pub path: String,
    pub content: Content,
    /// Permission bits (e.g. `0o644`); written as a number.
    pub mode: u32,
}

/// Everything the agent needs to know, from the injector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// [`CONFIG_VERSION`] of the injector that wrote it.
    pub version: u32,
    pub mode: Mode,
    /// The vault's URL, e.g. `https://scaivault.scaivault.svc:8200`.
    pub vault_addr: String,
    /// The projected ServiceAccount token (vault audience) the agent logs in with; the
    /// kubelet rotates it, so it is re-read before each login.
    pub token_path: String,
    /// The memory-backed volume the files are written to (read-only in the app containers).
    pub secrets_dir: String,
    /// Port of the agent's readiness endpoint (`GET /ready`, 200 after the first render)
    /// on all the pod's addresses: the kubelet's startup probe calls it.
    pub ready_port: u16,
    /// Sorted by name.
    pub files: Vec<FileSpec>,
    pub on_change: OnChange,
    /// The app containers that mount the files (and that `on_change` is about).
    pub containers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{CONFIG_ENV} is not a valid agent configuration: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "{CONFIG_ENV} has version {found}, this agent reads version {CONFIG_VERSION}: use the agent image that matches the injector"
    )]
    Version { found: u32 },
}

impl AgentConfig {
    /// The JSON the injector puts into [`CONFIG_ENV`].
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and enums always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What the agent reads back.
    pub fn from_json(json: &str) -> Result<AgentConfig, Error> {
        let config: AgentConfig = serde_json::from_str(json)?;
        if config.version != CONFIG_VERSION {
            return Err(Error::Version {
                found: config.version,
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> AgentConfig {
        AgentConfig {
            version: CONFIG_VERSION,
            mode: Mode::Sidecar,
            vault_addr: "https://vault:8200".into(),
            token_path: "/var/run/secrets/scaivault/token".into(),
            secrets_dir: "/scaivault/secrets".into(),
            ready_port: 8209,
            files: vec![
                FileSpec {
                    name: "db".into(),
                    path: "apps/web/db".into(),
                    content: Content::Format(Format::Raw("password".into())),
                    mode: 0o400,
                },
                FileSpec {
                    name: "dsn".into(),
                    path: "apps/web/db".into(),
                    content: Content::Template("postgres://{{ .user }}@db".into()),
                    mode: 0o644,
                },
            ],
            on_change: OnChange::Signal(Signal::Hup),
            containers: vec!["app".into()],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let config = sample();
        let json = config.to_json();
        assert_eq!(AgentConfig::from_json(&json).unwrap(), config);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["onChange"], serde_json::json!({"signal": "SIGHUP"}));
        assert_eq!(
            value["files"][0]["content"],
            serde_json::json!({"format": {"raw": "password"}})
        );
        assert_eq!(value["mode"], "sidecar");
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let mut value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        value["version"] = 2.into();
        let err = AgentConfig::from_json(&value.to_string()).unwrap_err();
        assert!(matches!(err, Error::Version { found: 2 }), "{err}");
        value["version"] = 1.into();
        value["surprise"] = true.into();
        assert!(AgentConfig::from_json(&value.to_string()).is_err());
    }
}
