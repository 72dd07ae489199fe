//! `scaivault-agent exec -- <cmd> [args...]`: the secrets in a child's environment, kept
//! current. The agent renders every configured file (as `run` would) but writes none:
//! a file of format `env` gives its `KEY=value` pairs as variables, any other file one
//! variable named after the file ([`var_name`]) holding its rendered content. The child
//! starts with the agent's environment plus these (without [`CONFIG_ENV`]); when the
//! rendered environment really changes, the child is restarted with the new one (SIGTERM,
//! SIGKILL after the grace period), or sent `onChange`'s signal instead. SIGTERM, SIGINT
//! and SIGHUP are forwarded to the child; when it exits, the agent revokes its token and
//! exits with the child's code.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use scaivault_kube_api::agent::{
    AgentConfig, CONFIG_ENV, Content, FileSpec, Format, Mode, OnChange,
};
use scaivault_kube_api::files::{env_pairs, render_content};
use serde_json::{Map, Value};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

use crate::app;
use crate::error::{Error, Result};
use crate::http::State;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::sync::Files;
use crate::watch::{self, Stop, Target};

/// How long the child has to exit after SIGTERM (a restart or a stop) before SIGKILL.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The variable of a file that is not of format `env`: its name upper-cased, every
/// character but `A-Z`, `0-9` and `_` made `_` (`api-key.pem` -> `API_KEY_PEM`). A name
/// that would start with a digit is refused.
pub fn var_name(file: &str) -> Result<String> {
    let name: String = file
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Error::Env(format!(
            "file {file:?} would be the variable {name}, which starts with a digit: rename the file"
        )));
    }
    Ok(name)
}

fn is_env(spec: &FileSpec) -> bool {
    spec.content == Content::Format(Format::Env)
}

/// What `exec` cannot run with, before anything is read: `init-only`, and files whose
/// variable names collide.
pub fn check(config: &AgentConfig) -> Result<()> {
    if config.mode == Mode::InitOnly {
        return Err(Error::Config(
            "exec keeps its child's environment current: mode init-only is for the init container (use mode sidecar)".into(),
        ));
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for spec in config.files.iter().filter(|s| !is_env(s)) {
        let name = var_name(&spec.name)?;
        if let Some(other) = seen.insert(name.clone(), &spec.name) {
            return Err(Error::Env(format!(
                "files {other:?} and {:?} would both be the variable {name}",
                spec.name
            )));
        }
    }
    Ok(())
}

/// One variable: its name, the file it comes from, its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub file: String,
    pub value: Zeroizing<Vec<u8>>,
}

/// The variables of one path's files.
pub fn render_vars(specs: &[FileSpec], data: &Map<String, Value>) -> Result<Vec<Var>> {
    let mut vars = Vec::new();
    for spec in specs {
        if is_env(spec) {
            for (key, value) in env_pairs(&spec.name, data)? {
                vars.push(Var {
                    name: key.to_owned(),
                    file: spec.name.clone(),
                    value: Zeroizing::new(value),
                });
            }
        } else {
            vars.push(Var {
                name: var_name(&spec.name)?,
                file: spec.name.clone(),
                value: Zeroizing::new(render_content(&spec.name, &spec.content, data)?),
            });
        }
    }
    for var in &vars {
        if var.value.contains(&0) {
            return Err(Error::EnvValue {
                file: var.file.clone(),
                name: var.name.clone(),
            });
        }
    }
    Ok(vars)
}

/// The child's variables from every path's, refusing a name two files give.
pub type Env = BTreeMap<String, Zeroizing<Vec<u8>>>;

pub fn merge<'a>(paths: impl IntoIterator<Item = &'a Vec<Var>>) -> Result<Env> {
    let mut env = Env::new();
    let mut from: BTreeMap<&str, &str> = BTreeMap::new();
    for var in paths.into_iter().flatten() {
        if let Some(other) = from.insert(&var.name, &var.file) {
            let which = if other == var.file {
                format!("file {other:?} gives it twice")
            } else {
                format!("files {other:?} and {:?} both give it", var.file)
            };
            return Err(Error::Env(format!(
                "the variable {} is not unique: {which}",
                var.name
            )));
        }
        env.insert(var.name.clone(), var.value.clone());
    }
    Ok(env)
}

/// A child's exit status as a shell reports it: its code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}

/// The child and what it was started with.
struct Exec<'a> {
    files: &'a Files,
    command: &'a [OsString],
    on_change: OnChange,
    grace: Duration,
    /// Each path's variables as last read.
    rendered: BTreeMap<String, Vec<Var>>,
    /// The environment the last action (start, restart, signal) was for.
    acted: Env,
    child: Option<Child>,
    sighup: tokio::signal::unix::Signal,
}

