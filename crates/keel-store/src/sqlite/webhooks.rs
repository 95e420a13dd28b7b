//! Webhooks on SQLite: definitions, the outbox a settling run writes into (`enqueue`, in the
//! run's own write), claims of due deliveries (the writer serializes them, so one claim wins),
//! and the inbound signatures seen within their replay window.

use keel_core::{RunId, RunStatus, TenantId, Timestamp, WebhookId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::error;
use crate::stored::{self, sql_limit};
use crate::webhooks::{
    self, DELIVERY_COLUMNS, StoredDelivery, StoredWebhook, Subscriber, WEBHOOK_COLUMNS,
};
use crate::{
    ClaimedDelivery, DeliveryOutcome, DeliveryRecord, RunOutcome, StoreError, WebhookEvent,
    WebhookRecord,
};

pub(crate) fn put(conn: &Connection, webhook: &WebhookRecord) -> Result<(), StoreError> {
    if let Some(session) = &webhook.session {
        let owner: Option<String> = conn
            .prepare_cached("SELECT tenant FROM sessions WHERE id = ?1")?
            .query_row([session.as_str()], |r| r.get(0))
            .optional()?;
        if owner.as_deref() != Some(webhook.tenant.as_str()) {
            return Err(stored::session_not_found(session));
        }
    }
    let events = webhooks::events_text(webhook)?;
    conn.prepare_cached(&format!(
        "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        webhook.id.as_str(),
        webhook.tenant.as_str(),
        webhook.direction.as_str(),
        webhook.session.as_ref().map(|s| s.as_str()),
        webhook.agent,
        webhook.token_hash,
        webhook.url,
        events,
        webhook.secret,
        webhook.signed,
        webhook.allow_private,
        webhook.created_at.millis(),
    ])
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("webhook {}", webhook.id)),
        false => e.into(),
    })?;
    Ok(())
}

pub(crate) fn list(conn: &Connection, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ?1 ORDER BY id"
    ))?;
    let rows = statement.query_map([tenant.as_str()], read)?;
    rows.map(|row| row?.into_record()).collect()
}

pub(crate) fn delete(
    conn: &Connection,
    tenant: &TenantId,
    id: &WebhookId,
) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1 AND tenant = ?2")?
        .execute([id.as_str(), tenant.as_str()])?;
    Ok(deleted > 0)
}

pub(crate) fn inbound(
    conn: &Connection,
    token_hash: &[u8],
) -> Result<Option<WebhookRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE token_hash = ?1 AND direction = 'inbound'"
    ))?
    .query_row([token_hash], read)
    .optional()?
    .map(StoredWebhook::into_record)
    .transpose()
}

/// Records `signature` as used until `expires_at`, forgetting those expired at `now`; `false`
/// when it was already recorded (a replay).
pub(crate) fn remember_signature(
    conn: &Connection,
    webhook: &WebhookId,
    signature: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM webhook_replays WHERE expires_at <= ?1")?
        .execute([now.millis()])?;
    let added = conn
        .prepare_cached(
            "INSERT INTO webhook_replays (webhook, signature, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![webhook.as_str(), signature, expires_at.millis()])?;
    Ok(added > 0)
}

pub(crate) fn forget_signature(
    conn: &Connection,
    webhook: &WebhookId,
    signature: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM webhook_replays WHERE webhook = ?1 AND signature = ?2")?
        .execute([webhook.as_str(), signature])?;
    Ok(())
}

/// Writes the deliveries a run settling in `status` makes, in the caller's write.
pub(crate) fn enqueue(
    conn: &Connection,
    run: &RunId,
    status: RunStatus,
    outcome: &RunOutcome,
) -> Result<(), StoreError> {
    if WebhookEvent::of_status(status).is_none() {
        return Ok(());
    }
    // One indexed look: no row at all when the run's tenant has no outbound webhook for it.
    let mut statement = conn.prepare_cached(
        "SELECT runs.tenant, runs.session, sessions.agent_name, webhooks.id, webhooks.events
         FROM runs JOIN sessions ON sessions.id = runs.session
              JOIN webhooks ON webhooks.tenant = runs.tenant AND webhooks.direction = 'outbound'
                 AND (webhooks.session IS NULL OR webhooks.session = runs.session)
                 AND (webhooks.agent IS NULL OR webhooks.agent = sessions.agent_name)
         WHERE runs.id = ?1",
    )?;
    let rows = statement
        .query_map([run.as_str()], |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ),
                Subscriber {
                    id: r.get(3)?,
                    events: r.get(4)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let Some(((tenant, session, agent), _)) = rows.first().cloned() else {
        return Ok(());
    };
    let subscribers = rows.into_iter().map(|(_, s)| s).collect();
    let settled = webhooks::SettledRun {
        run,
        tenant: &tenant,
        session: &session,
        agent: &agent,
        status,
        outcome,
    };
    for row in webhooks::outbox_rows(&settled, subscribers)? {
        conn.prepare_cached(&format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6, NULL, NULL, NULL)"
        ))?
        .execute(params![
            row.id,
            tenant,
            row.webhook,
            row.event.as_str(),
            row.payload,
            row.created_at.millis(),
        ])?;
    }
    Ok(())
}

