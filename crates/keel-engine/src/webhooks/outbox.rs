//! Delivering the outbox: a loop on every node claims due deliveries (`Store::claim_deliveries`:
//! one node per attempt), posts each, signed, and records how it went. A delivery that fails is
//! tried again later, each wait twice the last (from `FIRST_RETRY` up to `LONGEST_WAIT`), until
//! `MAX_ATTEMPTS`; then it is marked failed, and listed so. Runs never wait for any of this:
//! settling a run only writes the outbox row (`keel_store::webhooks`).

use std::sync::Arc;
use std::time::Duration;

use keel_core::Timestamp;
use keel_store::{ClaimedDelivery, DeliveryOutcome};

use super::signature::{SIGNATURE_HEADER, sign};
use crate::tools::net_guard::{AddressPolicy, GuardedResolver, refusal_in};
use crate::{Inner, clock, supervised};

/// Deliveries claimed per look.
const BATCH: usize = 32;
/// How long one attempt may take before its claim lapses and another node may try.
const ATTEMPT_LEASE: Duration = Duration::from_secs(60);
/// How long keel waits for a receiver's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The wait after the first failed attempt; each next wait doubles, up to `LONGEST_WAIT`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(3_600);
/// Attempts before a delivery is given up: about a day of trying.
pub const MAX_ATTEMPTS: u32 = 36;

/// The HTTP clients of outbound calls: one reaching public addresses only, one every address
/// (webhooks that `allow_private`). Each resolves names through the SSRF guard of HTTP tools.
struct Clients {
    public: (reqwest::Client, Arc<AddressPolicy>),
    any: (reqwest::Client, Arc<AddressPolicy>),
}

/// Starts delivering webhooks on this node.
pub(crate) fn start(inner: &Arc<Inner>) {
    let inner = inner.clone();
    tokio::spawn(async move {
        let clients = match clients() {
            Ok(clients) => Arc::new(clients),
            Err(e) => {
                tracing::error!(error = %e, "webhooks cannot be delivered from this node");
                return;
            }
        };
        supervised("delivering webhooks", || {
            deliver_loop(inner.clone(), clients.clone())
        })
        .await;
    });
}

async fn deliver_loop(inner: Arc<Inner>, clients: Arc<Clients>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let more = match deliver_due(&inner, &clients).await {
            Ok(claimed) => claimed == BATCH,
            Err(e) => {
                tracing::warn!(error = %e, "delivering webhooks failed; retrying");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.config.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Claims what is due and makes one attempt at each, side by side; returns how many.
async fn deliver_due(inner: &Inner, clients: &Clients) -> Result<usize, keel_store::StoreError> {
    let lease_ms = ATTEMPT_LEASE.as_millis() as i64;
    let claimed = inner
        .store
        .claim_deliveries(clock::now(), lease_ms, BATCH)
        .await?;
    let count = claimed.len();
    futures::future::join_all(claimed.into_iter().map(|c| attempt(inner, clients, c))).await;
    Ok(count)
}

async fn attempt(inner: &Inner, clients: &Clients, claimed: ClaimedDelivery) {
    let delivery = &claimed.delivery;
    let result = post(clients, &claimed).await;
    let now = clock::now();
    let outcome = match result {
        Ok(()) => DeliveryOutcome::Delivered,
        Err(error) if delivery.attempts >= MAX_ATTEMPTS => {
            tracing::warn!(delivery = %delivery.id, webhook = %delivery.webhook, %error, "a webhook delivery is given up");
            DeliveryOutcome::GaveUp {
                error: format!(
                    "given up after {} attempts; the last: {error}",
                    delivery.attempts
                ),
            }
        }
        Err(error) => DeliveryOutcome::Retry {
            at: retry_at(now, delivery.attempts),
            error,
        },
    };
    if let Err(e) = inner
        .store
        .settle_delivery(&delivery.id, delivery.attempts, now, &outcome)
        .await
    {
        // Its claim lapses and it is tried again: at least once, never lost.
        tracing::warn!(delivery = %delivery.id, error = %e, "a webhook attempt could not be recorded");
    }
}

/// When to try again after `attempts` failed ones.
fn retry_at(now: Timestamp, attempts: u32) -> Timestamp {
    let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(31));
    let wait = FIRST_RETRY.saturating_mul(doubling).min(LONGEST_WAIT);
    Timestamp::from_millis(now.millis().saturating_add(wait.as_millis() as i64))
}

/// One attempt: a 2xx answer delivers it; anything else is the error to record.
async fn post(clients: &Clients, claimed: &ClaimedDelivery) -> Result<(), String> {
    let (client, policy) = match claimed.allow_private {
        true => &clients.any,
        false => &clients.public,
    };
    let url =
        reqwest::Url::parse(&claimed.url).map_err(|e| format!("the url is not valid: {e}"))?;
    policy
        .check_url(&url)
        .map_err(|refused| refused.to_string())?;
    let delivery = &claimed.delivery;
    let body = delivery.payload.clone().into_bytes();
    let signature = sign(
        &claimed.secret,
        clock::now().millis().div_euclid(1000),
        &body,
    );
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Keel-Webhook-Id", &delivery.id)
        .header("Keel-Event", delivery.event.as_str())
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => Ok(()),
        Ok(answer) => Err(format!("the receiver answered HTTP {}", answer.status())),
        Err(e) => Err(match refusal_in(&e) {
            Some(refused) => refused.to_string(),
            None => format!("the receiver could not be reached: {e}"),
        }),
    }
}

/// The address policy of outbound calls: public addresses only, or every address.
pub(super) fn policy(allow_private: bool) -> AddressPolicy {
    let ranges: Vec<String> = match allow_private {
        true => vec!["0.0.0.0/0".into(), "::/0".into()],
        false => Vec::new(),
    };
    AddressPolicy::new(&ranges).expect("the ranges parse")
}

fn clients() -> Result<Clients, String> {
    let build = |allow_private: bool| {
        let policy = Arc::new(policy(allow_private));
        // No redirects (a 3xx is a failed attempt) and no proxy (it would resolve the name
        // past the guard).
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("keel-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .build()
            .map(|client| (client, policy))
            .map_err(|e| format!("the HTTP client could not be built: {e}"))
    };
    Ok(Clients {
        public: build(false)?,
        any: build(true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_an_hour() {
        let now = Timestamp::from_millis(0);
        let waits: Vec<i64> = [1, 2, 3, 4, 12, 13, 40, u32::MAX]
            .into_iter()
            .map(|attempts| retry_at(now, attempts).millis() / 1000)
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 2_048, 3_600, 3_600, 3_600]);
    }
}
