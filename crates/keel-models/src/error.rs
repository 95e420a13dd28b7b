//! The one model error type: what went wrong, whether trying again can help, and what the
//! provider itself said (its HTTP status and error code), so the API can answer the way OpenAI
//! would. Messages are cleaned of credentials when the error is made (`sanitize`): they are
//! logged, stored in the session's log and shown to callers.

use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelErrorKind {
    /// 429 or a provider's rate limit: retry after `retry_after` if given.
    RateLimited,
    /// 5xx, connection refused or reset, a stream cut mid-way.
    Unavailable,
    /// No first byte, or the whole call, within its deadline.
    Timeout,
    /// The credentials were refused (401/403).
    Auth,
    /// The request was refused as invalid (400, 404, 422): retrying will not help.
    BadRequest,
    /// The input does not fit the model's context window (OpenAI's `context_length_exceeded`,
    /// Anthropic's "prompt is too long", …): the same request will not fit on a retry, a
    /// shorter one may.
    ContextOverflow,
    /// The provider answered something keel cannot parse.
    Protocol,
    /// The call was cancelled by keel.
    Cancelled,
}

impl ModelErrorKind {
    /// Every kind, for tests and for decoding stored names.
    pub const ALL: [ModelErrorKind; 8] = [
        ModelErrorKind::RateLimited,
        ModelErrorKind::Unavailable,
        ModelErrorKind::Timeout,
        ModelErrorKind::Auth,
        ModelErrorKind::BadRequest,
        ModelErrorKind::ContextOverflow,
        ModelErrorKind::Protocol,
        ModelErrorKind::Cancelled,
    ];

    /// The stable name stored with a failed step (`model_failed.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorKind::RateLimited => "rate_limited",
            ModelErrorKind::Unavailable => "unavailable",
            ModelErrorKind::Timeout => "timeout",
            ModelErrorKind::Auth => "auth",
            ModelErrorKind::BadRequest => "bad_request",
            ModelErrorKind::ContextOverflow => "context_overflow",
            ModelErrorKind::Protocol => "protocol",
            ModelErrorKind::Cancelled => "cancelled",
        }
    }

    /// The kind a stored name names (`None` for a name this keel does not know).
    pub fn parse(name: &str) -> Option<ModelErrorKind> {
        ModelErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub struct ModelError {
    pub kind: ModelErrorKind,
    pub provider: String,
    /// What went wrong, in the provider's words when it gave some (credentials removed).
    pub message: String,
    /// The provider's HTTP status, when it answered with one.
    pub status: Option<u16>,
    /// The provider's own error code or type (`context_length_exceeded`,
    /// `rate_limit_error`, `RESOURCE_EXHAUSTED`), when it gave one.
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.provider)?;
        if let Some(status) = self.status {
            write!(f, "HTTP {status}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        Ok(())
    }
}

impl ModelError {
    pub fn new(
        kind: ModelErrorKind,
        provider: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ModelError {
            kind,
            provider: provider.into(),
            message: sanitize(&message.into()),
            status: None,
            code: None,
            retry_after: None,
        }
    }

    /// Whether another attempt (here or on another target) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ModelErrorKind::RateLimited
                | ModelErrorKind::Unavailable
                | ModelErrorKind::Timeout
                | ModelErrorKind::Protocol
        )
    }

    /// Maps an HTTP error from a provider onto a kind: `message` and `code` are what its error
    /// body said (a provider module reads its own body shape).
    pub fn from_status(
        provider: &str,
        status: u16,
        message: &str,
        code: Option<&str>,
        retry_after: Option<Duration>,
    ) -> Self {
        let kind = match status {
            _ if is_context_overflow(Some(status), code, message) => {
                ModelErrorKind::ContextOverflow
            }
            429 => ModelErrorKind::RateLimited,
            401 | 403 => ModelErrorKind::Auth,
            408 => ModelErrorKind::Timeout,
            400..=499 => ModelErrorKind::BadRequest,
            _ => ModelErrorKind::Unavailable,
        };
        let snippet: String = message.chars().take(500).collect();
        ModelError {
            kind,
            provider: provider.to_string(),
            message: sanitize(&snippet),
            status: Some(status),
            code: code.filter(|c| !c.is_empty()).map(short_code),
            retry_after,
        }
    }

    /// The same error with the provider's code; a code (or message) that says the input did
    /// not fit makes it a `ContextOverflow`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        let code = short_code(&code.into());
        if self.kind == ModelErrorKind::BadRequest
            && is_context_overflow(self.status, Some(&code), &self.message)
        {
            self.kind = ModelErrorKind::ContextOverflow;
        }
        self.code = Some(code).filter(|c| !c.is_empty());
        self
    }
}

