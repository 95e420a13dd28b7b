//! Every field of the OpenAI request bodies keel serves, and what keel does with it: honoured,
//! honoured with a difference, or refused. Nothing is accepted and ignored: a refused field
//! sent with anything but its default answers `400` naming it (`param`), an enumerated value
//! outside OpenAI's list answers `400 invalid_value`, and a field OpenAI does not have answers
//! `400 unknown_parameter` (the body types deny unknown fields). `tool_choice` and the reply
//! format are read by `super::controls`, one parser for both endpoints. The lists below are the
//! one source of the compatibility table in `docs/openai-compatibility.md` (a test renders them
//! and compares) and of the table-driven test that sends each refused value.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::responses::CreateResponse;
use super::wire::ChatRequest;
use crate::error::ApiError;

/// How far keel honours a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// As OpenAI documents it.
    Supported,
    /// Honoured, with the difference the note says.
    Differs,
    /// Refused (`400 unsupported_parameter`) unless sent empty or with its default.
    Refused,
}

/// One request field.
pub struct Field {
    pub name: &'static str,
    pub support: Support,
    /// What keel does with it (the table's last column).
    pub note: &'static str,
    /// Values keel refuses for this field, as JSON text, each with the `param` its `400` names.
    pub refused: &'static [(&'static str, &'static str)],
}

const fn field(
    name: &'static str,
    support: Support,
    note: &'static str,
    refused: &'static [(&'static str, &'static str)],
) -> Field {
    Field {
        name,
        support,
        note,
        refused,
    }
}

use Support::{Differs, Refused, Supported};

/// OpenAI's enumerations, as the `openai` SDK keel is tested against (2.54.0) lists them.
pub const REASONING_EFFORTS: &[&str] =
    &["none", "minimal", "low", "medium", "high", "xhigh", "max"];
