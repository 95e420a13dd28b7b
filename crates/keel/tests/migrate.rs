//! `keel migrate` on the real binary: a SQLite data directory filled through `keel serve`
//! (sessions with turns, a tool call writing the scratchpad, a second tenant with a key, a
//! revoked key) moves to PostgreSQL, where `keel serve` answers the same and the conversation
//! goes on, and back to a new SQLite directory, where it answers the same again; bad input
//! (an unknown store, a missing source, a source in use, a target that is not empty) is refused
//! with a clear error and nothing written. The PostgreSQL parts run against the real server
//! (`support::postgres`), skipped loudly without one.

mod support;

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};
use support::http::{self, Api};
use support::postgres::{Schema, pg_url};
use support::{KeelHome, KeelServer};

/// A SQLite data directory filled through `keel serve`, and the keys that reach it.
struct Filled {
    home: KeelHome,
    admin: String,
    tenant_key: String,
    revoked_key: String,
    sessions: Vec<String>,
    /// The context the last turn of the first session saw, in the scripted model's tokens.
    last_context: u64,
}

async fn fill() -> Filled {
    let home = KeelHome::new(&http::config(0));
    let mut server = KeelServer::start(&home, &[]);
    let api = http::admin(&server);
    let mut sessions = Vec::new();
    let mut last_context = 0;
    let tool_call = r#"/call scratchpad_set {"key": "colour", "value": "blue"}"#;
    for turns in [&["hello", tool_call, "what now"][..], &["another thread"]] {
        let id = http::new_session(&api).await;
        for content in turns {
            let run = api
                .ok(
                    Method::POST,
                    &format!("/v1/sessions/{id}/messages"),
                    Some(json!({"content": content, "mode": "wait"})),
                )
                .await;
            assert_eq!(run["status"], "completed", "{run}");
            if sessions.is_empty() {
                last_context = run["usage"]["input_tokens"].as_u64().unwrap();
            }
        }
        sessions.push(id);
    }
    // A gateway call, for usage totals.
    let completion = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(
                json!({"model": "scripted/echo", "messages": [{"role": "user", "content": "hi"}]}),
            ),
        )
        .await;
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let key_of = |tenant: &Value| {
        let path = format!("/v1/admin/tenants/{}/keys", tenant["id"].as_str().unwrap());
        let api = &api;
        async move { api.ok(Method::POST, &path, Some(json!({}))).await }
    };
    let tenant = api
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"name": "acme"})),
        )
        .await;
    let kept = key_of(&tenant).await;
    let revoked = key_of(&tenant).await;
    api.ok(
        Method::POST,
        &format!(
            "/v1/admin/keys/{}/revoke",
            revoked["prefix"].as_str().unwrap()
        ),
        None,
    )
    .await;
    let admin = server.admin_key.clone().unwrap();
    assert!(server.terminate().success());
    Filled {
        home,
        admin,
        tenant_key: kept["key"].as_str().unwrap().to_string(),
        revoked_key: revoked["key"].as_str().unwrap().to_string(),
        sessions,
        last_context,
    }
}

/// What a server answers about the filled data: each session and its events, the list, and
/// whether each key is let in.
async fn observe(server: &KeelServer, filled: &Filled) -> Value {
    let api = Api::new(server, Some(&filled.admin));
    let mut seen = json!({"list": api.ok(Method::GET, "/v1/sessions", None).await});
    for id in &filled.sessions {
        seen[id] = json!({
            "session": api.ok(Method::GET, &format!("/v1/sessions/{id}"), None).await,
            "events": api.ok(Method::GET, &format!("/v1/sessions/{id}/events"), None).await,
        });
    }
    for (name, key) in [
        ("tenant_key", &filled.tenant_key),
        ("revoked_key", &filled.revoked_key),
    ] {
        let (status, _) = Api::new(server, Some(key))
            .call(Method::GET, "/v1/sessions", None)
            .await;
        seen[name] = json!(status.as_u16());
    }
    seen
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite:{}", dir.display())
}

