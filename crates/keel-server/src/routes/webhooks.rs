//! Webhooks: `POST`/`GET /v1/webhooks`, `DELETE /v1/webhooks/{id}` and
//! `GET /v1/webhooks/{id}/deliveries` for a tenant's definitions and what was sent; and
//! `POST /v1/hooks/{token}`, an inbound webhook's URL, which needs no API key (its unguessable
//! token is the credential, its signature the proof) and starts a run with the body as input.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keel_core::{SessionId, WebhookId};
use keel_engine::webhooks::{
    CreatedWebhook, NewWebhook, TriggerError, signature::SIGNATURE_HEADER,
};
use keel_store::{DeliveryRecord, WebhookDirection, WebhookEvent, WebhookRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;

/// The body of `POST /v1/webhooks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `inbound` (a URL that starts runs) or `outbound` (keel posts run events to `url`);
    /// by default outbound when `url` is given, else inbound.
    pub direction: Option<String>,
    /// Inbound: the session its runs go to. Outbound: only this session's runs.
    pub session_id: Option<String>,
    /// Inbound: a new session of this agent per call. Outbound: only its sessions' runs.
    pub agent: Option<String>,
    /// Outbound: where keel posts events (http or https; a private address needs
    /// `allow_private`).
    pub url: Option<String>,
    /// Outbound: any of `run.completed`, `run.failed`, `run.waiting`; all when left out.
    pub events: Option<Vec<String>>,
    /// Inbound: calls must carry a valid `Keel-Signature` (default `true`).
    pub signed: Option<bool>,
    /// Outbound: let `url` be a private, loopback or link-local address.
    pub allow_private: Option<bool>,
}

impl CreateWebhook {
    /// What the engine is asked to make; a 400 naming a direction or event keel does not know.
    pub fn into_new(self) -> Result<NewWebhook, ApiError> {
        let direction = match self.direction.as_deref() {
            None => None,
            Some(text) => Some(WebhookDirection::parse(text).ok_or_else(|| {
                ApiError::invalid("invalid_request", "`direction` is `inbound` or `outbound`")
                    .with_param("direction")
            })?),
        };
        let events = self
            .events
            .unwrap_or_default()
            .iter()
            .map(|text| {
                WebhookEvent::parse(text).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_request",
                        format!(
                            "{text:?} is not a webhook event: use run.completed, run.failed or run.waiting"
                        ),
                    )
                    .with_param("events")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session = self
            .session_id
            .as_deref()
            .map(|id| parse_id::<SessionId>("session", id))
            .transpose()?;
        Ok(NewWebhook {
            direction,
            session,
            agent: self.agent,
            url: self.url,
            events,
            signed: self.signed,
            allow_private: self.allow_private.unwrap_or(false),
        })
    }
}

/// A webhook, without its secrets.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub session_id: Option<String>,
    pub agent: Option<String>,
    pub url: Option<String>,
    pub events: Vec<String>,
    pub signed: bool,
    pub allow_private: bool,
    pub created_at: String,
}

impl From<WebhookRecord> for WebhookView {
    fn from(w: WebhookRecord) -> Self {
        WebhookView {
            id: w.id.to_string(),
            direction: w.direction.as_str().into(),
            session_id: w.session.map(|s| s.to_string()),
            agent: w.agent,
            url: w.url,
            events: w.events.iter().map(|e| e.as_str().to_string()).collect(),
            signed: w.signed,
            allow_private: w.allow_private,
            created_at: w.created_at.to_string(),
        }
    }
}

/// A webhook just made, with its secrets: shown this once, never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhookView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The HMAC-SHA256 key of its `Keel-Signature` headers (`docs/webhooks.md`).
    pub secret: String,
    /// Inbound: the path callers post to, `/v1/hooks/<token>`; the token is the credential.
    pub trigger_path: Option<String>,
}

