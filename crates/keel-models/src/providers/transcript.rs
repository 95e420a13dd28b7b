//! What the wire formats that differ from OpenAI's transcript share: a system prompt kept apart
//! (system messages folded into it), and tool-call ids restricted to `[a-zA-Z0-9_-]`, mapped
//! alike in a call and in its result so the pair still matches.

use keel_core::{Message, Part};

/// Appends a system message's text to the system prompt, paragraphs apart.
pub(crate) fn fold_system(system: &mut String, message: &Message) {
    for part in &message.parts {
        if let Part::Text { text } = part {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(text);
        }
    }
}

/// `id` with every character outside `[a-zA-Z0-9_-]` replaced by `_`, cut to `max_chars`
/// (`call` if nothing is left): keel's neutral ids from another provider may hold others.
pub(crate) fn restricted_tool_id(id: &str, max_chars: usize) -> String {
    let mapped: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(max_chars)
        .collect();
    if mapped.is_empty() {
        "call".into()
    } else {
        mapped
    }
}