/// A provider code kept to a sane length (it is stored and shown).
fn short_code(code: &str) -> String {
    sanitize(&code.chars().take(64).collect::<String>())
}

/// Whether a provider's refusal says the input is longer than the model's context window.
/// Providers word it differently: OpenAI, Azure and vLLM ("maximum context length",
/// `context_length_exceeded`), Anthropic ("prompt is too long"), Gemini ("exceeds the maximum
/// number of tokens"), Bedrock ("input is too long"), llama.cpp (`exceed_context_size_error`).
pub fn is_context_overflow(status: Option<u16>, code: Option<&str>, message: &str) -> bool {
    if status.is_some_and(|s| !matches!(s, 400 | 413 | 422)) {
        return false;
    }
    const CODES: &[&str] = &[
        "context_length_exceeded",
        "exceed_context_size_error",
        "model_context_window_exceeded",
    ];
    if code.is_some_and(|c| CODES.contains(&c)) {
        return true;
    }
    const PHRASES: &[&str] = &[
        "maximum context length",
        "context_length_exceeded",
        "context length exceeded",
        "exceeds the context window",
        "exceeds the model's context",
        "exceed context window",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum number of tokens",
        "too many input tokens",
        "exceeds the available context size",
        "exceed_context_size",
    ];
    let lower = message.to_ascii_lowercase();
    PHRASES.iter().any(|p| lower.contains(p))
}

/// `text` with anything that looks like a credential replaced by `***`: a URL's user and
/// password, the value of a query parameter that carries a key or signature, a `Bearer`
/// token, and key-shaped words (`sk-…`, Google's `AIza…`, AWS access key ids).
pub fn sanitize(text: &str) -> String {
    if !might_hold_secret(text) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(rest.len());
        if word_len == 0 {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (word, after) = rest.split_at(word_len);
        out.push_str(&clean_word(word));
        rest = after;
        // The word after `Bearer` is the token itself.
        if word.eq_ignore_ascii_case("bearer") {
            let spaces = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..spaces]);
            rest = &rest[spaces..];
            let token_len = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'))
                .unwrap_or(rest.len());
            if token_len > 0 {
                out.push_str("***");
                rest = &rest[token_len..];
            }
        }
    }
    out
}

/// A cheap first look, so most messages are copied without a scan word by word.
fn might_hold_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "://", "bearer", "sk-", "aiza", "akia", "asia", "key=", "token=", "sig=",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

fn clean_word(word: &str) -> String {
    if let Some(at) = word.find("://") {
        return clean_url(word, at);
    }
    let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
    if looks_like_key(bare) {
        return word.replacen(bare, "***", 1);
    }
    clean_query(word)
}

fn looks_like_key(word: &str) -> bool {
    let body_len = |prefix: &str| {
        word.strip_prefix(prefix).map_or(0, |rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'))
                .count()
        })
    };
    body_len("sk-") >= 8
        || body_len("AIza") >= 20
        || ((word.starts_with("AKIA") || word.starts_with("ASIA"))
            && word.len() == 20
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
}

