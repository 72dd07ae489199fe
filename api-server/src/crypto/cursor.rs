//! Sealed list cursors.
//!
//! A cursor carries the position a list stopped at (a path, a name, a sequence number):
//! in clear it would tell a caller what lies beyond what it may list. So the position is
//! sealed with AES-256-GCM under a key derived from the barrier, the cursor's scope (which
//! list, which caller, which query) is its AAD, and an expiry travels inside. A cursor
//! therefore reveals nothing, and opens only for the same caller asking the same query
//! before it expires. Wire form, base64url without padding:
//! `0x01 | nonce (12) | AES-256-GCM(expires_at unix seconds u64 BE | position) | tag (16)`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scaivault_api::limits::MAX_CURSOR_CHARS;

const FORMAT_V1: u8 = 1;
const EXPIRY_LEN: usize = 8;
const AAD_LABEL: &[u8] = b"scaivault/list-cursor/v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this server could have issued, or issued for another list, caller or
    /// query, or altered: the cases are indistinguishable on purpose.
    #[error("cursor is not valid for this caller and query (altered, or issued for another)")]
    Rejected,
    #[error("cursor has expired; start the listing again without a cursor")]
    Expired,
    #[error("sealing the cursor failed")]
    Seal,
}

/// What a cursor is bound to. Every part is length-prefixed into the AAD, so no two
/// different scopes encode alike.
#[derive(Debug, Clone)]
pub struct CursorScope {
    aad: Vec<u8>,
}

impl CursorScope {
    /// `list` names the endpoint (`secrets`, `policies`, ...); `identity` the caller.
    pub fn new(list: &str, identity: &str) -> Self {
        let mut scope = CursorScope {
            aad: AAD_LABEL.to_vec(),
        };
        scope.push(list.as_bytes());
        scope.push(identity.as_bytes());
        scope
    }

    /// Binds one query parameter that decides which rows the list returns (not `limit`:
    /// a caller may change the page size between pages).
    pub fn with(mut self, name: &str, value: Option<&str>) -> Self {
        self.push(name.as_bytes());
        match value {
            None => self.aad.push(0),
            Some(v) => {
                self.aad.push(1);
                self.push(v.as_bytes());
            }
        }
        self
    }

    fn push(&mut self, part: &[u8]) {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        self.aad.extend_from_slice(&len.to_be_bytes());
        self.aad.extend_from_slice(part);
    }
}

/// The cursor key. Derived, never stored: every replica of a vault derives the same one,
/// so a cursor from one replica works on the next.
pub struct CursorKey {
    key: RandomizedNonceKey,
}

impl CursorKey {
    /// `key_bytes`: 32 bytes derived from the vault's sealed keys (see `Vault::assemble`).
    pub fn new(key_bytes: &[u8]) -> Result<Self, CursorError> {
        RandomizedNonceKey::new(&AES_256_GCM, key_bytes)
            .map(|key| CursorKey { key })
            .map_err(|_| CursorError::Seal)
    }

    pub fn seal(
        &self,
        scope: &CursorScope,
        position: &str,
        expires_at_unix: u64,
    ) -> Result<String, CursorError> {
        let mut buffer = Vec::with_capacity(EXPIRY_LEN + position.len() + AES_256_GCM.tag_len());
        buffer.extend_from_slice(&expires_at_unix.to_be_bytes());
        buffer.extend_from_slice(position.as_bytes());
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(scope.aad.as_slice()), &mut buffer)
            .map_err(|_| CursorError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buffer.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buffer);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The position inside `cursor`, if it was sealed for `scope` and has not expired.
    pub fn open(
        &self,
        scope: &CursorScope,
        cursor: &str,
        now_unix: u64,
    ) -> Result<String, CursorError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::Rejected);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor.as_bytes())
            .map_err(|_| CursorError::Rejected)?;
        if bytes.len() < 1 + NONCE_LEN + EXPIRY_LEN + AES_256_GCM.tag_len() || bytes[0] != FORMAT_V1
        {
            return Err(CursorError::Rejected);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[1..1 + NONCE_LEN]);
        let mut body = bytes[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(scope.aad.as_slice()),
                &mut body,
            )
            .map_err(|_| CursorError::Rejected)?;
        let (expiry, position) = plain.split_at(EXPIRY_LEN);
        let mut expiry_bytes = [0u8; EXPIRY_LEN];
        expiry_bytes.copy_from_slice(expiry);
        if u64::from_be_bytes(expiry_bytes) <= now_unix {
            return Err(CursorError::Expired);
        }
        String::from_utf8(position.to_vec()).map_err(|_| CursorError::Rejected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(byte: u8) -> CursorKey {
        CursorKey::new(&[byte; 32]).unwrap()
    }

    fn scope() -> CursorScope {
        CursorScope::new("secrets", "sa:web")
            .with("prefix", Some("app/"))
            .with("include_deleted", None)
    }

    #[test]
    fn round_trips_and_hides_the_position() {
        let k = key(7);
        let cursor = k.seal(&scope(), "hr/payroll/key", 1000).unwrap();
        assert_eq!(k.open(&scope(), &cursor, 999).unwrap(), "hr/payroll/key");
        let raw = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"payrol"));
        assert_ne!(
            cursor,
            k.seal(&scope(), "hr/payroll/key", 1000).unwrap(),
            "a fresh nonce each time: equal positions do not look alike"
        );
    }

    #[test]
    fn another_caller_query_list_or_key_is_refused() {
        let k = key(7);
        let cursor = k.seal(&scope(), "a", 1000).unwrap();
        let others = [
            CursorScope::new("secrets", "sa:other")
                .with("prefix", Some("app/"))
                .with("include_deleted", None),
            CursorScope::new("secrets", "sa:web")
                .with("prefix", Some("hr/"))
                .with("include_deleted", None),
            CursorScope::new("secrets", "sa:web")
                .with("prefix", Some("app/"))
                .with("include_deleted", Some("")),
            CursorScope::new("policies", "sa:web")
                .with("prefix", Some("app/"))
                .with("include_deleted", None),
            // Length prefixes: moving bytes between parts changes the scope.
            CursorScope::new("secrets", "sa:we")
                .with("bprefix", Some("app/"))
                .with("include_deleted", None),
        ];
        for other in &others {
            assert_eq!(k.open(other, &cursor, 0), Err(CursorError::Rejected));
        }
        assert_eq!(
            key(8).open(&scope(), &cursor, 0),
            Err(CursorError::Rejected)
        );
    }

    #[test]
    fn every_flipped_byte_and_garbage_is_refused() {
        let k = key(7);
        let raw = URL_SAFE_NO_PAD
            .decode(k.seal(&scope(), "app/db", 1000).unwrap())
            .unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let text = URL_SAFE_NO_PAD.encode(&bad);
            assert_eq!(
                k.open(&scope(), &text, 0),
                Err(CursorError::Rejected),
                "byte {i}"
            );
        }
        for garbage in ["", "!!!", "AAAA", &"A".repeat(MAX_CURSOR_CHARS + 1)] {
            assert_eq!(k.open(&scope(), garbage, 0), Err(CursorError::Rejected));
        }
        let truncated = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        assert_eq!(k.open(&scope(), &truncated, 0), Err(CursorError::Rejected));
    }

    #[test]
    fn expired_cursors_are_refused() {
        let k = key(7);
        let cursor = k.seal(&scope(), "a", 1000).unwrap();
        assert_eq!(k.open(&scope(), &cursor, 1000), Err(CursorError::Expired));
    }
}
