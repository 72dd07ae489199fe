//! A real `scaivault-server dev` on a free port, and a way to run the real `scaivault`
//! binary against it.
//!
//! The server binary is looked up next to this test executable
//! (`target/debug/deps/<test>` -> `target/debug/scaivault-server`); build it first with
//! `cargo build -p scaivault-server`.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// In [`Server::start_with`] arguments: replaced by the export directory's path.
pub const EXPORT_DIR_MARKER: &str = "{export_dir}";

pub struct Server {
    child: Child,
    pub address: String,
    pub token: String,
    dir: TempDir,
}

/// The outcome of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams when the command failed, so test failures explain themselves.
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

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // .../target/debug/deps/<test-binary> -> .../target/debug/scaivault-server
    let debug_dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let bin = debug_dir.join(format!("scaivault-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p scaivault-server`",
        bin.display()
    );
    bin
}

/// A token nobody can guess across test runs, without a random-number dependency.
fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let a = RandomState::new().hash_one((std::process::id(), nanos));
    let b = RandomState::new().hash_one(a);
    format!("{a:016x}{b:016x}")
}

/// Removes inherited `SCAIVAULT_*` variables so the developer's shell cannot steer a test.
fn clean_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SCAIVAULT_") {
            command.env_remove(name);
        }
    }
    command
}

impl Server {
    /// `scaivault-server dev` with a root token of our choosing.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// `scaivault-server dev` writing file audit exports under [`Server::export_dir`].
    pub fn start_with_exports() -> Server {
        Server::start_with(&["--audit-export-dir", EXPORT_DIR_MARKER])
    }

    /// `scaivault-server dev` with extra server flags; [`EXPORT_DIR_MARKER`] stands for
    /// [`Server::export_dir`].
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let export_dir = dir.path().join("exports");
        std::fs::create_dir_all(&export_dir).expect("export dir");
        let token = format!("svt_test_{}", random_suffix());
        let mut command = Command::new(server_binary());
        clean_env(&mut command)
            .arg("dev")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--root-token", &token]);
        for arg in extra {
            if *arg == EXPORT_DIR_MARKER {
                command.arg(&export_dir);
            } else {
                command.arg(arg);
            }
        }
        Server::spawn(command, dir, token, "Address:")
    }

    /// `scaivault-server init` then `serve` over TLS, with a certificate for 127.0.0.1
    /// signed by a fresh CA at [`Server::ca_pem`] that no platform trusts.
    pub fn start_tls() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        make_ca_and_server_cert(dir.path());
        let data = dir.path().join("data");
        let key = dir.path().join("master.key");
        let mut init = Command::new(server_binary());
        clean_env(&mut init)
            .args(["init", "--data-dir"])
            .arg(&data)
            .arg("--master-key-file")
            .arg(&key);
        let init = init.output().expect("scaivault-server init");
        let stdout = String::from_utf8_lossy(&init.stdout);
        assert!(
            init.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let token = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("Root token:"))
            .map(|t| t.trim().to_owned())
            .expect("init prints the root token");
        let mut serve = Command::new(server_binary());
        clean_env(&mut serve)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--master-key-file")
            .arg(&key)
            .arg("--tls-cert")
            .arg(dir.path().join("server.pem"))
            .arg("--tls-key")
            .arg(dir.path().join("server.key"));
        Server::spawn(serve, dir, token, "ScaiVault listening on")
    }

    /// The server's `--data-dir` (for `start`/`start_with`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where `file` audit exports land (with [`Server::start_with_exports`]).
    pub fn export_dir(&self) -> PathBuf {
        self.dir.path().join("exports")
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Starts the server and waits for the stdout line `<marker> <address>`.
    fn spawn(mut command: Command, dir: TempDir, token: String, marker: &'static str) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn scaivault-server");

        // Read stdout on a thread: the address line, then drain so the pipe never fills.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.trim().strip_prefix(marker) {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        let mut server = Server {
            child,
            address: String::new(),
            token,
            dir,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(address) => server.address = address,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                let log = std::fs::read_to_string(server.dir.path().join("server.log"))
                    .unwrap_or_default();
                panic!(
                    "the server printed no `{marker}` line (exit status {status:?}); its log:\n{log}"
                );
            }
        }
        server
    }

    /// A scratch directory for files the test hands to the CLI.
    pub fn workdir(&self) -> PathBuf {
        let dir = self.dir.path().join("work");
        std::fs::create_dir_all(&dir).expect("workdir");
        dir
    }

    /// The `scaivault` binary with this server's address and root token in its environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scaivault"));
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

/// `ca.pem` and a `server.pem`/`server.key` for 127.0.0.1 and localhost signed by it
/// (ECDSA P-256), minted in-process by rcgen.
fn make_ca_and_server_cert(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "scaivault-test-ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
