//! The ScaiVault API server: storage, barrier, tokens, secrets, and their HTTP surface.

pub mod audit;
pub mod auth;
pub mod authz;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
pub mod follower;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod store;
pub mod vault;
pub mod webhooks;

pub use server::run;
