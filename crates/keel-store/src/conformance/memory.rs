//! Long-term memory: records round-trip, are replaced and deleted within their tenant; search
//! finds a namespace's records by keywords, by vectors and by both (fused, agreement first),
//! takes text as people type it, honours metadata filters and never crosses a namespace or a
//! tenant; a record a store cannot keep is refused with nothing stored.

use std::sync::Arc;

use keel_core::TenantId;
use serde_json::json;

use super::fixtures::{at, new_session, note, tenant};
use crate::{AppendBatch, Fusion, MemoryQuery, MemoryRecord, Store, StoreError};

fn record(
    tenant: &TenantId,
    id: &str,
    namespace: &str,
    text: &str,
    embedding: &[f32],
) -> MemoryRecord {
    MemoryRecord {
        id: id.into(),
        tenant: tenant.clone(),
        namespace: namespace.into(),
        text: text.into(),
        metadata: json!({"source": "test", "topic": id}),
        embedding: embedding.to_vec(),
        created_at: at(1_000),
        updated_at: at(1_000),
    }
}

fn query(namespace: &str, text: &str, embedding: Option<&[f32]>) -> MemoryQuery {
    MemoryQuery {
        namespace: namespace.into(),
        text: text.into(),
        embedding: embedding.map(<[f32]>::to_vec),
        filter: Vec::new(),
        limit: 10,
        fusion: Fusion::default(),
    }
}

async fn found(store: &Arc<dyn Store>, tenant: &TenantId, query: &MemoryQuery) -> Vec<String> {
    let hits = store.search_memory(tenant, query).await.unwrap();
    hits.into_iter().map(|h| h.record.id).collect()
}

pub async fn memory_records_round_trip_and_are_replaced_and_deleted_within_their_tenant(
    store: Arc<dyn Store>,
) {
    let (tenant, other) = (tenant(), tenant());
    let mut kept = record(
        &tenant,
        "mem_1",
        "user:ada",
        "Ada prefers tea.",
        &[0.5, -0.25],
    );
    store.put_memory(&kept).await.unwrap();
    assert_eq!(
        store.get_memory(&tenant, "mem_1").await.unwrap(),
        Some(kept.clone())
    );
    assert_eq!(store.get_memory(&other, "mem_1").await.unwrap(), None);
    assert!(!store.delete_memory(&other, "mem_1").await.unwrap());

    // Another tenant may use the same id for its own record.
    let theirs = record(&other, "mem_1", "user:ada", "Someone else's note.", &[]);
    store.put_memory(&theirs).await.unwrap();

    let replaced = MemoryRecord {
        text: "Ada prefers coffee now.".into(),
        metadata: json!({"changed": true}),
        embedding: vec![1.0, 0.0],
        updated_at: at(2_000),
        created_at: at(9_999),
        ..kept.clone()
    };
    store.put_memory(&replaced).await.unwrap();
    kept = MemoryRecord {
        created_at: at(1_000),
        ..replaced
    };
    assert_eq!(
        store.get_memory(&tenant, "mem_1").await.unwrap(),
        Some(kept),
        "created_at kept"
    );
    assert_eq!(
        found(&store, &tenant, &query("user:ada", "coffee", None)).await,
        ["mem_1"]
    );
    let unknown = store
        .search_memory(&tenant, &query("user:bob", "coffee", None))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
    assert!(
        found(&store, &tenant, &query("user:ada", "tea", None))
            .await
            .is_empty(),
        "the index follows the text"
    );

    assert!(store.delete_memory(&tenant, "mem_1").await.unwrap());
    assert_eq!(store.get_memory(&tenant, "mem_1").await.unwrap(), None);
    let emptied = store
        .search_memory(&tenant, &query("user:ada", "coffee", None))
        .await;
    assert!(
        matches!(emptied, Err(StoreError::NotFound { .. })),
        "an emptied namespace: {emptied:?}"
    );
    assert_eq!(
        store.get_memory(&other, "mem_1").await.unwrap(),
        Some(theirs)
    );
}

