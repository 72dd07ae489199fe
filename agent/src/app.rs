//! The app containers' main processes, found in the pod's shared process namespace, and
//! the signals `on-change` sends them.
//!
//! The injector marks each chosen container with [`CONTAINER_ENV`]`=<container name>` in
//! its environment (only when `on-change` is set) and runs the agent as the app's user, so
//! the agent may read the app's `/proc/<pid>/environ` and signal it. A container's **main
//! process** is the topmost process carrying its marker: the marker is there, and either
//! the parent is outside the namespace (`PPid: 0`, what a container's entrypoint has in a
//! pod's shared namespace) or the parent does not carry the same marker. Children inherit
//! the environment, so they are never taken for the main process; and the rule holds where
//! PPid is not 0 too (a process started by a test). Pid 1 (the pod's pause process) and
//! the agent itself are never candidates; processes of another user are not readable and
//! are skipped.

use std::collections::BTreeMap;
use std::path::Path;

use scaivault_kube_api::agent::{CONTAINER_ENV, Signal};
use zeroize::Zeroizing;

use crate::metrics::Metrics;

/// Where the kernel shows the processes.
pub const PROC: &str = "/proc";

/// One container's main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppProcess {
    pub pid: i32,
    pub container: String,
}

/// `PPid:` of a `/proc/<pid>/status` text.
pub fn parse_ppid(status: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of [`CONTAINER_ENV`] in a `/proc/<pid>/environ` block (NUL-separated).
pub fn parse_marker(environ: &[u8]) -> Option<&str> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry
            .strip_prefix(CONTAINER_ENV.as_bytes())?
            .strip_prefix(b"=")?;
        std::str::from_utf8(value).ok()
    })
}

/// A marked process: its parent and its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub ppid: i32,
    pub container: String,
}

/// The topmost process of each marker (see the module's rule), by pid.
pub fn main_processes(marked: &BTreeMap<i32, Marked>) -> Vec<AppProcess> {
    marked
        .iter()
        .filter(|(_, m)| {
            m.ppid == 0
                || marked
                    .get(&m.ppid)
                    .is_none_or(|parent| parent.container != m.container)
        })
        .map(|(pid, m)| AppProcess {
            pid: *pid,
            container: m.container.clone(),
        })
        .collect()
}

/// Every readable process under `proc` marked for one of `containers` (not pid 1, not
/// this process).
pub fn scan(proc: &Path, containers: &[String]) -> BTreeMap<i32, Marked> {
    let own = std::process::id();
    let mut marked = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return marked;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 1 || u32::try_from(pid).is_ok_and(|p| p == own) {
            continue;
        }
        // Another user's environ is not readable (EACCES): not the app's.
        let Ok(environ) = std::fs::read(entry.path().join("environ")).map(Zeroizing::new) else {
            continue;
        };
        let Some(container) = parse_marker(&environ).filter(|c| containers.iter().any(|n| n == c))
        else {
            continue;
        };
        let Some(ppid) = std::fs::read_to_string(entry.path().join("status"))
            .ok()
            .as_deref()
            .and_then(parse_ppid)
        else {
            continue;
        };
        marked.insert(
            pid,
            Marked {
                ppid,
                container: container.to_owned(),
            },
        );
    }
    marked
}

/// The signal as rustix names it.
pub fn to_rustix(signal: Signal) -> rustix::process::Signal {
    use rustix::process::Signal as S;
    match signal {
        Signal::Hup => S::HUP,
        Signal::Int => S::INT,
        Signal::Quit => S::QUIT,
        Signal::Term => S::TERM,
        Signal::Usr1 => S::USR1,
        Signal::Usr2 => S::USR2,
    }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: i32, signal: rustix::process::Signal) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process(pid, signal).map_err(std::io::Error::from)
}