/// The webhook's deliveries, newest first; empty for another tenant's webhook.
pub(crate) fn deliveries(
    conn: &Connection,
    tenant: &TenantId,
    webhook: &WebhookId,
    limit: usize,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook = ?1 AND tenant = ?2
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = statement.query_map(
        params![webhook.as_str(), tenant.as_str(), sql_limit(limit)],
        read_delivery,
    )?;
    rows.map(|row| row?.into_record()).collect()
}

/// Whether any delivery is due at `now`: most looks find none, and need not take the writer.
pub(crate) fn any_due(conn: &Connection, now: Timestamp) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM webhook_deliveries WHERE next_attempt_at <= ?1 LIMIT 1")?
        .exists([now.millis()])?)
}

/// Takes up to `limit` due deliveries for one attempt each: their attempt count goes up and
/// they are not due again until `now + lease_ms`, unless settled before.
pub(crate) fn claim(
    conn: &Connection,
    now: Timestamp,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT d.id, d.tenant, d.webhook, d.event, d.payload, d.created_at, d.attempts,
                d.next_attempt_at, d.delivered_at, d.failed_at, d.last_error,
                w.url, w.secret, w.allow_private
         FROM webhook_deliveries AS d JOIN webhooks AS w ON w.id = d.webhook
         WHERE d.next_attempt_at <= ?1 ORDER BY d.next_attempt_at, d.id LIMIT ?2",
    )?;
    let due = statement
        .query_map(params![now.millis(), sql_limit(limit)], |r| {
            Ok((
                read_delivery(r)?,
                r.get::<_, Option<String>>(11)?,
                r.get::<_, String>(12)?,
                r.get::<_, bool>(13)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let until = now.millis().saturating_add(lease_ms);
    let mut claimed = Vec::new();
    for (row, url, secret, allow_private) in due {
        conn.prepare_cached(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1",
        )?
        .execute(params![row.id, until])?;
        let id = row.id.clone();
        let mut delivery = match row.into_record() {
            Ok(delivery) => delivery,
            Err(e) => {
                let error = webhooks::unreadable(&id, &e);
                settle(conn, &id, 0, now, &DeliveryOutcome::GaveUp { error }).map(drop)?;
                continue;
            }
        };
        delivery.attempts += 1;
        delivery.next_attempt_at = Some(Timestamp::from_millis(until));
        claimed.push(ClaimedDelivery {
            delivery,
            url: url.unwrap_or_default(),
            secret,
            allow_private,
        });
    }
    Ok(claimed)
}

/// Records how attempt `attempt` of delivery `id` ended; `false` when that attempt is no longer
/// the delivery's (its lease ran out and another took it) or it is already settled. Attempt 0
/// settles whatever attempt is current (a row given up on because it cannot be read).
pub(crate) fn settle(
    conn: &Connection,
    id: &str,
    attempt: u32,
    now: Timestamp,
    outcome: &DeliveryOutcome,
) -> Result<bool, StoreError> {
    let (next, delivered, failed, error) = webhooks::settled_columns(now, outcome);
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_deliveries
             SET next_attempt_at = ?3, delivered_at = ?4, failed_at = ?5, last_error = COALESCE(?6, last_error)
             WHERE id = ?1 AND (attempts = ?2 OR ?2 = 0) AND delivered_at IS NULL AND failed_at IS NULL",
        )?
        .execute(params![id, i64::from(attempt), next, delivered, failed, error])?;
    Ok(changed > 0)
}

fn read(row: &Row<'_>) -> rusqlite::Result<StoredWebhook> {
    Ok(StoredWebhook {
        id: row.get(0)?,
        tenant: row.get(1)?,
        direction: row.get(2)?,
        session: row.get(3)?,
        agent: row.get(4)?,
        token_hash: row.get(5)?,
        url: row.get(6)?,
        events: row.get(7)?,
        secret: row.get(8)?,
        signed: row.get(9)?,
        allow_private: row.get(10)?,
        created_at: row.get(11)?,
    })
}

fn read_delivery(row: &Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        id: row.get(0)?,
        tenant: row.get(1)?,
        webhook: row.get(2)?,
        event: row.get(3)?,
        payload: row.get(4)?,
        created_at: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        delivered_at: row.get(8)?,
        failed_at: row.get(9)?,
        last_error: row.get(10)?,
    })
}
