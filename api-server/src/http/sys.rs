//! `/v1/sys/...`: the keyring.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use scaivault_api::ErrorBody;
use scaivault_api::sys::{KeyInfo, KeysResponse};

use super::SharedState;
use crate::auth::Caller;
use crate::authz::{Permission, resource};
use crate::error::Result;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/sys/keys", get(list_keys))
        .route("/v1/sys/keys/rotate", post(rotate_key))
}

/// Add a new data key for new writes; older versions stay readable with their keys.
#[utoipa::path(post, path = "/v1/sys/keys/rotate", tag = "sys",
    responses((status = 200, body = KeyInfo), (status = 403, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/keys"))))]
pub async fn rotate_key(
    State(state): State<SharedState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<KeyInfo>> {
    state.authorize(&caller, Permission::Admin, resource::KEYS)?;
    let (key_id, created_at) = state.vault.rotate_data_key().await?;
    Ok(Json(KeyInfo { key_id, created_at }))
}

/// The keyring: key ids and when they were created (never key material).
#[utoipa::path(get, path = "/v1/sys/keys", tag = "sys",
    responses((status = 200, body = KeysResponse), (status = 403, body = ErrorBody)),
    security(("bearer" = [])), extensions(("x-scope" = json!("secrets:admin on sys/keys"))))]
pub async fn list_keys(
    State(state): State<SharedState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<KeysResponse>> {
    state.authorize(&caller, Permission::Admin, resource::KEYS)?;
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
