//! The one test harness of the workspace: every integration test starts the real
//! `scaivault-server` ([`server::Server`]), moto ([`moto::Moto`]) and, with the `kube`
//! feature, the kube-apiserver + etcd of `e2e/` ([`kube::KubeEnv`]) through this crate,
//! so each of them is started, waited for and logged one way.
//!
//! Every child process writes its output to a log file, and its tail is printed when
//! the test fails ([`process::Process`]): a red test explains itself.
//!
//! PostgreSQL ([`postgres::Postgres`]) has the same shape, and so does any new service:
//! a `start()` that picks a free port, spawns a [`process::Process`] and [`wait`]s for
//! readiness.

// A harness fails the test by panicking with the reason; that is its whole error model.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod bin;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod http;
#[cfg(feature = "kube")]
pub mod kube;
pub mod moto;
pub mod names;
pub mod postgres;
pub mod process;
pub mod server;
pub mod wait;

pub use clock::ShiftedClock;
pub use http::{error_code, send};
pub use names::{free_port, random_token, unique};
pub use process::Process;
pub use server::Server;
pub use wait::{wait_for, wait_for_blocking, wait_until};

/// The workspace root (this crate lives in `<root>/testkit`): where `e2e/`, `crds/` and
/// `tests/cookbook/` are found whichever crate's test runs.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit has a parent directory")
        .to_path_buf()
}
