//! OpenAI's list pagination (`limit`, `order`, `after`) over items, shared by a response's
//! input items and a conversation's items.

use keel_core::SessionId;
use serde::Deserialize;
use serde_json::Value;

use super::items::{self, list_page};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub order: Option<String>,
    pub after: Option<String>,
}

/// One page of items by OpenAI's list parameters (`order` defaults to `desc`).
pub fn page(
    mut items: Vec<(items::ItemPos, Value)>,
    session: &SessionId,
    query: &ListQuery,
) -> Result<Value, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_limit",
            "limit must be between 1 and 100",
        ));
    }
    let descending = match query.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_order",
                format!("order {other:?} must be asc or desc"),
            ));
        }
    };
    if descending {
        items.reverse();
    }
    if let Some(after) = &query.after {
        let pos = items::parse_item_id(session, after).ok_or_else(|| {
            ApiError::invalid(
                "invalid_after",
                format!("after {after:?} is not an item of this list"),
            )
        })?;
        items.retain(|(p, _)| if descending { *p < pos } else { *p > pos });
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(list_page(
        items.into_iter().map(|(_, item)| item).collect(),
        has_more,
    ))
}
