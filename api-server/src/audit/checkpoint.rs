//! Signed checkpoints: every N records or M seconds the server signs the chain's tail
//! (seq, hash) with its Ed25519 key and stores it in the *data* store, not in `audit.db`.
//! Whoever can rewrite `audit.db` then also has to forge a signature they have no key for
//! to hide a truncated tail, and the checkpoint fixes where the keyed chain begins.

use std::sync::Arc;
use std::time::Duration;

use scaivault_api::audit::AuditCheckpoint;
use time::OffsetDateTime;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::log::Tail;
use super::record::GENESIS_HASH;
use crate::crypto::signing::{CheckpointSigner, verify_hex};
use crate::store::{AuditStore, Store, StoreError};

/// Key of the newest checkpoint in the data store's `meta` table.
const META_AUDIT_CHECKPOINT: &str = "audit_checkpoint";

/// Rounds of read, merge and compare-and-set before a checkpoint write gives up (each
/// lost round means another replica wrote one meanwhile).
const WRITE_ATTEMPTS: usize = 5;

/// How often checkpoints are written.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// After this many new records...
    pub records: u64,
    /// ...or this long after the first record the newest checkpoint does not cover.
    pub interval: Duration,
}

pub struct Checkpoints {
    store: Arc<dyn Store>,
    signer: Arc<CheckpointSigner>,
    state: Mutex<State>,
}

struct State {
    /// The newest durable record the writer reported.
    tail: Tail,
    /// The newest checkpoint written (its seq is what the cadence counts from); `None`
    /// when the stored one is missing or forged: then nothing is signed, so the server
    /// never vouches for a log it found tampered with, and verify keeps reporting it.
    signed: Option<AuditCheckpoint>,
}

/// Why a stored checkpoint cannot be trusted.
pub fn checkpoint_problem(checkpoint: &AuditCheckpoint, public_key: &str) -> Option<String> {
    if checkpoint.public_key != public_key {
        return Some("the checkpoint names a key other than this vault's signing key".into());
    }
    if !verify_hex(
        public_key,
        &checkpoint.signed_bytes(),
        &checkpoint.signature,
    ) {
        return Some("the checkpoint's signature does not verify (forged or edited)".into());
    }
    None
}

impl Checkpoints {
    /// Loads the newest checkpoint, or writes the first one over the stored `tail`: for an
    /// empty log the keyed chain starts at record 1; for a log from before keyed chaining
    /// (`signer_is_new`: this start created the signing key) right after its tail.
    pub async fn open(
        store: Arc<dyn Store>,
        signer: Arc<CheckpointSigner>,
        audit: &dyn AuditStore,
        signer_is_new: bool,
        tail: &Tail,
    ) -> crate::store::Result<Self> {
        let public_key = signer.public_key_hex();
        let (signed, first) = match load(store.as_ref()).await? {
            Some(checkpoint) => match checkpoint_problem(&checkpoint, &public_key).or(tail_problem(
                audit,
                &checkpoint,
                tail,
            )
            .await?)
            {
                None => (Some(checkpoint), false),
                Some(problem) => {
                    tracing::error!(%problem, "the stored audit checkpoint is not valid; no checkpoint will be signed over this log");
                    (None, false)
                }
            },
            None if tail.0 == 0 || signer_is_new => {
                if tail.0 > 0 {
                    tracing::warn!(
                        legacy_records = tail.0,
                        "the audit log has records from before keyed chaining; verify reports them as unkeyed"
                    );
                }
                let (purged_seq, purged_hash) = audit
                    .checkpoint()
                    .await?
                    .unwrap_or((0, GENESIS_HASH.to_owned()));
                let seed = AuditCheckpoint {
                    seq: 0,
                    hash: String::new(),
                    keyed_from: tail.0 + 1,
                    purged_seq,
                    purged_hash,
                    created_at: OffsetDateTime::UNIX_EPOCH,
                    public_key: String::new(),
                    signature: String::new(),
                };
                (Some(seed), true)
            }
            None => {
                tracing::error!(
                    "the signed audit checkpoint is missing from the data store although its key exists; no checkpoint will be signed over this log"
                );
                (None, false)
            }
        };
        let checkpoints = Checkpoints {
            store,
            signer,
            state: Mutex::new(State {
                tail: tail.clone(),
                signed,
            }),
        };
        if first {
            checkpoints.write(None).await?;
        }
        Ok(checkpoints)
    }

