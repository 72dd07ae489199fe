//! The agent's one error type and its exit codes. No variant carries a secret value: the
//! client's errors hold the server's messages (which never quote values) and render
//! errors name files and fields only.

use scaivault_client::api::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot read the ServiceAccount token file {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Kubernetes login to {addr} failed: {source}")]
    Login {
        addr: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error("secret {path}: permission `read` denied to {identity} ({source})")]
    Denied {
        path: String,
        identity: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error("secret {path}: not found ({source})")]
    NotFound {
        path: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error("secret {path}: the vault token was refused ({source})")]
    Unauthenticated {
        path: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error("secret {path}: cannot be read: {source}")]
    Read {
        path: String,
        #[source]
        source: scaivault_client::Error,
    },
    #[error(transparent)]
    Render(#[from] scaivault_kube_api::files::Error),
    #[error("cannot write file {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for /ready and /metrics: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Runtime(String),
    /// `exec`: variable names that cannot be (two files give the same one).
    #[error("exec environment: {0}")]
    Env(String),
    #[error(
        "file {file:?} (variable {name}): its content holds a NUL byte, which an environment variable cannot"
    )]
    EnvValue { file: String, name: String },
    #[error("cannot start the command {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process's exit code (documented in docs/agent.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Runtime(_) | Error::Listen { .. } => 1,
            Error::Config(_) | Error::Env(_) => 2,
            Error::TokenFile { .. } | Error::Login { .. } => 3,
            Error::Denied { .. }
            | Error::NotFound { .. }
            | Error::Unauthenticated { .. }
            | Error::Read { .. } => 4,
            Error::Render(_) | Error::EnvValue { .. } => 5,
            Error::Write { .. } => 6,
            // As a shell reports a command it cannot run: 127 not found, 126 otherwise.
            Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            Error::Spawn { .. } => 126,
        }
    }

    /// A read error of `path`, by what the server said.
    pub fn read(path: &str, identity: &str, source: scaivault_client::Error) -> Error {
        let path = path.to_owned();
        match source.status() {
            Some(403) => Error::Denied {
                path,
                identity: identity.to_owned(),
                source,
            },
            Some(404) => Error::NotFound { path, source },
            Some(401) => Error::Unauthenticated { path, source },
            _ if source.code() == Some(ErrorCode::PermissionDenied) => Error::Denied {
                path,
                identity: identity.to_owned(),
                source,
            },
            _ => Error::Read { path, source },
        }
    }
}