/// Runs `keel migrate ARGS` and returns (success, stdout, stderr).
fn migrate(home: &KeelHome, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    let out = home.run(&all);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back_answers_the_same_and_the_conversation_goes_on() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let filled = fill().await;
    let before = {
        let server = KeelServer::start(&filled.home, &[]);
        observe(&server, &filled).await
    };
    assert_eq!(before["tenant_key"], 200);
    assert_eq!(before["revoked_key"], 401);

    let (ok, out, err) = migrate(
        &filled.home,
        &[
            "--from",
            &sqlite(&filled.home.data_dir()),
            "--to",
            &pg_url(),
            "--to-schema",
            &schema.name,
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("verified"), "{out}");
    assert!(
        out.contains("1  scratchpad values"),
        "the tool's write moves: {out}"
    );
    assert!(out.contains("3  API keys"), "{out}");
    assert!(out.contains("1  usage totals"), "{out}");
    assert!(out.contains("journal is intact"), "{out}");

    // A node on PostgreSQL answers the same, and the first conversation goes on with its context.
    let node = schema.node(&http::config(0));
    let pg = KeelServer::start(&node, &[]);
    assert!(pg.admin_key.is_none(), "the admin key moved with the store");
    assert_eq!(observe(&pg, &filled).await, before);
    let api = Api::new(&pg, Some(&filled.admin));
    let first = &filled.sessions[0];
    let next = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{first}/messages"),
            Some(json!({"content": "and on postgres", "mode": "wait"})),
        )
        .await;
    assert_eq!(
        (next["status"].as_str(), next["output"].as_str()),
        (Some("completed"), Some("echo: and on postgres")),
        "{next}"
    );
    assert!(
        next["usage"]["input_tokens"].as_u64().unwrap() > filled.last_context,
        "the turn saw the migrated history: {next}"
    );
    let on_postgres = observe(&pg, &filled).await;
    drop(pg);

    // And back to a new SQLite data directory.
    let back = KeelHome::new(&http::config(0));
    let (ok, out, err) = migrate(
        &back,
        &[
            "--from",
            &pg_url(),
            "--from-schema",
            &schema.name,
            "--to",
            &sqlite(&back.data_dir()),
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("verified"), "{out}");
    let server = KeelServer::start(&back, &[]);
    assert!(server.admin_key.is_none());
    assert_eq!(observe(&server, &filled).await, on_postgres);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_written() {
    let filled = fill().await;
    let home = &filled.home;
    let source = sqlite(&filled.home.data_dir());
    let out_dir = home.path().join("copy");
    let refused = |args: &[&str], says: &str| {
        let (ok, out, err) = migrate(home, args);
        assert!(!ok, "{args:?} was not refused: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    };

    let target = sqlite(&out_dir);
    refused(
        &["--from", "mysql://db/keel", "--to", &target],
        "names no store keel knows",
    );
    refused(
        &["--from", &source, "--to", "./elsewhere"],
        "names no store keel knows",
    );
    let missing = sqlite(&home.path().join("nope"));
    refused(
        &["--from", &missing, "--to", &target],
        "no keel store to migrate from",
    );
    assert!(!home.path().join("nope").exists());
    refused(&["--from", &source, "--to", &source], "the same store");
    refused(
        &["--from", &source, "--to", &target, "--to-schema", "x"],
        "applies to a postgres:// store",
    );
    assert!(!out_dir.exists(), "a refused migration wrote its target");

    // A source in use is refused: its keel serve holds the data directory's lock.
    let server = KeelServer::start(home, &[]);
    refused(
        &["--from", &source, "--to", &target],
        "another keel process",
    );
    drop(server);
    assert!(!out_dir.exists());

    // A target that holds records is refused, and left as it was.
    let (ok, out, err) = migrate(home, &["--from", &source, "--to", &target]);
    assert!(ok, "{out}\n{err}");
    let rows = || {
        let db = rusqlite::Connection::open(out_dir.join("keel.db")).unwrap();
        db.query_row(
            "SELECT (SELECT COUNT(*) FROM tenants) + (SELECT COUNT(*) FROM events)",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    let held = rows();
    refused(&["--from", &source, "--to", &target], "is not empty");
    assert_eq!(rows(), held);

    let Some(schema) = Schema::create().await else {
        return;
    };
    let to_pg = [
        "--from",
        source.as_str(),
        "--to",
        &pg_url(),
        "--to-schema",
        &schema.name,
    ]
    .map(str::to_string);
    let to_pg: Vec<&str> = to_pg.iter().map(String::as_str).collect();
    let (ok, out, err) = migrate(home, &to_pg);
    assert!(ok, "{out}\n{err}");
    refused(&to_pg, "its tenants table holds");
    // A PostgreSQL source without keel's tables is refused, and not created.
    let absent = format!("keel_absent_{}", &schema.name[11..]);
    let fresh = sqlite(&home.path().join("fresh"));
    refused(
        &[
            "--from",
            &pg_url(),
            "--from-schema",
            &absent,
            "--to",
            &fresh,
        ],
        "no keel store to migrate from",
    );
    let client = support::postgres::connect().await.unwrap();
    let created = client
        .query_opt(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
            &[&absent],
        )
        .await
        .unwrap();
    assert!(created.is_none(), "the source's schema was created");
    assert!(!home.path().join("fresh").exists());
}