/// A URL without its user and password, and with secret query values hidden.
fn clean_url(word: &str, scheme_end: usize) -> String {
    let authority_start = scheme_end + 3;
    let authority_len = word[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(word.len() - authority_start);
    let authority = &word[authority_start..authority_start + authority_len];
    let mut out = word[..authority_start].to_string();
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***@");
            out.push_str(&authority[at + 1..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&clean_query(&word[authority_start + authority_len..]));
    out
}

/// `name=value` pairs whose name says they hold a credential get `***` for a value.
fn clean_query(text: &str) -> String {
    const SECRET_NAMES: &[&str] = &[
        "key",
        "api_key",
        "apikey",
        "api-key",
        "token",
        "access_token",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "secret",
        "password",
    ];
    if !text.contains('=') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let name_start = rest[..eq]
            .rfind(['?', '&', ';', ' ', ',', '(', '{'])
            .map_or(0, |i| i + 1);
        let name = &rest[name_start..eq];
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        if SECRET_NAMES.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            let value_len = rest
                .find(['&', ';', ',', ')', '}', '#'])
                .unwrap_or(rest.len());
            if value_len > 0 {
                out.push_str("***");
            }
            rest = &rest[value_len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_messages() {
        for (text, shown) in [
            (
                "Incorrect API key provided: sk-proj-abcdefgh1234. You can find your key",
                "Incorrect API key provided: ***. You can find your key",
            ),
            (
                "cannot connect to https://user:hunter2@proxy.example/v1/chat/completions: refused",
                "cannot connect to https://***@proxy.example/v1/chat/completions: refused",
            ),
            (
                "POST https://g.example/v1beta/models/x:streamGenerateContent?alt=sse&key=AIzaSyAbc123 failed",
                "POST https://g.example/v1beta/models/x:streamGenerateContent?alt=sse&key=*** failed",
            ),
            (
                "header Authorization: Bearer kk_live.s3cr3t was refused",
                "header Authorization: Bearer *** was refused",
            ),
            (
                "AWS key AKIAIOSFODNN7EXAMPLE is not valid",
                "AWS key *** is not valid",
            ),
            (
                "the key AIzaSyA1234567890abcdefghij expired",
                "the key *** expired",
            ),
        ] {
            assert_eq!(sanitize(text), shown, "{text}");
        }
        for kept in [
            "cannot connect to http://127.0.0.1:4000/v1/chat/completions: connection refused",
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "task-queue is full (sk- prefix alone is fine)",
            "",
        ] {
            assert_eq!(sanitize(kept), kept);
        }
    }

    #[test]
    fn a_refusal_for_length_is_a_context_overflow_whatever_the_provider_calls_it() {
        let cases = [
            (
                400,
                Some("context_length_exceeded"),
                "Your input exceeds the context window of this model.",
            ),
            (
                400,
                None,
                "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
            ),
            (
                400,
                Some("invalid_request_error"),
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
            (
                400,
                Some("INVALID_ARGUMENT"),
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
            (
                400,
                Some("exceed_context_size_error"),
                "the request exceeds the available context size",
            ),
        ];
        for (status, code, message) in cases {
            let error = ModelError::from_status("p", status, message, code, None);
            assert_eq!(error.kind, ModelErrorKind::ContextOverflow, "{message}");
            assert!(!error.is_retryable());
            assert_eq!(error.status, Some(status));
            assert_eq!(error.code.as_deref(), code);
        }
        let plain = ModelError::from_status(
            "p",
            400,
            "temperature must be <= 2",
            Some("invalid_value"),
            None,
        );
        assert_eq!(plain.kind, ModelErrorKind::BadRequest);
        // A server error that mentions context is still a server error.
        let down =
            ModelError::from_status("p", 500, "maximum context length cache broke", None, None);
        assert_eq!(down.kind, ModelErrorKind::Unavailable);
    }

    #[test]
    fn the_message_shows_status_and_code_and_kind_names_round_trip() {
        let error = ModelError::from_status(
            "openai",
            429,
            "Slow down.",
            Some("rate_limit_exceeded"),
            None,
        );
        assert_eq!(
            error.to_string(),
            "openai: HTTP 429: Slow down. (rate_limit_exceeded)"
        );
        assert_eq!(error.kind, ModelErrorKind::RateLimited);
        for kind in ModelErrorKind::ALL {
            assert_eq!(ModelErrorKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ModelErrorKind::parse("meteor_strike"), None);
    }
}
