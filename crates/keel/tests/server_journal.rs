//! The tamper-evident journal end to end: a session's log made through `keel serve` verifies
//! (`GET /v1/sessions/{id}/verify`, `keel sessions verify`), a fork's too; one byte of one
//! event edited in the SQLite file is found by both, naming its seq; another tenant's session
//! is a 404.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::http::{Api, admin, another_tenant, config, new_session, turn};
use support::{KeelHome, KeelServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_byte_in_the_database_is_found_naming_its_seq() {
    let home = KeelHome::new(&config(0));
    let mut server = KeelServer::start(&home, &[]);
    let key = server.admin_key.clone();
    let api = admin(&server);
    let session = new_session(&api).await;
    turn(&api, &session, "the first words").await;
    turn(&api, &session, "the second words").await;
    let fork = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/fork"),
            Some(json!({})),
        )
        .await;
    let fork = fork["id"].as_str().unwrap().to_string();
    for id in [&session, &fork] {
        let report = api
            .ok(Method::GET, &format!("/v1/sessions/{id}/verify"), None)
            .await;
        assert_eq!(report["intact"], true, "{report}");
        assert_eq!(report["algorithm"], "sha256");
        assert_eq!(report["unhashed"], 0);
        assert_eq!(report["first_bad_seq"], serde_json::Value::Null);
        assert!(
            report["last_record"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }
    let events = home.events(&session);
    let second_input = events
        .iter()
        .rev()
        .find(|e| e["type"] == "run_started")
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let out = home.run(&["sessions", "verify", &session]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with(&format!("intact: {} events (sha256)", events.len())),
        "{text}"
    );
    server.terminate();

    // One byte of the second run's input, s → S, behind keel's back.
    let db = rusqlite::Connection::open(home.data_dir().join("keel.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE events SET body = replace(body, 'second words', 'Second words') WHERE session = ?1 AND seq = ?2",
            rusqlite::params![session, second_input],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let out = home.run(&["sessions", "verify", &session]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with(&format!(
            "broken at seq {second_input}: event {second_input}: its hash does not match"
        )),
        "{text}"
    );
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, key.as_deref());
    let report = api
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_bad_seq"], second_input);
    // The fork copied the log before the edit: its own chain is untouched.
    let report = api
        .ok(Method::GET, &format!("/v1/sessions/{fork}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");

    // Another tenant, and a session that does not exist, are 404s.
    let b = another_tenant(&api, &server).await;
    for (who, id) in [
        (&b, session.as_str()),
        (&api, "ses_01JZZZZZZZZZZZZZZZZZZZZZZZ"),
    ] {
        let (status, error) = who
            .call(Method::GET, &format!("/v1/sessions/{id}/verify"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    }
}
