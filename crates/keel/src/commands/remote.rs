//! A running `keel serve` as a chat client, over its HTTP API: what `--server URL` (or a
//! local server holding the data directory) gives `chat`, `send` and `sessions`. The key comes
//! from `--api-key` / `KEEL_API_KEY`, else from `<data_dir>/admin.key` (a local server's admin
//! key); without either, requests go without one (a `--no-auth` server).

use std::io::Write;

use anyhow::{Context, bail};
use futures::StreamExt;
use keel_core::SessionId;
use keel_store::TimerOwner;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Client, Turn};
use super::schedules::NewSchedule;
use super::sessions_at::SessionsAt;
use crate::config::Config;

/// A client of one server.
pub struct Remote {
    base: String,
    key: Option<String>,
    /// Where the key was looked for when none was given, for a 401's hint.
    key_path: std::path::PathBuf,
    http: reqwest::Client,
}

/// The server's answer to a request that failed: its status and error message.
#[derive(Debug)]
pub struct ServerAnswered {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ServerAnswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server answered {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ServerAnswered {}

impl Remote {
    pub fn new(config: &Config, server: &str, api_key: Option<String>) -> anyhow::Result<Remote> {
        let key_path = keel_server::admin_key_path(&config.data_dir());
        let key = match api_key {
            Some(key) => Some(key),
            None => match std::fs::read_to_string(&key_path) {
                Ok(key) => Some(key.trim().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot read the API key in {}: pass --api-key (or set KEEL_API_KEY)",
                            key_path.display()
                        )
                    });
                }
            },
        };
        Ok(Remote {
            base: server.trim_end_matches('/').to_string(),
            key,
            key_path,
            http: reqwest::Client::new(),
        })
    }

    async fn send(&self, mut req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the keel server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let mut message = body["error"]["message"]
            .as_str()
            .unwrap_or("no details")
            .to_string();
        if status == StatusCode::UNAUTHORIZED {
            message += &format!(
                " (pass --api-key or set KEEL_API_KEY; without them the key is read from {})",
                self.key_path.display()
            );
        }
        Err(ServerAnswered { status, message }.into())
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let req = self.http.get(format!("{}{path}", self.base));
        Ok(self.send(req).await?.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<reqwest::Response> {
        let req = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(req).await
    }

    /// `POST path` with `body`, answering the server's JSON.
    pub(super) async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self.post(path, body).await?.json().await?)
    }

    pub(super) async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let req = self.http.delete(format!("{}{path}", self.base));
        self.send(req).await?;
        Ok(())
    }
}

/// Whether `error` is the server's 404.
pub fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ServerAnswered>()
        .is_some_and(|a| a.status == StatusCode::NOT_FOUND)
}

