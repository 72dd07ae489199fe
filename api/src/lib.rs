//! Wire types of the ScaiVault HTTP API, shared by the server and every client.
//!
//! Nothing here performs I/O: these are the shapes on the wire plus the pure rules
//! (path grammar, durations, limits) that both sides must agree on.

pub mod audit;
pub mod auth;
pub mod duration;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod nullable;
pub mod path;
pub mod pattern;
pub mod policy;
pub mod rotation;
pub mod secrets;
pub mod sys;
pub mod webhooks;
pub mod whole;

pub use error::{ApiError, ErrorBody, ErrorCode};

/// Timestamps are RFC 3339 in UTC on the wire.
pub type Timestamp = time::OffsetDateTime;
