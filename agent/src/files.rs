//! Writing one file of the secrets directory atomically, and only when it changed.
//!
//! A reader of the file sees the old content or the new one, never a mix: the new content
//! goes to a temporary file in the same directory (so the rename stays on one file
//! system), which is written, fsynced and given its mode before it is renamed over the
//! file; then the directory is fsynced, so the rename itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// What [`write_if_changed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// Same content and mode: the file (its inode and mtime) was left alone.
    Unchanged,
}

/// Temporary files start with `.` and file names never do, so the two cannot collide.
const TEMP_PREFIX: &str = ".scaivault-tmp-";

/// Writes `content` to `dir/name` with permission bits `mode`, unless the file already
/// holds exactly that.
pub fn write_if_changed(dir: &Path, name: &str, content: &[u8], mode: u32) -> io::Result<Outcome> {
    let target = dir.join(name);
    if unchanged(&target, content, mode)? {
        return Ok(Outcome::Unchanged);
    }
    let temp = dir.join(format!(
        "{TEMP_PREFIX}{name}-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(content)?;
        file.sync_all()?;
        // The exact bits, whatever the umask made of the open's.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        drop(file);
        fs::rename(&temp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    File::open(dir)?.sync_all()?;
    Ok(Outcome::Written)
}

/// Whether `path` holds `content` with `mode` (a missing file is a change).
fn unchanged(path: &Path, content: &[u8], mode: u32) -> io::Result<bool> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file()
        || meta.permissions().mode() & 0o7777 != mode
        || meta.len() != content.len() as u64
    {
        return Ok(false);
    }
    let mut existing = Zeroizing::new(Vec::with_capacity(content.len()));
    file.read_to_end(&mut existing)?;
    Ok(existing.as_slice() == content)
}

/// Removes temporary files a killed agent may have left in `dir`.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "scaivault-agent-files-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_with_mode_and_skips_unchanged() {
        let dir = tempdir();
        assert_eq!(
            write_if_changed(&dir, "db", b"one", 0o400).unwrap(),
            Outcome::Written
        );
        let path = dir.join("db");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let before = fs::metadata(&path).unwrap();
        assert_eq!(before.mode() & 0o7777, 0o400);
        assert_eq!(
            write_if_changed(&dir, "db", b"one", 0o400).unwrap(),
            Outcome::Unchanged
        );
        let same = fs::metadata(&path).unwrap();
        assert_eq!(
            (same.ino(), same.mtime_nsec()),
            (before.ino(), before.mtime_nsec())
        );
        // A new mode alone is a change; so is new content of the same length. (The open
        // handle keeps the first inode from being reused for the new file.)
        let held = File::open(&path).unwrap();
        assert_eq!(
            write_if_changed(&dir, "db", b"one", 0o440).unwrap(),
            Outcome::Written
        );
        assert_eq!(
            write_if_changed(&dir, "db", b"two", 0o440).unwrap(),
            Outcome::Written
        );
        let after = fs::metadata(&path).unwrap();
        assert_ne!(after.ino(), before.ino(), "replaced by a rename");
        let mut old = String::new();
        (&held).read_to_string(&mut old).unwrap();
        assert_eq!(old, "one", "a reader of the old file still sees all of it");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("db")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempdir();
        fs::write(dir.join(format!("{TEMP_PREFIX}db-1-2")), b"x").unwrap();
        fs::write(dir.join("db"), b"keep").unwrap();
        remove_stale_temps(&dir);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("db")]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
