//! Webhooks on PostgreSQL: definitions, the outbox a settling run writes into (`enqueue`, in
//! the run's own transaction), claims of due deliveries (`FOR UPDATE SKIP LOCKED`: of nodes
//! racing, one takes each), and the inbound signatures seen within their replay window.

use deadpool_postgres::GenericClient;
use keel_core::{RunId, RunStatus, TenantId, Timestamp, WebhookId};
use tokio_postgres::Row;

use super::{error, statements};
use crate::stored::{self, sql_limit};
use crate::webhooks::{
    self, DELIVERY_COLUMNS, StoredDelivery, StoredWebhook, Subscriber, WEBHOOK_COLUMNS,
};
use crate::{
    ClaimedDelivery, DeliveryOutcome, DeliveryRecord, RunOutcome, StoreError, WebhookEvent,
    WebhookRecord,
};

pub(crate) async fn put(
    client: &impl GenericClient,
    webhook: &WebhookRecord,
) -> Result<(), StoreError> {
    if let Some(session) = &webhook.session {
        let owned = statements::query_opt(
            client,
            "SELECT 1 FROM sessions WHERE id = $1 AND tenant = $2",
            &[&session.as_str(), &webhook.tenant.as_str()],
        )
        .await?;
        if owned.is_none() {
            return Err(stored::session_not_found(session));
        }
    }
    let events = webhooks::events_text(webhook)?;
    statements::execute(
        client,
        &format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        &[
            &webhook.id.as_str(),
            &webhook.tenant.as_str(),
            &webhook.direction.as_str(),
            &webhook.session.as_ref().map(|s| s.as_str()),
            &webhook.agent,
            &webhook.token_hash,
            &webhook.url,
            &events,
            &webhook.secret,
            &webhook.signed,
            &webhook.allow_private,
            &webhook.created_at.millis(),
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("webhook {}", webhook.id)),
        // The session was deleted between the look and the insert.
        false if error::is_missing_reference(&e) => match &webhook.session {
            Some(session) => stored::session_not_found(session),
            None => e.into(),
        },
        false => e.into(),
    })?;
    Ok(())
}

pub(crate) async fn list(
    client: &impl GenericClient,
    tenant: &TenantId,
) -> Result<Vec<WebhookRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = $1 ORDER BY id"),
        &[&tenant.as_str()],
    )
    .await?;
    rows.iter().map(|row| read(row)?.into_record()).collect()
}

pub(crate) async fn delete(
    client: &impl GenericClient,
    tenant: &TenantId,
    id: &WebhookId,
) -> Result<bool, StoreError> {
    let deleted = statements::execute(
        client,
        "DELETE FROM webhooks WHERE id = $1 AND tenant = $2",
        &[&id.as_str(), &tenant.as_str()],
    )
    .await?;
    Ok(deleted > 0)
}

pub(crate) async fn inbound(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<WebhookRecord>, StoreError> {
    let row = statements::query_opt(
        client,
        &format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE token_hash = $1 AND direction = 'inbound'"
        ),
        &[&token_hash],
    )
    .await?;
    row.map(|row| read(&row)?.into_record()).transpose()
}

