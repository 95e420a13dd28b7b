//! Poison records: input that keel once accepted and then could not read back stopped every
//! tenant's runs, across restarts. Through the real `keel serve`: deeply nested JSON is
//! refused at the door with a 400 naming the field (or, carried inside a string, stored as a
//! string), rows planted in the database that no keel can decode are isolated — the run is
//! failed naming it, listings skip it, `/readyz` stays ready — and everyone else's runs go on.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, config, finished_run, new_session};
use support::{KeelHome, KeelServer};

/// A JSON value with `depth` levels of objects: `{"a":{"a":…{"a":1}…}}`.
fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!({ "a": value });
    }
    value
}

/// A new tenant's key.
async fn tenant_key(a: &Api, name: &str) -> String {
    let tenant = a
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({ "name": name })),
        )
        .await;
    let key = a
        .ok(
            Method::POST,
            &format!("/v1/admin/tenants/{}/keys", tenant["id"].as_str().unwrap()),
            Some(json!({})),
        )
        .await;
    key["key"].as_str().unwrap().to_string()
}

/// A new tenant with a `default` agent.
async fn tenant(a: &Api, server: &KeelServer, name: &str) -> Api {
    let api = Api::new(server, Some(&tenant_key(a, name).await));
    api.ok(
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "default", "model": "scripted/echo"})),
    )
    .await;
    api
}

/// Sends a message and waits for its run to end; returns the run.
async fn turn(api: &Api, session: &str, text: &str) -> Value {
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": text, "mode": "background"})),
        )
        .await;
    finished_run(api, run["id"].as_str().unwrap()).await
}

