//! Webhooks as stored: a tenant's inbound triggers and outbound subscriptions, and the outbox
//! of deliveries. An outbound delivery is written by the transaction that settles a run
//! (`outbox_rows`, called from each backend's `runs::finish`), so the run's status and the
//! news of it commit together: a crash loses neither, and none is written twice.

use keel_core::{RunId, RunStatus, SessionId, TenantId, Timestamp, WebhookId};
use serde::{Deserialize, Serialize};

use crate::{RunOutcome, StoreError};

/// Which way a webhook goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDirection {
    /// A URL others call to start a run (`POST /v1/hooks/{token}`).
    Inbound,
    /// A URL keel calls when a run settles.
    Outbound,
}

impl WebhookDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookDirection::Inbound => "inbound",
            WebhookDirection::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookDirection> {
        [WebhookDirection::Inbound, WebhookDirection::Outbound]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// What an outbound webhook is told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookEvent {
    #[serde(rename = "run.completed")]
    RunCompleted,
    #[serde(rename = "run.failed")]
    RunFailed,
    /// The run waits for a person's decision on a tool call.
    #[serde(rename = "run.waiting")]
    RunWaiting,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 3] = [
        WebhookEvent::RunCompleted,
        WebhookEvent::RunFailed,
        WebhookEvent::RunWaiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::RunCompleted => "run.completed",
            WebhookEvent::RunFailed => "run.failed",
            WebhookEvent::RunWaiting => "run.waiting",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event a run settling in `status` makes, if any.
    pub fn of_status(status: RunStatus) -> Option<WebhookEvent> {
        match status {
            RunStatus::Completed => Some(WebhookEvent::RunCompleted),
            RunStatus::Failed => Some(WebhookEvent::RunFailed),
            RunStatus::Waiting => Some(WebhookEvent::RunWaiting),
            _ => None,
        }
    }
}

/// A tenant's webhook. Inbound: found by the SHA-256 of its path token (the token itself is
/// shown once, at creation, and never stored); its run goes to `session`, or to a new session
/// of `agent` per call. Outbound: `url` is told of `events` of the tenant's runs, of `session`'s
/// or `agent`'s only when one is named. `secret` signs both ways (HMAC-SHA256).
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub tenant: TenantId,
    pub direction: WebhookDirection,
    pub session: Option<SessionId>,
    pub agent: Option<String>,
    pub token_hash: Option<Vec<u8>>,
    pub url: Option<String>,
    pub events: Vec<WebhookEvent>,
    pub secret: String,
    /// Inbound: a call must carry a valid signature (else the token alone admits it).
    pub signed: bool,
    /// Outbound: `url` may be a private, loopback or link-local address.
    pub allow_private: bool,
    pub created_at: Timestamp,
}

/// One event to deliver to one outbound webhook, and how its delivery goes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// `evt_…`: what the receiver deduplicates by (`Keel-Webhook-Id`).
    pub id: String,
    pub tenant: TenantId,
    pub webhook: WebhookId,
    pub event: WebhookEvent,
    /// The JSON body sent, as sent.
    pub payload: String,
    pub created_at: Timestamp,
    pub attempts: u32,
    /// When it is tried next; `None` once delivered or given up.
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    /// When keel gave up on it (too many attempts, or too old).
    pub failed_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// A delivery claimed for one attempt (`Store::claim_deliveries`), with where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRecord,
    pub url: String,
    pub secret: String,
    pub allow_private: bool,
}

/// How an attempt ended, as `Store::settle_delivery` records it.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `at`.
    Retry {
        at: Timestamp,
        error: String,
    },
    /// No more attempts.
    GaveUp {
        error: String,
    },
}

/// An outbound webhook of a settled run's tenant and scope: its id and its events (as stored).
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub id: String,
    pub events: String,
}

/// A delivery to write into the outbox (its tenant is the settled run's).
pub(crate) struct OutboxRow {
    pub id: String,
    pub webhook: String,
    pub event: WebhookEvent,
    pub payload: String,
    pub created_at: Timestamp,
}

/// What a settled run is, for its deliveries' payloads.
pub(crate) struct SettledRun<'a> {
    pub run: &'a RunId,
    pub tenant: &'a str,
    pub session: &'a str,
    pub agent: &'a str,
    pub status: RunStatus,
    pub outcome: &'a RunOutcome,
}

