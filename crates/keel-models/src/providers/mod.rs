//! One module per provider; each converts the normalized request and stream to and from its
//! own wire format, and nothing else.

pub mod anthropic;
pub mod azure;
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod gemini;
pub mod openai;
pub mod openai_responses;
pub mod scripted;
mod streaming;

pub use streaming::HttpTimeouts;
#[cfg(feature = "local")]
pub mod local;
