//! One audit record, its canonical form and the hash chain.

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::hmac;
pub use scaivault_api::audit::{AuditPhase, AuditRecord};

use crate::crypto::token::hex;

/// The hash that precedes the first record of a chain (declared with the store, which
/// starts an empty log's chain from it).
pub use crate::store::audit::GENESIS_HASH;

/// The key of the chain: HMAC-SHA256 under a key derived from the barrier, which the audit
/// database never holds. No `Debug`: it is key material.
pub struct ChainKey(hmac::Key);

impl ChainKey {
    pub fn new(key_bytes: &[u8]) -> Self {
        ChainKey(hmac::Key::new(hmac::HMAC_SHA256, key_bytes))
    }
}

/// How a record's hash is computed: records written since keyed chaining use the key,
/// records from before it plain SHA-256 (only their verification uses `Unkeyed`).
#[derive(Clone, Copy)]
pub enum Chain<'a> {
    Keyed(&'a ChainKey),
    Unkeyed,
}

/// The chain's hash of a record.
pub trait Chained {
    fn compute_hash(&self, chain: Chain<'_>) -> String;
    fn seal(self, chain: Chain<'_>) -> Self;
}

impl Chained for AuditRecord {
    /// MAC (or, for legacy records, SHA-256) over the previous hash and the record's
    /// canonical JSON without `hash`.
    fn compute_hash(&self, chain: Chain<'_>) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        let body = serde_json::to_vec(&unhashed).unwrap_or_default();
        chain_hash(chain, &self.prev_hash, &body)
    }

    fn seal(mut self, chain: Chain<'_>) -> Self {
        self.hash = self.compute_hash(chain);
        self
    }
}

fn chain_hash(chain: Chain<'_>, prev_hash: &str, unhashed_json: &[u8]) -> String {
    match chain {
        Chain::Keyed(ChainKey(key)) => {
            let mut input = hmac::Context::with_key(key);
            input.update(prev_hash.as_bytes());
            input.update(b"\n");
            input.update(unhashed_json);
            hex(input.sign().as_ref())
        }
        Chain::Unkeyed => {
            let mut input = Context::new(&SHA256);
            input.update(prev_hash.as_bytes());
            input.update(b"\n");
            input.update(unhashed_json);
            hex(input.finish().as_ref())
        }
    }
}

/// Seals a record whose `prev_hash` is set and returns its stored body (the canonical JSON
/// with `hash`), serializing it once instead of twice: the JSON without `hash` ends in
/// `"hash":""}` (`hash` is the last field), so the body is that text with the hash put in.
pub fn seal_with_body(record: &mut AuditRecord, key: &ChainKey) -> String {
    const EMPTY_HASH_TAIL: &str = "\"\"}";
    record.hash.clear();
    let mut body = serde_json::to_string(&*record).unwrap_or_default();
    record.hash = chain_hash(Chain::Keyed(key), &record.prev_hash, body.as_bytes());
    if body.ends_with(EMPTY_HASH_TAIL) {
        body.truncate(body.len() - EMPTY_HASH_TAIL.len());
        body.push('"');
        body.push_str(&record.hash);
        body.push_str("\"}");
        body
    } else {
        serde_json::to_string(&*record).unwrap_or_default()
    }
}

/// Outcome of a request record, and of one whose response record never followed (the
/// server stopped between the two).
pub const UNKNOWN_OUTCOME: &str = "unknown";

/// Outcome class of an HTTP status.
pub fn outcome_of(status: u16) -> &'static str {
    match status {
        401 => "unauthenticated",
        403 => "denied",
        s if s < 400 => "success",
        _ => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn record(seq: u64, prev: &str) -> AuditRecord {
        AuditRecord {
            id: format!("aud_{seq}"),
            seq,
            timestamp: OffsetDateTime::UNIX_EPOCH,
            request_id: "req_1".into(),
            identity_id: Some("root".into()),
            identity_type: Some("root".into()),
            action: "secrets.read".into(),
            path: Some("a/b".into()),
            permission: Some("secrets:read".into()),
            outcome: "success".into(),
            status: 200,
            source_ip: Some("127.0.0.1".into()),
            user_agent: None,
            accessor_hmac: None,
            phase: None,
            request_seq: None,
            reason: None,
            prev_hash: prev.into(),
            hash: String::new(),
        }
        .seal(Chain::Keyed(&key()))
    }

    fn key() -> ChainKey {
        ChainKey::new(b"test chain key")
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let k = key();
        let keyed = Chain::Keyed(&k);
        let r = record(1, GENESIS_HASH);
        assert_eq!(r.hash, r.compute_hash(keyed));
        let mut edited = r.clone();
        edited.identity_id = Some("someone-else".into());
        assert_ne!(edited.compute_hash(keyed), r.hash);
        let mut edited = r.clone();
        edited.status = 403;
        assert_ne!(edited.compute_hash(keyed), r.hash);
        let mut edited = r.clone();
        edited.phase = Some(AuditPhase::Request);
        assert_ne!(edited.compute_hash(keyed), r.hash);
        let next = record(2, &r.hash);
        assert_ne!(
            next.hash,
            record(2, GENESIS_HASH).hash,
            "the chain binds the previous hash"
        );
    }

    #[test]
    fn the_chain_depends_on_its_key_and_old_records_keep_their_form() {
        let r = record(3, GENESIS_HASH);
        let other = ChainKey::new(b"another key");
        assert_ne!(r.compute_hash(Chain::Keyed(&other)), r.hash);
        assert_ne!(r.compute_hash(Chain::Unkeyed), r.hash);
        // A record without phase serializes exactly as records did before phases existed.
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(
            !json.contains("phase") && !json.contains("request_seq"),
            "{json}"
        );
        assert!(json.ends_with(&format!(
            "\"prev_hash\":\"{GENESIS_HASH}\",\"hash\":\"{}\"}}",
            r.hash
        )));
    }

    #[test]
    fn sealing_with_the_body_matches_the_two_step_form() {
        for (user_agent, prev) in [(None, GENESIS_HASH), (Some("a \"quoted\" agent\n"), "ab")] {
            let mut r = record(7, prev);
            r.user_agent = user_agent.map(str::to_owned);
            r.hash = "stale".into();
            let body = seal_with_body(&mut r, &key());
            assert_eq!(r.hash, r.compute_hash(Chain::Keyed(&key())));
            assert_eq!(Some(body), serde_json::to_string(&r).ok());
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome_of(200), "success");
        assert_eq!(outcome_of(401), "unauthenticated");
        assert_eq!(outcome_of(403), "denied");
        assert_eq!(outcome_of(404), "failure");
    }
}