pub const REASONING_SUMMARIES: &[&str] = &["auto", "concise", "detailed"];
pub const REASONING_CONTEXTS: &[&str] = &["auto", "current_turn", "all_turns"];
pub const SERVICE_TIERS: &[&str] = &["auto", "default", "flex", "scale", "priority", "fast"];
pub const VERBOSITIES: &[&str] = &["low", "medium", "high"];
pub const PROMPT_CACHE_RETENTIONS: &[&str] = &["in_memory", "24h"];
pub const MODALITIES: &[&str] = &["text", "audio"];
pub const TRUNCATIONS: &[&str] = &["auto", "disabled"];
pub const CONTEXT_MANAGEMENT_TYPES: &[&str] = &["compaction"];
pub const INCLUDABLE: &[&str] = &[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
];
/// `POST /v1/chat/completions`.
#[rustfmt::skip]
pub const CHAT_COMPLETIONS: &[Field] = &[
    field("model", Supported, "a route name from keel.toml, or `provider/model`", &[("42", "model")]),
    field("messages", Differs, "system, developer, user, assistant and tool messages; text and `image_url` parts (other part types are refused); a message's `name` is not passed on", &[("\"hi\"", "messages"), ("[]", "messages")]),
    field("audio", Refused, "keel serves text only", &[("{\"voice\": \"alloy\", \"format\": \"mp3\"}", "audio")]),
    field("frequency_penalty", Refused, "not passed to providers; 0 is accepted", &[("0.5", "frequency_penalty")]),
    field("function_call", Refused, "deprecated by OpenAI: use `tool_choice`", &[("\"auto\"", "function_call")]),
    field("functions", Refused, "deprecated by OpenAI: use `tools`", &[("[{\"name\": \"f\"}]", "functions")]),
    field("logit_bias", Refused, "not passed to providers; `{}` is accepted", &[("{\"50256\": -100}", "logit_bias")]),
    field("logprobs", Refused, "keel returns no log probabilities; `false` is accepted", &[("true", "logprobs")]),
    field("max_completion_tokens", Supported, "the output cap sent to the target (none when absent: the model's own limit)", &[("0", "max_completion_tokens"), ("-1", "max_completion_tokens")]),
    field("max_tokens", Supported, "as `max_completion_tokens`, which wins when both are sent", &[("\"many\"", "max_tokens")]),
    field("metadata", Refused, "keel does not store chat completions; `{}` is accepted", &[("{\"k\": \"v\"}", "metadata")]),
    field("modalities", Differs, "`[\"text\"]` only", &[("[\"text\", \"audio\"]", "modalities"), ("[\"smell\"]", "modalities[0]")]),
    field("moderation", Refused, "keel runs no moderation", &[("{\"model\": \"omni-moderation-latest\"}", "moderation")]),
    field("n", Differs, "1 only: keel returns one choice", &[("2", "n")]),
    field("parallel_tool_calls", Differs, "`true` (the default: the target decides) only", &[("false", "parallel_tool_calls")]),
    field("prediction", Refused, "not passed to providers", &[("{\"type\": \"content\", \"content\": \"x\"}", "prediction")]),
    field("presence_penalty", Refused, "not passed to providers; 0 is accepted", &[("1", "presence_penalty")]),
    field("prompt_cache_key", Differs, "keeps calls with one key on one route target (for provider prompt caches); forwarded to OpenAI-wire targets (OpenAI, OpenAI-compatible, OpenAI Responses; not Azure, whose API version lacks it); others have no such field", &[("42", "prompt_cache_key")]),
    field("prompt_cache_options", Refused, "not passed to providers", &[("{\"mode\": \"explicit\"}", "prompt_cache_options")]),
    field("prompt_cache_retention", Refused, "not passed to providers; values checked", &[("\"24h\"", "prompt_cache_retention"), ("\"forever\"", "prompt_cache_retention")]),
    field("reasoning_effort", Refused, "not passed to providers; values checked", &[("\"low\"", "reasoning_effort"), ("\"extreme\"", "reasoning_effort")]),
    field("response_format", Supported, "`text`, `json_object`, `json_schema` (`json_schema.name` required), in each target's own format; a target that cannot honour one refuses (400)", &[("{\"type\": \"xml\"}", "response_format"), ("{\"type\": \"json_schema\", \"json_schema\": {\"schema\": {}}}", "response_format")]),
    field("safety_identifier", Differs, "like `prompt_cache_key` when that is absent; forwarded to OpenAI-wire targets (not Azure, whose API version lacks it); others have no such field", &[("42", "safety_identifier")]),
    field("seed", Differs, "forwarded to OpenAI-compatible, Gemini and local targets; others have no seed", &[("\"x\"", "seed")]),
    field("service_tier", Differs, "keel has one tier: `auto` and `default` are accepted, the others refused", &[("\"flex\"", "service_tier"), ("\"turbo\"", "service_tier")]),
    field("stop", Supported, "a string or a list of strings", &[("42", "stop")]),
    field("store", Differs, "keel does not store chat completions: `false` only", &[("true", "store")]),
    field("stream", Supported, "`chat.completion.chunk` events, then `data: [DONE]`", &[("\"yes\"", "stream")]),
    field("stream_options", Differs, "`include_usage`; no obfuscation field is added, so `include_obfuscation: true` is refused", &[("{\"include_obfuscation\": true}", "stream_options.include_obfuscation"), ("{\"bogus\": 1}", "stream_options.bogus")]),
    field("temperature", Supported, "0 to 2", &[("3", "temperature")]),
    field("tool_choice", Differs, "`auto`, `none`, `required` or a named function; one that forces a call needs `tools`, and a named function must be one of them; `allowed_tools` and `custom` are refused", &[("\"sometimes\"", "tool_choice"), ("\"required\"", "tool_choice"), ("{\"type\": \"allowed_tools\", \"allowed_tools\": {\"mode\": \"auto\", \"tools\": []}}", "tool_choice")]),
    field("tools", Differs, "`function` tools; `strict` is forwarded to OpenAI-wire targets (others have no such field); other tool types are refused", &[("[{\"type\": \"custom\", \"custom\": {\"name\": \"x\"}}]", "tools[0].type"), ("[{\"type\": \"function\"}]", "tools[0].function")]),
    field("top_logprobs", Refused, "keel returns no log probabilities; 0 is accepted", &[("3", "top_logprobs")]),
    field("top_p", Supported, "0 to 1", &[("1.5", "top_p")]),
    field("user", Differs, "like `prompt_cache_key` when that and `safety_identifier` are absent; forwarded to OpenAI-wire targets (Azure included); others have no such field", &[("42", "user")]),
    field("verbosity", Refused, "not passed to providers; values checked", &[("\"low\"", "verbosity"), ("\"loud\"", "verbosity")]),
    field("web_search_options", Refused, "keel runs no hosted tools", &[("{\"search_context_size\": \"low\"}", "web_search_options")]),
];

