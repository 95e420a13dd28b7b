//! The one model error type: what went wrong and whether trying again can help.

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
    /// The provider answered something keel cannot parse.
    Protocol,
    /// The call was cancelled by keel.
    Cancelled,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ModelError {
    pub kind: ModelErrorKind,
    pub provider: String,
    pub message: String,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
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
            message: message.into(),
            status: None,
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

    /// Maps an HTTP status from a provider onto a kind.
    pub fn from_status(
        provider: &str,
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
    ) -> Self {
        let kind = match status {
            429 => ModelErrorKind::RateLimited,
            401 | 403 => ModelErrorKind::Auth,
            408 => ModelErrorKind::Timeout,
            400..=499 => ModelErrorKind::BadRequest,
            _ => ModelErrorKind::Unavailable,
        };
        let snippet: String = body.chars().take(500).collect();
        ModelError {
            kind,
            provider: provider.to_string(),
            message: format!("HTTP {status}: {snippet}"),
            status: Some(status),
            retry_after,
        }
    }
}
