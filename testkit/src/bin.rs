//! Finding the workspace's binaries from a test.
//!
//! A library cannot use `env!("CARGO_BIN_EXE_…")` (cargo sets it for the integration
//! tests of the binary's own package only), so binaries are looked up next to the test
//! executable: `target/<profile>/deps/<test>` → `target/<profile>/<bin>`. Cargo builds a
//! package's binaries before its integration tests; binaries of other packages need
//! `cargo build --workspace --bins` first (`make test` does it).

use std::path::{Path, PathBuf};

/// `target/<profile>/<name>`, or a panic saying how to build it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

/// The `scaivault-server` binary.
pub fn server() -> PathBuf {
    workspace_bin("scaivault-server")
}

/// The `scaivault` CLI binary.
pub fn cli() -> PathBuf {
    workspace_bin("scaivault")
}