/// `POST /v1/responses`.
#[rustfmt::skip]
pub const RESPONSES: &[Field] = &[
    field("background", Supported, "queued in keel's run queue; poll `GET /v1/responses/{id}`", &[("\"yes\"", "background")]),
    field("context_management", Differs, "`[{\"type\": \"compaction\", \"compact_threshold\": N}]`: past N tokens (without N, three quarters of the model's window) the older turns are summarised and a `compaction` output item returned. Unlike OpenAI's opaque item, keel's summary is readable text (in `encrypted_content` and `summary`) that any provider can continue from", &[("[{\"type\": \"compaction\", \"compact_threshold\": \"many\"}]", "context_management[0].compact_threshold"), ("[{\"type\": \"compaction\", \"compact_threshold\": 10}]", "context_management[0].compact_threshold"), ("[{\"type\": \"bogus\"}]", "context_management[0].type"), ("\"compaction\"", "context_management")]),
    field("conversation", Supported, "a conversation id or `{\"id\": …}`: a keel session", &[("42", "conversation")]),
    field("include", Refused, "keel has none of the extra outputs to include; values checked", &[("[\"reasoning.encrypted_content\"]", "include"), ("[\"bogus\"]", "include[0]")]),
    field("input", Differs, "a string, or `message`, `function_call`, `function_call_output` and `compaction` items (a compaction item stands in for the turns it summarises); other item types are refused", &[("42", "input")]),
    field("instructions", Supported, "this response only (not carried to the next)", &[("42", "instructions")]),
    field("max_output_tokens", Supported, "the output cap (none when absent: the model's own limit); checked against the catalog's limit for the model", &[("0", "max_output_tokens"), ("-1", "max_output_tokens")]),
    field("max_tool_calls", Differs, "keel runs no hosted tools on this API (function calls end the response), so there is nothing to cap; checked to be a count", &[("-1", "max_tool_calls")]),
    field("metadata", Differs, "at most 16 keys of up to 64 characters, echoed and kept with the response; a value may be any JSON (OpenAI takes strings of up to 512 characters)", &[("{\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\": \"v\"}", "metadata"), ("[]", "metadata")]),
    field("model", Supported, "a route name or `provider/model`; any provider can serve the next turn", &[("42", "model")]),
    field("moderation", Refused, "keel runs no moderation", &[("{\"model\": \"omni-moderation-latest\"}", "moderation")]),
    field("parallel_tool_calls", Differs, "`true` (the default: the target decides) only", &[("false", "parallel_tool_calls")]),
    field("previous_response_id", Supported, "continues that response's session (branching it when the response is not its latest)", &[("42", "previous_response_id")]),
    field("prompt", Refused, "keel has no stored prompt templates", &[("{\"id\": \"pmpt_1\"}", "prompt")]),
    field("prompt_cache_key", Differs, "forwarded to OpenAI-wire targets (OpenAI, OpenAI-compatible, OpenAI Responses; not Azure, whose API version lacks it); others have no such field. A response's session sticks to the route target that served it whatever the key", &[("42", "prompt_cache_key")]),
    field("prompt_cache_options", Refused, "not passed to providers", &[("{\"mode\": \"explicit\"}", "prompt_cache_options")]),
    field("prompt_cache_retention", Refused, "not passed to providers; values checked", &[("\"24h\"", "prompt_cache_retention"), ("\"forever\"", "prompt_cache_retention")]),
    field("reasoning", Refused, "not passed to providers; `effort`, `summary`, `generate_summary` and `context` values checked", &[("{\"effort\": \"high\"}", "reasoning"), ("{\"effort\": \"extreme\"}", "reasoning.effort"), ("{\"summary\": \"long\"}", "reasoning.summary")]),
    field("safety_identifier", Differs, "forwarded to OpenAI-wire targets (not Azure, whose API version lacks it); others have no such field", &[("42", "safety_identifier")]),
    field("service_tier", Differs, "keel has one tier: `auto` and `default` are accepted, the others refused", &[("\"flex\"", "service_tier"), ("\"turbo\"", "service_tier")]),
    field("store", Supported, "`false` answers from a throwaway session, deleted once answered", &[("\"yes\"", "store")]),
    field("stream", Supported, "the Responses event types, ending with `response.completed`, `.incomplete` or `.failed`", &[("\"yes\"", "stream")]),
    field("stream_options", Differs, "no obfuscation field is added, so `include_obfuscation: true` is refused", &[("{\"include_obfuscation\": true}", "stream_options.include_obfuscation"), ("{\"bogus\": 1}", "stream_options.bogus")]),
    field("temperature", Supported, "0 to 2", &[("3", "temperature")]),
    field("text", Differs, "`format`: `text`, `json_object`, `json_schema` (`schema` required; `name` defaults to `response`); `verbosity` is refused (values checked)", &[("{\"format\": {\"type\": \"xml\"}}", "text.format.type"), ("{\"format\": {\"type\": \"json_schema\", \"name\": \"out\"}}", "text.format.schema"), ("{\"verbosity\": \"low\"}", "text.verbosity"), ("{\"verbosity\": \"loud\"}", "text.verbosity"), ("{\"bogus\": 1}", "text.bogus")]),
    field("tool_choice", Differs, "`auto`, `none`, `required` or `{\"type\": \"function\", \"name\"}`; one that forces a call needs `tools`, and a named function must be one of them; hosted tool types and `allowed_tools` are refused", &[("\"sometimes\"", "tool_choice"), ("{\"type\": \"file_search\"}", "tool_choice"), ("{\"type\": \"function\", \"name\": \"f\"}", "tool_choice")]),
    field("tools", Differs, "`function` tools, which the caller performs; `strict` is forwarded to OpenAI-wire targets (others have no such field); hosted tools are refused", &[("[{\"type\": \"web_search\"}]", "tools[0].type"), ("[{\"type\": \"function\", \"name\": \"f\", \"strict\": \"yes\"}]", "tools[0].strict")]),
    field("top_logprobs", Refused, "keel returns no log probabilities; 0 is accepted", &[("5", "top_logprobs")]),
    field("top_p", Supported, "0 to 1", &[("2", "top_p")]),
    field("truncation", Supported, "`auto` leaves the oldest turns out of the request (never out of the log) until it fits the model's context window; `disabled` (the default) fails with `context_length_exceeded`", &[("\"bogus\"", "truncation")]),
    field("user", Differs, "forwarded to OpenAI-wire targets (Azure included); others have no such field", &[("42", "user")]),
];

