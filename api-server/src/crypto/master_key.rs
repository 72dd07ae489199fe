//! The master key: 32 bytes that wrap every data key. It never touches storage.

use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::Zeroizing;

pub const MASTER_KEY_LEN: usize = 32;

/// No Debug, Clone or Serialize: the key can only be used, not shown or copied around.
pub struct MasterKey(SecretBox<[u8; MASTER_KEY_LEN]>);

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key must be {MASTER_KEY_LEN} bytes encoded as base64")]
    Malformed,
    #[error("cannot read master key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write master key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("random number generator failed")]
    Rng,
}

impl MasterKey {
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut bytes = Box::new([0u8; MASTER_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| MasterKeyError::Rng)?;
        Ok(MasterKey(SecretBox::new(bytes)))
    }

    /// Decodes base64 text (surrounding whitespace ignored).
    pub fn from_base64(text: &SecretString) -> Result<Self, MasterKeyError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.expose_secret().trim())
                .map_err(|_| MasterKeyError::Malformed)?,
        );
        let array: [u8; MASTER_KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Malformed)?;
        Ok(MasterKey(SecretBox::new(Box::new(array))))
    }

    pub fn from_file(path: &Path) -> Result<Self, MasterKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_base64(&SecretString::from(text))
    }

    /// Writes the key as base64 to a new file readable by its owner only.
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        use std::io::Write;
        let err = |source| MasterKeyError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(err)?;
        let encoded = Zeroizing::new(STANDARD.encode(self.0.expose_secret()));
        file.write_all(encoded.as_bytes()).map_err(err)?;
        file.write_all(b"\n").map_err(err)?;
        file.sync_all().map_err(err)
    }

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        self.0.expose_secret()
    }
}
