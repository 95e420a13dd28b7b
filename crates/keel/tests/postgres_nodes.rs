//! Several `keel serve` nodes on one PostgreSQL store (`--store postgres://…`): what one node
//! stores — keys, sessions, turns — another serves at once, each node leases runs under a name
//! of its own, and a conversation goes on through either. Against the real server
//! (`KEEL_TEST_PG_URL`, else 127.0.0.1:5432 database `test`), in a schema of its own dropped
//! after; skipped with a loud message where no server answers (failed instead when `CI` is set).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::http::Api;
use support::postgres::Schema;
use support::{KeelHome, KeelServer};

fn node(schema: &Schema) -> KeelHome {
    schema.node(&support::http::config(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_store_serve_the_same_keys_sessions_and_turns() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let (home_a, home_b) = (node(&schema), node(&schema));
    let a = KeelServer::start(&home_a, &[]);
    let b = KeelServer::start(&home_b, &[]);
    let key = a
        .admin_key
        .clone()
        .expect("the first node makes the admin key");
    assert!(
        b.admin_key.is_none(),
        "the second node finds the key stored"
    );
    let (api_a, api_b) = (Api::new(&a, Some(&key)), Api::new(&b, Some(&key)));

    // Each node leases runs under a name of its own, kept in its data directory.
    let node_id =
        |home: &KeelHome| std::fs::read_to_string(home.data_dir().join("node-id")).unwrap();
    assert_ne!(node_id(&home_a), node_id(&home_b));
    // Each says which store and name it runs with.
    let said = a
        .stderr
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(said.contains("keel store: PostgreSQL"), "{said}");
    assert!(said.contains(&format!("schema {}", schema.name)), "{said}");
    assert!(
        said.contains(&format!("(node {})", node_id(&home_a))),
        "{said}"
    );

    // A session made and answered on A is read and continued on B, and the other way round.
    let session = api_a
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "default"})),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    let path = format!("/v1/sessions/{id}/messages");
    let first = api_a
        .ok(
            Method::POST,
            &path,
            Some(json!({"content": "from a", "mode": "wait"})),
        )
        .await;
    assert_eq!(first["status"], "completed", "{first}");
    let second = api_b
        .ok(
            Method::POST,
            &path,
            Some(json!({"content": "from b", "mode": "wait"})),
        )
        .await;
    assert_eq!(second["status"], "completed", "{second}");
    // Back on A, which still holds the session warm from its first turn: B's turn is seen.
    let third = api_a
        .ok(
            Method::POST,
            &path,
            Some(json!({"content": "from a again", "mode": "wait"})),
        )
        .await;
    assert_eq!(third["status"], "completed", "{third}");
    // The scripted model counts the context's words: two messages more (3 + 3 words) than
    // B's turn saw, so A's context held B's turn.
    let words = |run: &serde_json::Value| run["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(words(&third), words(&second) + 6, "{second} {third}");
    for api in [&api_a, &api_b] {
        let events = api
            .ok(Method::GET, &format!("/v1/sessions/{id}/events"), None)
            .await;
        let replies: Vec<String> = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "model_replied")
            .map(|e| {
                e["message"]["parts"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(
            replies,
            ["echo: from a", "echo: from b", "echo: from a again"],
            "{events}"
        );
    }

    // A Responses conversation started on B goes on on A.
    let started = api_b
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "input": "hello"})),
        )
        .await;
    let next = api_a
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "input": "again", "previous_response_id": started["id"]})),
        )
        .await;
    assert_eq!(
        next["output"][0]["content"][0]["text"], "echo: again",
        "{next}"
    );
    assert_eq!(next["previous_response_id"], started["id"]);

    // A key revoked on one node is refused by the other once its key cache (1 s) expires.
    let tenant = api_a
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"name": "t"})),
        )
        .await;
    let minted = api_a
        .ok(
            Method::POST,
            &format!("/v1/admin/tenants/{}/keys", tenant["id"].as_str().unwrap()),
            Some(json!({})),
        )
        .await;
    let tenant_key = minted["key"].as_str().unwrap().to_string();
    let on_b = Api::new(&b, Some(&tenant_key));
    assert_eq!(
        on_b.call(Method::GET, "/v1/sessions", None).await.0,
        StatusCode::OK
    );
    let prefix = minted["prefix"].as_str().unwrap();
    api_a
        .ok(
            Method::POST,
            &format!("/v1/admin/keys/{prefix}/revoke"),
            None,
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = on_b.call(Method::GET, "/v1/sessions", None).await.0;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked key still works on B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
