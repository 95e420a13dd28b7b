//! Gateway usage totals per tenant, API key, model and UTC day: increments are added with an
//! UPSERT, so callers can aggregate in memory and flush now and then.

use keel_core::TenantId;
use rusqlite::{Connection, params};

use super::stored_id;
use crate::{StoreError, UsageQuery, UsageTotals};

pub(crate) fn add(conn: &Connection, increments: &[UsageTotals]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO usage_totals (tenant, key_prefix, model, day, requests, input_tokens,
             output_tokens, cached_input_tokens, cost_usd)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (tenant, day, key_prefix, model) DO UPDATE SET
             requests = requests + excluded.requests,
             input_tokens = input_tokens + excluded.input_tokens,
             output_tokens = output_tokens + excluded.output_tokens,
             cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
             cost_usd = cost_usd + excluded.cost_usd",
    )?;
    for u in increments {
        stmt.execute(params![
            u.tenant.as_str(),
            u.key_prefix,
            u.model,
            u.day,
            super::sql_bound(u.requests),
            super::sql_bound(u.input_tokens),
            super::sql_bound(u.output_tokens),
            super::sql_bound(u.cached_input_tokens),
            u.cost_usd,
        ])?;
    }
    Ok(())
}

pub(crate) fn list(
    conn: &Connection,
    tenant: &TenantId,
    query: &UsageQuery,
) -> Result<Vec<UsageTotals>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT tenant, key_prefix, model, day, requests, input_tokens, output_tokens,
             cached_input_tokens, cost_usd
         FROM usage_totals
         WHERE tenant = ?1 AND (?2 IS NULL OR day >= ?2) AND (?3 IS NULL OR key_prefix = ?3)
         ORDER BY day, key_prefix, model",
    )?;
    let mut rows = stmt.query(params![tenant.as_str(), query.since_day, query.key_prefix])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(UsageTotals {
            tenant: stored_id(row.get(0)?)?,
            key_prefix: row.get(1)?,
            model: row.get(2)?,
            day: row.get(3)?,
            requests: row.get::<_, i64>(4)?.max(0) as u64,
            input_tokens: row.get::<_, i64>(5)?.max(0) as u64,
            output_tokens: row.get::<_, i64>(6)?.max(0) as u64,
            cached_input_tokens: row.get::<_, i64>(7)?.max(0) as u64,
            cost_usd: row.get(8)?,
        });
    }
    Ok(out)
}
