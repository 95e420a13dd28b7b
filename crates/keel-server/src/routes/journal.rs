//! `GET /v1/sessions/{id}/verify`: walks the session's tamper-evident journal (each event's
//! hash covers its predecessor's, `keel_store::chain`) and says whether it is intact, or the
//! first seq where the stored log was changed. A read: no engine call, the `StoreReader`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_core::SessionId;

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::ChainView;

/// Verify a session's hash chain: `intact`, or `first_bad_seq` and what is wrong there.
#[utoipa::path(get, path = "/v1/sessions/{id}/verify", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 200, body = ChainView), (status = 404, body = ErrorEnvelope)))]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ChainView>> {
    let id: SessionId = parse_id("session", &id)?;
    let reader = state.engine.store();
    if reader.get_session(&caller.tenant, &id).await?.is_none() {
        return Err(ApiError::not_found("session", id.as_str()));
    }
    Ok(Json(reader.verify_chain(&id).await?.into()))
}
