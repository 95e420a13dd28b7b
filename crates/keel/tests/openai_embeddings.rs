//! `POST /v1/embeddings` on `keel serve` with the embedded defaults (no configuration): the
//! official `openai` SDK embeds with the local all-MiniLM-L6-v2 — paraphrases closer than
//! unrelated texts, base64 and floats alike, bad input refused with OpenAI's error shape
//! (`tests/openai_sdk/embeddings.py`) — and a damaged model file is an error naming it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keel_local::pull::{self, EMBEDDING_MODEL};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::http::Api;
use support::{KeelHome, KeelServer, wait_with_timeout};

/// The chat and embedding models, fetched once into the tests' shared model cache.
fn cached_models() -> PathBuf {
    let cache = support::test_model_cache();
    pull::ensure_default_model(&cache, |_| {}).expect("the chat model can be fetched");
    pull::ensure_model(&cache, EMBEDDING_MODEL, |_| {})
        .expect("the embedding model can be fetched");
    cache
}

/// keel on the embedded defaults, with `cache` as its model cache.
fn serve_defaults(cache: PathBuf) -> (KeelHome, KeelServer) {
    let mut home = KeelHome::new("");
    home.model_cache = cache;
    let server = KeelServer::start(&home, &[]);
    (home, server)
}

#[test]
fn the_openai_sdk_embeds_with_the_local_model() {
    let (home, server) = serve_defaults(cached_models());
    let python = support::python::openai_sdk();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_sdk/embeddings.py");
    let child = Command::new(python)
        .arg(script)
        .arg(format!("local/{EMBEDDING_MODEL}"))
        .current_dir(home.path())
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .env(
            "OPENAI_API_KEY",
            server.admin_key.as_deref().expect("admin key"),
        )
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let out = wait_with_timeout(child, Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("ok"),
        "the embeddings scenario failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_embedding_model_is_an_error_naming_the_file() {
    let shared = cached_models();
    let home_cache = tempfile::tempdir().unwrap();
    let model = pull::find_known(EMBEDDING_MODEL).unwrap();
    for name in std::iter::once(model.file_name).chain(model.companions.iter().map(|c| c.file_name))
    {
        std::fs::copy(shared.join(name), home_cache.path().join(name)).unwrap();
    }
    // The chat model is read in place (a link), the weights damaged at the same size, so keel
    // takes them as present and finds the damage when it reads them.
    let chat = pull::find_known(pull::DEFAULT_MODEL).unwrap().file_name;
    std::os::unix::fs::symlink(shared.join(chat), home_cache.path().join(chat)).unwrap();
    let weights = home_cache.path().join(model.file_name);
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&weights, &bytes).unwrap();

    let (_home, server) = serve_defaults(home_cache.path().to_path_buf());
    let api = Api::new(&server, server.admin_key.as_deref());
    let body = json!({"model": format!("local/{EMBEDDING_MODEL}"), "input": "hello"});
    let (status, reply) = api.call(Method::POST, "/v1/embeddings", Some(body)).await;
    assert!(
        status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR,
        "{status} {reply}"
    );
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(model.file_name) && message.contains("keel model pull"),
        "{reply}"
    );

    // The server goes on answering.
    let (status, reply) = api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(json!({"model": format!("local/{EMBEDDING_MODEL}"), "input": []})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
}