/// `POST /v1/embeddings`.
#[rustfmt::skip]
pub const EMBEDDINGS: &[Field] = &[
    field("dimensions", Differs, "passed to the target; a model that cannot shorten its vectors refuses (400): the local model gives 384 only", &[("0", "dimensions")]),
    field("encoding_format", Supported, "`float` or `base64` (the little-endian f32 bytes)", &[("\"bogus\"", "encoding_format")]),
    field("input", Differs, "a string or a list of up to 2048 strings, none empty; token arrays are refused (the targets behind a route do not share a tokenizer)", &[("[[1, 2]]", "input"), ("\"\"", "input"), ("[]", "input")]),
    field("model", Supported, "a route name, or `provider/model` with a provider that embeds: OpenAI-compatible, Azure, Gemini, Bedrock (Titan, Cohere) or `local/all-minilm-l6-v2`", &[("42", "model")]),
    field("user", Refused, "not passed to providers; `\"\"` is accepted", &[("\"someone\"", "user")]),
];

/// The fields of one endpoint as a markdown table (what `docs/openai-compatibility.md` shows).
pub fn markdown_table(fields: &[Field]) -> String {
    let mut out = String::from("| field | keel | notes |\n|---|---|---|\n");
    for f in fields {
        let support = match f.support {
            Supported => "supported",
            Differs => "supported, with a difference",
            Refused => "refused",
        };
        out.push_str(&format!("| `{}` | {support} | {} |\n", f.name, f.note));
    }
    out
}

/// A request field keel cannot serve: which one (`param`), OpenAI's code for the fault, and
/// what to do instead.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub param: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    /// A value that is not one OpenAI accepts for the field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            param: param.into(),
            code: "invalid_value",
            message: message.into(),
        }
    }

    /// A valid value keel does not honour.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            param: param.into(),
            code: "unsupported_parameter",
            message: message.into(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::invalid(e.code, e.message).with_param(e.param)
    }
}

