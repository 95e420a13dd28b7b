//! Cases on usage accounting: increments add up per tenant, key, model and day, and a tenant
//! reads only its own totals.

use std::sync::Arc;

use super::fixtures::*;
use crate::{Store, UsageQuery, UsageTotals};

fn increment(tenant: &keel_core::TenantId, key: &str, model: &str, day: &str) -> UsageTotals {
    UsageTotals {
        tenant: tenant.clone(),
        key_prefix: key.into(),
        model: model.into(),
        day: day.into(),
        requests: 1,
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 2,
        cost_usd: 0.25,
    }
}

pub async fn usage_totals_add_up_per_tenant_key_model_and_day(store: Arc<dyn Store>) {
    let (a, b) = (tenant(), tenant());
    let first = increment(&a, "kk_one", "openai/gpt-4o", "2026-11-21");
    store
        .add_usage(&[
            first.clone(),
            first.clone(),
            increment(&a, "kk_two", "openai/gpt-4o", "2026-11-21"),
            increment(&a, "kk_one", "openai/gpt-4o", "2026-11-22"),
            increment(&b, "kk_three", "openai/gpt-4o", "2026-11-22"),
        ])
        .await
        .unwrap();
    store.add_usage(std::slice::from_ref(&first)).await.unwrap();

    let all = store.usage(&a, &UsageQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let summed = &all[0];
    assert_eq!(
        (summed.day.as_str(), summed.key_prefix.as_str()),
        ("2026-11-21", "kk_one")
    );
    assert_eq!(summed.requests, 3);
    assert_eq!(summed.input_tokens, 30);
    assert_eq!(summed.output_tokens, 15);
    assert_eq!(summed.cached_input_tokens, 6);
    assert!((summed.cost_usd - 0.75).abs() < 1e-9);
    assert!(all.iter().all(|u| u.tenant == a), "only the tenant's own");

    let since = UsageQuery {
        since_day: Some("2026-11-22".into()),
        key_prefix: None,
    };
    assert_eq!(store.usage(&a, &since).await.unwrap().len(), 1);
    let one_key = UsageQuery {
        since_day: None,
        key_prefix: Some("kk_two".into()),
    };
    let rows = store.usage(&a, &one_key).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key_prefix, "kk_two");
    assert_eq!(
        store.usage(&b, &UsageQuery::default()).await.unwrap().len(),
        1
    );
}
