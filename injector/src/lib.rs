//! `scaivault-injector`: the mutating admission webhook that adds the ScaiVault agent to
//! pods that opt in. [`mutate::mutate`] is the whole decision, a pure function; the
//! HTTP handler ([`http`]) only converts AdmissionReviews; [`tls`] serves a certificate
//! that rotates without a restart and [`ca_bundle`] keeps the webhook configuration
//! trusting it.

pub mod ca_bundle;
pub mod config;
pub mod http;
pub mod mutate;
pub mod run;
pub mod tls;