impl From<super::items::InputError> for FieldError {
    fn from(e: super::items::InputError) -> Self {
        FieldError::invalid(e.param, e.message)
    }
}

/// The refusal of `name` (a field of `fields`) sent with a value keel does not honour.
pub(super) fn refused(fields: &[Field], name: &str) -> FieldError {
    let note = fields
        .iter()
        .find(|f| f.name == name)
        .map_or("", |f| f.note);
    FieldError::unsupported(
        name,
        format!(
            "keel does not support `{name}`: {note}. Leave it out (docs/openai-compatibility.md lists every field)"
        ),
    )
}

/// `value` must be one of `allowed`.
fn one_of(param: &str, value: &str, allowed: &[&str]) -> Result<(), FieldError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(not_one_of(param, value, allowed))
}

pub(super) fn not_one_of(param: &str, value: &str, allowed: &[&str]) -> FieldError {
    FieldError::invalid(
        param,
        format!(
            "invalid value for `{param}`: {value:?}; expected one of {}",
            allowed
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn in_range(param: &str, value: Option<f32>, max: f32) -> Result<(), FieldError> {
    match value {
        Some(v) if !(0.0..=max).contains(&v) => Err(FieldError::invalid(
            param,
            format!("`{param}` must be between 0 and {max}; got {v}"),
        )),
        _ => Ok(()),
    }
}

fn at_least_one(param: &str, value: Option<u32>) -> Result<(), FieldError> {
    match value {
        Some(0) => Err(FieldError::invalid(
            param,
            format!("`{param}` must be at least 1"),
        )),
        _ => Ok(()),
    }
}

/// What a client sent for a field keel reads only to refuse, without keeping any of it (no
/// allocation): nothing (absent or `null`), an empty or zero value, or something else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sent {
    #[default]
    Nothing,
    /// `false`, `0`, `""`, `[]` or `{}`: the field's default, which keel honours trivially.
    Empty,
    Value,
}

impl Sent {
    pub(super) fn is_set(self) -> bool {
        self == Sent::Value
    }
}

impl<'de> Deserialize<'de> for Sent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SentVisitor;
        impl<'de> Visitor<'de> for SentVisitor {
            type Value = Sent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Sent, E> {
                Ok(Sent::Nothing)
            }
            fn visit_none<E: de::Error>(self) -> Result<Sent, E> {
                Ok(Sent::Nothing)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Sent, D::Error> {
                Sent::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Sent, E> {
                Ok(if v { Sent::Value } else { Sent::Empty })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Sent, E> {
                Ok(if v == 0 { Sent::Empty } else { Sent::Value })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Sent, E> {
                Ok(if v == 0 { Sent::Empty } else { Sent::Value })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Sent, E> {
                Ok(if v == 0.0 { Sent::Empty } else { Sent::Value })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Sent, E> {
                Ok(if v.is_empty() {
                    Sent::Empty
                } else {
                    Sent::Value
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sent, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(if any { Sent::Value } else { Sent::Empty })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sent, A::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(if any { Sent::Value } else { Sent::Empty })
            }
        }
        deserializer.deserialize_any(SentVisitor)
    }
}

/// The fields of a chat completion request keel reads only to check: a refused field sent
/// with a value, an enumerated value OpenAI does not have, a number out of range.
pub fn check_chat(body: &ChatRequest) -> Result<(), FieldError> {
    let fields = CHAT_COMPLETIONS;
    for (name, sent) in [
        ("audio", body.audio),
        ("frequency_penalty", body.frequency_penalty),
        ("function_call", body.function_call),
        ("functions", body.functions),
        ("logit_bias", body.logit_bias),
        ("logprobs", body.logprobs),
        ("metadata", body.metadata),
        ("moderation", body.moderation),
        ("prediction", body.prediction),
        ("presence_penalty", body.presence_penalty),
        ("prompt_cache_options", body.prompt_cache_options),
        ("top_logprobs", body.top_logprobs),
        ("web_search_options", body.web_search_options),
    ] {
        if sent.is_set() {
            return Err(refused(fields, name));
        }
    }
    for (name, value, allowed) in [
        (
            "reasoning_effort",
            &body.reasoning_effort,
            REASONING_EFFORTS,
        ),
        ("verbosity", &body.verbosity, VERBOSITIES),
        (
            "prompt_cache_retention",
            &body.prompt_cache_retention,
            PROMPT_CACHE_RETENTIONS,
        ),
    ] {
        if let Some(value) = value {
            one_of(name, value, allowed)?;
            return Err(refused(fields, name));
        }
    }
    if let Some(tier) = &body.service_tier {
        one_of("service_tier", tier, SERVICE_TIERS)?;
        if !matches!(tier.as_str(), "auto" | "default") {
            return Err(refused(fields, "service_tier"));
        }
    }
    if let Some(modalities) = &body.modalities {
        for (i, m) in modalities.iter().enumerate() {
            one_of(&format!("modalities[{i}]"), m, MODALITIES)?;
        }
        if modalities.iter().any(|m| m != "text") {
            return Err(refused(fields, "modalities"));
        }
    }
    if body.n.is_some_and(|n| n != 1) {
        return Err(refused(fields, "n"));
    }
    if body.parallel_tool_calls == Some(false) {
        return Err(refused(fields, "parallel_tool_calls"));
    }
    if body.store == Some(true) {
        return Err(refused(fields, "store"));
    }
    if body
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_obfuscation == Some(true))
    {
        return Err(FieldError::unsupported(
            "stream_options.include_obfuscation",
            "keel does not support `stream_options.include_obfuscation: true`: it adds no obfuscation field to streamed chunks. Leave it out (or send false)",
        ));
    }
    in_range("temperature", body.temperature, 2.0)?;
    in_range("top_p", body.top_p, 1.0)?;
    at_least_one("max_completion_tokens", body.max_completion_tokens)?;
    at_least_one("max_tokens", body.max_tokens)?;
    Ok(())
}

/// The fields of a Responses request that only need checking (the ones keel honours are read
/// where they are used).
pub fn check_response(body: &CreateResponse) -> Result<(), FieldError> {
    let fields = RESPONSES;
    for (name, value) in [
        ("moderation", &body.moderation),
        ("prompt", &body.prompt),
        ("prompt_cache_options", &body.prompt_cache_options),
    ] {
        if value.as_ref().is_some_and(is_set) {
            return Err(refused(fields, name));
        }
    }
    if body.top_logprobs.is_some_and(|n| n != 0) {
        return Err(refused(fields, "top_logprobs"));
    }
    if let Some(retention) = &body.prompt_cache_retention {
        one_of("prompt_cache_retention", retention, PROMPT_CACHE_RETENTIONS)?;
        return Err(refused(fields, "prompt_cache_retention"));
    }
    if let Some(tier) = &body.service_tier {
        one_of("service_tier", tier, SERVICE_TIERS)?;
        if !matches!(tier.as_str(), "auto" | "default") {
            return Err(refused(fields, "service_tier"));
        }
    }
    check_context_management(body.context_management.as_ref())?;
    check_include(body.include.as_ref())?;
    check_reasoning(body.reasoning.as_ref())?;
    check_text(body.text.as_ref())?;
    check_metadata(body.metadata.as_ref())?;
    if body.parallel_tool_calls == Some(false) {
        return Err(refused(fields, "parallel_tool_calls"));
    }
    if let Some(options) = &body.stream_options {
        let Some(options) = options.as_object() else {
            return Err(FieldError::invalid(
                "stream_options",
                "stream_options must be an object",
            ));
        };
        for (key, value) in options {
            match key.as_str() {
                "include_obfuscation" if value == &Value::Bool(true) => {
                    return Err(FieldError::unsupported(
                        "stream_options.include_obfuscation",
                        "keel does not support `stream_options.include_obfuscation: true`: it adds no obfuscation field to streamed events. Leave it out (or send false)",
                    ));
                }
                "include_obfuscation" if value.is_boolean() || value.is_null() => {}
                "include_obfuscation" => {
                    return Err(FieldError::invalid(
                        "stream_options.include_obfuscation",
                        "stream_options.include_obfuscation must be a boolean",
                    ));
                }
                other => return Err(unknown(&format!("stream_options.{other}"))),
            }
        }
    }
    in_range("temperature", body.temperature, 2.0)?;
    in_range("top_p", body.top_p, 1.0)?;
    at_least_one("max_output_tokens", body.max_output_tokens)?;
    Ok(())
}

/// A field OpenAI's request does not have.
pub(super) fn unknown(param: &str) -> FieldError {
    FieldError {
        param: param.to_string(),
        code: "unknown_parameter",
        message: format!("unknown parameter `{param}`: it is not a field of this request"),
    }
}

fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(is_set),
    }
}

fn check_context_management(value: Option<&Value>) -> Result<(), FieldError> {
    compact_threshold(value).map(|_| ())
}

/// The smallest `compact_threshold` taken: below it a summary would not leave room for a turn.
pub const MIN_COMPACT_THRESHOLD: u64 = 256;

/// `context_management`'s compaction entry as the context's budget in tokens (`None`: no entry).
pub fn compact_threshold(value: Option<&Value>) -> Result<Option<u32>, FieldError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(FieldError::invalid(
                "context_management",
                "context_management must be a list of {\"type\": \"compaction\", …} entries",
            ));
        }
    };
    let mut threshold = None;
    for (i, entry) in entries.iter().enumerate() {
        let param = format!("context_management[{i}].type");
        match entry.get("type").and_then(Value::as_str) {
            Some(kind) => one_of(&param, kind, CONTEXT_MANAGEMENT_TYPES)?,
            None => {
                return Err(FieldError::invalid(
                    param,
                    "each context_management entry needs a `type` (\"compaction\")",
                ));
            }
        }
        let param = format!("context_management[{i}].compact_threshold");
        let tokens = match entry.get("compact_threshold") {
            // No threshold: the model's own budget (three quarters of its window).
            None | Some(Value::Null) => continue,
            Some(value) => value
                .as_u64()
                .filter(|n| (MIN_COMPACT_THRESHOLD..=u64::from(u32::MAX)).contains(n)),
        };
        let Some(tokens) = tokens else {
            return Err(FieldError::invalid(
                param,
                format!(
                    "compact_threshold must be a whole number of tokens from {MIN_COMPACT_THRESHOLD} to {}",
                    u32::MAX
                ),
            ));
        };
        threshold = Some(tokens as u32);
    }
    Ok(threshold)
}

fn check_include(value: Option<&Value>) -> Result<(), FieldError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(FieldError::invalid("include", "include must be a list")),
    };
    for (i, item) in items.iter().enumerate() {
        let param = format!("include[{i}]");
        match item.as_str() {
            Some(name) => one_of(&param, name, INCLUDABLE)?,
            None => return Err(FieldError::invalid(param, "include lists strings")),
        }
    }
    if items.is_empty() {
        Ok(())
    } else {
        Err(refused(RESPONSES, "include"))
    }
}

