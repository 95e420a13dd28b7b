//! Long-term memory through `keel serve` on the embedded defaults: records remembered in a
//! namespace are embedded by the local all-MiniLM-L6-v2 and found by a paraphrase (hybrid
//! search: keywords and vectors, or either alone), read (in its namespace or through `*`) and
//! forgotten; another tenant's records and namespaces,
//! and a namespace with no record, answer 404;
//! bad input is a 400 naming what was wrong, with nothing stored.

mod support;

use keel_local::pull::{self, EMBEDDING_MODEL};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, another_tenant};
use support::{KeelHome, KeelServer};

/// keel on the embedded defaults, its models from the tests' shared cache.
fn serve_defaults() -> (KeelHome, KeelServer) {
    let cache = support::test_model_cache();
    pull::ensure_default_model(&cache, |_| {}).expect("the chat model can be fetched");
    pull::ensure_model(&cache, EMBEDDING_MODEL, |_| {})
        .expect("the embedding model can be fetched");
    let mut home = KeelHome::new("");
    home.model_cache = cache;
    let server = KeelServer::start(&home, &[]);
    (home, server)
}

async fn remember(api: &Api, namespace: &str, text: &str, metadata: Value) -> Value {
    let body = json!({"text": text, "metadata": metadata});
    let path = format!("/v1/memory/{namespace}/records");
    let (status, record) = api.call(Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    record
}

async fn search(api: &Api, namespace: &str, body: Value) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/v1/memory/{namespace}/search"),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn remembered_records_are_found_by_paraphrase_and_stay_in_their_tenant() {
    let (_home, server) = serve_defaults();
    let api = admin(&server);
    let ns = "user:ada";
    let tea = remember(
        &api,
        ns,
        "Ada's favourite drink is green tea.",
        json!({"kind": "preference"}),
    )
    .await;
    let report = remember(
        &api,
        ns,
        "The quarterly report is due on Friday.",
        json!({"kind": "task"}),
    )
    .await;
    remember(
        &api,
        ns,
        "Ada's cat is named Pixel.",
        json!({"kind": "fact"}),
    )
    .await;
    remember(
        &api,
        ns,
        "The office wifi password changed last week.",
        json!({"kind": "fact"}),
    )
    .await;
    assert_eq!(tea["dimensions"], 384, "{tea}");

    for (question, expected) in [
        ("What does she like to drink?", &tea),
        ("When must the quarterly summary be handed in?", &report),
    ] {
        let (status, hits) = search(&api, ns, json!({"query": question, "limit": 2})).await;
        assert_eq!(status, StatusCode::OK, "{hits}");
        let top = &hits["data"][0];
        assert_eq!(top["record"]["id"], expected["id"], "{question}: {hits}");
        assert!(top["vector_rank"].is_number(), "{hits}");
        assert!(hits["data"].as_array().unwrap().len() <= 2);
    }
    let filtered = json!({"query": "Ada", "filter": {"kind": "fact"}});
    let (_, hits) = search(&api, ns, filtered).await;
    assert_eq!(
        hits["data"][0]["record"]["text"], "Ada's cat is named Pixel.",
        "{hits}"
    );
    assert!(
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["record"]["metadata"]["kind"] == "fact")
    );

    let id = tea["id"].as_str().unwrap();
    let path = format!("/v1/memory/{ns}/records/{id}");
    let (status, read) = api.call(Method::GET, &path, None).await;
    assert_eq!((status, &read["text"]), (StatusCode::OK, &tea["text"]));
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/v1/memory/user:bob/records/{id}"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a record is read in its own namespace"
    );

    // Either ranking alone, on request; `*` reads a record in whatever namespace it is.
    let (_, hits) = search(&api, ns, json!({"query": "green tea", "mode": "keyword"})).await;
    assert_eq!(hits["data"][0]["record"]["id"], tea["id"], "{hits}");
    assert!(hits["data"][0]["vector_rank"].is_null(), "{hits}");
    let paraphrase = json!({"query": "What does she like to drink?", "mode": "vector", "limit": 1});
    let (_, hits) = search(&api, ns, paraphrase).await;
    assert_eq!(hits["data"][0]["record"]["id"], tea["id"], "{hits}");
    assert!(hits["data"][0]["keyword_rank"].is_null(), "{hits}");
    let (status, read) = api
        .call(Method::GET, &format!("/v1/memory/*/records/{id}"), None)
        .await;
    assert_eq!((status, &read["namespace"]), (StatusCode::OK, &json!(ns)));

    // Another tenant sees none of it.
    let other = another_tenant(&api, &server).await;
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = other.call(method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, hits) = search(&other, ns, json!({"query": "green tea"})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "their namespace of that name holds nothing: {hits}"
    );

    let (status, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, hits) = search(&api, ns, json!({"query": "green tea drink"})).await;
    assert!(
        hits["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["record"]["id"] != tea["id"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_memory_input_is_a_400_naming_it_and_stores_nothing() {
    let (_home, server) = serve_defaults();
    let api = admin(&server);
    let ns = "user:ada";
    let too_long = "word ".repeat(10_000);
    for (body, says) in [
        (json!({"text": ""}), "text"),
        (json!({"text": too_long}), "32768"),
        (json!({"text": "x", "metadata": [1, 2]}), "metadata"),
        (json!({"text": "x", "bogus": 1}), "bogus"),
    ] {
        let (status, reply) = api
            .call(
                Method::POST,
                &format!("/v1/memory/{ns}/records"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says}: {reply}");
    }
    for (body, says) in [
        (json!({"query": "   "}), "empty"),
        (json!({"query": "x", "limit": 0}), "limit"),
        (json!({"query": "x", "limit": 1000}), "limit"),
        (json!({"query": "x", "mode": "fuzzy"}), "fuzzy"),
    ] {
        let (status, reply) = search(&api, ns, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{reply}"
        );
    }
    let (status, reply) = search(&api, ns, json!({"query": "word x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored: {reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(ns),
        "{reply}"
    );
}
