//! A movable wall clock for a server under test: the cookbook's `clockshift.c`
//! (`tests/cookbook/clockshift.c`) preloaded into the process, reading its offset from a
//! file the test rewrites. Expiry, TTL and retention tests then move time forward
//! instead of waiting for it; monotonic clocks (timers, intervals, rate limits) are not
//! shifted.
//!
//! The shim is compiled with `cc` once per test process into a cache directory
//! (`$SCAIVAULT_CACHE/clockshift`, else the temp dir), under a name keyed on the source
//! and compiler, so parallel test binaries share one build.

use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn source() -> PathBuf {
    crate::repo_root().join("tests/cookbook/clockshift.c")
}

fn compiler() -> OsString {
    std::env::var_os("CC").unwrap_or_else(|| "cc".into())
}

/// The shared library, built on first use.
fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(build_library)
}

fn build_library() -> PathBuf {
    let source = source();
    let text = std::fs::read(&source)
        .unwrap_or_else(|e| panic!("read the clock shim {}: {e}", source.display()));
    let mut key = DefaultHasher::new();
    (&text, compiler()).hash(&mut key);
    let dir = std::env::var_os("SCAIVAULT_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("clockshift");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let library = dir.join(format!("clockshift-{:016x}.so", key.finish()));
    if library.is_file() {
        return library;
    }
    // Build beside it and rename: another test process may be building the same file.
    let partial = dir.join(format!("clockshift-{}.so.partial", std::process::id()));
    let out = Command::new(compiler())
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&partial)
        .arg(&source)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| panic!("a C compiler (cc) is needed to build the clock shim: {e}"));
    assert!(
        out.status.success(),
        "building the clock shim failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &library).expect("move the clock shim into place");
    library
}

/// The offset file of one server's clock (signed nanoseconds, native byte order).
pub struct ShiftedClock {
    file: PathBuf,
    offset_ns: std::sync::Mutex<i64>,
}

impl ShiftedClock {
    /// A clock that reads true time until shifted; its offset file lives in `dir`.
    pub fn new(dir: &Path) -> ShiftedClock {
        let file = dir.join("clockshift.offset");
        std::fs::write(&file, 0i64.to_ne_bytes()).expect("write the clock offset file");
        // Build now so the first server start does not fail half-way.
        library();
        ShiftedClock {
            file,
            offset_ns: std::sync::Mutex::new(0),
        }
    }

    /// The environment that makes a child process read this clock.
    pub fn env(&self) -> [(&'static str, OsString); 2] {
        [
            ("LD_PRELOAD", library().as_os_str().to_owned()),
            ("CLOCKSHIFT_FILE", self.file.as_os_str().to_owned()),
        ]
    }

    /// Moves the clock forward by `by` (cumulatively), effective at once in every
    /// process reading it.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).expect("shift fits in i64 nanoseconds");
        let mut offset = self.offset_ns.lock().expect("clock lock");
        *offset += by;
        // Rewrite in place: the shim has the file mapped, a replaced file would be unseen.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.file)
            .expect("open the clock offset file");
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.write_all(&offset.to_ne_bytes())
            .expect("write the clock offset");
    }
}