    pub fn public_key(&self) -> String {
        self.signer.public_key_hex()
    }

    /// The newest checkpoint as stored now (`verify` reads it afresh, never from memory).
    pub async fn latest(&self) -> crate::store::Result<Option<AuditCheckpoint>> {
        load(self.store.as_ref()).await
    }

    /// Signs the newest known tail (with a new retention point, if given) and stores it;
    /// `None` when checkpoints are suspended over a tampered log.
    ///
    /// Replicas share the checkpoint: each signs the point of the one chain its own writer
    /// last reached, and retention (the job runner's) moves the purge point. A write
    /// therefore starts from the stored checkpoint, keeps the later chain point and the
    /// later purge point of the two, and replaces it only if it is still what was read: a
    /// replica never moves the checkpoint back, nor forgets a purge another recorded.
    pub async fn write(
        &self,
        purged: Option<Tail>,
    ) -> crate::store::Result<Option<AuditCheckpoint>> {
        let mut state = self.state.lock().await;
        let Some(signed) = state.signed.clone() else {
            return Ok(None);
        };
        let public_key = self.signer.public_key_hex();
        for _ in 0..WRITE_ATTEMPTS {
            let read = self.store.get_meta(META_AUDIT_CHECKPOINT).await?;
            let stored = read
                .as_deref()
                .map(decode)
                .filter(|c| checkpoint_problem(c, &public_key).is_none());
            let mut point = state.tail.clone();
            let mut purge = purged
                .clone()
                .unwrap_or((signed.purged_seq, signed.purged_hash.clone()));
            if let Some(stored) = &stored {
                if stored.seq > point.0 {
                    point = (stored.seq, stored.hash.clone());
                }
                if stored.purged_seq > purge.0 {
                    purge = (stored.purged_seq, stored.purged_hash.clone());
                }
                if stored.seq == point.0 && stored.purged_seq == purge.0 {
                    state.signed = Some(stored.clone());
                    return Ok(Some(stored.clone()));
                }
            }
            let checkpoint = self.sign(point, purge, signed.keyed_from);
            let body = serde_json::to_vec(&checkpoint)
                .map_err(|e| StoreError::Unavailable(format!("encoding the checkpoint: {e}")))?;
            let replaced = self
                .store
                .apply(|u| u.keyring().replace_meta(META_AUDIT_CHECKPOINT, read, body))
                .await?;
            if replaced {
                state.signed = Some(checkpoint.clone());
                return Ok(Some(checkpoint));
            }
        }
        Err(StoreError::Unavailable(
            "the audit checkpoint kept changing under this write; retrying at the next one".into(),
        ))
    }

    fn sign(
        &self,
        (seq, hash): Tail,
        (purged_seq, purged_hash): Tail,
        keyed_from: u64,
    ) -> AuditCheckpoint {
        let now = OffsetDateTime::now_utc();
        let mut checkpoint = AuditCheckpoint {
            seq,
            hash,
            keyed_from,
            purged_seq,
            purged_hash,
            // Whole milliseconds: what the signed bytes hold.
            created_at: now
                .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
                .unwrap_or(now),
            public_key: self.signer.public_key_hex(),
            signature: String::new(),
        };
        checkpoint.signature = self.signer.sign_hex(&checkpoint.signed_bytes());
        checkpoint
    }

