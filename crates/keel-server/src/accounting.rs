//! Usage and cost of gateway calls, per tenant, API key, served model and UTC day. A call adds
//! to totals in memory under one short lock — no store write on the request path, which is
//! benchmarked for throughput — and `flush` hands the totals gathered since the last flush to
//! the store (`Engine::add_usage`, which adds them up), every second and once more at shutdown.
//! Lifetime totals per tenant and model (not per key: label cardinality) feed `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::{TenantId, Timestamp, Usage};
use keel_engine::Engine;
use keel_store::UsageTotals;

use crate::state::AppState;

/// How often the totals go to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Sums over some calls.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost_usd: f64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cost_usd += other.cost_usd;
    }
}

/// Totals by UTC day (days since the epoch, named at flush time).
type ByDay = HashMap<i64, Totals>;
/// … by served `provider/model`, then day.
type ByModel = HashMap<String, ByDay>;
/// … by API key prefix, then model and day.
type ByKey = HashMap<String, ByModel>;

const DAY_MS: i64 = 86_400_000;

#[derive(Default)]
struct Ledger {
    /// Since the last flush, by tenant, key, model and day: nested, so a call whose row
    /// exists already is added without allocating.
    pending: HashMap<TenantId, ByKey>,
    /// Since start, by tenant, then model (nested, so a known pair is found without allocating).
    lifetime: BTreeMap<String, BTreeMap<String, Totals>>,
    /// The (tenant, model) pairs in `lifetime`.
    series: usize,
}

/// The most (tenant, model) pairs `/metrics` labels: a pass-through provider serves any model
/// name a caller sends, so the set is bounded here.
const LIFETIME_SERIES_MAX: usize = 10_000;
const OTHER: &str = "other";

/// The gateway's usage accounting.
#[derive(Default)]
pub struct UsageLedger {
    ledger: Mutex<Ledger>,
}

impl UsageLedger {
    /// Counts one call: `model` as `provider/model`, `key_prefix` `None` when auth is off.
    pub fn record(
        &self,
        tenant: &TenantId,
        key_prefix: Option<&str>,
        model: &str,
        usage: &Usage,
        cost_usd: f64,
        at: Timestamp,
    ) {
        let call = Totals {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cost_usd,
        };
        let day = at.millis().div_euclid(DAY_MS);
        let mut ledger = self.ledger.lock().unwrap();
        let keys = match ledger.pending.get_mut(tenant) {
            Some(keys) => keys,
            None => ledger.pending.entry(tenant.clone()).or_default(),
        };
        let models = slot(keys, key_prefix.unwrap_or(""));
        slot(models, model).entry(day).or_default().add(&call);
        // Past the bound a new pair counts under `other`: /metrics stays bounded, while the
        // store's accounting (flushed from `pending`) keeps every name.
        let full = ledger.series >= LIFETIME_SERIES_MAX;
        let models = match ledger.lifetime.get_mut(tenant.as_str()) {
            Some(models) => models,
            None => {
                let tenant = if full { OTHER } else { tenant.as_str() };
                ledger.lifetime.entry(tenant.to_string()).or_default()
            }
        };
        match models.get_mut(model) {
            Some(totals) => totals.add(&call),
            None if full => models.entry(OTHER.into()).or_default().add(&call),
            None => {
                models.insert(model.to_string(), call);
                ledger.series += 1;
            }
        }
    }

    /// Lifetime totals by (tenant, model), for `/metrics`.
    pub fn by_tenant_and_model(&self) -> Vec<((String, String), Totals)> {
        let ledger = self.ledger.lock().unwrap();
        ledger
            .lifetime
            .iter()
            .flat_map(|(tenant, models)| {
                models
                    .iter()
                    .map(|(model, totals)| ((tenant.clone(), model.clone()), *totals))
            })
            .collect()
    }

    /// Takes the totals gathered since the last flush.
    fn take(&self) -> Vec<UsageTotals> {
        let pending = std::mem::take(&mut self.ledger.lock().unwrap().pending);
        let mut rows = Vec::new();
        for (tenant, keys) in pending {
            for (key_prefix, models) in keys {
                for (model, days) in models {
                    for (day, t) in days {
                        rows.push(UsageTotals {
                            tenant: tenant.clone(),
                            key_prefix: key_prefix.clone(),
                            model: model.clone(),
                            day: day_of(Timestamp::from_millis(day * DAY_MS)),
                            requests: t.requests,
                            input_tokens: t.input_tokens,
                            output_tokens: t.output_tokens,
                            cached_input_tokens: t.cached_input_tokens,
                            cost_usd: t.cost_usd,
                        });
                    }
                }
            }
        }
        rows
    }

