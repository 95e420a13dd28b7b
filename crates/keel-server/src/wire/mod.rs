//! The API's request and response bodies: the JSON shapes clients see, with their OpenAPI
//! schemas, one module per resource. Core types (messages, tools, events) appear as open JSON
//! objects so their own serde shapes stay the single definition.

mod admin;
mod agents;
mod blocks;
mod runs;
mod sessions;

pub use admin::*;
pub use agents::*;
pub use blocks::*;
pub use runs::*;
pub use sessions::*;

type JsonObject = serde_json::Map<String, serde_json::Value>;