    /// Records the writer's new tail; true when a checkpoint is due by count.
    async fn note_tail(&self, tail: Tail, every: u64) -> bool {
        let mut state = self.state.lock().await;
        state.tail = tail;
        let signed_seq = state.signed.as_ref().map_or(u64::MAX, |s| s.seq);
        state.tail.0.saturating_sub(signed_seq) >= every
    }

    async fn behind(&self) -> bool {
        let state = self.state.lock().await;
        state.signed.as_ref().is_some_and(|s| s.seq < state.tail.0)
    }

    /// Follows the writer's tail and signs it by `cadence`, and once more on shutdown.
    pub fn spawn(
        self: Arc<Self>,
        mut tail: watch::Receiver<Tail>,
        cadence: Cadence,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cadence.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let (due, last) = tokio::select! {
                    changed = tail.changed() => match changed {
                        Ok(()) => {
                            let newest = tail.borrow_and_update().clone();
                            (self.note_tail(newest, cadence.records.max(1)).await, false)
                        }
                        // The writer is gone: nothing more will come.
                        Err(_) => (self.behind().await, true),
                    },
                    _ = tick.tick() => (self.behind().await, false),
                    _ = shutdown.changed() => (self.behind().await, true),
                };
                if due && let Err(e) = self.write(None).await {
                    tracing::warn!(error = %e, "writing the audit checkpoint failed; retrying at the next one");
                }
                if last {
                    return;
                }
            }
        })
    }
}

/// Whether the stored log still ends in what the checkpoint signed: a shorter log, or a
/// different record at the signed seq, means records were removed or rewritten while the
/// server was down (or lost: `--audit-sync normal` and a power cut), and signing over the
/// new tail would vouch for that.
async fn tail_problem(
    audit: &dyn AuditStore,
    checkpoint: &AuditCheckpoint,
    tail: &Tail,
) -> crate::store::Result<Option<String>> {
    if checkpoint.seq == 0 || checkpoint.seq <= checkpoint.purged_seq {
        return Ok(None);
    }
    if tail.0 < checkpoint.seq {
        return Ok(Some(format!(
            "the log ends at record {} but the checkpoint covers {}",
            tail.0, checkpoint.seq
        )));
    }
    let signed = audit
        .record_before(checkpoint.seq + 1)
        .await?
        .filter(|r| r.seq == checkpoint.seq && r.hash == checkpoint.hash);
    Ok(signed
        .is_none()
        .then(|| format!("record {} differs from the checkpoint", checkpoint.seq)))
}

async fn load(store: &dyn Store) -> crate::store::Result<Option<AuditCheckpoint>> {
    Ok(store
        .get_meta(META_AUDIT_CHECKPOINT)
        .await?
        .as_deref()
        .map(decode))
}

/// An undecodable checkpoint is reported by verify like a forged one.
fn decode(body: &[u8]) -> AuditCheckpoint {
    serde_json::from_slice(body).unwrap_or_else(|_| AuditCheckpoint {
        seq: 0,
        hash: String::new(),
        keyed_from: 1,
        purged_seq: 0,
        purged_hash: GENESIS_HASH.to_owned(),
        created_at: OffsetDateTime::UNIX_EPOCH,
        public_key: String::new(),
        signature: "undecodable".into(),
    })
}

/// Removes the records older than `cutoff`. The new anchor is signed first: a crash
/// between the two leaves records the checkpoint already counts as removed (verify skips
/// them), never a gap the checkpoint does not explain. Over a log whose checkpoint was
/// found tampered with, nothing is removed: the evidence stays.
pub async fn apply_retention(
    audit: &dyn AuditStore,
    checkpoints: &Checkpoints,
    cutoff: OffsetDateTime,
) -> crate::store::Result<u64> {
    let Some(point) = audit.purge_point(cutoff).await? else {
        return Ok(0);
    };
    if checkpoints.write(Some(point.clone())).await?.is_none() {
        tracing::warn!("audit retention skipped: the log's checkpoint is not valid");
        return Ok(0);
    }
    audit.purge_through(point.0, point.1).await
}
