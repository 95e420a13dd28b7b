//! `GET /v1/usage`: what the caller's tenant spent through the OpenAI-compatible gateway —
//! calls, tokens and cost per UTC day, API key and served `provider/model`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_store::{UsageQuery, UsageTotals};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ApiResult, ErrorEnvelope};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Only days on or after this one, `YYYY-MM-DD` (UTC).
    since: Option<String>,
    /// Only this API key's (its public prefix, `kk_…`).
    key: Option<String>,
}

/// The tenant's gateway usage.
#[derive(Serialize, ToSchema)]
pub struct UsageList {
    pub object: &'static str,
    /// By day (oldest first), then key and model.
    pub data: Vec<UsageRow>,
}

/// Calls of one API key to one model on one day.
#[derive(Serialize, ToSchema)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The API key's public prefix; empty for calls made with auth off.
    pub key: String,
    /// The `provider/model` that served the calls.
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// In US dollars, from the model catalog's prices (0 for models it does not list).
    pub cost_usd: f64,
}

impl From<UsageTotals> for UsageRow {
    fn from(u: UsageTotals) -> Self {
        UsageRow {
            day: u.day,
            key: u.key_prefix,
            model: u.model,
            requests: u.requests,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cost_usd: u.cost_usd,
        }
    }
}

/// Gateway usage of the caller's tenant, per day, API key and model.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, body = UsageList), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> ApiResult<Json<UsageList>> {
    if let Some(since) = &params.since
        && !is_day(since)
    {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("since={since:?} is not a day: write it as YYYY-MM-DD, e.g. 2026-01-31"),
        ));
    }
    // Calls counted since the last periodic flush are stored first, so the answer includes
    // every call made before it was asked for.
    state.metrics.usage.flush(&state.engine).await;
    let rows = state
        .engine
        .store()
        .usage(
            &caller.tenant,
            &UsageQuery {
                since_day: params.since,
                key_prefix: params.key,
            },
        )
        .await?;
    Ok(Json(UsageList {
        object: "list",
        data: rows.into_iter().map(UsageRow::from).collect(),
    }))
}

/// `YYYY-MM-DD` with a plausible month and day.
fn is_day(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    let month = text[5..7].parse::<u8>().ok();
    let day = text[8..10].parse::<u8>().ok();
    matches!(month, Some(1..=12)) && matches!(day, Some(1..=31))
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_checked() {
        for good in ["2026-01-31", "1999-12-01"] {
            assert!(super::is_day(good), "{good}");
        }
        for bad in [
            "2026-1-31",
            "2026-13-01",
            "2026-01-00",
            "20260131",
            "2026-01-3x",
            "",
        ] {
            assert!(!super::is_day(bad), "{bad}");
        }
    }
}
