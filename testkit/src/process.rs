//! A child process of a test, its output in a log file, killed on drop, and its log's
//! tail printed when the test panics, so a failure shows what the process said.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::wait::wait_for_blocking;

/// How many log lines a failing test prints per process.
const TAIL_LINES: usize = 80;

pub struct Process {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()))
}

impl Process {
    /// Spawns `command` with stdout and stderr appended to `log` (created if absent, so
    /// a restarted process continues the same file).
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Process {
        let file = open_log(log);
        command.stdout(file.try_clone().expect("clone log handle"));
        Process::start(name, command.stderr(file), log)
    }

    /// Like [`Process::spawn`] but stdout is piped to the caller (a banner to read) and
    /// only stderr goes to the log.
    pub fn spawn_piped(name: &str, command: &mut Command, log: &Path) -> (Process, ChildStdout) {
        command.stdout(Stdio::piped()).stderr(open_log(log));
        let mut process = Process::start(name, command, log);
        let stdout = process
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("piped stdout");
        (process, stdout)
    }

    fn start(name: &str, command: &mut Command, log: &Path) -> Process {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", command.get_program()));
        Process {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_path_buf(),
        }
    }

    /// The process id while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("poll child");
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Waits for the process to exit on its own within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} to exit:\n{}", self.name, self.tail());
        let child = self
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("{} not running", self.name));
        let status = wait_for_blocking(&what, timeout, || child.try_wait().expect("poll child"));
        self.child = None;
        status
    }

    /// SIGTERM (the graceful stop a supervisor sends) and wait for the exit; SIGKILL
    /// and a panic if it has not exited within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self
            .id()
            .unwrap_or_else(|| panic!("{} not running", self.name));
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let child = self.child.as_mut().expect("running");
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("poll child") {
                self.child = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        panic!(
            "{} did not stop on SIGTERM in {timeout:?}:\n{}",
            self.name,
            self.tail()
        );
    }

    /// SIGKILL: no chance to clean up (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log's last lines, for failure messages.
    pub fn tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log (tail of {}) ---\n{}\n--- end of {} log ---",
                self.name,
                self.log.display(),
                self.tail(),
                self.name
            );
        }
    }
}

/// For a process in a `static` (shared by the tests of one test binary, never dropped):
/// a detached watchdog kills `pids`, runs `then` (a shell command) and removes `dirs`
/// once this test process is gone.
pub fn clean_up_after_exit(pids: &[u32], dirs: &[&Path], then: &str, env: &[(&str, &Path)]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let script = format!(
        "while kill -0 {test} 2>/dev/null; do sleep 0.5; done; kill {pids} 2>/dev/null; \
         {then}; rm -rf {dirs}",
        test = std::process::id(),
        pids = pids.join(" "),
        then = if then.is_empty() { ":" } else { then },
        dirs = dirs.join(" "),
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    for (key, value) in env {
        command.env(key, value);
    }
    // Deliberately never waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    let _watchdog = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watchdog");
}
