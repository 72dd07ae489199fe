//! The command line: `scaivault-agent run` and `scaivault-agent exec -- <cmd>`, both
//! configured by the JSON of [`CONFIG_ENV`] (the injector's, or one written by hand).

use clap::{Args, Parser, Subcommand};
use scaivault_kube_api::agent::{AgentConfig, CONFIG_ENV};
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

#[derive(Parser, Debug)]
#[command(
    name = "scaivault-agent",
    version,
    about = "The ScaiVault agent of injected pods"
)]
pub struct Cli {
    /// JSON log lines (level from `SCAIVAULT_LOG`, default `info`).
    #[arg(long, env = "SCAIVAULT_LOG_JSON", global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render the configured files, then (sidecar) keep them current until SIGTERM.
    Run(RunArgs),
    /// Run a command with the secrets in its environment, restarting it (or signalling
    /// it) when they change.
    Exec(ExecArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Seconds the child has after SIGTERM (a restart, or the agent stopping) to exit
    /// before it is sent SIGKILL.
    #[arg(
        long,
        env = "SCAIVAULT_EXEC_GRACE_PERIOD_SECONDS",
        default_value_t = crate::exec::DEFAULT_GRACE_PERIOD.as_secs()
    )]
    pub grace_period_seconds: u64,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// The agent configuration (JSON of `AgentConfig`), as the injector sets it.
    #[arg(long = "config", env = CONFIG_ENV, hide_env_values = true)]
    pub config: Option<String>,
}

impl ConfigArgs {
    pub fn load(&self) -> Result<AgentConfig> {
        let json = self.config.as_deref().filter(|j| !j.trim().is_empty()).ok_or_else(|| {
            Error::Config(format!(
                "{CONFIG_ENV} is not set: the injector sets it to the agent's JSON configuration"
            ))
        })?;
        let config = AgentConfig::from_json(json).map_err(|e| Error::Config(e.to_string()))?;
        if config.files.is_empty() {
            return Err(Error::Config(format!("{CONFIG_ENV} names no files")));
        }
        Ok(config)
    }
}

/// Plain or JSON lines on stderr, filtered by `SCAIVAULT_LOG`.
pub fn init_tracing(json: bool) {
    let filter =
        EnvFilter::try_from_env("SCAIVAULT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}