/// Records `signature` as used until `expires_at`, forgetting those expired at `now`; `false`
/// when it was already recorded (a replay). The primary key decides between racing nodes.
pub(crate) async fn remember_signature(
    client: &impl GenericClient,
    webhook: &WebhookId,
    signature: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<bool, StoreError> {
    statements::execute(
        client,
        "DELETE FROM webhook_replays WHERE expires_at <= $1",
        &[&now.millis()],
    )
    .await?;
    let added = statements::execute(
        client,
        "INSERT INTO webhook_replays (webhook, signature, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&webhook.as_str(), &signature, &expires_at.millis()],
    )
    .await?;
    Ok(added > 0)
}

pub(crate) async fn forget_signature(
    client: &impl GenericClient,
    webhook: &WebhookId,
    signature: &str,
) -> Result<(), StoreError> {
    statements::execute(
        client,
        "DELETE FROM webhook_replays WHERE webhook = $1 AND signature = $2",
        &[&webhook.as_str(), &signature],
    )
    .await?;
    Ok(())
}

/// Writes the deliveries a run settling in `status` makes, in the caller's transaction.
pub(crate) async fn enqueue(
    client: &impl GenericClient,
    run: &RunId,
    status: RunStatus,
    outcome: &RunOutcome,
) -> Result<(), StoreError> {
    if WebhookEvent::of_status(status).is_none() {
        return Ok(());
    }
    let rows = statements::query(
        client,
        "SELECT runs.tenant, runs.session, sessions.agent_name, webhooks.id, webhooks.events
         FROM runs JOIN sessions ON sessions.id = runs.session
              JOIN webhooks ON webhooks.tenant = runs.tenant AND webhooks.direction = 'outbound'
                 AND (webhooks.session IS NULL OR webhooks.session = runs.session)
                 AND (webhooks.agent IS NULL OR webhooks.agent = sessions.agent_name)
         WHERE runs.id = $1",
        &[&run.as_str()],
    )
    .await?;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let (tenant, session, agent): (String, String, String) =
        (first.try_get(0)?, first.try_get(1)?, first.try_get(2)?);
    let subscribers = rows
        .iter()
        .map(|r| {
            Ok(Subscriber {
                id: r.try_get(3)?,
                events: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let settled = webhooks::SettledRun {
        run,
        tenant: &tenant,
        session: &session,
        agent: &agent,
        status,
        outcome,
    };
    for row in webhooks::outbox_rows(&settled, subscribers)? {
        statements::execute(
            client,
            &format!(
                "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $6, NULL, NULL, NULL)"
            ),
            &[
                &row.id,
                &tenant,
                &row.webhook,
                &row.event.as_str(),
                &row.payload,
                &row.created_at.millis(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The webhook's deliveries, newest first; empty for another tenant's webhook.
pub(crate) async fn deliveries(
    client: &impl GenericClient,
    tenant: &TenantId,
    webhook: &WebhookId,
    limit: usize,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook = $1 AND tenant = $2
             ORDER BY id DESC LIMIT $3"
        ),
        &[&webhook.as_str(), &tenant.as_str(), &sql_limit(limit)],
    )
    .await?;
    rows.iter()
        .map(|row| read_delivery(row)?.into_record())
        .collect()
}

/// Takes up to `limit` due deliveries for one attempt each, in one statement: their attempt
/// count goes up and they are not due again until `now + lease_ms`, unless settled before.
/// Rows another node is claiming are skipped, not waited for.
pub(crate) async fn claim(
    client: &impl GenericClient,
    now: Timestamp,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let until = now.millis().saturating_add(lease_ms);
    let rows = statements::query(
        client,
        "WITH due AS (SELECT id FROM webhook_deliveries WHERE next_attempt_at <= $1
                      ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE webhook_deliveries AS d SET attempts = d.attempts + 1, next_attempt_at = $3
         FROM due, webhooks AS w WHERE d.id = due.id AND w.id = d.webhook
         RETURNING d.id, d.tenant, d.webhook, d.event, d.payload, d.created_at, d.attempts,
                   d.next_attempt_at, d.delivered_at, d.failed_at, d.last_error,
                   w.url, w.secret, w.allow_private",
        &[&now.millis(), &sql_limit(limit), &until],
    )
    .await?;
    let mut claimed = Vec::new();
    for row in &rows {
        let stored = read_delivery(row)?;
        let id = stored.id.clone();
        match stored.into_record() {
            Ok(delivery) => claimed.push(ClaimedDelivery {
                delivery,
                url: row.try_get::<_, Option<String>>(11)?.unwrap_or_default(),
                secret: row.try_get(12)?,
                allow_private: row.try_get(13)?,
            }),
            Err(e) => {
                let error = webhooks::unreadable(&id, &e);
                settle(client, &id, 0, now, &DeliveryOutcome::GaveUp { error }).await?;
            }
        }
    }
    Ok(claimed)
}

/// Records how attempt `attempt` of delivery `id` ended; `false` when that attempt is no longer
/// the delivery's or it is already settled. Attempt 0 settles whatever attempt is current.
pub(crate) async fn settle(
    client: &impl GenericClient,
    id: &str,
    attempt: u32,
    now: Timestamp,
    outcome: &DeliveryOutcome,
) -> Result<bool, StoreError> {
    let (next, delivered, failed, error) = webhooks::settled_columns(now, outcome);
    let changed = statements::execute(
        client,
        "UPDATE webhook_deliveries
         SET next_attempt_at = $3, delivered_at = $4, failed_at = $5,
             last_error = COALESCE($6, last_error)
         WHERE id = $1 AND (attempts = $2 OR $2 = 0) AND delivered_at IS NULL AND failed_at IS NULL",
        &[&id, &i64::from(attempt), &next, &delivered, &failed, &error],
    )
    .await?;
    Ok(changed > 0)
}

fn read(row: &Row) -> Result<StoredWebhook, tokio_postgres::Error> {
    Ok(StoredWebhook {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        direction: row.try_get(2)?,
        session: row.try_get(3)?,
        agent: row.try_get(4)?,
        token_hash: row.try_get(5)?,
        url: row.try_get(6)?,
        events: row.try_get(7)?,
        secret: row.try_get(8)?,
        signed: row.try_get(9)?,
        allow_private: row.try_get(10)?,
        created_at: row.try_get(11)?,
    })
}

fn read_delivery(row: &Row) -> Result<StoredDelivery, tokio_postgres::Error> {
    Ok(StoredDelivery {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        webhook: row.try_get(2)?,
        event: row.try_get(3)?,
        payload: row.try_get(4)?,
        created_at: row.try_get(5)?,
        attempts: row.try_get(6)?,
        next_attempt_at: row.try_get(7)?,
        delivered_at: row.try_get(8)?,
        failed_at: row.try_get(9)?,
        last_error: row.try_get(10)?,
    })
}
