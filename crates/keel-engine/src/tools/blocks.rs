//! `memory_block_read`, `_append`, `_replace` and `_rewrite`: the agent reads and edits the
//! memory blocks its definition declares. An edit is not written here: it is handed back
//! (`ToolWrites::blocks`) and the driver logs it as a `memory_block_edited` event (and writes
//! a shared block) in the append that logs the call's result, so a call performed again after
//! a crash edits once. A bad call (unknown label, over the limit, `old` not found once) is an
//! error result the model can act on, never a failed run.

use keel_core::agent::block_value_problem;
use keel_core::{AgentDef, RunId, SessionId, TenantId, Timestamp};
use keel_store::{SharedBlockWrite, Store};
use serde_json::{Value, json};

use super::{ToolOutcome, ToolWrites};
use crate::blocks::{self, RenderedBlock};

pub(super) const READ: &str = "memory_block_read";
pub(super) const APPEND: &str = "memory_block_append";
pub(super) const REPLACE: &str = "memory_block_replace";
pub(super) const REWRITE: &str = "memory_block_rewrite";

/// An edit a tool made, for the driver to log and write with the call's result.
#[derive(Debug)]
pub struct BlockChange {
    /// The block as the tool read it.
    block: RenderedBlock,
    after: String,
}

impl BlockChange {
    /// Its `memory_block_edited` event in run `run_id`.
    pub(crate) fn event(&self, run_id: &RunId) -> keel_core::EventBody {
        blocks::edit_event(
            &self.block,
            Some(run_id.clone()),
            self.after.clone(),
            "agent",
        )
    }

    /// The write of a shared block, made from the version the tool read (`None` for a
    /// session's own block, which its event writes).
    pub(crate) fn shared_write(
        &self,
        session: &SessionId,
        run: &RunId,
        at: Timestamp,
    ) -> Option<SharedBlockWrite> {
        self.block.shared.then(|| SharedBlockWrite {
            session: Some(session.clone()),
            run: Some(run.clone()),
            ..self.block.shared_write(self.after.clone(), "agent", at)
        })
    }
}

/// Names, descriptions and argument schemas, for `builtin_tools`.
pub(super) fn specs() -> [(&'static str, &'static str, Value); 4] {
    let label = json!({"type": "string", "description": "The block's label, e.g. user."});
    [
        (
            READ,
            "Read one of your memory blocks: its current value, limit and description.",
            json!({"type": "object", "properties": {"label": label}, "required": ["label"]}),
        ),
        (
            APPEND,
            "Add text to the end of one of your memory blocks (on a new line).",
            json!({"type": "object", "properties": {"label": label, "text": {"type": "string"}}, "required": ["label", "text"]}),
        ),
        (
            REPLACE,
            "Replace text in one of your memory blocks: `old` must occur in it exactly once; `new` may be empty to delete it.",
            json!({"type": "object", "properties": {"label": label, "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["label", "old", "new"]}),
        ),
        (
            REWRITE,
            "Replace the whole value of one of your memory blocks.",
            json!({"type": "object", "properties": {"label": label, "value": {"type": "string"}}, "required": ["label", "value"]}),
        ),
    ]
}

pub(super) async fn call(
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    agent: &AgentDef,
    name: &str,
    arguments: &Value,
) -> ToolOutcome {
    let arg = |key: &str| arguments.get(key).and_then(Value::as_str);
    let Some(label) = arg("label") else {
        return ToolOutcome::error(format!("{name} needs a string argument \"label\""));
    };
    let block = match blocks::session_block(store, tenant, session, agent, label).await {
        Ok(block) => block,
        Err(crate::EngineError::NotFound { id, .. }) => {
            return ToolOutcome::error(format!("there is no memory block {id}"));
        }
        Err(e) => return ToolOutcome::error(format!("memory blocks cannot be read now: {e}")),
    };
    let after = match (name, arg("text"), arg("old"), arg("new"), arg("value")) {
        (READ, ..) => return ToolOutcome::ok(describe(&block, &block.value)),
        (APPEND, Some(text), ..) => match block.value.is_empty() {
            true => text.to_string(),
            false => format!("{}\n{text}", block.value),
        },
        (REPLACE, _, Some(old), Some(new), _) => match replace_once(&block.value, old, new) {
            Ok(after) => after,
            Err(message) => return ToolOutcome::error(format!("{label}: {message}")),
        },
        (REWRITE, .., Some(value)) => value.to_string(),
        _ => {
            let needs = match name {
                APPEND => "\"label\" and \"text\"",
                REPLACE => "\"label\", \"old\" and \"new\"",
                _ => "\"label\" and \"value\"",
            };
            return ToolOutcome::error(format!("{name} needs string arguments {needs}"));
        }
    };
    if let Some(problem) = block_value_problem(label, &after, block.limit) {
        return ToolOutcome::error(format!("{problem}; nothing was changed"));
    }
    ToolOutcome {
        content: describe(&block, &after),
        is_error: false,
        writes: ToolWrites {
            blocks: vec![BlockChange { block, after }],
            ..ToolWrites::default()
        },
    }
}

/// `value` with the one occurrence of `old` replaced by `new`, or why not.
fn replace_once(value: &str, old: &str, new: &str) -> Result<String, String> {
    if old.is_empty() {
        return Err("`old` is empty: name the text to replace".into());
    }
    match value.matches(old).count() {
        1 => Ok(value.replacen(old, new, 1)),
        0 => Err(format!(
            "the block does not contain {old:?}; nothing was changed"
        )),
        n => Err(format!(
            "{old:?} occurs {n} times in the block; include more of the text around it so it \
             occurs once. Nothing was changed"
        )),
    }
}

/// What a call answers: the block's value now, with its size against its limit.
fn describe(block: &RenderedBlock, value: &str) -> String {
    let chars = value.chars().count();
    let scope = if block.shared { "shared " } else { "" };
    format!(
        "{scope}memory block {:?} ({chars} of {} characters) now reads:\n{value}",
        block.label, block.limit
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_takes_text_that_occurs_exactly_once() {
        assert_eq!(
            replace_once("likes tea", "tea", "coffee").unwrap(),
            "likes coffee"
        );
        assert_eq!(replace_once("likes tea", "likes ", "").unwrap(), "tea");
        let missing = replace_once("likes tea", "cake", "pie").unwrap_err();
        assert!(missing.contains("does not contain \"cake\""), "{missing}");
        let twice = replace_once("tea and tea", "tea", "cake").unwrap_err();
        assert!(twice.contains("occurs 2 times"), "{twice}");
        assert!(replace_once("x", "", "y").unwrap_err().contains("empty"));
    }
}
