//! Fitting a transcript into a model's context window, for runs with `truncation: auto`:
//! the oldest turns are left out of the request (never out of the log) until it fits. Before
//! a call, by an estimate against the catalog's context window when the model is listed;
//! after a call the provider refused as too long, by halving the earlier turns and trying
//! again. A turn opens at a user message, so a tool call is never cut from its result.

use keel_core::{Message, Part, Role};
use keel_models::ToolSpec;

/// The tokens an input of `bytes` bytes is taken to hold before the provider counts it: about
/// four bytes a token for English text and code; other scripts hold fewer bytes a token,
/// which the retry after a refusal covers.
const BYTES_PER_TOKEN: usize = 4;

/// Where each turn of `messages` begins (the index of each user message that opens one).
fn turn_starts(messages: &[Message]) -> Vec<usize> {
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User)
        .map(|(i, _)| i)
        .collect()
}

/// Leaves out the older half of the turns before the last one (at least one turn). Returns
/// whether anything was left out: `false` when only the last turn remains.
pub(crate) fn drop_older_turns(messages: &mut Vec<Message>) -> bool {
    let starts = turn_starts(messages);
    // Messages before the first user message (replies to added items) count as a turn too.
    let mut turns: Vec<usize> = Vec::with_capacity(starts.len() + 1);
    if starts.first() != Some(&0) && !messages.is_empty() {
        turns.push(0);
    }
    turns.extend(starts);
    if turns.len() < 2 {
        return false;
    }
    let earlier = turns.len() - 1;
    let drop = earlier.div_ceil(2);
    messages.drain(..turns[drop]);
    true
}

/// Bytes a token holds, in tenths, for a provider family's tokenizer on English text and
/// code: OpenAI's o200k and Gemini's about 4, Anthropic's (also on Bedrock) about 3.5. An
/// estimate; what a provider counts corrects it (a refusal as too long is retried shorter).
fn tenths_of_bytes_per_token(provider_kind: &str) -> usize {
    match provider_kind {
        "anthropic" | "bedrock" => 35,
        _ => 10 * BYTES_PER_TOKEN,
    }
}

/// An estimate of the tokens a request of these parts holds for `provider_kind`'s tokenizer.
pub(crate) fn estimate_tokens_for(
    provider_kind: &str,
    system: Option<&str>,
    messages: &[Message],
    tools: &[ToolSpec],
) -> u64 {
    let at_four = estimate_tokens(system, messages, tools);
    at_four * (10 * BYTES_PER_TOKEN as u64) / tenths_of_bytes_per_token(provider_kind) as u64
}

/// An estimate of the tokens a request of these parts holds (four bytes a token).
pub(crate) fn estimate_tokens(
    system: Option<&str>,
    messages: &[Message],
    tools: &[ToolSpec],
) -> u64 {
    let mut bytes = system.map_or(0, str::len);
    for message in messages {
        // Role and framing tokens per message.
        bytes += 4 * BYTES_PER_TOKEN;
        for part in &message.parts {
            bytes += match part {
                Part::Text { text } => text.len(),
                Part::ToolCall {
                    name, arguments, ..
                } => name.len() + arguments.to_string().len(),
                Part::ToolResult { content, .. } => content.len(),
                // Providers price an image at a few hundred to a thousand tokens.
                Part::Image { .. } => 1000 * BYTES_PER_TOKEN,
            };
        }
    }
    for tool in tools {
        bytes += tool.name.len() + tool.description.len() + tool.parameters.to_string().len();
    }
    (bytes / BYTES_PER_TOKEN) as u64
}

/// Leaves out the oldest turns until the estimate fits `budget` tokens (or only the last turn
/// is left). Returns how many messages were left out.
pub(crate) fn fit(
    system: Option<&str>,
    messages: &mut Vec<Message>,
    tools: &[ToolSpec],
    budget: u64,
) -> usize {
    let before = messages.len();
    while estimate_tokens(system, messages, tools) > budget {
        // One turn at a time: the estimate is cheap, and each kept turn is context.
        let starts = turn_starts(messages);
        let next = match starts.as_slice() {
            [0, second, ..] => *second,
            [first, ..] if *first > 0 => *first,
            _ => break,
        };
        messages.drain(..next);
    }
    before - messages.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(n: usize) -> Vec<Message> {
        (0..n)
            .flat_map(|i| {
                [
                    Message::user(format!("question {i}")),
                    Message {
                        role: Role::Assistant,
                        parts: vec![Part::Text {
                            text: format!("answer {i}"),
                        }],
                    },
                ]
            })
            .collect()
    }

    fn first_text(messages: &[Message]) -> String {
        messages[0].text_content()
    }

    #[test]
    fn halving_leaves_out_the_older_half_and_never_the_last_turn() {
        let mut messages = turns(5);
        assert!(drop_older_turns(&mut messages));
        assert_eq!(first_text(&messages), "question 2");
        assert!(drop_older_turns(&mut messages));
        assert_eq!(first_text(&messages), "question 3");
        assert!(drop_older_turns(&mut messages));
        assert_eq!(first_text(&messages), "question 4");
        assert!(!drop_older_turns(&mut messages));
        assert_eq!(messages.len(), 2);
    }

    #[test]
    fn a_tool_call_stays_with_its_result() {
        let mut messages = turns(1);
        messages.push(Message::user("use the tool"));
        messages.push(Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall {
                id: "c1".into(),
                name: "lookup".into(),
                arguments: serde_json::json!({}),
            }],
        });
        messages.push(Message {
            role: Role::Tool,
            parts: vec![Part::ToolResult {
                call_id: "c1".into(),
                content: "found".into(),
                is_error: false,
            }],
        });
        assert!(drop_older_turns(&mut messages));
        assert_eq!(messages.len(), 3);
        assert_eq!(first_text(&messages), "use the tool");
    }

    #[test]
    fn fitting_keeps_the_newest_turns_that_fit_the_budget() {
        let mut messages = turns(10);
        messages.insert(0, Message::user("x".repeat(4000)));
        let full = estimate_tokens(None, &messages, &[]);
        assert!(full > 1000);
        let dropped = fit(None, &mut messages, &[], 100);
        assert!(dropped > 0);
        assert!(estimate_tokens(None, &messages, &[]) <= 100);
        assert_eq!(messages.last().unwrap().text_content(), "answer 9");
        // A last turn that alone is over the budget is sent as it is (the provider decides).
        let mut one = vec![Message::user("y".repeat(4000))];
        assert_eq!(fit(None, &mut one, &[], 10), 0);
    }
}
