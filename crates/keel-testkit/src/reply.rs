//! The scripted reply every mock upstream answers with, whatever its wire format, and how a
//! reply is cut into the pieces providers stream it in (text word by word, arguments in three).

use serde_json::Value;

/// One tool call in a scripted reply; `arguments` is sent as the JSON string OpenAI uses.
#[derive(Clone, Debug, PartialEq)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Token counts reported in a reply's `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MockUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// A scripted assistant reply.
#[derive(Clone, Debug, PartialEq)]
pub struct MockReply {
    pub text: String,
    pub tool_calls: Vec<MockToolCall>,
    /// `finish_reason` to send; by default `tool_calls` when there are calls, else `stop`.
    pub finish_reason: Option<String>,
    pub usage: MockUsage,
}

impl MockReply {
    /// A text reply; usage counts its words as completion tokens.
    pub fn text(text: impl Into<String>) -> MockReply {
        let text = text.into();
        let completion_tokens = word_pieces(&text).len() as u64;
        MockReply {
            text,
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: MockUsage {
                prompt_tokens: 10,
                completion_tokens,
                cached_tokens: 0,
            },
        }
    }

    /// A reply with no text and no calls yet; add calls with `tool_call`.
    pub fn tool_calls() -> MockReply {
        MockReply::text("")
    }

    /// Adds a tool call with these JSON arguments.
    pub fn tool_call(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: Value,
    ) -> MockReply {
        self.tool_calls.push(MockToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.to_string(),
        });
        self.usage.completion_tokens += 5;
        self
    }

    /// The reply's finish in OpenAI's vocabulary (`stop`, `length`, `tool_calls`,
    /// `content_filter`); each mock maps it to its provider's.
    pub fn finish_reason(&self) -> &str {
        match &self.finish_reason {
            Some(reason) => reason,
            None if !self.tool_calls.is_empty() => "tool_calls",
            None => "stop",
        }
    }

    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> MockReply {
        self.finish_reason = Some(reason.into());
        self
    }

    pub fn with_usage(
        mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        cached_tokens: u64,
    ) -> MockReply {
        self.usage = MockUsage {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        };
        self
    }
}

/// The pieces a text is streamed in: each word with the whitespace before it, so they
/// concatenate back to the exact text.
pub(crate) fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                pieces.push(&text[start..i]);
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Splits JSON arguments into up to three pieces at char boundaries, as providers stream them.
pub(crate) fn argument_pieces(arguments: &str) -> Vec<&str> {
    let bounds: Vec<usize> = arguments.char_indices().map(|(i, _)| i).collect();
    if bounds.len() < 3 {
        return if arguments.is_empty() {
            Vec::new()
        } else {
            vec![arguments]
        };
    }
    let (a, b) = (bounds[bounds.len() / 3], bounds[2 * bounds.len() / 3]);
    vec![&arguments[..a], &arguments[a..b], &arguments[b..]]
}
