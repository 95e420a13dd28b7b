//! A conversation kept by OpenAI, as a file: the items `client.conversations.items.list(…)` of
//! the official SDK returns — a page object (`{"object": "list", "data": [...], …}`) or its
//! `data` array — read into the messages a keel session starts with. Items carry their own
//! fields (`id`, `status`); only what a message needs is read (`items::parse_input`).

use keel_core::Message;
use serde_json::Value;

use super::items;
use crate::error::ApiError;

/// The most items one file may hold.
pub const MAX_ITEMS: usize = 100_000;

/// The messages of an items file listed in `order` (`desc`, the SDK's default: newest first;
/// or `asc`), oldest first. System and developer messages are refused, as a conversation does
/// not keep them (a response's instructions do).
pub fn messages(body: &[u8], order: Option<&str>) -> Result<Vec<Message>, ApiError> {
    let bad = |message: String| ApiError::invalid("invalid_items", message);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("an openai-items file is JSON: {e}")))?;
    let mut list = match value {
        Value::Array(list) => list,
        Value::Object(mut page) if page.get("object") == Some(&Value::from("list")) => {
            match page.remove("data") {
                Some(Value::Array(list)) => list,
                _ => {
                    return Err(bad(
                        "the page object's `data` must be a list of items".into()
                    ));
                }
            }
        }
        _ => {
            return Err(bad(
                "an openai-items file is a list of conversation items, or the page object \
                 (`{\"object\": \"list\", \"data\": [...]}`) that lists them"
                    .into(),
            ));
        }
    };
    if list.len() > MAX_ITEMS {
        return Err(bad(format!(
            "the file holds {} items, over {MAX_ITEMS}",
            list.len()
        )));
    }
    match order.unwrap_or("desc") {
        "desc" => list.reverse(),
        "asc" => {}
        other => {
            return Err(bad(format!(
                "order {other:?} is not desc (newest first, the SDK's default) or asc"
            )));
        }
    }
    let parsed = items::parse_input(&Value::Array(list), "data")
        .map_err(|e| ApiError::invalid("invalid_items", e.message))?;
    if !parsed.instructions.is_empty() {
        return Err(bad(
            "system and developer messages are not kept in a conversation: leave them out of the file"
                .into(),
        ));
    }
    Ok(parsed.messages)
}