pub async fn memory_search_fuses_keywords_and_vectors_within_one_namespace(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let ns = "user:ada";
    for r in [
        record(
            &tenant,
            "mem_deadline",
            ns,
            "The project deadline moved to Friday.",
            &[1.0, 0.0, 0.0],
        ),
        record(
            &tenant,
            "mem_tea",
            ns,
            "Ada drinks green tea every morning.",
            &[0.0, 1.0, 0.0],
        ),
        record(
            &tenant,
            "mem_cat",
            ns,
            "Her cat is called Pixel.",
            &[0.0, 0.0, 1.0],
        ),
        record(
            &tenant,
            "mem_due",
            ns,
            "The report is due when the quarter ends.",
            &[0.9, 0.1, 0.0],
        ),
        record(
            &tenant,
            "mem_elsewhere",
            "agent:support",
            "The deadline for support tickets is a day.",
            &[1.0, 0.0, 0.0],
        ),
        record(
            &other,
            "mem_theirs",
            ns,
            "Their deadline is Monday.",
            &[1.0, 0.0, 0.0],
        ),
    ] {
        store.put_memory(&r).await.unwrap();
    }
    // Keywords only.
    assert_eq!(
        found(&store, &tenant, &query(ns, "deadline", None)).await,
        ["mem_deadline"]
    );
    // Vectors only (no term): the nearest first, the namespace only.
    let near = found(&store, &tenant, &query(ns, "", Some(&[1.0, 0.05, 0.0]))).await;
    assert_eq!(&near[..2], ["mem_deadline", "mem_due"]);
    assert_eq!(near.len(), 4);
    // Both: the record both rankings agree on first; a vector-only match still comes back.
    let hits = store
        .search_memory(
            &tenant,
            &query(ns, "deadline Friday", Some(&[1.0, 0.05, 0.0])),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].record.id, "mem_deadline", "{hits:?}");
    assert_eq!(
        (hits[0].keyword_rank, hits[0].vector_rank),
        (Some(1), Some(1))
    );
    assert!(
        hits.iter()
            .any(|h| h.record.id == "mem_due" && h.keyword_rank.is_none())
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Text as people type it: quotes, apostrophes, colons, parentheses, operators.
    for typed in [
        "what's the \"deadline\"?",
        "deadline: (Friday) AND NOT -x*",
        "NEAR(deadline moved) OR \"",
    ] {
        let ids = found(&store, &tenant, &query(ns, typed, None)).await;
        assert_eq!(
            ids.first().map(String::as_str),
            Some("mem_deadline"),
            "{typed}: {ids:?}"
        );
    }
    assert!(
        found(&store, &tenant, &query(ns, "?!:\"()*", None))
            .await
            .is_empty()
    );
    // A metadata filter.
    let mut filtered = query(ns, "deadline tea cat", Some(&[1.0, 0.0, 0.0]));
    filtered.filter = vec![("topic".into(), json!("mem_tea"))];
    assert_eq!(found(&store, &tenant, &filtered).await, ["mem_tea"]);
    // The limit.
    let mut one = query(ns, "deadline tea cat", Some(&[1.0, 0.0, 0.0]));
    one.limit = 1;
    assert_eq!(found(&store, &tenant, &one).await.len(), 1);
    // Another tenant's namespace of the same name holds only its own.
    assert_eq!(
        found(&store, &other, &query(ns, "deadline", None)).await,
        ["mem_theirs"]
    );
    let nobody = store
        .search_memory(&tenant, &query("nobody", "deadline", None))
        .await;
    assert!(
        matches!(nobody, Err(StoreError::NotFound { .. })),
        "{nobody:?}"
    );
}

pub async fn a_memory_record_a_store_cannot_keep_is_refused_whole(store: Arc<dyn Store>) {
    let tenant = tenant();
    let good = record(&tenant, "mem_x", "ns", "fine", &[1.0]);
    for bad in [
        MemoryRecord {
            text: "  ".into(),
            ..good.clone()
        },
        MemoryRecord {
            text: "x".repeat(crate::memory::MAX_TEXT + 1),
            ..good.clone()
        },
        MemoryRecord {
            namespace: String::new(),
            ..good.clone()
        },
        MemoryRecord {
            metadata: json!(["not", "an", "object"]),
            ..good.clone()
        },
        MemoryRecord {
            embedding: vec![f32::NAN],
            ..good.clone()
        },
    ] {
        let err = store.put_memory(&bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(
            store.get_memory(&tenant, "mem_x").await.unwrap(),
            None,
            "nothing stored"
        );
    }
    let err = store
        .search_memory(&tenant, &query("", "x", None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

pub async fn memory_saved_with_an_append_commits_with_its_events_within_its_tenant(
    store: Arc<dyn Store>,
) {
    let (tenant, other) = (tenant(), tenant());
    let session = new_session(&store, &tenant).await;
    let saved = record(
        &tenant,
        "mem_saved",
        "agent:a",
        "Ada's cat is Pixel.",
        &[1.0, 0.0],
    );
    let with = |memory: Vec<MemoryRecord>| AppendBatch {
        events: vec![note("tool result")],
        memory,
        ..AppendBatch::default()
    };
    // A conflicting append saves nothing.
    assert!(matches!(
        store.append(&session, 0, with(vec![saved.clone()])).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get_memory(&tenant, "mem_saved").await.unwrap(), None);
    // A record of another tenant cannot ride on this session's append, nor its events with it.
    let foreign = record(&other, "mem_foreign", "agent:a", "x", &[]);
    let err = store
        .append(&session, 1, with(vec![saved.clone(), foreign]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.get_memory(&tenant, "mem_saved").await.unwrap(), None);
    assert_eq!(
        store.load(&session).await.unwrap().tail.len(),
        1,
        "no event"
    );
    // With its events: stored, and found by the next search (a cached namespace is dropped).
    store
        .put_memory(&record(
            &tenant,
            "mem_old",
            "agent:a",
            "An older note.",
            &[0.0, 1.0],
        ))
        .await
        .unwrap();
    assert_eq!(
        found(&store, &tenant, &query("agent:a", "note", None)).await,
        ["mem_old"]
    );
    assert_eq!(
        store
            .append(&session, 1, with(vec![saved.clone()]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.get_memory(&tenant, "mem_saved").await.unwrap(),
        Some(saved)
    );
    let nearest = found(&store, &tenant, &query("agent:a", "", Some(&[1.0, 0.1]))).await;
    assert_eq!(
        nearest.first().map(String::as_str),
        Some("mem_saved"),
        "{nearest:?}"
    );
}