fn check_reasoning(value: Option<&Value>) -> Result<(), FieldError> {
    let settings = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(settings)) => settings,
        Some(_) => {
            return Err(FieldError::invalid(
                "reasoning",
                "reasoning must be an object",
            ));
        }
    };
    for (key, value) in settings {
        let param = format!("reasoning.{key}");
        let allowed = match key.as_str() {
            "effort" => REASONING_EFFORTS,
            "summary" | "generate_summary" => REASONING_SUMMARIES,
            "context" => REASONING_CONTEXTS,
            // OpenAI's `mode` takes any string.
            "mode" => &[],
            _ => return Err(unknown(&param)),
        };
        match value {
            Value::Null => {}
            Value::String(_) if allowed.is_empty() => {}
            Value::String(v) => one_of(&param, v, allowed)?,
            _ => return Err(FieldError::invalid(param, "a string, or null")),
        }
    }
    if settings.values().any(|v| !v.is_null()) {
        return Err(refused(RESPONSES, "reasoning"));
    }
    Ok(())
}

fn check_text(value: Option<&Value>) -> Result<(), FieldError> {
    let settings = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(settings)) => settings,
        Some(_) => return Err(FieldError::invalid("text", "text must be an object")),
    };
    for (key, value) in settings {
        match key.as_str() {
            // Read (and checked) by `controls::response_format`.
            "format" => {}
            "verbosity" => match value {
                Value::Null => {}
                Value::String(v) => {
                    one_of("text.verbosity", v, VERBOSITIES)?;
                    return Err(FieldError::unsupported(
                        "text.verbosity",
                        "keel does not support `text.verbosity`: it is not passed to providers. Leave it out",
                    ));
                }
                _ => return Err(FieldError::invalid("text.verbosity", "a string, or null")),
            },
            other => return Err(unknown(&format!("text.{other}"))),
        }
    }
    Ok(())
}

