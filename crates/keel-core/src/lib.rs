//! keel's vocabulary and the sans-IO session core.
//!
//! Everything here is pure: no I/O, no clock, no randomness. Time and ids come in as
//! values. A session's state is `fold(apply, snapshot_or_empty, events)` and what to do
//! next is `decide(&state)`; the driver in `keel-engine` does the rest. A test
//! (`tests/no_io_dependencies.rs`) keeps tokio, the store and HTTP crates out of this crate.

pub mod agent;
pub mod approval;
pub mod controls;
pub mod event;
pub mod http_tool;
pub mod id;
pub mod limits;
pub mod mcp_server;
pub mod message;
pub mod run;
pub mod session;
pub mod time;

pub use agent::{AgentDef, BlockDef, Limits, ToolDef, ToolKind};
pub use approval::{ASK_HUMAN, Approval, ApprovalRequest, ApprovalRule, ArgumentPattern, Decision};
pub use controls::{CallerIds, ResponseFormat, ToolChoice};
pub use event::{Event, EventBody, EventDecodeError, FinishReason};
pub use http_tool::{HttpAuth, HttpMethod, HttpTool};
pub use id::{AgentId, IdError, RunId, SessionId, TenantId, TimerId, WebhookId};
pub use mcp_server::{EnvValue, FromEnv, MCP_NAME_SEPARATOR, McpServer};
pub use message::{Message, Part, Role, Usage};
pub use run::{RunOptions, Truncation};
pub use session::{
    Action, PendingToolCall, RunState, RunStatus, SessionState, SessionStatus, decide,
};
pub use time::Timestamp;
