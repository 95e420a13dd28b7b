//! `keel chat --server URL` and `keel sessions … --server URL`: the same commands against a
//! running `keel serve` over its HTTP API instead of the local store. The key comes from
//! `--api-key` / `KEEL_API_KEY`, else from `<data_dir>/admin.key` (a local server's admin key).

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use super::chat::ChatArgs;
use super::sessions::{SessionsAt, SessionsCommand};
use crate::config::Config;

/// A client of one server.
pub struct Remote {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Remote {
    pub fn new(config: &Config, server: &str, api_key: Option<String>) -> anyhow::Result<Remote> {
        let key = match api_key {
            Some(key) => key,
            None => {
                let path = keel_server::admin_key_path(&config.data_dir());
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no API key: pass --api-key (or set KEEL_API_KEY), or run where {} is readable",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Remote {
            base: server.trim_end_matches('/').to_string(),
            key,
            http: reqwest::Client::new(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("cannot reach the keel server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        bail!("the server answered {status}: {message}")
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let req = self.http.get(format!("{}{path}", self.base));
        Ok(self.send(req).await?.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<reqwest::Response> {
        let req = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(req).await
    }
}

/// `keel sessions … --server URL`.
pub async fn sessions(remote: &Remote, command: SessionsCommand) -> anyhow::Result<()> {
    super::sessions::print(SessionsAt::Remote(remote), command).await
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A line-by-line chat: each line is sent in `stream` mode and the reply printed as it comes.
pub async fn chat(remote: &Remote, args: ChatArgs) -> anyhow::Result<()> {
    let session = match args.session {
        Some(id) => {
            remote.get(&format!("/v1/sessions/{id}")).await?;
            id.to_string()
        }
        None => {
            let resp = remote
                .post("/v1/sessions", json!({"agent": args.agent}))
                .await?;
            let created: Value = resp.json().await?;
            text(&created["id"]).to_string()
        }
    };
    eprintln!("session: {session} (on {})", remote.base);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("cannot read standard input")?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/exit" {
            break;
        }
        let resp = remote
            .post(
                &format!("/v1/sessions/{session}/messages"),
                json!({"content": line, "mode": "stream"}),
            )
            .await?;
        print_stream(resp).await?;
    }
    Ok(())
}

/// Prints text deltas as they arrive; fails when the run does not complete.
async fn print_stream(resp: reqwest::Response) -> anyhow::Result<()> {
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut event = String::new();
    let mut out = std::io::stdout();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                let data: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                match event.as_str() {
                    "text.delta" => {
                        print!("{}", text(&data["text"]));
                        out.flush()?;
                    }
                    "run.completed" => {
                        println!();
                        return Ok(());
                    }
                    "run.failed" | "run.cancelled" | "run.halted" | "error" => {
                        println!();
                        bail!("the run ended as {event}: {data}");
                    }
                    _ => {}
                }
            }
        }
    }
    bail!("the server closed the stream before the run ended")
}
