//! Typed async client for the ScaiVault API.
//!
//! ```no_run
//! # async fn example() -> scaivault_client::Result<()> {
//! let client = scaivault_client::Client::from_env()?;
//! let secret = client.read("environments/production/billing/database").await?;
//! let url = secret.data.get("url");
//! # Ok(())
//! # }
//! ```
//!
//! Requests and responses are the wire types of [`scaivault_api`], re-exported as [`api`].
//! Secret paths are checked against the path grammar before anything is sent. Answers
//! `429` and `503`, and lost answers, are retried as [`RetryPolicy`] describes; every
//! mutation carries an `Idempotency-Key`, so a retried one is applied once.

mod audit;
mod auth;
mod builder;
mod client;
mod error;
mod events;
mod paging;
mod policies;
mod retry;
mod rotation;
mod secrets;
mod sys;
mod webhooks;

pub use audit::{
    AuditLogOptions, AuditPages, AuditRange, EXPORT_COMPLETED, EXPORT_FAILED, EXPORT_RUNNING,
    MAX_AUDIT_PAGE,
};
pub use builder::{ClientBuilder, DEFAULT_ADDRESS, ENV_ADDRESS, ENV_CA_CERT, ENV_TOKEN};
pub use client::Client;
pub use error::{Error, Result};
pub use events::{EventPages, EventStream, EventsOptions, StreamItem, StreamOptions};
pub use paging::PageOptions;
pub use retry::RetryPolicy;
pub use rotation::DueOptions;
pub use scaivault_api as api;
pub use secrecy::SecretString;
pub use secrets::ListOptions;
pub use webhooks::{
    DeliveriesOptions, DeliveryPages, GENERATED_SECRET_BYTES, NewWebhook, VerifyError,
    WEBHOOK_TOLERANCE, WebhookHeaders, WebhookUpdate, generate_webhook_secret,
    verify_webhook_signature,
};
