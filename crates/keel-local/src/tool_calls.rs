//! Turns `<tool_call>{"name": …, "arguments": {…}}</tool_call>` in the model's text (the
//! format `chat.rs` teaches it) into tool-call events, when the request offered tools. Text
//! outside the tags streams as it comes; a block that is not valid JSON stays text.

use keel_models::StreamEvent;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

pub(crate) struct ToolCallExtractor {
    enabled: bool,
    held: String,
    inside: bool,
    calls: usize,
}

impl ToolCallExtractor {
    pub fn new(enabled: bool) -> Self {
        ToolCallExtractor {
            enabled,
            held: String::new(),
            inside: false,
            calls: 0,
        }
    }

    /// How many tool calls were emitted.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, text: &str) -> Vec<StreamEvent> {
        if !self.enabled {
            return text_event(text.to_string());
        }
        self.held.push_str(text);
        let mut events = Vec::new();
        loop {
            if self.inside {
                let Some(end) = self.held.find(CLOSE) else {
                    return events;
                };
                let body: String = self.held[..end].to_string();
                self.held.drain(..end + CLOSE.len());
                self.inside = false;
                events.extend(self.call(&body));
            } else if let Some(start) = self.held.find(OPEN) {
                events.extend(text_event(self.held[..start].to_string()));
                self.held.drain(..start + OPEN.len());
                self.inside = true;
            } else {
                // Emit all but a tail that could be the start of the opening tag.
                let keep = (1..OPEN.len().min(self.held.len() + 1))
                    .rev()
                    .find(|&n| {
                        self.held.is_char_boundary(self.held.len() - n)
                            && OPEN.starts_with(&self.held[self.held.len() - n..])
                    })
                    .unwrap_or(0);
                let rest = self.held.split_off(self.held.len() - keep);
                events.extend(text_event(std::mem::replace(&mut self.held, rest)));
                return events;
            }
        }
    }

    /// Whatever is still held at the end: an unfinished call is given back as text.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut rest = std::mem::take(&mut self.held);
        if self.inside {
            rest.insert_str(0, OPEN);
            self.inside = false;
        }
        text_event(rest)
    }

    fn call(&mut self, body: &str) -> Vec<StreamEvent> {
        let parsed: Option<(String, serde_json::Value)> =
            serde_json::from_str::<serde_json::Value>(body.trim())
                .ok()
                .and_then(|v| {
                    Some((
                        v.get("name")?.as_str()?.to_string(),
                        v.get("arguments").cloned().unwrap_or_default(),
                    ))
                });
        match parsed {
            Some((name, arguments)) => {
                let arguments = if arguments.is_null() {
                    serde_json::json!({})
                } else {
                    arguments
                };
                let index = self.calls;
                self.calls += 1;
                vec![StreamEvent::ToolCallDelta {
                    index,
                    id: Some(format!("call_{index}")),
                    name: Some(name),
                    arguments: arguments.to_string(),
                }]
            }
            None => text_event(format!("{OPEN}{body}{CLOSE}")),
        }
    }
}

fn text_event(text: String) -> Vec<StreamEvent> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![StreamEvent::TextDelta(text)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> Vec<StreamEvent> {
        let mut x = ToolCallExtractor::new(true);
        let mut out: Vec<StreamEvent> = chunks.iter().flat_map(|c| x.push(c)).collect();
        out.extend(x.finish());
        out
    }

    fn text(out: &[StreamEvent]) -> String {
        out.iter()
            .filter_map(|e| {
                if let StreamEvent::TextDelta(t) = e {
                    Some(t.as_str())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn a_call_split_across_chunks_becomes_a_tool_call_event() {
        let out = run(&[
            "Let me check. <tool",
            "_call>{\"name\": \"weather\", ",
            "\"arguments\": {\"city\": \"Paris\"}}</tool_",
            "call>",
        ]);
        assert_eq!(text(&out), "Let me check. ");
        let call = out
            .iter()
            .find(|e| matches!(e, StreamEvent::ToolCallDelta { .. }))
            .expect("a call");
        let StreamEvent::ToolCallDelta {
            index,
            id,
            name,
            arguments,
        } = call
        else {
            unreachable!()
        };
        assert_eq!(
            (*index, id.as_deref(), name.as_deref()),
            (0, Some("call_0"), Some("weather"))
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(arguments).unwrap(),
            serde_json::json!({"city": "Paris"})
        );
    }

    #[test]
    fn invalid_or_unfinished_blocks_stay_text() {
        assert_eq!(
            text(&run(&["a <tool_call>not json</tool_call> b"])),
            "a <tool_call>not json</tool_call> b"
        );
        assert_eq!(
            text(&run(&["a <tool_call>{\"name\": \"x\""])),
            "a <tool_call>{\"name\": \"x\""
        );
        assert_eq!(text(&run(&["a <tool", " b"])), "a <tool b");
    }

    #[test]
    fn without_tools_everything_is_text() {
        let mut x = ToolCallExtractor::new(false);
        let out = x.push("<tool_call>{\"name\": \"x\"}</tool_call>");
        assert_eq!(text(&out), "<tool_call>{\"name\": \"x\"}</tool_call>");
        assert_eq!(x.calls(), 0);
    }
}
