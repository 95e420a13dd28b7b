//! Abuse limits: how much one tenant or session may hold or queue, and how large one tool
//! result or model reply may grow, so that no caller can exhaust the store, the queue or the
//! memory for everyone else. The engine checks them before each write that grows something;
//! a hit is `EngineError::LimitReached`, naming the limit and the `[limits]` key that sets it.

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The `[limits]` table of `keel.toml`. Defaults are far above honest use and far below what
/// would hurt a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Sessions (and conversations) one tenant may hold.
    pub sessions_per_tenant: u64,
    /// Agents (by name) one tenant may define.
    pub agents_per_tenant: u64,
    /// Events one session's log may hold; past it, new input is refused (fork or start anew).
    pub events_per_session: u64,
    /// Runs queued or running on one session at once.
    pub queued_runs_per_session: usize,
    /// Messages (conversation items) one session's transcript may hold.
    pub items_per_conversation: u64,
    /// Bytes of one tool result kept; the rest is cut off, and the model is told so.
    pub tool_result_bytes: usize,
    /// Bytes of one model reply (text and tool-call arguments); a longer reply fails the step.
    pub model_reply_bytes: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            sessions_per_tenant: 1_000_000,
            agents_per_tenant: 10_000,
            events_per_session: 1_000_000,
            queued_runs_per_session: 100,
            items_per_conversation: 100_000,
            tool_result_bytes: 1 << 20,
            model_reply_bytes: 4 << 20,
        }
    }
}

impl Quotas {
    /// `LimitReached` when `current + adding` would pass `limit`.
    pub(crate) fn check(
        what: &str,
        key: &str,
        current: u64,
        adding: u64,
        limit: u64,
    ) -> Result<(), EngineError> {
        match current.saturating_add(adding) > limit {
            false => Ok(()),
            true => Err(EngineError::LimitReached(format!(
                "{what} would pass the limit of {limit} (it has {current}): \
                 the operator sets it as `{key}` in keel.toml's [limits]"
            ))),
        }
    }
}

/// Cuts `content` to at most `limit` bytes (at a character boundary), saying what was cut.
pub(crate) fn cut_tool_result(content: String, limit: usize) -> String {
    if content.len() <= limit {
        return content;
    }
    let mut end = limit;
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[keel: the tool's result was cut here: it passed the limit of {limit} bytes]",
        &content[..end]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_passes_up_to_the_limit_and_names_the_key_past_it() {
        assert!(Quotas::check("sessions", "sessions_per_tenant", 9, 1, 10).is_ok());
        let error = Quotas::check("sessions", "sessions_per_tenant", 10, 1, 10).unwrap_err();
        assert!(
            error.to_string().contains("`sessions_per_tenant`"),
            "{error}"
        );
    }

    #[test]
    fn a_long_tool_result_is_cut_at_a_character_boundary_with_a_note() {
        assert_eq!(cut_tool_result("short".into(), 10), "short");
        let cut = cut_tool_result("ééééé".into(), 5);
        assert!(cut.starts_with("éé\n[keel:"), "{cut}");
        assert!(cut.contains("limit of 5 bytes"), "{cut}");
    }
}
