//! The OpenAI-compatible API, so code written for OpenAI's SDKs can point at keel: the
//! stateless `/v1/chat/completions` gateway over every route and provider, and `/v1/models`.
//! keel API keys are the Bearer token; errors take OpenAI's shape on these paths.

pub mod chat;
pub mod error;
pub mod models;
pub mod wire;
