//! Test support shared by every keel crate's tests: real HTTP servers on 127.0.0.1 that speak a
//! provider's documented wire format, check what they receive, and fail on demand. One module per
//! provider; the faults they can inject are one shared enum so every provider is tested alike.

pub mod anthropic_mock;
pub mod azure_mock;
pub mod bedrock_mock;
pub mod embedding;
mod fault;
pub mod gemini_mock;
pub mod openai_mock;
mod reply;
pub mod responses_mock;
mod server;
pub mod tool_endpoint;
pub mod upstream;

pub use fault::Fault;
pub use server::RecordedRequest;
