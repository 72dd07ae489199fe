//! `scaivault-agent`: the process the injector adds to a pod. It logs in with the pod's
//! projected ServiceAccount token, renders each configured secret into a file of the
//! memory-backed secrets volume (atomically, only when the content changed), and — as a
//! sidecar — answers `GET /ready` after the first render and keeps the files current
//! from the vault's event stream, polling while the stream is down.
//!
//! One current-thread runtime, no kube client: the agent runs in every injected pod.
//! Secret values are never logged and never part of an error; buffers holding them are
//! zeroized when dropped.

pub mod cli;
pub mod error;
pub mod files;
pub mod http;
pub mod metrics;
pub mod session;
pub mod sidecar;
pub mod sync;

pub use error::{Error, Result};

use scaivault_kube_api::agent::Mode;

/// Runs the command on a current-thread runtime (the agent has one thing to do at a time).
pub fn run(cli: cli::Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    match cli.command {
        cli::Command::Run(args) => {
            let config = args.config()?;
            runtime.block_on(async move {
                match config.mode {
                    Mode::InitOnly => sidecar::init_only(config).await,
                    Mode::Sidecar => sidecar::sidecar(config).await,
                }
            })
        }
    }
}
