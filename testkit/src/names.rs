//! Unique names, unguessable tokens and free ports, without a random-number dependency.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// `<prefix>-<pid>-<n>`: distinct across the tests of one process (a counter) and
/// across processes sharing one apiserver (the pid), and a valid Kubernetes name for a
/// lowercase prefix.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n:x}{:x}",
        std::process::id(),
        nanos() & 0xffff
    )
}

/// A root token nobody can guess across test runs: std's per-process random hash keys
/// over the time and pid.
pub fn random_token() -> String {
    let a = RandomState::new().hash_one((std::process::id(), nanos()));
    let b = RandomState::new().hash_one(a);
    format!("svt_test_{a:016x}{b:016x}")
}

/// A loopback port free right now, for programs that cannot bind port 0 and report
/// it (moto, OpenBao, a server whose URL a test needs before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