/// The deliveries a run settling in `status` makes: one for each of `subscribers` (the
/// backend found those of the run's tenant and scope) whose events name it.
pub(crate) fn outbox_rows(
    settled: &SettledRun<'_>,
    subscribers: Vec<Subscriber>,
) -> Result<Vec<OutboxRow>, StoreError> {
    let Some(event) = WebhookEvent::of_status(settled.status) else {
        return Ok(Vec::new());
    };
    let now = wall_clock();
    let mut rows = Vec::new();
    for subscriber in subscribers {
        let events: Vec<WebhookEvent> =
            crate::stored::json(&subscriber.events, "events", &subscriber.id)?;
        if !events.contains(&event) {
            continue;
        }
        let id = format!(
            "evt_{}",
            keel_core::id::ulid(now.millis().max(0) as u64, rand::random::<u128>())
        );
        let payload = serde_json::json!({
            "id": id,
            "type": event.as_str(),
            "created_at": now.to_string(),
            "webhook_id": subscriber.id,
            "data": {
                "run_id": settled.run.as_str(),
                "session_id": settled.session,
                "agent": settled.agent,
                "tenant": settled.tenant,
                "status": settled.status.as_str(),
                "output": settled.outcome.output,
                "error": settled.outcome.error,
            },
        });
        rows.push(OutboxRow {
            id,
            webhook: subscriber.id,
            event,
            payload: payload.to_string(),
            created_at: now,
        });
    }
    Ok(rows)
}

/// The store's own reading of the time, for an outbox row written while settling a run (whose
/// caller passes no time). Only its order and its being due matter.
fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// The SQL both backends select a webhook with, in this order (`WEBHOOK_COLUMNS`).
pub(crate) const WEBHOOK_COLUMNS: &str = "id, tenant, direction, session, agent, token_hash, url, \
    events, secret, signed, allow_private, created_at";

pub(crate) const DELIVERY_COLUMNS: &str = "id, tenant, webhook, event, payload, created_at, \
    attempts, next_attempt_at, delivered_at, failed_at, last_error";

/// A webhook's row as read, before decoding.
pub(crate) struct StoredWebhook {
    pub id: String,
    pub tenant: String,
    pub direction: String,
    pub session: Option<String>,
    pub agent: Option<String>,
    pub token_hash: Option<Vec<u8>>,
    pub url: Option<String>,
    pub events: String,
    pub secret: String,
    pub signed: bool,
    pub allow_private: bool,
    pub created_at: i64,
}

impl StoredWebhook {
    pub(crate) fn into_record(self) -> Result<WebhookRecord, StoreError> {
        let direction = WebhookDirection::parse(&self.direction).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "webhook {} has the unknown direction {:?}",
                self.id, self.direction
            ))
        })?;
        Ok(WebhookRecord {
            events: crate::stored::json(&self.events, "events", &self.id)?,
            id: crate::stored::id(self.id)?,
            tenant: crate::stored::id(self.tenant)?,
            direction,
            session: self.session.map(crate::stored::id).transpose()?,
            agent: self.agent,
            token_hash: self.token_hash,
            url: self.url,
            secret: self.secret,
            signed: self.signed,
            allow_private: self.allow_private,
            created_at: Timestamp::from_millis(self.created_at),
        })
    }
}

/// A delivery's row as read, before decoding.
pub(crate) struct StoredDelivery {
    pub id: String,
    pub tenant: String,
    pub webhook: String,
    pub event: String,
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

impl StoredDelivery {
    pub(crate) fn into_record(self) -> Result<DeliveryRecord, StoreError> {
        let event = WebhookEvent::parse(&self.event).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "webhook delivery {} has the unknown event {:?}",
                self.id, self.event
            ))
        })?;
        Ok(DeliveryRecord {
            tenant: crate::stored::id(self.tenant)?,
            webhook: crate::stored::id(self.webhook)?,
            id: self.id,
            event,
            payload: self.payload,
            created_at: Timestamp::from_millis(self.created_at),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: self.next_attempt_at.map(Timestamp::from_millis),
            delivered_at: self.delivered_at.map(Timestamp::from_millis),
            failed_at: self.failed_at.map(Timestamp::from_millis),
            last_error: self.last_error,
        })
    }
}

/// Why a delivery whose row does not decode is given up on (and logged, once).
pub(crate) fn unreadable(id: &str, e: &StoreError) -> String {
    crate::unreadable::isolated("webhook delivery", id, e);
    format!("keel could not read this delivery back ({e}); it is not sent")
}

/// `next_attempt_at, delivered_at, failed_at, last_error` after `outcome`.
pub(crate) fn settled_columns(
    now: Timestamp,
    outcome: &DeliveryOutcome,
) -> (Option<i64>, Option<i64>, Option<i64>, Option<String>) {
    match outcome {
        DeliveryOutcome::Delivered => (None, Some(now.millis()), None, None),
        DeliveryOutcome::Retry { at, error } => {
            (Some(at.millis()), None, None, Some(error.clone()))
        }
        DeliveryOutcome::GaveUp { error } => (None, None, Some(now.millis()), Some(error.clone())),
    }
}

/// The events list as stored (JSON text).
pub(crate) fn events_text(webhook: &WebhookRecord) -> Result<String, StoreError> {
    crate::encode::json(&webhook.events, || {
        format!("the events of webhook {}", webhook.id)
    })
}