#[async_trait::async_trait(?Send)]
impl Client for Remote {
    fn sessions(&self) -> SessionsAt<'_> {
        SessionsAt::Remote(self)
    }

    fn place(&self) -> String {
        format!("the server at {}", self.base)
    }

    async fn new_session(&self, agent: &str) -> anyhow::Result<SessionId> {
        let created: Value = self
            .post("/v1/sessions", json!({"agent": agent}))
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    anyhow::anyhow!("agent {agent:?} not found on {}: {e}", self.base)
                } else {
                    e
                }
            })?
            .json()
            .await?;
        let id = created["id"].as_str().unwrap_or_default();
        SessionId::parse(id).with_context(|| format!("the server created a session {created}"))
    }

    async fn turn(
        &self,
        session: &SessionId,
        text: &str,
        out: Option<&mut (dyn Write + Send)>,
    ) -> anyhow::Result<Turn> {
        let resp = self
            .post(
                &format!("/v1/sessions/{session}/messages"),
                json!({"content": text, "mode": "stream"}),
            )
            .await?;
        follow_stream(resp, out).await
    }

    async fn run_view(&self, run: &str) -> anyhow::Result<Value> {
        self.get(&format!("/v1/runs/{run}")).await
    }

    async fn waiting_runs(&self) -> anyhow::Result<Vec<Value>> {
        let (mut views, mut cursor) = (Vec::new(), String::new());
        loop {
            let page = self
                .get(&format!("/v1/runs?status=waiting&limit=100{cursor}"))
                .await?;
            views.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return Ok(views),
            }
        }
    }

    async fn fork(&self, session: &SessionId, at: Option<u64>) -> anyhow::Result<Value> {
        let path = format!("/v1/sessions/{session}/fork");
        let resp = self.post(&path, json!({"at_seq": at})).await?;
        Ok(resp.json().await?)
    }

    async fn memory_blocks(
        &self,
        session: &SessionId,
        label: Option<&str>,
        set: Option<String>,
    ) -> anyhow::Result<Value> {
        let path = match label {
            Some(label) => format!("/v1/sessions/{session}/memory/blocks/{label}"),
            None => format!("/v1/sessions/{session}/memory/blocks"),
        };
        match set {
            Some(value) => {
                let req = self
                    .http
                    .put(format!("{}{path}", self.base))
                    .json(&json!({ "value": value }));
                Ok(self.send(req).await?.json().await?)
            }
            None => self.get(&path).await,
        }
    }

    async fn context(&self, session: &SessionId, at: Option<u64>) -> anyhow::Result<Value> {
        let mut path = format!("/v1/sessions/{session}/context");
        if let Some(at) = at {
            path += &format!("?at_seq={at}");
        }
        self.get(&path).await
    }

    async fn export_session(&self, session: &SessionId) -> anyhow::Result<String> {
        let path = format!("/v1/sessions/{session}/export");
        let req = self.http.get(format!("{}{path}", self.base));
        Ok(self.send(req).await?.text().await?)
    }

    async fn move_session_out(
        &self,
        session: &SessionId,
        to: Option<String>,
    ) -> anyhow::Result<String> {
        let path = format!("/v1/sessions/{session}/export");
        Ok(self.post(&path, json!({"to": to})).await?.text().await?)
    }

    async fn import_session(&self, export: String) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(format!("{}/v1/sessions/import", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(export);
        Ok(self.send(req).await?.json().await?)
    }

    async fn import_conversation(
        &self,
        items: String,
        order: Option<&str>,
        agent: &str,
    ) -> anyhow::Result<Value> {
        let mut query = vec![("format", "openai-items"), ("agent", agent)];
        query.extend(order.map(|order| ("order", order)));
        let req = self
            .http
            .post(format!("{}/v1/sessions/import", self.base))
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(items);
        Ok(self.send(req).await?.json().await?)
    }

    async fn import_letta_agent(&self, file: String, base: &str) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(format!("{}/v1/sessions/import", self.base))
            .query(&[("format", "letta-af"), ("agent", base)])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(file);
        Ok(self.send(req).await?.json().await?)
    }

    async fn resume(&self, run: &str, decisions: Value) -> anyhow::Result<Value> {
        let path = format!("/v1/runs/{run}/resume");
        let resp = self.post(&path, json!({"decisions": decisions})).await?;
        Ok(resp.json().await?)
    }

    async fn schedules(&self, owner: &TimerOwner) -> anyhow::Result<Value> {
        self.get(&schedules_path(owner)).await
    }

    async fn add_schedule(
        &self,
        owner: &TimerOwner,
        when: &NewSchedule,
        tz: Option<&str>,
        note: &str,
    ) -> anyhow::Result<Value> {
        let resp = self
            .post(&schedules_path(owner), when.body(tz, note))
            .await?;
        Ok(resp.json().await?)
    }

    async fn delete_schedule(&self, owner: &TimerOwner, schedule: &str) -> anyhow::Result<()> {
        let path = format!("{}/{}", schedules_path(owner), path_segment(schedule));
        let req = self.http.delete(format!("{}{path}", self.base));
        self.send(req).await?;
        Ok(())
    }

    async fn webhooks(&self) -> anyhow::Result<Value> {
        self.get("/v1/webhooks").await
    }

    async fn add_webhook(&self, body: Value) -> anyhow::Result<Value> {
        Ok(self.post("/v1/webhooks", body).await?.json().await?)
    }

    async fn delete_webhook(&self, webhook: &str) -> anyhow::Result<()> {
        let req = self
            .http
            .delete(format!("{}/v1/webhooks/{webhook}", self.base));
        self.send(req).await?;
        Ok(())
    }

    fn memory(&self) -> super::memory::MemoryAt<'_> {
        super::memory::MemoryAt::Remote(self)
    }

    async fn close(&self) {}
}

/// Follows a run's SSE stream to its end, writing text deltas to `out` as they arrive and tool
/// calls to stderr (when `out` is given), as the local client does.
async fn follow_stream(
    resp: reqwest::Response,
    mut out: Option<&mut (dyn Write + Send)>,
) -> anyhow::Result<Turn> {
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut event = String::new();
    let mut printed_any = false;
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
                continue;
            }
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
            let text = |key: &str| data[key].as_str().unwrap_or_default().to_string();
            match event.as_str() {
                "text.delta" => {
                    if let Some(out) = out.as_deref_mut() {
                        out.write_all(text("text").as_bytes())?;
                        out.flush()?;
                        printed_any |= !text("text").is_empty();
                    }
                }
                "text.reset" if out.is_some() => {
                    eprintln!("\n  [the model's target failed mid-reply; retrying on another]");
                }
                "model.failed" if out.is_some() => {
                    eprintln!("\n  [model call failed: {}]", text("error"));
                }
                "tool.call" if out.is_some() => {
                    eprintln!("\n  [tool {}({})]", text("name"), data["arguments"]);
                }
                "run.completed" | "run.failed" | "run.cancelled" => {
                    if let Some(out) = out.as_deref_mut()
                        && printed_any
                    {
                        writeln!(out)?;
                    }
                    return Ok(Turn {
                        run: text("id"),
                        status: text("status"),
                        error: data["error"].as_str().map(str::to_string),
                    });
                }
                "run.halted" => bail!(
                    "run {} stopped: {}\nnothing stored was lost; the server finishes it once the cause is fixed",
                    text("run_id"),
                    text("error")
                ),
                "error" => bail!(
                    "the server stopped the run: {}",
                    data["error"]["message"].as_str().unwrap_or("no details")
                ),
                _ => {}
            }
        }
    }
    bail!("the server closed the stream before the run ended")
}

/// Where the session's or agent's schedules are served.
fn schedules_path(owner: &TimerOwner) -> String {
    match owner {
        TimerOwner::Session(session) => format!("/v1/sessions/{session}/schedules"),
        TimerOwner::Agent(name) => format!("/v1/agents/{}/schedules", path_segment(name)),
    }
}

/// `text` as one URL path segment: every byte but the unreserved ones percent-encoded, so an
/// agent named `a/b` or `a b` is still one segment.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
