//! Tokens: `svt_` + 32 random bytes (base64url). Only an HMAC of a token is stored; the
//! HMAC key lives sealed in storage, so a stolen database alone cannot test guesses.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

pub const TOKEN_PREFIX: &str = "svt_";
const TOKEN_BYTES: usize = 32;

pub struct TokenHasher {
    key: hmac::Key,
}

impl TokenHasher {
    pub fn new(key_bytes: &[u8]) -> Self {
        TokenHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_bytes),
        }
    }

    pub fn hash(&self, token: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.key, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// The system random source failed: nothing safe can be generated.
#[derive(Debug, thiserror::Error)]
#[error("random number generator failed")]
pub struct RngError;

pub fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, RngError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| RngError)?;
    Ok(bytes)
}

/// A new token in clear; shown to its owner once.
pub fn generate_token() -> Result<SecretString, RngError> {
    let bytes = random_bytes::<TOKEN_BYTES>()?;
    Ok(SecretString::from(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

/// A public, non-secret handle for a token (list, revoke) that cannot be used to log in.
pub fn generate_accessor() -> Result<String, RngError> {
    let bytes = random_bytes::<12>()?;
    Ok(format!("acc_{}", hex(bytes.as_ref())))
}

/// Lowercase hex. On every audited request (record hashes, accessor HMACs), so it writes
/// into one buffer instead of formatting a string per byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Whether a presented string has the shape of a token at all (cheap early reject).
pub fn looks_like_token(token: &SecretString) -> bool {
    let t = token.expose_secret();
    t.len() <= 128 && t.starts_with(TOKEN_PREFIX) && t.len() > TOKEN_PREFIX.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn tokens_are_unique_and_prefixed() {
        let a = generate_token().unwrap_or_else(|_| SecretString::from(""));
        let b = generate_token().unwrap_or_else(|_| SecretString::from(""));
        assert!(a.expose_secret().starts_with("svt_"));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 4 + 43);
    }

    #[test]
    fn hash_depends_on_key_and_token() {
        let h1 = TokenHasher::new(b"k1");
        let h2 = TokenHasher::new(b"k2");
        assert_eq!(h1.hash("svt_x"), h1.hash("svt_x"));
        assert_ne!(h1.hash("svt_x"), h1.hash("svt_y"));
        assert_ne!(h1.hash("svt_x"), h2.hash("svt_x"));
    }
}
