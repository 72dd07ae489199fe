//! The audit log: every request leaves a record chained under a key the database does
//! not hold, durable before the response leaves (and, for a mutation, a request record
//! durable before the change); signed checkpoints anchor the chain; queries,
//! verification and export read it back.

pub mod checkpoint;
pub mod context;
pub mod export;
mod log;
pub mod record;
pub mod s3;
pub mod service;
pub mod system;

pub use log::{AuditWriter, BATCH_RECORDS, COMMIT_SECONDS, Tail, stored_tail, unsealed};
pub use service::AuditService;
