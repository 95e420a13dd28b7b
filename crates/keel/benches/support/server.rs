//! A `keel serve` of this build for benches that compare two stores side by side: a data
//! directory that outlives the process (for restarts), the scripted model, loopback HTTP,
//! `[store] durability = "normal"`; and `fan_out`, which drives it from `CLIENTS` clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load::rss_bytes;
use crate::procs::{self, Process};

/// Clients driving a server at once.
pub const CLIENTS: usize = 16;

pub struct Server {
    config: PathBuf,
    keel: Option<Process>,
    pub url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server whose agent `default` (on `scripted/echo`) has `tools` (a TOML array's
    /// inside), and `engine` as its `[engine]` table's lines.
    pub fn new(tools: &str, engine: &str) -> Server {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("cannot create the bench's directory");
        let dir = tempfile::Builder::new()
            .prefix("keel-bench-")
            .tempdir_in(&base)
            .expect("cannot create the bench's directory");
        let config = format!(
            "data_dir = {:?}\n\n[store]\ndurability = \"normal\"\n\n[engine]\n{engine}\n\n\
             [providers.scripted]\nkind = \"scripted\"\n\n\
             [[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\ntools = [{tools}]\n",
            dir.path().join("data").display().to_string()
        );
        let path = dir.path().join("keel.toml");
        std::fs::write(&path, config).expect("cannot write keel.toml");
        let mut server = Server {
            config: path,
            keel: None,
            url: String::new(),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        server.start();
        server
    }

    /// Starts keel over the data directory; the seconds until it listens.
    pub fn start(&mut self) -> f64 {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_keel"));
        let at = Instant::now();
        let (keel, url) = procs::start_keel_binary(Path::new(&binary), &self.config, false, None);
        let took = at.elapsed().as_secs_f64();
        (self.keel, self.url) = (Some(keel), url);
        took
    }

    pub fn stop(&mut self) {
        self.keel = None;
    }

    pub fn rss_mib(&self) -> f64 {
        let pid = self.keel.as_ref().expect("running").pid();
        rss_bytes(pid) as f64 / (1 << 20) as f64
    }

    /// The CPU time keel has used so far.
    pub fn cpu(&self) -> Duration {
        self.keel.as_ref().expect("running").cpu()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("POST");
        let status = response.status();
        let value: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let value: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// A new session of agent `default`; its id.
    pub async fn session(&self) -> String {
        let session = self.post("/v1/sessions", json!({"agent": "default"})).await;
        session["id"].as_str().expect("a session id").to_string()
    }

    /// One turn of `content` on `session`, waited for; the run as the API shows it.
    pub async fn turn(&self, session: &str, content: &str) -> Value {
        self.post(
            &format!("/v1/sessions/{session}/messages"),
            json!({"content": content, "mode": "wait"}),
        )
        .await
    }
}

/// Runs `work(i)` for i in 0..count, `CLIENTS` at a time; the results in order.
pub async fn fan_out<T, F, Fut>(count: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, work) = (next.clone(), work.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return done;
                    }
                    done.push((i, work(i).await));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("a client panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}
