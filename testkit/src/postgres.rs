//! A real PostgreSQL server for the tests, from the Debian package
//! (`scripts/install-deps.sh` installs it): `initdb` in a temporary directory, a free
//! loopback port, trust authentication for the test user, stopped when dropped.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the
//! package's `postgres` user (`setpriv` execs it in place, so the child is the
//! postmaster itself and signals reach it).
//!
//! Durability stays on (`fsync`), as in production: the crash tests of the storage
//! issue kill servers and check what survived.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::os::unix::fs::PermissionsExt as _;

use crate::certs::Leaf;
use crate::process::Process;

/// The role every test connects as (trust authentication on loopback only).
pub const USER: &str = "scaivault";

pub struct Postgres {
    process: Option<Process>,
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<String>,
    dir: tempfile::TempDir,
    /// `-c name=value` settings beyond the defaults (TLS).
    settings: Vec<String>,
    pub port: u16,
}

static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The server's programs: where `initdb` on PATH really is, else the newest
/// `/usr/lib/postgresql/<n>/bin`.
fn bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Through a symlink (as some images link initdb into /usr/local/bin): the
            // real directory also holds pg_isready and createdb of the same version.
            if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb"))
                && let Some(real) = initdb.parent()
                && real.join("postgres").is_file()
            {
                return real.to_path_buf();
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); \
             it is needed for this test: run scripts/install-deps.sh (apt install postgresql)"
        ),
    }
}

fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()))
}

/// `postgres` when this process is root (PostgreSQL will not run as root), else nobody.
fn unprivileged_user() -> Option<String> {
    let uid = output(Command::new("id").arg("-u"));
    (String::from_utf8_lossy(&uid.stdout).trim() == "0").then(|| "postgres".to_owned())
}

impl Postgres {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Postgres {
        let mut postgres = Postgres::init();
        postgres.run();
        postgres
    }

    /// A new cluster (`initdb`), not running yet.
    fn init() -> Postgres {
        let bin = bin_dir();
        let run_as = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("scaivault-pg-")
            .tempdir()
            .expect("create a temp dir");
        if let Some(user) = &run_as {
            let chown = output(Command::new("chown").args(["-R", user]).arg(dir.path()));
            assert!(
                chown.status.success(),
                "chown {} to {user}: {}",
                dir.path().display(),
                String::from_utf8_lossy(&chown.stderr)
            );
        }
        let data = dir.path().join("data");
        let init = output(
            Self::command(&bin, &run_as, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"]),
        );
        assert!(
            init.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        Postgres {
            process: None,
            bin,
            data,
            run_as,
            dir,
            settings: Vec::new(),
            port: crate::names::free_port(),
        }
    }

    /// A server that also accepts TLS, with `leaf` as its certificate (clients choose
    /// with `sslmode`).
    pub fn start_tls(leaf: &Leaf) -> Postgres {
        let mut postgres = Postgres::init();
        let cert = postgres.data.join("server.crt");
        let key = postgres.data.join("server.key");
        std::fs::write(&cert, &leaf.cert_pem).expect("write server.crt");
        std::fs::write(&key, &leaf.key_pem).expect("write server.key");
        // PostgreSQL refuses a key others can read, or one it does not own.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
        if let Some(user) = &postgres.run_as {
            output(Command::new("chown").arg(user).arg(&cert).arg(&key));
        }
        postgres.settings = vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", cert.display()),
            format!("ssl_key_file={}", key.display()),
        ];
        postgres.run();
        postgres
    }

    /// [`Postgres::start`] for a server in a `static` (shared by the tests of one
    /// process, never dropped): a detached watchdog stops it once the process is gone.
    pub fn start_shared() -> Postgres {
        let postgres = Postgres::start();
        let pid = postgres.process.as_ref().and_then(Process::id);
        crate::process::clean_up_after_exit(
            &pid.into_iter().collect::<Vec<_>>(),
            &[postgres.dir.path()],
            "",
            &[],
        );
        postgres
    }

    fn command(bin: &Path, run_as: &Option<String>, program: &str) -> Command {
        match run_as {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(bin.join(program));
                command
            }
            None => Command::new(bin.join(program)),
        }
    }

    /// Starts the postmaster on the data directory and waits for it.
    fn run(&mut self) {
        let log = self.dir.path().join("postgres.log");
        let mut command = Self::command(&self.bin, &self.run_as, "postgres");
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "log_min_messages=warning",
            ]);
        for setting in &self.settings {
            command.args(["-c", setting]);
        }
        let mut process = Process::spawn("postgres", &mut command, &log);
        let port = self.port.to_string();
        crate::wait::wait_for_blocking(
            "PostgreSQL to accept connections",
            Duration::from_secs(60),
            || {
                if let Some(status) = process.try_wait() {
                    panic!("postgres exited early ({status}):\n{}", process.tail());
                }
                let mut probe = Command::new(self.bin.join("pg_isready"));
                probe.args(["-h", "127.0.0.1", "-p", &port, "-U", USER]);
                output(&mut probe).status.success().then_some(())
            },
        );
        self.process = Some(process);
    }

    /// Fast shutdown (SIGINT: clients are disconnected, the data is checkpointed).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take()
            && let Some(pid) = process.id()
        {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            process.wait_exit(Duration::from_secs(30));
        }
    }

    /// Starts the server again on the same data and port (after [`Postgres::stop`]: a
    /// database outage that ends).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let created = output(
            Self::command(&self.bin, &None, "createdb")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .arg(&name),
        );
        assert!(
            created.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        self.url(&name)
    }

    /// `pg_dump` of the database at `url`: every row as text, to look for plaintext.
    pub fn dump(&self, url: &str) -> String {
        let dumped = output(
            Self::command(&self.bin, &None, "pg_dump")
                .arg("--data-only")
                .arg(format!("--dbname={url}")),
        );
        assert!(
            dumped.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&dumped.stderr)
        );
        String::from_utf8_lossy(&dumped.stdout).into_owned()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
