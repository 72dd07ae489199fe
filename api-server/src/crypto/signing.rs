//! The audit checkpoint signing key: Ed25519, kept as PKCS#8 sealed under the master key
//! like the token HMAC key, so whoever holds the database files alone cannot sign.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::token::hex;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("generating the signing key failed")]
    Generate,
    #[error("the stored signing key is not a valid Ed25519 PKCS#8 document")]
    Malformed,
}

/// No `Debug`: it holds the private key.
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
}

impl CheckpointSigner {
    /// A new key as PKCS#8 (to be sealed and stored), and the signer over it.
    pub fn generate() -> Result<(Zeroizing<Vec<u8>>, Self), SigningError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SigningError::Generate)?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        let signer = Self::from_pkcs8(&pkcs8)?;
        Ok((pkcs8, signer))
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SigningError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|key| CheckpointSigner { key })
            .map_err(|_| SigningError::Malformed)
    }

    /// Hex of the 32-byte public key.
    pub fn public_key_hex(&self) -> String {
        hex(self.key.public_key().as_ref())
    }

    /// Hex of the 64-byte signature.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex(self.key.sign(message).as_ref())
    }
}

/// Whether `signature_hex` is a valid Ed25519 signature of `message` under `public_key_hex`.
pub fn verify_hex(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let (Some(public_key), Some(signature)) = (unhex(public_key_hex), unhex(signature_hex)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, &signature)
        .is_ok()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_message_and_key() -> Result<(), SigningError> {
        let (pkcs8, signer) = CheckpointSigner::generate()?;
        let again = CheckpointSigner::from_pkcs8(&pkcs8)?;
        assert_eq!(signer.public_key_hex(), again.public_key_hex());
        let signature = signer.sign_hex(b"seq 7");
        assert_eq!(signature.len(), 128);
        assert!(verify_hex(&signer.public_key_hex(), b"seq 7", &signature));
        assert!(!verify_hex(&signer.public_key_hex(), b"seq 8", &signature));
        let (_, other) = CheckpointSigner::generate()?;
        assert!(!verify_hex(&other.public_key_hex(), b"seq 7", &signature));
        assert!(!verify_hex(&signer.public_key_hex(), b"seq 7", "zz"));
        assert!(CheckpointSigner::from_pkcs8(b"not a key").is_err());
        Ok(())
    }
}
