//! Gateway usage totals per tenant, API key, model and UTC day: increments are added with an
//! upsert, so callers can aggregate in memory and flush now and then.

use deadpool_postgres::Client;
use keel_core::TenantId;

use super::statements;
use crate::stored::{self, count, sql_bound};
use crate::{StoreError, UsageQuery, UsageTotals};

/// Adds every increment in one transaction, in key order: two nodes flushing the same keys
/// lock them in the same order, so they wait for each other rather than deadlock.
pub(crate) async fn add(client: &mut Client, increments: &[UsageTotals]) -> Result<(), StoreError> {
    let mut sorted: Vec<&UsageTotals> = increments.iter().collect();
    sorted.sort_by(|a, b| {
        (a.tenant.as_str(), &a.day, &a.key_prefix, &a.model).cmp(&(
            b.tenant.as_str(),
            &b.day,
            &b.key_prefix,
            &b.model,
        ))
    });
    let tx = client.transaction().await?;
    for u in sorted {
        statements::execute(
            &tx,
            "INSERT INTO usage_totals (tenant, key_prefix, model, day, requests, input_tokens,
                 output_tokens, cached_input_tokens, cost_usd)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant, day, key_prefix, model) DO UPDATE SET
                 requests = usage_totals.requests + excluded.requests,
                 input_tokens = usage_totals.input_tokens + excluded.input_tokens,
                 output_tokens = usage_totals.output_tokens + excluded.output_tokens,
                 cached_input_tokens = usage_totals.cached_input_tokens + excluded.cached_input_tokens,
                 cost_usd = usage_totals.cost_usd + excluded.cost_usd",
            &[
                &u.tenant.as_str(),
                &u.key_prefix,
                &u.model,
                &u.day,
                &sql_bound(u.requests),
                &sql_bound(u.input_tokens),
                &sql_bound(u.output_tokens),
                &sql_bound(u.cached_input_tokens),
                &u.cost_usd,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn list(
    client: &Client,
    tenant: &TenantId,
    query: &UsageQuery,
) -> Result<Vec<UsageTotals>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT tenant, key_prefix, model, day, requests, input_tokens, output_tokens,
             cached_input_tokens, cost_usd
         FROM usage_totals
         WHERE tenant = $1 AND ($2::text IS NULL OR day >= $2) AND ($3::text IS NULL OR key_prefix = $3)
         ORDER BY day, key_prefix, model",
        &[&tenant.as_str(), &query.since_day, &query.key_prefix],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageTotals {
                tenant: stored::id(row.try_get(0)?)?,
                key_prefix: row.try_get(1)?,
                model: row.try_get(2)?,
                day: row.try_get(3)?,
                requests: count(row.try_get(4)?),
                input_tokens: count(row.try_get(5)?),
                output_tokens: count(row.try_get(6)?),
                cached_input_tokens: count(row.try_get(7)?),
                cost_usd: row.try_get(8)?,
            })
        })
        .collect()
}
