//! `/v1/admin`: tenants and API keys, for admin-scoped keys only.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::TenantId;
use keel_store::KeyScope;

use crate::auth::{Caller, generate_key};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::{CreateKey, CreateTenant, KeyView, TenantView, UnreadableList, UnreadableView};

/// Create a tenant.
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn create_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    caller.require_admin()?;
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid(
            "missing_name",
            "a tenant needs a non-empty `name`",
        ));
    }
    let tenant = state.engine.create_tenant(&body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantView {
            id: tenant.id.to_string(),
            name: tenant.name,
            created_at: tenant.created_at.to_string(),
        }),
    ))
}

/// Create an API key for a tenant. The whole key is in this answer only.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/keys", tag = "admin", request_body = CreateKey,
    params(("id" = String, Path, description = "the tenant id (`ten_…`)")),
    responses((status = 201, body = KeyView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    caller.require_admin()?;
    let tenant: TenantId = parse_id("tenant", &id)?;
    let scope = match body.scope.as_deref() {
        None => KeyScope::Tenant,
        Some(s) => KeyScope::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "invalid_scope",
                format!("scope must be `tenant` or `admin`, got {s:?}"),
            )
        })?,
    };
    let new = generate_key(&tenant, scope);
    state.engine.add_api_key(&new.record).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyView {
            prefix: new.record.prefix,
            tenant_id: tenant.to_string(),
            scope: scope.as_str().into(),
            created_at: new.record.created_at.to_string(),
            revoked: false,
            key: Some(new.key),
        }),
    ))
}

/// Revoke an API key: it fails from its next request on.
#[utoipa::path(post, path = "/v1/admin/keys/{prefix}/revoke", tag = "admin",
    params(("prefix" = String, Path, description = "the key's public prefix (`kk_…`, before the dot)")),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(prefix): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    state.engine.revoke_api_key(&prefix).await?;
    state.keys.forget(&prefix);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct UnreadableQuery {
    /// The most records to list (default 1000).
    pub limit: Option<usize>,
}

/// List stored records that cannot be read, of every tenant: runs failed for it, sessions
/// whose log cannot be loaded, rows skipped by listings. A full scan of the store.
#[utoipa::path(get, path = "/v1/admin/unreadable", tag = "admin", params(UnreadableQuery),
    responses((status = 200, body = UnreadableList), (status = 403, body = ErrorEnvelope)))]
pub async fn unreadable(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<UnreadableQuery>,
) -> ApiResult<Json<UnreadableList>> {
    caller.require_admin()?;
    let records = state
        .engine
        .unreadable_records(query.limit.unwrap_or(1000))
        .await?;
    Ok(Json(UnreadableList {
        data: records
            .into_iter()
            .map(|r| UnreadableView {
                kind: r.kind,
                id: r.id,
                tenant_id: r.tenant,
                reason: r.reason,
            })
            .collect(),
    }))
}
