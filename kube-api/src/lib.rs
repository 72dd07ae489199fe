//! The Kubernetes vocabulary of ScaiVault, without controllers or a client: the custom
//! resource types ([`crd`]), the template renderer ([`render`]) shared by the operator
//! and the agent, the pod annotations the injector reads ([`annotations`]), the
//! [`agent::AgentConfig`] the injector hands to the agent it adds to a pod, and how the
//! agent makes a file's content from a secret ([`files`]).
//!
//! It stays lean on purpose (kube's derive macros and kube-core only): the agent runs in
//! every injected pod and depends on it.

pub mod agent;
pub mod annotations;
pub mod crd;
pub mod files;
pub mod quantity;
pub mod render;
