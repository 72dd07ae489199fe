//! Typed async client for the ScaiVault API.
