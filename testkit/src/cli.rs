//! The real `scaivault` CLI run against a [`Server`], its outcome captured.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::server::{Server, clean_env};

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams when the command failed, so failures explain themselves.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "command failed: {self:#?}");
        self
    }

    #[track_caller]
    pub fn failed_with(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self:#?}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

impl Server {
    /// A scratch directory for files the test hands to the CLI (its working directory).
    pub fn workdir(&self) -> PathBuf {
        let dir = self.dir().join("work");
        std::fs::create_dir_all(&dir).expect("create the workdir");
        dir
    }

    /// The `scaivault` binary with this server's address and root token in its
    /// environment and nothing else of the developer's `SCAIVAULT_*`.
    pub fn command(&self) -> Command {
        let mut command = Command::new(crate::bin::cli());
        clean_env(&mut command)
            .env("SCAIVAULT_ADDR", &self.address)
            .env("SCAIVAULT_TOKEN", &self.token)
            .current_dir(self.workdir());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run(self.command().args(args), None)
    }

    /// The CLI acting with another token.
    pub fn run_as(&self, token: &str, args: &[&str]) -> Run {
        run(
            self.command().env("SCAIVAULT_TOKEN", token).args(args),
            None,
        )
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        run(self.command().args(args), Some(stdin))
    }
}

/// Runs `command` to completion, feeding it `stdin`.
pub fn run(command: &mut Command, stdin: Option<&str>) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn scaivault");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for scaivault");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