fn assert_too_deep(what: &str, status: StatusCode, body: &Value, param: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"]["code"], "json_too_deep", "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("64"), "{what}: {message}");
    assert!(
        message.contains(param),
        "{what} should name {param}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_at_the_door_and_nobody_is_stuck() {
    let home = KeelHome::new(&config(0));
    let mut server = KeelServer::start(&home, &[]);
    let a = admin(&server);
    let b = tenant(&a, &server, "b").await;

    // The repro: a background response whose metadata nests ~125 deep (an 825-byte body).
    let body = json!({"model": "scripted/echo", "input": "hi", "background": true, "metadata": {"k": nested(125)}});
    let (status, error) = a.call(Method::POST, "/v1/responses", Some(body)).await;
    assert_too_deep("metadata", status, &error, "metadata.k.a.a");
    assert_eq!(
        error["error"]["param"]
            .as_str()
            .map(|p| p.starts_with("metadata.k")),
        Some(true),
        "{error}"
    );
    // The same through a tool schema and a reply format; and on the native API.
    let tool = json!({"type": "function", "name": "f", "parameters": nested(124)});
    let (status, error) = a
        .call(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "input": "hi", "tools": [tool]})),
        )
        .await;
    assert_too_deep("tools[].parameters", status, &error, "tools[0].parameters");
    let format = json!({"format": {"type": "json_schema", "name": "x", "schema": nested(124)}});
    let (status, error) = a
        .call(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "input": "hi", "text": format})),
        )
        .await;
    assert_too_deep("text.format", status, &error, "text.format.schema");
    let agent = json!({"name": "deep", "model": "scripted/echo",
        "tools": [{"name": "f", "kind": "client", "parameters": nested(124)}]});
    let (status, error) = a.call(Method::POST, "/v1/agents", Some(agent)).await;
    assert_too_deep("agent tools", status, &error, "tools[0].parameters");
    assert_eq!(error["error"]["type"], "invalid_request", "{error}");

    // What is accepted reads back: metadata at 60 levels, and tool-call arguments carried in a
    // string nesting 120 deep (kept as the string they came in).
    let shallow = json!({"model": "scripted/echo", "input": "hi", "metadata": {"k": nested(60)}});
    let response = a.ok(Method::POST, "/v1/responses", Some(shallow)).await;
    let id = response["id"].as_str().unwrap();
    let again = a
        .ok(Method::GET, &format!("/v1/responses/{id}"), None)
        .await;
    assert_eq!(again["metadata"]["k"], nested(60));
    let deep_arguments = serde_json::to_string(&nested(120)).unwrap();
    let items = json!({"model": "scripted/echo", "input": [
        {"type": "message", "role": "user", "content": "call it"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": deep_arguments},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
        {"type": "message", "role": "user", "content": "and now?"}]});
    let response = a.ok(Method::POST, "/v1/responses", Some(items)).await;
    let id = response["id"].as_str().unwrap();
    let inputs = a
        .ok(
            Method::GET,
            &format!("/v1/responses/{id}/input_items"),
            None,
        )
        .await;
    let call = inputs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("{inputs}"));
    assert_eq!(call["arguments"], deep_arguments);

    // Tenant B's runs go on, also after a restart.
    let session = new_session(&b).await;
    assert_eq!(turn(&b, &session, "one").await["status"], "completed");
    server.terminate();
    let server = KeelServer::start(&home, &[]);
    let b = Api::new(&server, b.key.as_deref());
    assert_eq!(turn(&b, &session, "two").await["status"], "completed");
    let (status, _) = b
        .call(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Runs SQL against the server's database while it is stopped: the bytes a bug, a hand edit
/// or a newer keel could leave.
fn plant(home: &KeelHome, sql: &str) {
    let db = rusqlite::Connection::open(home.data_dir().join("keel.db")).unwrap();
    db.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_is_isolated_and_everything_else_goes_on() {
    let home = KeelHome::new(&config(0));
    let mut server = KeelServer::start(&home, &[]);
    let admin_key = server.admin_key.clone();
    let a = admin(&server);
    let healthy = new_session(&a).await;
    let first = turn(&a, &healthy, "before").await;
    let first_run = first["id"].as_str().unwrap().to_string();
    let broken_log = new_session(&a).await;
    let broken_meta = new_session(&a).await;
    let bad_options = new_session(&a).await;
    server.terminate();

    // A queued run whose options do not decode; a queued run of a session whose first event
    // does not decode; a session whose metadata does not decode.
    let bad_run = "run_01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let stuck_run = "run_01JYYYYYYYYYYYYYYYYYYYYYYY";
    plant(
        &home,
        &format!(
            "INSERT INTO runs (id, tenant, session, input, status, created_at, cancel_requested, options)
               SELECT '{bad_run}', tenant, '{bad_options}', input, 'queued', 0, 0, '{{\"model\": [' FROM runs WHERE id = '{first_run}';
             INSERT INTO runs (id, tenant, session, input, status, created_at, cancel_requested)
               SELECT '{stuck_run}', tenant, '{broken_log}', input, 'queued', 1, 0 FROM runs WHERE id = '{first_run}';
             UPDATE events SET body = '{{\"type\": \"session_started\", \"tenant\": ' WHERE session = '{broken_log}' AND seq = 1;
             UPDATE sessions SET metadata = 'not json' WHERE id = '{broken_meta}';"
        ),
    );

    let server = KeelServer::start(&home, &[]);
    let a = Api::new(&server, admin_key.as_deref());
    // Everyone else's work goes on.
    assert_eq!(turn(&a, &healthy, "after").await["status"], "completed");
    let fresh = new_session(&a).await;
    assert_eq!(turn(&a, &fresh, "new").await["status"], "completed");
    // The bad runs are failed, each with a message naming it and why.
    let failed = finished_run(&a, bad_run).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(bad_run) && error.contains("options"),
        "{error}"
    );
    let failed = finished_run(&a, stuck_run).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&broken_log) && error.contains("seq 1"),
        "{error}"
    );
    // Listings skip the row they cannot read; the session itself says what is wrong.
    let list = a.ok(Method::GET, "/v1/sessions", None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&healthy.as_str()) && ids.contains(&fresh.as_str()),
        "{list}"
    );
    assert!(!ids.contains(&broken_meta.as_str()), "{list}");
    let (status, error) = a
        .call(Method::GET, &format!("/v1/sessions/{broken_log}"), None)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{error}");
    assert_eq!(error["error"]["code"], "record_unreadable", "{error}");
    // Ready all along, and an admin can list what is unreadable.
    let (status, _) = a.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = a.ok(Method::GET, "/metrics", None).await;
    let counted = metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("keel_store_unreadable_records "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= 3), "{metrics}");
    let listed = a.ok(Method::GET, "/v1/admin/unreadable", None).await;
    let found: Vec<(String, String)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        ("run".to_string(), bad_run.to_string()),
        ("event".into(), format!("{broken_log}#1")),
        ("session".into(), broken_meta.clone()),
    ] {
        assert!(found.contains(&want), "{want:?} not in {listed}");
    }
    let key = tenant_key(&a, "t").await;
    let (status, _) = Api::new(&server, Some(&key))
        .call(Method::GET, "/v1/admin/unreadable", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    drop(server);

    // `keel store check` lists the same records and exits 1.
    let out = home.run(&["store", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(bad_run) && text.contains(&broken_meta),
        "{text}"
    );
    assert!(text.contains(&format!("{broken_log}#1")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_json_objects_declared_as_json() {
    let home = KeelHome::new(&config(0));
    let server = KeelServer::start(&home, &[]);
    let a = admin(&server);
    let session = new_session(&a).await;
    let send = |content_type: &'static str, body: &'static str, path: String| {
        a.request(Method::POST, &path)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let expect = async |response: reqwest::Response, status: u16, code: &str| {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    };
    let messages = format!("/v1/sessions/{session}/messages");
    let r = send(
        "application/jsonp",
        r#"{"content": "hi"}"#,
        messages.clone(),
    )
    .await
    .unwrap();
    expect(r, 415, "unsupported_media_type").await;
    let r = send(
        "application/json; charset=utf-8",
        r#"{"content": "hi"}"#,
        messages.clone(),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = send("application/json", r#"["hi", "wait"]"#, messages.clone())
        .await
        .unwrap();
    expect(r, 400, "body_not_object").await;
    let tenants = "/v1/admin/tenants".to_string();
    let r = send("application/json", "[]", tenants).await.unwrap();
    expect(r, 400, "body_not_object").await;
    let r = send(
        "text/plain",
        r#"{"metadata": {}}"#,
        "/v1/conversations".into(),
    )
    .await
    .unwrap();
    expect(r, 415, "unsupported_media_type").await;
    // A conversation's body may be left out.
    let r = a
        .request(Method::POST, "/v1/conversations")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_limits_answer_429_naming_the_setting() {
    let home = KeelHome::new(&format!(
        "{}\n[limits]\nsessions_per_tenant = 3\nqueued_runs_per_session = 2\nagents_per_tenant = 2\n",
        config(200)
    ));
    let server = KeelServer::start(&home, &[]);
    let a = admin(&server);
    let session = new_session(&a).await;
    let path = format!("/v1/sessions/{session}/messages");
    let body = json!({"content": "a long wait please", "mode": "background"});
    a.ok(Method::POST, &path, Some(body.clone())).await;
    a.ok(Method::POST, &path, Some(body.clone())).await;
    let (status, error) = a.call(Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert_eq!(error["error"]["code"], "limit_reached", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queued_runs_per_session"),
        "{error}"
    );

    new_session(&a).await;
    new_session(&a).await;
    let (status, error) = a
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "default"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sessions_per_tenant"),
        "{error}"
    );

    // `default` is one agent; a second is allowed, a third is not; a new version of one is.
    a.ok(
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "two", "model": "scripted/echo"})),
    )
    .await;
    let (status, error) = a
        .call(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "three", "model": "scripted/echo"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agents_per_tenant"),
        "{error}"
    );
    let (status, _) = a
        .call(
            Method::PUT,
            "/v1/agents/two",
            Some(json!({"model": "scripted/echo", "instructions": "v2"})),
        )
        .await;
    assert!(status.is_success(), "{status}");

    // The OpenAI paths say the same in OpenAI's shape.
    let (status, error) = a
        .call(Method::POST, "/v1/conversations", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
}