impl Exec<'_> {
    fn program(&self) -> String {
        self.command
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn spawn(&mut self, env: &Env) -> Result<()> {
        let program = self.program();
        let Some((first, args)) = self.command.split_first() else {
            return Err(Error::Config("exec: no command after --".into()));
        };
        let mut command = Command::new(first);
        command.args(args).env_remove(CONFIG_ENV).kill_on_drop(true);
        for (name, value) in env {
            command.env(name, OsStr::from_bytes(value));
        }
        let child = command
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        tracing::info!(
            pid = child.id(),
            program = %self.program(),
            variables = %env.keys().cloned().collect::<Vec<_>>().join(","),
            "child started"
        );
        self.child = Some(child);
        Ok(())
    }

    fn send(&self, signal: rustix::process::Signal) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        match app::kill(pid, signal) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot signal the child");
                false
            }
        }
    }

    fn pid(&self) -> Option<i32> {
        self.child
            .as_ref()
            .and_then(Child::id)
            .and_then(|p| i32::try_from(p).ok())
    }

    /// `signal`, then SIGKILL if the child has not exited within the grace period.
    async fn end(&mut self, signal: rustix::process::Signal) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        if let Some(pid) = pid
            && let Err(e) = app::kill(pid, signal)
        {
            tracing::warn!(pid, error = %e, "cannot signal the child");
        }
        let status = match tokio::time::timeout(self.grace, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(pid, grace = ?self.grace, "the child did not exit in time: SIGKILL");
                let _ = child.start_kill();
                child.wait().await
            }
        };
        self.child = None;
        match status {
            Ok(status) => {
                tracing::info!(pid, %status, "child exited");
                Some(status)
            }
            Err(e) => {
                tracing::error!(pid, error = %e, "cannot wait for the child");
                None
            }
        }
    }
}

impl Target for Exec<'_> {
    async fn refresh(&mut self, session: &Session, metrics: &Metrics, path: &str) -> Result<bool> {
        let Some(vars) = self
            .files
            .with_secret(session, path, |specs, version, data| {
                let vars = render_vars(specs, data)?;
                metrics.renders.inc_by(specs.len() as u64);
                tracing::info!(%path, version, files = specs.len(), variables = vars.len(), "rendered");
                Ok(vars)
            })
            .await?
        else {
            return Ok(false);
        };
        if self.rendered.get(path) == Some(&vars) {
            return Ok(false);
        }
        // A collision with another path's variables keeps the last environment.
        merge(
            self.rendered
                .iter()
                .filter(|(p, _)| p.as_str() != path)
                .map(|(_, v)| v)
                .chain([&vars]),
        )?;
        self.rendered.insert(path.to_owned(), vars);
        Ok(true)
    }

    async fn start(&mut self, state: &State, _changed: bool) -> Result<()> {
        let env = merge(self.rendered.values())?;
        self.spawn(&env)?;
        self.acted = env;
        state.set_ready();
        Ok(())
    }

    async fn changed(&mut self, metrics: &Metrics) -> Result<()> {
        let env = merge(self.rendered.values())?;
        if env == self.acted {
            tracing::debug!("the environment is as the child's: nothing to do");
            return Ok(());
        }
        match self.on_change {
            OnChange::Signal(signal) => {
                // A signal cannot change a running process's environment: the child keeps
                // its own and is told, e.g. to re-read something else.
                if self.send(app::to_rustix(signal)) {
                    metrics.app_signals.inc();
                    tracing::info!(
                        pid = self.pid(),
                        signal = signal.as_str(),
                        "the environment changed: child signalled (it keeps the environment it started with)"
                    );
                }
            }
            OnChange::None | OnChange::Restart => {
                tracing::info!(
                    pid = self.pid(),
                    "the environment changed: restarting the child"
                );
                if self.end(rustix::process::Signal::TERM).await.is_some() {
                    metrics.app_signals.inc();
                }
                self.spawn(&env)?;
                metrics.child_restarts.inc();
            }
        }
        self.acted = env;
        Ok(())
    }

    async fn ended(&mut self) -> u8 {
        loop {
            let Some(child) = self.child.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                status = child.wait() => {
                    let pid = child.id();
                    self.child = None;
                    return match status {
                        Ok(status) => {
                            tracing::info!(pid, %status, "the child exited; stopping");
                            exit_code(status)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot wait for the child");
                            1
                        }
                    };
                }
                _ = self.sighup.recv() => {
                    tracing::info!("SIGHUP: forwarded to the child");
                    self.send(rustix::process::Signal::HUP);
                }
            }
        }
    }

    async fn stop(&mut self, signal: Stop) -> u8 {
        let (sig, raw) = match signal {
            Stop::Term => (rustix::process::Signal::TERM, 15),
            Stop::Int => (rustix::process::Signal::INT, 2),
        };
        match self.end(sig).await {
            // Ended by the signal it was asked to stop with: a clean stop.
            Some(status) if status.signal() == Some(raw) => 0,
            Some(status) => exit_code(status),
            None => 0,
        }
    }
}

