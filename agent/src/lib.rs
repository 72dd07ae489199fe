//! `scaivault-agent`: the process the injector adds to a pod. It logs in with the pod's
//! projected ServiceAccount token, renders each configured secret into a file of the
//! memory-backed secrets volume (atomically, only when the content changed), and — as a
//! sidecar — answers `GET /ready` after the first render and keeps the files current
//! from the vault's event stream, polling while the stream is down, signalling the app
//! on a change if asked (`on-change`). `exec` puts the secrets into a child's environment
//! instead, and restarts the child when they change.
//!
//! One current-thread runtime, no kube client: the agent runs in every injected pod.
//! Secret values are never logged and never part of an error; buffers holding them are
//! zeroized when dropped.

pub mod app;
pub mod cli;
pub mod error;
pub mod exec;
pub mod files;
pub mod http;
pub mod metrics;
pub mod session;
pub mod sidecar;
pub mod sync;
pub mod watch;

pub use error::{Error, Result};

use std::time::Duration;

use scaivault_kube_api::agent::Mode;

/// Runs the command on a current-thread runtime (the agent has one thing to do at a
/// time); the process's exit code (`exec`: the child's).
pub fn run(cli: cli::Cli) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    match cli.command {
        cli::Command::Run(args) => {
            let config = args.config.load()?;
            runtime.block_on(async move {
                match config.mode {
                    Mode::InitOnly => sidecar::init_only(config).await,
                    Mode::Sidecar => sidecar::sidecar(config).await,
                }
            })?;
            Ok(0)
        }
        cli::Command::Exec(args) => {
            let config = args.config.load()?;
            let grace = Duration::from_secs(args.grace_period_seconds);
            runtime.block_on(exec::exec(config, args.command, grace))
        }
    }
}
