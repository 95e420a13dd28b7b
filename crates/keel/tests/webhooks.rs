//! Webhooks through `keel serve`. Inbound: a signed call starts a run with its body as input;
//! a bad signature, a replayed call, a stale time and an unknown token are refused (401/404)
//! and start nothing. Outbound: a receiver that answers 500 for a while gets each run event
//! (completed, failed, waiting) once after it recovers, signed so that an independent HMAC
//! check passes; an event still undelivered when keel is SIGKILLed is delivered after the
//! restart, once; two nodes on PostgreSQL deliver each event once between them. Definitions
//! stay in their tenant; bad ones are 400s; the CLI adds, lists and removes them.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use support::http::{Api, another_tenant, finished_run, new_session, session_events};
use support::{KeelHome, KeelServer, sigkill};

/// The scripted model; `default` may ask a person (`ask_human`), so a run can wait.
fn home() -> KeelHome {
    KeelHome::new(
        r#"
[providers.scripted]
kind = "scripted"

[engine]
poll_ms = 100

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{ name = "ask_human", kind = "builtin" }]
"#,
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// HMAC-SHA256 of `t.body` under `secret`, hex: computed here, not by keel.
fn hmac_hex(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hmac_hex(secret, t, body))
}

/// Posts `body` to an inbound webhook's path, with `signature` when given.
async fn call_hook(
    api: &Api,
    path: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = api
        .http
        .post(format!("{}{path}", api.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        req = req.header("Keel-Signature", signature);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create_webhook(api: &Api, body: Value) -> Value {
    let (status, created) = api.call(Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// How many runs the session's log has started.
async fn runs_started(api: &Api, session: &str) -> usize {
    let events = session_events(api, session).await;
    events.iter().filter(|e| e["type"] == "run_started").count()
}

async fn session_count(api: &Api) -> usize {
    let page = api.ok(Method::GET, "/v1/sessions?limit=200", None).await;
    page["data"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_calls_start_a_run_only_when_signed_fresh_and_new() {
    let home = home();
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, server.admin_key.as_deref());
    let session = new_session(&api).await;
    let hook = create_webhook(&api, json!({"session_id": session})).await;
    assert_eq!(hook["direction"], "inbound", "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let path = hook["trigger_path"].as_str().unwrap().to_string();
    let token = path.trim_start_matches("/v1/hooks/");
    assert!(token.len() >= 32, "at least 128 bits: {token}");
    let listed = api.ok(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(listed["data"][0]["id"], hook["id"]);
    assert!(
        listed["data"][0].get("secret").is_none(),
        "shown once: {listed}"
    );

    // No API key: the token and the signature are the credentials.
    let caller = Api::new(&server, None);
    let body = br#"{"order": 42, "note": "paid"}"#;
    let t = unix_now();
    let good = signature(&secret, t, body);
    let (status, started) = call_hook(&caller, &path, body, Some(&good)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["session_id"], session.as_str());
    let run = finished_run(&api, started["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run}");
    let events = session_events(&api, &session).await;
    let input = events
        .iter()
        .find(|e| e["type"] == "run_started")
        .map(|e| e["input"]["parts"][0]["text"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        input.contains("webhook") && input.contains(r#""order": 42"#),
        "{input}"
    );

    // Refused, each starting nothing.
    let stale_t = t - 600;
    // (what, body, signature, path, expected status)
    type Refusal<'a> = (&'a str, Vec<u8>, Option<String>, &'a str, StatusCode);
    let refusals: Vec<Refusal> = vec![
        (
            "a replay",
            body.to_vec(),
            Some(good.clone()),
            &path,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a wrong secret",
            body.to_vec(),
            Some(signature("whsec_wrong", t, body)),
            &path,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "another body",
            br#"{"order": 43}"#.to_vec(),
            Some(good.clone()),
            &path,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a stale time",
            body.to_vec(),
            Some(signature(&secret, stale_t, body)),
            &path,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no signature",
            body.to_vec(),
            None,
            &path,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a malformed signature",
            body.to_vec(),
            Some("v1=nothex".into()),
            &path,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (what, body, signature, path, expected) in refusals {
        let (status, answer) = call_hook(&caller, path, &body, signature.as_deref()).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(
            answer["error"]["message"].as_str().is_some(),
            "{what}: {answer}"
        );
    }
    let unknown = format!("/v1/hooks/hook_{}", "0".repeat(64));
    let fresh = signature(&secret, unix_now(), body);
    let (status, answer) = call_hook(&caller, &unknown, body, Some(&fresh)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        runs_started(&api, &session).await,
        1,
        "nothing more started"
    );
    let runs = session_events(&api, &session).await;
    assert!(
        !runs
            .iter()
            // The refused body's own text: the inputs hold times and ids, where "43" alone can be.
            .any(|e| e["type"] == "run_started"
                && e["input"].to_string().contains(r#"\"order\": 43"#)),
        "{runs:?}"
    );

    // An agent's trigger starts a new session per call; an unsigned one is admitted by its
    // token alone when made so.
    let sessions_before = session_count(&api).await;
    let agent_hook = create_webhook(&api, json!({"agent": "default", "signed": false})).await;
    let agent_path = agent_hook["trigger_path"].as_str().unwrap();
    let (status, bad) = call_hook(&caller, agent_path, b"{}", Some("t=1,v1=00")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a signature given is checked: {bad}"
    );
    assert_eq!(
        session_count(&api).await,
        sessions_before,
        "nothing started"
    );
    let (status, first) = call_hook(&caller, agent_path, b"{\"n\": 1}", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = call_hook(&caller, agent_path, b"{\"n\": 2}", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_ne!(first["session_id"], second["session_id"]);
    assert_ne!(first["session_id"], session.as_str());
    for started in [&first, &second] {
        let run = finished_run(&api, started["run_id"].as_str().unwrap()).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    assert_eq!(session_count(&api).await, sessions_before + 2);

    // Another tenant sees none of it; deleting the trigger makes its URL unknown.
    let other = another_tenant(&api, &server).await;
    let other_list = other.ok(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(other_list["data"], json!([]));
    let one = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    assert_eq!(
        other.call(Method::DELETE, &one, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = other
        .call(Method::GET, &format!("{one}/deliveries"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = other
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"session_id": session})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's session");
    assert_eq!(
        api.call(Method::DELETE, &one, None).await.0,
        StatusCode::NO_CONTENT
    );
    let again = signature(&secret, unix_now(), b"{}");
    let (status, _) = call_hook(&caller, &path, b"{}", Some(&again)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_definitions_are_refused() {
    let home = home();
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, server.admin_key.as_deref());
    let session = new_session(&api).await;
    for body in [
        json!({}),
        json!({"session_id": session, "agent": "default"}),
        json!({"direction": "sideways", "session_id": session}),
        json!({"session_id": session, "url": "http://example.com/x", "direction": "inbound"}),
        json!({"url": "ftp://example.com/x"}),
        json!({"url": "not a url"}),
        json!({"url": "http://127.0.0.1:9/x"}),
        json!({"url": "http://169.254.169.254/latest"}),
        json!({"url": "http://example.com/x", "events": ["run.exploded"]}),
        json!({"url": "http://example.com/x", "signed": false}),
        json!({"url": "http://example.com/x", "colour": "red"}),
    ] {
        let (status, answer) = api
            .call(Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
    }
    let (status, answer) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"agent": "nobody"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    for path in ["/v1/webhooks/whk_nope", "/v1/webhooks/whk_nope/deliveries"] {
        let method = match path.ends_with("deliveries") {
            true => Method::GET,
            false => Method::DELETE,
        };
        let (status, answer) = api.call(method, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let (status, _) = api.call(Method::POST, "/v1/webhooks", None).await;
    assert!(status.is_client_error());
}

/// What a receiver saw: each request, and the ones it accepted.
#[derive(Default)]
struct Receiver {
    /// Attempts per `Keel-Webhook-Id`.
    attempts: HashMap<String, usize>,
    /// Accepted deliveries: (id, signature header, body).
    accepted: Vec<(String, String, Vec<u8>)>,
    /// Each delivery is refused with a 500 this many times before it is accepted.
    refuse_first: usize,
}

async fn receive(
    State(receiver): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let id = header("keel-webhook-id");
    let mut receiver = receiver.lock().unwrap();
    let refuse_first = receiver.refuse_first;
    let seen = receiver.attempts.entry(id.clone()).or_default();
    *seen += 1;
    if *seen <= refuse_first {
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    receiver
        .accepted
        .push((id, header("keel-signature"), body.to_vec()));
    AxumStatus::OK
}

/// A receiver on `listener`, refusing each delivery `refuse_first` times.
fn serve_receiver(listener: tokio::net::TcpListener, refuse_first: usize) -> Arc<Mutex<Receiver>> {
    let receiver = Arc::new(Mutex::new(Receiver {
        refuse_first,
        ..Receiver::default()
    }));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    receiver
}

/// Waits until the receiver accepted `count` deliveries (bounded).
async fn accepted(receiver: &Arc<Mutex<Receiver>>, count: usize) -> Vec<(String, String, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = receiver.lock().unwrap().accepted.clone();
        if got.len() >= count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} delivered",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one accepted delivery as a receiver would, without keel's code: the signature is the
/// HMAC of `t.body` under the secret, its time is recent, the id header is the body's id.
fn verify(secret: &str, (id, header, body): &(String, String, Vec<u8>)) -> Value {
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header {header:?}"));
    let t: i64 = t.parse().unwrap();
    assert_eq!(v1, hmac_hex(secret, t, body), "the signature verifies");
    assert!((unix_now() - t).abs() < 600, "signed when sent: {t}");
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["id"], id.as_str(), "{payload}");
    payload
}

async fn deliveries(api: &Api, webhook: &str) -> Vec<Value> {
    let page = api
        .ok(
            Method::GET,
            &format!("/v1/webhooks/{webhook}/deliveries"),
            None,
        )
        .await;
    page["data"].as_array().unwrap().clone()
}

/// Sends `text` in the background; returns the run id.
async fn send(api: &Api, session: &str, text: &str) -> String {
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": text, "mode": "background"})),
        )
        .await;
    run["id"].as_str().unwrap().to_string()
}

async fn run_status(api: &Api, run: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
        if view["status"] == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "run never {wanted}: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_event_reaches_a_recovering_receiver_once_signed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = serve_receiver(listener, 2);
    let home = home();
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, server.admin_key.as_deref());
    let hook = create_webhook(&api, json!({"url": url, "allow_private": true})).await;
    assert_eq!(hook["direction"], "outbound");
    assert_eq!(
        hook["events"],
        json!(["run.completed", "run.failed", "run.waiting"])
    );
    let secret = hook["secret"].as_str().unwrap();
    let webhook = hook["id"].as_str().unwrap();

    let session = new_session(&api).await;
    let completed = send(&api, &session, "hello").await;
    run_status(&api, &completed, "completed").await;
    let waiting = send(
        &api,
        &session,
        "/call ask_human {\"question\": \"ship it?\"}",
    )
    .await;
    run_status(&api, &waiting, "waiting").await;
    let other = new_session(&api).await;
    let failed = send(&api, &other, "/fail on purpose").await;
    run_status(&api, &failed, "failed").await;

    let got = accepted(&receiver, 3).await;
    let mut by_run = HashMap::new();
    for delivery in &got {
        let payload = verify(secret, delivery);
        by_run.insert(
            payload["data"]["run_id"].as_str().unwrap().to_string(),
            payload["type"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(by_run[&completed], "run.completed");
    assert_eq!(by_run[&waiting], "run.waiting");
    assert_eq!(by_run[&failed], "run.failed");

    // Each was delivered once, on its third attempt, and is recorded so.
    let listed = deliveries(&api, webhook).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for delivery in &listed {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 3, "{delivery}");
        assert!(
            delivery["last_error"].as_str().unwrap().contains("500"),
            "{delivery}"
        );
    }
    let receiver = receiver.lock().unwrap();
    assert_eq!(receiver.accepted.len(), 3, "once per event");
    assert!(
        receiver.attempts.values().all(|&n| n == 3),
        "{:?}",
        receiver.attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_undelivered_at_a_sigkill_is_delivered_once_after_the_restart() {
    // The receiver's port, with nobody listening yet: every attempt is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let home = home();
    let mut server = KeelServer::start(&home, &[]);
    let key = server.admin_key.clone().unwrap();
    let api = Api::new(&server, Some(&key));
    let hook = create_webhook(
        &api,
        json!({"url": format!("http://{addr}/hook"), "allow_private": true, "events": ["run.completed"]}),
    )
    .await;
    let (secret, webhook) = (
        hook["secret"].as_str().unwrap(),
        hook["id"].as_str().unwrap(),
    );
    let session = new_session(&api).await;
    let run = send(&api, &session, "hello").await;
    run_status(&api, &run, "completed").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = deliveries(&api, webhook).await;
        if listed.len() == 1
            && listed[0]["attempts"].as_u64().unwrap_or(0) >= 1
            && listed[0]["last_error"].is_string()
        {
            assert_eq!(listed[0]["status"], "pending", "{listed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigkill(&mut server.child);

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let receiver = serve_receiver(listener, 0);
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, Some(&key));
    let got = accepted(&receiver, 1).await;
    let payload = verify(secret, &got[0]);
    assert_eq!(payload["type"], "run.completed");
    assert_eq!(payload["data"]["run_id"], run.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(&api, webhook).await;
        if listed[0]["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.lock().unwrap().accepted.len(), 1, "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_and_removes_webhooks_on_a_server() {
    let home = home();
    let server = KeelServer::start(&home, &[]);
    let keel = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", server.base.as_str()]);
        let out = home.run(&all);
        let said = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), said(&out.stdout), said(&out.stderr))
    };
    let (ok, added, stderr) = keel(&["webhooks", "add", "--agent", "default"]);
    assert!(ok, "{stderr}");
    assert!(added.contains("inbound  agent default"), "{added}");
    assert!(
        added.contains("secret: whsec_") && added.contains("/v1/hooks/hook_"),
        "{added}"
    );
    let id = added.split_whitespace().next().unwrap().to_string();
    let (ok, added, stderr) = keel(&[
        "webhooks",
        "add",
        "--url",
        "http://127.0.0.1:9/hook",
        "--allow-private",
        "--event",
        "run.failed",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        added.contains("outbound  http://127.0.0.1:9/hook  run.failed"),
        "{added}"
    );
    let (ok, refused, stderr) = keel(&["webhooks", "add", "--url", "http://127.0.0.1:9/hook"]);
    assert!(!ok, "a loopback URL without --allow-private: {refused}");
    assert!(stderr.contains("allow_private"), "{stderr}");
    let (ok, listed, _) = keel(&["webhooks", "list"]);
    assert!(ok);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        !listed.contains("whsec_"),
        "secrets are shown once: {listed}"
    );
    let (ok, _, stderr) = keel(&["webhooks", "rm", &id]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = keel(&["webhooks", "rm", &id]);
    assert!(!ok && stderr.contains("404"), "{stderr}");
    let (_, listed, _) = keel(&["webhooks", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_postgres_deliver_each_event_once_between_them() {
    let Some(schema) = support::postgres::Schema::create().await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    // Each delivery is refused once: its second attempt may be any node's.
    let receiver = serve_receiver(listener, 1);
    let config = r#"
[providers.scripted]
kind = "scripted"

[engine]
poll_ms = 100

[[agents]]
name = "default"
model = "scripted/echo"
"#;
    let homes: Vec<KeelHome> = (0..2).map(|_| schema.node(config)).collect();
    let a = KeelServer::start(&homes[0], &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&homes[1], &[]);
    let apis = [Api::new(&a, Some(&key)), Api::new(&b, Some(&key))];
    let hook = create_webhook(&apis[0], json!({"url": url, "allow_private": true})).await;
    let secret = hook["secret"].as_str().unwrap();
    const RUNS: usize = 10;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let api = &apis[i % 2];
        let session = new_session(api).await;
        runs.push(send(api, &session, &format!("hello {i}")).await);
    }
    for run in &runs {
        run_status(&apis[0], run, "completed").await;
    }
    let got = accepted(&receiver, RUNS).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|d| {
            verify(secret, d)["data"]["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    delivered.sort();
    runs.sort();
    assert_eq!(delivered, runs, "one run.completed per run");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(&apis[1], hook["id"].as_str().unwrap()).await;
        if listed.iter().all(|d| d["status"] == "delivered") {
            assert_eq!(listed.len(), RUNS);
            break;
        }
        assert!(Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let receiver = receiver.lock().unwrap();
    assert_eq!(receiver.accepted.len(), RUNS, "each event accepted once");
}