/// Sends `signal` to the main process of each of `containers` (`why` says what for, in
/// the log); returns how many were signalled. None found: a warning, unless `quiet`
/// (before the app has started, no process is expected).
pub fn signal_containers(
    containers: &[String],
    signal: Signal,
    why: &str,
    quiet: bool,
    metrics: &Metrics,
) -> usize {
    let processes = main_processes(&scan(Path::new(PROC), containers));
    if processes.is_empty() {
        if !quiet {
            metrics.app_signal_misses.inc();
            tracing::warn!(
                containers = %containers.join(","),
                signal = signal.as_str(),
                "on-change: no process of the app containers found (is shareProcessNamespace on, and does the agent run as the app's user?)"
            );
        }
        return 0;
    }
    let mut sent = 0;
    for p in processes {
        match kill(p.pid, to_rustix(signal)) {
            Ok(()) => {
                metrics.app_signals.inc();
                sent += 1;
                tracing::info!(container = %p.container, pid = p.pid, signal = signal.as_str(), "on-change: {why}");
            }
            Err(e) => {
                metrics.errors.inc();
                tracing::error!(container = %p.container, pid = p.pid, signal = signal.as_str(), error = %e, "on-change: cannot signal the process");
            }
        }
    }
    sent
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn ppid_and_marker_parse() {
        let status = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nNgid:\t0\nPid:\t7\nPPid:\t0\nTracerPid:\t0\n";
        assert_eq!(parse_ppid(status), Some(0));
        assert_eq!(parse_ppid("Pid:\t9\nPPid:\t4242\n"), Some(4242));
        assert_eq!(parse_ppid("Pid:\t9\n"), None);
        let environ = b"PATH=/bin\0SCAIVAULT_CONTAINERX=no\0SCAIVAULT_CONTAINER=web\0HOME=/\0";
        assert_eq!(parse_marker(environ), Some("web"));
        assert_eq!(parse_marker(b"SCAIVAULT_CONTAINERX=no\0"), None);
        assert_eq!(parse_marker(b""), None);
    }

    #[test]
    fn the_topmost_marked_process_is_the_main_one() {
        let m = |ppid: i32, c: &str| Marked {
            ppid,
            container: c.into(),
        };
        let p = |pid: i32, c: &str| AppProcess {
            pid,
            container: c.into(),
        };
        type Case = (Vec<(i32, Marked)>, Vec<AppProcess>);
        let cases: Vec<Case> = vec![
            // In a pod: entrypoints have PPid 0; their children inherit the marker.
            (
                vec![(7, m(0, "app")), (9, m(7, "app")), (12, m(0, "proxy"))],
                vec![p(7, "app"), p(12, "proxy")],
            ),
            // Started from outside the markers (a test): the parent is unmarked.
            (
                vec![(300, m(200, "app")), (301, m(300, "app"))],
                vec![p(300, "app")],
            ),
            // A child carrying another container's marker (a process started with a new
            // environment) is the main process of that one.
            (
                vec![(7, m(0, "app")), (8, m(7, "other"))],
                vec![p(7, "app"), p(8, "other")],
            ),
            (vec![], vec![]),
        ];
        for (marked, want) in cases {
            let marked: BTreeMap<i32, Marked> = marked.into_iter().collect();
            assert_eq!(main_processes(&marked), want, "{marked:?}");
        }
    }

    #[test]
    fn finds_a_real_marked_child_and_not_its_children() {
        let name = format!("test-{:016x}", fastrand::u64(..));
        // sh forks a sleep that inherits the marker: sh is the main process.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .env(CONTAINER_ENV, &name)
            .spawn()
            .unwrap();
        let containers = vec![name.clone()];
        let deadline = Instant::now() + Duration::from_secs(10);
        let marked = loop {
            let marked = scan(Path::new(PROC), &containers);
            if marked.len() == 2 {
                break marked;
            }
            assert!(Instant::now() < deadline, "found {marked:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let pid = i32::try_from(child.id()).unwrap();
        assert_eq!(
            marked[&pid].ppid,
            i32::try_from(std::process::id()).unwrap()
        );
        assert_eq!(
            main_processes(&marked),
            [AppProcess {
                pid,
                container: name.clone()
            }]
        );
        // Another container's name does not match.
        assert!(
            scan(Path::new(PROC), &["other".to_owned()])
                .keys()
                .all(|p| *p != pid)
        );
        // Signalled through rustix: SIGTERM ends sh (its sleep is left to finish or be
        // reaped by init; kill the group's sleep too).
        let sleep = *marked.keys().find(|p| **p != pid).unwrap();
        kill(pid, to_rustix(Signal::Term)).unwrap();
        kill(sleep, to_rustix(Signal::Term)).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15));
    }
}
