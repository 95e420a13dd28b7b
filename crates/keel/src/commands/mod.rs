//! One module per `keel` subcommand, and the clients `chat` and `send` run over (`client`:
//! `local`, the embedded engine; `remote`, a running server).

pub mod agents;
pub mod bench;
pub mod chat;
pub mod client;
pub mod config;
pub mod local;
pub mod mcp;
pub mod memory;
pub mod migrate;
pub mod model;
pub mod remote;
pub mod runs;
pub mod schedules;
pub mod send;
pub mod serve;
pub mod sessions;
pub mod sessions_at;
pub mod store;
pub mod webhooks;

use keel_core::{Message, Part, Role};

/// One line per message, for people.
pub fn render_message(message: &Message) -> String {
    let who = match message.role {
        Role::System => "system",
        Role::User => "you",
        Role::Assistant => "agent",
        Role::Tool => "tool",
    };
    let body: Vec<String> = message
        .parts
        .iter()
        .map(|p| match p {
            Part::Text { text } => text.clone(),
            Part::Image { url } => format!("[image {url}]"),
            Part::ToolCall {
                name, arguments, ..
            } => format!("[calls {name}({arguments})]"),
            Part::ToolResult {
                content, is_error, ..
            } => {
                if *is_error {
                    format!("[error: {content}]")
                } else {
                    format!("[result: {content}]")
                }
            }
        })
        .collect();
    format!("{who}: {}", body.join(" "))
}
