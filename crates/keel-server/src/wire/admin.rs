//! Administration: tenants, API keys, unreadable records and health.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `tenant` (the default) or `admin`.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub prefix: String,
    pub tenant_id: String,
    pub scope: String,
    pub created_at: String,
    pub revoked: bool,
    /// The whole key, shown only when it is created.
    pub key: Option<String>,
}

/// A stored record keel cannot decode (damaged, or written by a newer keel); it is isolated.
#[derive(Serialize, ToSchema)]
pub struct UnreadableView {
    /// `agent`, `session`, `run`, `event` (id `ses_…#seq`) or `snapshot`.
    pub kind: String,
    pub id: String,
    pub tenant_id: Option<String>,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct UnreadableList {
    pub data: Vec<UnreadableView>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}