    /// Puts totals back after a failed flush, to go with the next one.
    fn restore(&self, rows: Vec<UsageTotals>) {
        let mut ledger = self.ledger.lock().unwrap();
        for u in rows {
            let day = Timestamp::parse_rfc3339(&format!("{}T00:00:00Z", u.day))
                .map_or(0, |t| t.millis().div_euclid(DAY_MS));
            let keys = ledger.pending.entry(u.tenant).or_default();
            let models = keys.entry(u.key_prefix).or_default();
            let days = models.entry(u.model).or_default();
            days.entry(day).or_default().add(&Totals {
                requests: u.requests,
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                cached_input_tokens: u.cached_input_tokens,
                cost_usd: u.cost_usd,
            });
        }
    }

    /// Adds the totals gathered since the last flush to the store; on failure they are kept
    /// for the next flush (nothing is counted twice: the store adds them in one transaction).
    pub async fn flush(&self, engine: &Engine) {
        let totals = self.take();
        if totals.is_empty() {
            return;
        }
        if let Err(e) = engine.add_usage(&totals).await {
            tracing::warn!(error = %e, rows = totals.len(), "could not store gateway usage; keeping it for the next flush");
            self.restore(totals);
        }
    }
}

/// The entry for `key`, made empty if missing (the key is copied only then).
fn slot<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("the entry was just made")
}

/// `YYYY-MM-DD` (UTC) of `at`.
pub fn day_of(at: Timestamp) -> String {
    let mut text = at.to_string();
    text.truncate(10);
    text
}

/// Flushes the ledger every `FLUSH_EVERY` until the server shuts down, then once more.
pub async fn flush_until_shutdown(state: Arc<AppState>) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        state.metrics.usage.flush(&state.engine).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
        }
    }

    #[test]
    fn the_metrics_series_are_bounded_and_the_flushed_rows_keep_every_name() {
        let ledger = UsageLedger::default();
        let tenant = TenantId::default_tenant();
        let at = Timestamp::from_millis(0);
        for i in 0..LIFETIME_SERIES_MAX + 5 {
            ledger.record(&tenant, None, &format!("p/m{i}"), &usage(1, 1), 0.0, at);
        }
        let series = ledger.by_tenant_and_model();
        assert_eq!(series.len(), LIFETIME_SERIES_MAX + 1);
        let other = series.iter().find(|((_, m), _)| m == OTHER).unwrap();
        assert_eq!(other.1.requests, 5);
        assert_eq!(ledger.take().len(), LIFETIME_SERIES_MAX + 5);
    }

    #[test]
    fn calls_add_up_per_key_model_and_day_and_flush_once() {
        let ledger = UsageLedger::default();
        let tenant = TenantId::default_tenant();
        let day1 = Timestamp::parse_rfc3339("2026-03-01T23:59:59Z").unwrap();
        let day2 = Timestamp::parse_rfc3339("2026-03-02T00:00:00Z").unwrap();
        ledger.record(&tenant, Some("kk_a"), "p/m", &usage(10, 2), 0.5, day1);
        ledger.record(&tenant, Some("kk_a"), "p/m", &usage(5, 1), 0.25, day1);
        ledger.record(&tenant, Some("kk_b"), "p/m", &usage(1, 1), 0.0, day1);
        ledger.record(&tenant, Some("kk_a"), "p/m", &usage(1, 1), 0.0, day2);
        ledger.record(&tenant, None, "p/other", &usage(3, 3), 0.0, day2);
        let mut rows = ledger.take();
        rows.sort_by(|a, b| {
            (&a.day, &a.key_prefix, &a.model).cmp(&(&b.day, &b.key_prefix, &b.model))
        });
        let summary: Vec<(&str, &str, &str, u64, u64, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r.day.as_str(),
                    r.key_prefix.as_str(),
                    r.model.as_str(),
                    r.requests,
                    r.input_tokens,
                    r.output_tokens,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("2026-03-01", "kk_a", "p/m", 2, 15, 3),
                ("2026-03-01", "kk_b", "p/m", 1, 1, 1),
                ("2026-03-02", "", "p/other", 1, 3, 3),
                ("2026-03-02", "kk_a", "p/m", 1, 1, 1),
            ]
        );
        assert_eq!(rows[0].cost_usd, 0.75);
        assert!(ledger.take().is_empty(), "a flush takes each call once");
        ledger.restore(rows);
        assert_eq!(ledger.take().len(), 4, "a failed flush keeps its rows");
        let lifetime = ledger.by_tenant_and_model();
        assert_eq!(lifetime.len(), 2);
        assert_eq!(lifetime[0].0.1, "p/m");
        assert_eq!(lifetime[0].1.requests, 4);
        assert_eq!(lifetime[0].1.input_tokens, 17);
    }
}
