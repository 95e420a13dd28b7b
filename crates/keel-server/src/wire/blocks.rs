//! Memory blocks: how one is shown, and the bodies that write one (a session's, or the
//! tenant's shared one).

use keel_engine::RenderedBlock;
use keel_store::BlockEdit;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A memory block: its value now, its limit, and how many writes made it so.
#[derive(Serialize, ToSchema)]
pub struct BlockView {
    pub label: String,
    pub value: String,
    /// The most characters it may hold.
    pub limit: u32,
    /// The tenant's shared block (else the session's own).
    pub shared: bool,
    pub description: String,
    /// Writes so far; 0 while it holds its declared value.
    pub version: u64,
    /// When it was last written (RFC 3339); absent before its first write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl From<RenderedBlock> for BlockView {
    fn from(b: RenderedBlock) -> Self {
        BlockView {
            label: b.label,
            value: b.value,
            limit: b.limit,
            shared: b.shared,
            description: b.description,
            version: b.version,
            updated_at: b.updated_at.map(|t| t.to_string()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BlockList {
    pub data: Vec<BlockView>,
}

/// One write of a shared block, as its history keeps it.
#[derive(Serialize, ToSchema)]
pub struct BlockEditView {
    pub version: u64,
    /// What it held before (absent for the write that made it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    pub after: String,
    /// `api`, or `agent` (then with the session and run that made it).
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub at: String,
}

impl From<BlockEdit> for BlockEditView {
    fn from(e: BlockEdit) -> Self {
        BlockEditView {
            version: e.version,
            before: e.before,
            after: e.after,
            by: e.by,
            session_id: e.session.map(|s| s.to_string()),
            run_id: e.run.map(|r| r.to_string()),
            at: e.at.to_string(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BlockEditList {
    pub data: Vec<BlockEditView>,
}

/// The body of `PUT /v1/sessions/{id}/memory/blocks/{label}`: the block's new value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBlock {
    pub value: String,
}

/// The body of `PUT /v1/memory/blocks/{label}`: a shared block's new value, and, to make one
/// or change it, its limit and description.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSharedBlock {
    pub value: String,
    /// 1 to 100000 characters; a new block's default is 2000, an existing one keeps its own.
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
}