fn check_metadata(value: Option<&serde_json::Map<String, Value>>) -> Result<(), FieldError> {
    let Some(metadata) = value else {
        return Ok(());
    };
    let bad = |message: String| Err(FieldError::invalid("metadata", message));
    if metadata.len() > 16 {
        return bad(format!(
            "metadata holds {} keys; at most 16",
            metadata.len()
        ));
    }
    match metadata.keys().find(|key| key.chars().count() > 64) {
        Some(key) => bad(format!("metadata key {key:?} is longer than 64 characters")),
        None => Ok(()),
    }
}

/// `truncation` as keel's `Truncation`.
pub fn truncation(value: Option<&str>) -> Result<keel_core::Truncation, FieldError> {
    match value {
        None | Some("disabled") => Ok(keel_core::Truncation::Disabled),
        Some("auto") => Ok(keel_core::Truncation::Auto),
        Some(other) => Err(not_one_of("truncation", other, TRUNCATIONS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table between `<!-- fields:NAME -->` and `<!-- /fields:NAME -->` in the doc, as a
    /// byte range.
    fn table_range(doc: &str, name: &str) -> std::ops::Range<usize> {
        let start = format!("<!-- fields:{name} -->\n");
        let end = format!("<!-- /fields:{name} -->");
        let from = doc.find(&start).expect("the doc marks the table's start") + start.len();
        let to = doc[from..]
            .find(&end)
            .expect("the doc marks the table's end")
            + from;
        from..to
    }

    /// The doc's tables are these lists; `KEEL_BLESS=1` writes them into the doc instead.
    #[test]
    fn the_compatibility_doc_shows_these_lists() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openai-compatibility.md"
        );
        let mut doc = std::fs::read_to_string(path).expect("docs/openai-compatibility.md");
        let bless = std::env::var_os("KEEL_BLESS").is_some();
        for (name, fields) in [
            ("chat_completions", CHAT_COMPLETIONS),
            ("responses", RESPONSES),
            ("embeddings", EMBEDDINGS),
        ] {
            let expected = markdown_table(fields);
            let range = table_range(&doc, name);
            if bless {
                doc.replace_range(range, &expected);
                continue;
            }
            assert_eq!(
                &doc[range], expected,
                "docs/openai-compatibility.md's {name} table differs from keel-server's \
                 openai::fields: run this test with KEEL_BLESS=1 to write it"
            );
        }
        if bless {
            std::fs::write(path, doc).expect("write docs/openai-compatibility.md");
        }
    }

    #[test]
    fn every_field_is_listed_once_with_values_keel_refuses() {
        for fields in [CHAT_COMPLETIONS, RESPONSES, EMBEDDINGS] {
            let names: std::collections::HashSet<&str> = fields.iter().map(|f| f.name).collect();
            assert_eq!(names.len(), fields.len(), "a field is listed twice");
            for f in fields {
                assert!(!f.refused.is_empty(), "{} has no refused example", f.name);
                for (json, _) in f.refused {
                    serde_json::from_str::<Value>(json)
                        .unwrap_or_else(|e| panic!("{}: {json}: {e}", f.name));
                }
            }
        }
    }

    #[test]
    fn sent_tells_defaults_from_values_without_keeping_them() {
        for (json, sent) in [
            ("null", Sent::Nothing),
            ("false", Sent::Empty),
            ("0", Sent::Empty),
            ("0.0", Sent::Empty),
            ("\"\"", Sent::Empty),
            ("[]", Sent::Empty),
            ("{}", Sent::Empty),
            ("true", Sent::Value),
            ("-2", Sent::Value),
            ("0.5", Sent::Value),
            ("\"x\"", Sent::Value),
            ("[0]", Sent::Value),
            ("{\"a\": {\"b\": [1, 2]}}", Sent::Value),
        ] {
            assert_eq!(serde_json::from_str::<Sent>(json).unwrap(), sent, "{json}");
        }
    }
}