/// `scaivault-agent exec`.
pub async fn exec(config: AgentConfig, command: Vec<OsString>, grace: Duration) -> Result<u8> {
    check(&config)?;
    if command.is_empty() {
        return Err(Error::Config(
            "exec: no command after -- (scaivault-agent exec -- <cmd> [args...])".into(),
        ));
    }
    let files = Files::new(&config);
    let state = State::new();
    // `readyPort: 0`: no endpoint (the port may be the app's own in its container).
    let server = match config.ready_port {
        0 => None,
        port => Some(watch::serve(port, state.clone()).await?),
    };
    let sighup = signal(SignalKind::hangup()).map_err(|e| Error::Runtime(e.to_string()))?;
    let target = Exec {
        files: &files,
        command: &command,
        on_change: config.on_change,
        grace,
        rendered: BTreeMap::new(),
        acted: Env::new(),
        child: None,
        sighup,
    };
    let result = watch::watch(&config, &files, state, target).await;
    if let Some(server) = server {
        server.abort();
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, content: Content) -> FileSpec {
        FileSpec {
            name: name.into(),
            path: "apps/x".into(),
            content,
            mode: 0o644,
        }
    }

    fn data(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn plain(env: &Env) -> Vec<(&str, &str)> {
        env.iter()
            .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn variable_names_of_files() {
        let cases = [
            ("password", Some("PASSWORD")),
            ("api-key.pem", Some("API_KEY_PEM")),
            ("db_URL", Some("DB_URL")),
            ("ü", Some("_")),
            ("2fa", None),
        ];
        for (file, want) in cases {
            assert_eq!(var_name(file).ok().as_deref(), want, "{file}");
        }
    }

    #[test]
    fn env_files_give_their_pairs_other_files_one_variable() {
        let specs = [
            spec("db", Content::Format(Format::Env)),
            spec("dsn", Content::Template("u={{ .user }}".into())),
            spec("pw", Content::Format(Format::Raw("password".into()))),
        ];
        let vars = render_vars(&specs, &data(json!({"user": "app", "password": "s'3"}))).unwrap();
        let env = merge([&vars]).unwrap();
        assert_eq!(
            plain(&env),
            [
                ("DSN", "u=app"),
                ("PW", "s'3"),
                ("password", "s'3"),
                ("user", "app")
            ]
        );
    }

    #[test]
    fn collisions_and_nul_bytes_are_refused_naming_files_never_values() {
        // Across paths: an env file's key and another file's name.
        let a = render_vars(
            &[spec("a", Content::Format(Format::Env))],
            &data(json!({"TOKEN": "secret-1"})),
        )
        .unwrap();
        let b = render_vars(
            &[spec("token", Content::Format(Format::Raw("t".into())))],
            &data(json!({"t": "secret-2"})),
        )
        .unwrap();
        let err = merge([&a, &b]).unwrap_err().to_string();
        assert!(
            err.contains("TOKEN") && err.contains("\"a\"") && err.contains("\"token\""),
            "{err}"
        );
        assert!(!err.contains("secret-"), "{err}");
        let err = render_vars(
            &[spec("n", Content::Format(Format::Raw("v".into())))],
            &data(json!({"v": "a\u{0}b"})),
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::EnvValue { .. }), "{err}");
        assert_eq!(err.exit_code(), 5);
    }

    #[test]
    fn static_collisions_and_init_only_are_configuration_errors() {
        let config = |files: Vec<FileSpec>, mode: Mode| AgentConfig {
            version: scaivault_kube_api::agent::CONFIG_VERSION,
            mode,
            vault_addr: "http://127.0.0.1:1".into(),
            token_path: "/t".into(),
            secrets_dir: "/s".into(),
            ready_port: 0,
            files,
            on_change: OnChange::None,
            containers: vec![],
        };
        let json = || Content::Format(Format::Json);
        let env = || Content::Format(Format::Env);
        assert!(
            check(&config(
                vec![spec("a-b", json()), spec("c", json())],
                Mode::Sidecar
            ))
            .is_ok()
        );
        assert!(
            check(&config(
                vec![spec("a", env()), spec("b", env())],
                Mode::Sidecar
            ))
            .is_ok()
        );
        let err = check(&config(
            vec![spec("a-b", json()), spec("a_b", json())],
            Mode::Sidecar,
        ))
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("A_B"), "{err}");
        let err = check(&config(vec![spec("a", json())], Mode::InitOnly)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn exit_codes_are_a_shells() {
        use std::process::Command as StdCommand;
        let code =
            |script: &str| exit_code(StdCommand::new("sh").args(["-c", script]).status().unwrap());
        assert_eq!(code("exit 0"), 0);
        assert_eq!(code("exit 7"), 7);
        assert_eq!(code("kill -USR1 $$"), 138);
    }
}
