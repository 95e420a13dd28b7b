//! The OpenAI-compatible API, so code written for OpenAI's SDKs can point at keel: the
//! stateless `/v1/chat/completions` and `/v1/embeddings` gateway over every route and provider,
//! `/v1/models`, and
//! the stateful `/v1/responses` and `/v1/conversations`, whose state is keel sessions.
//! keel API keys are the Bearer token; errors take OpenAI's shape on these paths.

pub mod chat;
mod chat_stream;
pub mod controls;
pub mod conversations;
pub mod embeddings;
pub mod error;
pub mod fields;
pub mod items;
pub mod items_file;
pub mod models;
pub mod pagination;
pub mod response_events;
pub mod responses;
pub mod wire;
