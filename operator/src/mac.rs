//! HMAC-SHA256 of a Secret's rendered data, kept in `status.secretMAC` so drift (a hand
//! edit) and real changes can be told apart without storing values in the status.
//!
//! The key is held by the operator (a Secret in its own namespace, created once), so the
//! MAC says nothing about the values to someone who can read the VaultSecret, and it is
//! the same across restarts and replicas: a restart must not look like a change.

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Prefix of every MAC, so the scheme can change later without ambiguity.
pub const SCHEME: &str = "hmac-sha256:";
/// Length of a generated key.
pub const KEY_LEN: usize = 32;

/// The operator's MAC key. No `Debug`: it is key material.
pub struct MacKey(hmac::Key);

impl MacKey {
    pub fn new(bytes: &[u8]) -> MacKey {
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// MAC over the Secret type and every `(key, value)` in key order, each field
    /// length-prefixed so no two different maps encode the same.
    pub fn mac(&self, secret_type: &str, data: &BTreeMap<String, Vec<u8>>) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(secret_type.as_bytes());
        for (k, v) in data {
            field(k.as_bytes());
            field(v);
        }
        format!("{SCHEME}{}", STANDARD.encode(ctx.sign().as_ref()))
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// A fresh random key.
pub fn generate_key() -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
    let mut key = vec![0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut key)?;
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn same_input_same_mac_and_any_change_shows() {
        let key = MacKey::new(b"k");
        let base = key.mac("Opaque", &map(&[("a", "1"), ("b", "2")]));
        assert!(base.starts_with(SCHEME));
        assert_eq!(base, key.mac("Opaque", &map(&[("b", "2"), ("a", "1")])));
        for (ty, other) in [
            ("Opaque", map(&[("a", "1"), ("b", "3")])),
            ("Opaque", map(&[("a", "1")])),
            ("Opaque", map(&[("a", "12"), ("b", "")])),
            ("Opaque", map(&[("a1", ""), ("b", "2")])),
            ("kubernetes.io/tls", map(&[("a", "1"), ("b", "2")])),
        ] {
            assert_ne!(base, key.mac(ty, &other), "{ty} {other:?}");
        }
        assert_ne!(
            base,
            MacKey::new(b"other").mac("Opaque", &map(&[("a", "1"), ("b", "2")]))
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", MacKey::new(b"secret")),
            "MacKey(<redacted>)"
        );
    }
}
