//! Agent definitions, one row per version. Storing a definition under a known name makes the
//! next version and keeps the agent's id; nothing is ever updated in place. Two nodes storing
//! a version of one name at once both pick the same number; the key refuses the second, which
//! reads the new latest and tries again.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{AgentDef, AgentId, TenantId, Timestamp};
use tokio_postgres::Row;

use super::{error, statements};
use crate::stored;
use crate::{StoreError, encode, unreadable};

/// How many times `put` re-reads the latest version after losing a race for the next one.
const PUT_ATTEMPTS: usize = 8;

pub(crate) async fn put(
    client: &mut Client,
    tenant: &TenantId,
    def: AgentDef,
) -> Result<AgentDef, StoreError> {
    if def.name.trim().is_empty() {
        return Err(StoreError::Invalid(
            "an agent needs a name; got an empty one".into(),
        ));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = client.transaction().await?;
        let def = next_version(&tx, tenant, def.clone()).await?;
        let json = encode::json(&def, || format!("agent {:?}", def.name))?;
        match insert(&tx, tenant, &def, &json).await {
            Ok(()) => {
                tx.commit().await?;
                return Ok(def);
            }
            Err(e) if error::is_duplicate(&e) && attempt < PUT_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `def` numbered as the next version of its name, with the agent's id if the name is known.
async fn next_version(
    client: &impl GenericClient,
    tenant: &TenantId,
    mut def: AgentDef,
) -> Result<AgentDef, StoreError> {
    let latest = statements::query_opt(
        client,
        "SELECT version, id FROM agents WHERE tenant = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
        &[&tenant.as_str(), &def.name],
    )
    .await?;
    let Some(latest) = latest else {
        def.version = 1;
        return Ok(def);
    };
    let version: i64 = latest.try_get(0)?;
    def.version = u32::try_from(version)
        .ok()
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "agent {:?} has reached the last version number ({version})",
                def.name
            ))
        })?;
    def.id = stored::id::<AgentId>(latest.try_get(1)?)?;
    Ok(def)
}

/// Stores `def` (encoded as `json`) and brings its name back from the archive.
async fn insert(
    client: &impl GenericClient,
    tenant: &TenantId,
    def: &AgentDef,
    json: &str,
) -> Result<(), tokio_postgres::Error> {
    statements::execute(
        client,
        "DELETE FROM archived_agents WHERE tenant = $1 AND name = $2",
        &[&tenant.as_str(), &def.name],
    )
    .await?;
    statements::execute(
        client,
        "INSERT INTO agents (tenant, name, version, id, def) VALUES ($1, $2, $3, $4, $5)",
        &[
            &tenant.as_str(),
            &def.name,
            &i64::from(def.version),
            &def.id.as_str(),
            &json,
        ],
    )
    .await
    .map(drop)
}

/// The given version, or the latest when `version` is `None`.
pub(crate) async fn get(
    client: &Client,
    tenant: &TenantId,
    name: &str,
    version: Option<u32>,
) -> Result<Option<AgentDef>, StoreError> {
    statements::query_opt(
        client,
        "SELECT name, def FROM agents WHERE tenant = $1 AND name = $2 AND ($3::bigint IS NULL OR version = $3)
         ORDER BY version DESC LIMIT 1",
        &[&tenant.as_str(), &name, &version.map(i64::from)],
    )
    .await?
    .map(|row| from_row(&row))
    .transpose()
}

/// Hides the agent from `list` until a new version is stored and deletes its timers; `false`
/// for an unknown agent. The agent's rows are held first (`FOR UPDATE`), as `timers::put`
/// holds them shared for an agent's timer: a timer put while the agent is archived is either
/// seen and deleted here, or sees the agent archived and is refused.
pub(crate) async fn archive(
    client: &mut Client,
    tenant: &TenantId,
    name: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    statements::query(
        &tx,
        "SELECT 1 FROM agents WHERE tenant = $1 AND name = $2 FOR UPDATE",
        &[&tenant.as_str(), &name],
    )
    .await?;
    let archived = statements::query_opt(
        &tx,
        "WITH known AS (SELECT 1 FROM agents WHERE tenant = $1 AND name = $2 LIMIT 1),
              archived AS (INSERT INTO archived_agents (tenant, name, archived_at)
                           SELECT $1, $2, $3 FROM known ON CONFLICT DO NOTHING),
              stopped AS (DELETE FROM timers WHERE tenant = $1 AND agent = $2
                          AND EXISTS (SELECT 1 FROM known))
         SELECT 1 FROM known",
        &[&tenant.as_str(), &name, &at.millis()],
    )
    .await?;
    tx.commit().await?;
    Ok(archived.is_some())
}

/// The latest version of every agent not archived, by name; one that cannot be read is skipped.
pub(crate) async fn list(client: &Client, tenant: &TenantId) -> Result<Vec<AgentDef>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT DISTINCT ON (a.name) a.name, a.def FROM agents AS a WHERE a.tenant = $1
         AND NOT EXISTS (SELECT 1 FROM archived_agents AS x WHERE x.tenant = a.tenant AND x.name = a.name)
         ORDER BY a.name, a.version DESC",
        &[&tenant.as_str()],
    )
    .await?;
    let mut agents = Vec::new();
    for row in &rows {
        match from_row(row) {
            Ok(agent) => agents.push(agent),
            Err(e) => unreadable::isolated("agent", &super::row_id(row, 0), &e),
        }
    }
    Ok(agents)
}

/// Decodes an agent read as `name, def`.
pub(crate) fn from_row(row: &Row) -> Result<AgentDef, StoreError> {
    let name: &str = row.try_get(0)?;
    stored::json(row.try_get(1)?, "definition", &format!("agent {name:?}"))
}