impl From<CreatedWebhook> for CreatedWebhookView {
    fn from(created: CreatedWebhook) -> Self {
        CreatedWebhookView {
            secret: created.webhook.secret.clone(),
            trigger_path: created.token.map(|token| format!("/v1/hooks/{token}")),
            webhook: created.webhook.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub data: Vec<WebhookView>,
}

/// One event sent (or being sent) to an outbound webhook.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// `evt_…`, sent as `Keel-Webhook-Id`: what a receiver deduplicates by.
    pub id: String,
    pub event: String,
    /// The JSON body sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: String,
    pub attempts: u32,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub failed_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        let status = match (d.delivered_at, d.failed_at) {
            (Some(_), _) => "delivered",
            (None, Some(_)) => "failed",
            (None, None) => "pending",
        };
        DeliveryView {
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
            id: d.id,
            event: d.event.as_str().into(),
            created_at: d.created_at.to_string(),
            attempts: d.attempts,
            status: status.into(),
            next_attempt_at: d.next_attempt_at.map(|t| t.to_string()),
            delivered_at: d.delivered_at.map(|t| t.to_string()),
            failed_at: d.failed_at.map(|t| t.to_string()),
            last_error: d.last_error,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// What an inbound call started.
#[derive(Serialize, ToSchema)]
pub struct TriggeredView {
    pub webhook_id: String,
    pub session_id: String,
    pub run_id: String,
}

/// Make a webhook: inbound (a URL that starts a run on a session, or on a new session of an
/// agent, with what is posted to it) or outbound (keel posts `run.completed`, `run.failed`
/// and `run.waiting` events to a URL, signed, retried until delivered). The secret, and an
/// inbound webhook's path, are in this answer only.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhookView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope, description = "no such session or agent"),
        (status = 429, body = ErrorEnvelope, description = "the tenant holds the most webhooks it may")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhookView>)> {
    let created = state
        .engine
        .create_webhook(&caller.tenant, body.into_new()?)
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// The tenant's webhooks, by id (without their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<WebhookList>> {
    let webhooks = state.engine.list_webhooks(&caller.tenant).await?;
    Ok(Json(WebhookList {
        data: webhooks.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a webhook, with the deliveries it still had to make.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "the webhook id (`whk_…`)")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let id: WebhookId = parse_id("webhook", &id)?;
    state.engine.delete_webhook(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An outbound webhook's deliveries, newest first: pending (with the last error and the next
/// attempt), delivered, or failed (given up after many attempts).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "the webhook id (`whk_…`)"), DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let id: WebhookId = parse_id("webhook", &id)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let deliveries = state
        .engine
        .webhook_deliveries(&caller.tenant, &id, limit)
        .await?;
    Ok(Json(DeliveryList {
        data: deliveries.into_iter().map(Into::into).collect(),
    }))
}

/// An inbound webhook's URL: starts a run with the body as its input (on the webhook's
/// session, or on a new session of its agent). No API key: the path's token is the
/// credential, and a webhook that requires it checks `Keel-Signature`
/// (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, within 5 minutes, each signature
/// once). An unknown token is 404, a bad, stale or replayed signature 401: nothing starts.
#[utoipa::path(post, path = "/v1/hooks/{token}", tag = "webhooks", security(()),
    params(("token" = String, Path, description = "the inbound webhook's token, as its creation answered"),
        ("Keel-Signature" = Option<String>, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    request_body(content = String, description = "any UTF-8 payload (JSON, say): the run's input", content_type = "application/json"),
    responses((status = 202, body = TriggeredView), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn trigger(
    State(state): State<Arc<AppState>>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TriggeredView>)> {
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                format!("the {SIGNATURE_HEADER} header is not text"),
            )
        })?),
    };
    let triggered = state
        .engine
        .trigger_webhook(&token, signature, &body)
        .await
        .map_err(|e| match e {
            TriggerError::UnknownToken => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "there is no webhook at this URL",
            ),
            TriggerError::Unauthorized(message) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", message)
            }
            TriggerError::Engine(e) => e.into(),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TriggeredView {
            webhook_id: triggered.webhook.to_string(),
            session_id: triggered.session.to_string(),
            run_id: triggered.run.to_string(),
        }),
    ))
}
