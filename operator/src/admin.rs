//! The admin vault client of the VaultPolicy controller. Its token comes from a file —
//! in a pod, a mounted Secret the kubelet swaps when the token is rotated — so the file
//! is checked before each use and a changed token takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use secrecy::SecretString;

/// A token file, re-read whenever its modification time changes.
pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, SecretString)>>,
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> TokenFile {
        TokenFile {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current token. An unreadable or empty file is an error (the caller reports it
    /// on the object) rather than a silent fallback to a stale token.
    pub fn current(&self) -> Result<SecretString, String> {
        let describe = |e: std::io::Error| format!("vault token file {}: {e}", self.path.display());
        // Follows symlinks: a Secret volume's `..data` swap gives a new file and mtime.
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(describe)?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, token)) = cached.as_ref()
            && *at == modified
        {
            return Ok(token.clone());
        }
        let text = std::fs::read_to_string(&self.path).map_err(describe)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("vault token file {} is empty", self.path.display()));
        }
        let token = SecretString::from(token.to_owned());
        *cached = Some((modified, token.clone()));
        Ok(token)
    }
}

/// The admin client: the shared base client with the file's current token.
pub struct AdminClient {
    base: scaivault_client::Client,
    token: TokenFile,
}

impl AdminClient {
    pub fn new(base: scaivault_client::Client, token: TokenFile) -> AdminClient {
        AdminClient { base, token }
    }

    pub fn client(&self) -> Result<scaivault_client::Client, String> {
        let token = self.token.current()?;
        self.base
            .with_token(token)
            .map_err(|e| format!("vault token from {}: {e}", self.token.path().display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_rotated_token_file_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "svt_first\n").unwrap();
        let file = TokenFile::new(&path);
        assert_eq!(file.current().unwrap().expose_secret(), "svt_first");
        std::fs::write(&path, "svt_second\n").unwrap();
        // Coarse filesystem clocks could keep the mtime: set a clearly later one.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(file.current().unwrap().expose_secret(), "svt_second");
        std::fs::write(&path, "  \n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        assert!(file.current().unwrap_err().contains("empty"));
        std::fs::remove_file(&path).unwrap();
        assert!(file.current().is_err());
    }
}
