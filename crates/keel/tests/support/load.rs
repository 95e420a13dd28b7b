//! Load for memory checks (the `memory_flat` test and the `memory` bench): conversations held
//! through `/v1/responses` by concurrent clients, and keel's resident memory read from /proc.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// The model every conversation talks to (the scripted provider of `http::config`).
pub const MODEL: &str = "scripted/echo";

/// The process's resident set (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kb * 1024
}

/// A client of one server.
#[derive(Clone)]
pub struct Load {
    pub http: reqwest::Client,
    pub base: String,
    pub key: Option<String>,
}

impl Load {
    pub fn new(base: &str, key: Option<&str>) -> Load {
        Load {
            http: reqwest::Client::new(),
            base: base.to_string(),
            key: key.map(str::to_string),
        }
    }

    /// One turn: a new conversation, or the next turn of `previous`'s. Returns the response id.
    pub async fn turn(&self, input: &str, previous: Option<&str>) -> String {
        let mut body = json!({"model": MODEL, "input": input});
        if let Some(previous) = previous {
            body["previous_response_id"] = previous.into();
        }
        let mut request = self
            .http
            .post(format!("{}/v1/responses", self.base))
            .json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("POST /v1/responses");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "/v1/responses answered {status}: {text}"
        );
        let value: Value = serde_json::from_str(&text).expect("a JSON response");
        assert_eq!(value["status"], "completed", "{value}");
        value["id"].as_str().expect("a response id").to_string()
    }

    /// Starts `count` new conversations of one turn each, `clients` at a time.
    pub async fn touch(&self, count: usize, clients: usize) {
        let next = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (load, next) = (self.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return;
                        }
                        load.turn(&format!("hello from conversation {i}"), None)
                            .await;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("a client panicked");
        }
    }

    /// Carries each conversation of `threads` (its last response id, `None`: not started) on
    /// for `turns` more turns, one client per conversation.
    pub async fn grow(&self, threads: &mut [Option<String>], turns: usize) {
        let workers: Vec<_> = threads
            .iter()
            .cloned()
            .map(|mut last| {
                let load = self.clone();
                tokio::spawn(async move {
                    for t in 0..turns {
                        let input = format!("turn {t}: tell me something about {t}");
                        last = Some(load.turn(&input, last.as_deref()).await);
                    }
                    last
                })
            })
            .collect();
        for (thread, worker) in threads.iter_mut().zip(workers) {
            *thread = worker.await.expect("a client panicked");
        }
    }
}
