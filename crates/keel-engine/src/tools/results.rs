//! `tool_result_read`: the rest of a long tool result. The model's context holds only the start
//! of a result longer than `limits.tool_result_context_bytes` (`live::result_preview`); the
//! whole result is stored once, in its `tool_returned` event, and this reads on from there.

use keel_core::{EventBody, SessionId};
use keel_store::Store;
use serde_json::Value;

use super::ToolOutcome;

pub(super) const READ: &str = "tool_result_read";

/// The most bytes one read returns.
pub(super) const MAX_READ: u64 = 16_384;

pub(super) async fn read(store: &dyn Store, session: &SessionId, arguments: &Value) -> ToolOutcome {
    let Some(seq) = arguments
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
    else {
        return ToolOutcome::error(
            "tool_result_read needs \"seq\": the event number the cut result names",
        );
    };
    let offset = arguments.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let length = arguments
        .get("length")
        .and_then(Value::as_u64)
        .unwrap_or(MAX_READ)
        .clamp(1, MAX_READ);
    let event = match store.read_events(session, seq - 1, 1).await {
        Ok(events) => events.into_iter().next().filter(|e| e.seq == seq),
        Err(e) => return ToolOutcome::error(format!("the session's log cannot be read now: {e}")),
    };
    let Some(EventBody::ToolReturned { content, .. }) = event.map(|e| e.body) else {
        return ToolOutcome::error(format!("event {seq} of this session is not a tool result"));
    };
    let total = content.len();
    let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(total);
    while !content.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = start.saturating_add(length as usize).min(total);
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    let more = if end < total {
        format!(" (more from offset {end})")
    } else {
        " (the end)".to_string()
    };
    ToolOutcome::ok(format!(
        "bytes {start}..{end} of {total}{more}:\n{}",
        &content[start..end]
    ))
}
