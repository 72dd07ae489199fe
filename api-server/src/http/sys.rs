//! `/v1/sys/...`: the keyring.

use axum::Json;
use axum::extract::State;
use scaivault_api::sys::{KeyInfo, KeysResponse};

use super::SharedState;
use super::authorize::Authorized;
use super::operations::{self as ops, Routes};
use crate::error::Result;

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::LIST_KEYS], list_keys)
        .serve(&[&ops::ROTATE_KEY], rotate_key)
}

/// Add a new data key for new writes; older versions stay readable with their keys.
#[utoipa::path(post, path = ops::ROTATE_KEY.path, tag = "sys",
    responses((status = 200, body = KeyInfo)))]
pub async fn rotate_key(
    State(state): State<SharedState>,
    _auth: Authorized,
) -> Result<Json<KeyInfo>> {
    let (key_id, created_at) = state.vault.rotate_data_key().await?;
    Ok(Json(KeyInfo { key_id, created_at }))
}

/// The keyring: key ids and when they were created (never key material).
#[utoipa::path(get, path = ops::LIST_KEYS.path, tag = "sys",
    responses((status = 200, body = KeysResponse)))]
pub async fn list_keys(
    State(state): State<SharedState>,
    _auth: Authorized,
) -> Result<Json<KeysResponse>> {
    let keys = state.vault.store.list_keys().await?;
    Ok(Json(KeysResponse {
        active_key_id: state.vault.barrier.active_key_id(),
        keys: keys
            .into_iter()
            .map(|k| KeyInfo {
                key_id: k.key_id,
                created_at: k.created_at,
            })
            .collect(),
    }))
}
