//! `/v1/webhooks/...`: endpoints that receive events, and their deliveries.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use scaivault_api::ErrorBody;
use scaivault_api::webhooks::{
    CreateWebhookRequest, DEFAULT_DELIVERIES_LIMIT, DeliveriesResponse, Delivery, DeliveryStatus,
    MAX_DELIVERIES_LIMIT, UpdateWebhookRequest, Webhook, WebhookTestResponse, WebhooksResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::SharedState;
use super::authorize::Authorized;
use super::extract::{ApiJson, ApiQuery};
use super::operations::{self as ops, Routes};
use crate::error::{Error, Result};

pub fn routes(routes: Routes) -> Routes {
    routes
        .serve(&[&ops::CREATE_WEBHOOK], create_webhook)
        .serve(&[&ops::LIST_WEBHOOKS], list_webhooks)
        .serve(&[&ops::GET_WEBHOOK], get_webhook)
        .serve(&[&ops::UPDATE_WEBHOOK], update_webhook)
        .serve(&[&ops::DELETE_WEBHOOK], delete_webhook)
        .serve(&[&ops::TEST_WEBHOOK], test_webhook)
        .serve(&[&ops::LIST_DELIVERIES], list_deliveries)
        .serve(&[&ops::RETRY_DELIVERY], retry_delivery)
}

/// Create a webhook. It receives the chosen events from now on, about paths its creator
/// may list, signed with `secret` (which is never returned).
#[utoipa::path(post, path = ops::CREATE_WEBHOOK.path, tag = "webhooks", request_body = CreateWebhookRequest,
    responses((status = 201, body = Webhook),
        (status = 400, description = "invalid_request (url refused, secret, events), invalid_path", body = ErrorBody),
        (status = 409, description = "conflict: the name is taken, or 100 webhooks exist", body = ErrorBody)))]
pub async fn create_webhook(
    State(state): State<SharedState>,
    auth: Authorized,
    ApiJson(request): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<Webhook>)> {
    let webhook = state.webhooks.create(&auth.caller, request).await?;
    tracing::info!(webhook = %webhook.id, name = %webhook.name, "webhook created");
    Ok((StatusCode::CREATED, Json(webhook)))
}

/// Every webhook, by name (at most 100 exist).
#[utoipa::path(get, path = ops::LIST_WEBHOOKS.path, tag = "webhooks",
    responses((status = 200, body = WebhooksResponse)))]
pub async fn list_webhooks(
    State(state): State<SharedState>,
    _auth: Authorized,
) -> Result<Json<WebhooksResponse>> {
    Ok(Json(WebhooksResponse {
        webhooks: state.webhooks.list().await?,
    }))
}

#[utoipa::path(get, path = ops::GET_WEBHOOK.path, tag = "webhooks", params(("id" = String, Path, description = "wh_...")),
    responses((status = 200, body = Webhook), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<Webhook>> {
    Ok(Json(state.webhooks.get(&id).await?))
}

/// Change a webhook; fields left out stay. A new `secret` signs from now on and the
/// previous one keeps signing too for 24 h; `enabled: true` re-enables a disabled one.
/// Changing `url`, `events` or `filters` makes the caller the identity whose access
/// bounds what the webhook receives (`created_by`).
#[utoipa::path(patch, path = ops::UPDATE_WEBHOOK.path, tag = "webhooks", params(("id" = String, Path, description = "wh_...")),
    request_body = UpdateWebhookRequest,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "conflict: the name is taken", body = ErrorBody)))]
pub async fn update_webhook(
    State(state): State<SharedState>,
    auth: Authorized,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<Webhook>> {
    Ok(Json(
        state.webhooks.update(&auth.caller, &id, request).await?,
    ))
}

/// Delete a webhook and its delivery history; what was not delivered is not sent.
#[utoipa::path(delete, path = ops::DELETE_WEBHOOK.path, tag = "webhooks", params(("id" = String, Path, description = "wh_...")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.webhooks.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send one signed `webhook.test` event now and report what the endpoint answered.
#[utoipa::path(post, path = ops::TEST_WEBHOOK.path, tag = "webhooks", params(("id" = String, Path, description = "wh_...")),
    responses((status = 200, body = WebhookTestResponse), (status = 404, body = ErrorBody)))]
pub async fn test_webhook(
    State(state): State<SharedState>,
    auth: Authorized,
    Path(id): Path<String>,
) -> Result<Json<WebhookTestResponse>> {
    Ok(Json(state.webhooks.test(&id, &auth.caller).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state.
    status: Option<DeliveryStatus>,
    /// Only deliveries of events before this `seq` (`next_before` of the previous page).
    #[param(minimum = 0)]
    before: Option<u64>,
    /// Page size, 1..=1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A webhook's deliveries, newest first, each with its attempts.
#[utoipa::path(get, path = ops::LIST_DELIVERIES.path, tag = "webhooks", params(("id" = String, Path, description = "wh_..."), DeliveriesQuery),
    responses((status = 200, body = DeliveriesResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveriesResponse>> {
    let limit = q.limit.unwrap_or(DEFAULT_DELIVERIES_LIMIT);
    if limit == 0 || limit > MAX_DELIVERIES_LIMIT {
        return Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_DELIVERIES_LIMIT}"
        )));
    }
    if q.before.is_some_and(|b| i64::try_from(b).is_err()) {
        return Err(Error::invalid("before is at most 9223372036854775807"));
    }
    Ok(Json(
        state
            .webhooks
            .deliveries(&id, q.status, q.before, limit)
            .await?,
    ))
}

/// Attempt a pending or failed delivery again now (a failed one gets a fresh schedule).
/// Deliveries of one webhook go out in event order.
#[utoipa::path(post, path = ops::RETRY_DELIVERY.path, tag = "webhooks",
    params(("id" = String, Path, description = "wh_..."), ("delivery_id" = String, Path, description = "msg_...")),
    responses((status = 200, body = Delivery), (status = 404, body = ErrorBody),
        (status = 409, description = "conflict: the delivery succeeded", body = ErrorBody)))]
pub async fn retry_delivery(
    State(state): State<SharedState>,
    _auth: Authorized,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<Delivery>> {
    Ok(Json(state.webhooks.retry(&id, &delivery).await?))
}
