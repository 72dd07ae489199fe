//! The audit log: every request leaves a hash-chained record that is durable before the
//! response leaves; queries, verification and export read it back.

pub mod context;
pub mod export;
mod log;
pub mod record;
pub mod s3;
pub mod service;

pub use log::{AuditWriter, BATCH_RECORDS, COMMIT_SECONDS, unsealed};
pub use service::AuditService;
