//! What `keel chat` and `keel send` need of keel, wherever it runs: the embedded engine over
//! the data directory (`local::Local`) or a running `keel serve` over its HTTP API
//! (`remote::Remote`). One trait, so one REPL and one `send` serve both alike, and the
//! `keel sessions` commands that need the engine (fork, context, export, import) too.

use std::io::Write;

use clap::Args;
use keel_core::SessionId;
use keel_store::TimerOwner;
use serde_json::Value;

use super::local::Local;
use super::remote::Remote;
use super::schedules::NewSchedule;
use super::sessions_at::SessionsAt;
use crate::config::Config;
use crate::runtime::{self, DataDirInUse, Runtime};

/// `--server` and `--api-key`, for the commands that can talk to a running server.
#[derive(Args, Clone, Default)]
pub struct ServerArgs {
    /// Talk to a running `keel serve` at this URL instead of the local data directory.
    #[arg(long, global = true, env = "KEEL_SERVER")]
    pub server: Option<String>,
    /// The API key for --server (default: <data_dir>/admin.key).
    #[arg(long, global = true, env = "KEEL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// How a turn's run ended.
pub struct Turn {
    pub run: String,
    /// `completed`, `failed`, `cancelled`, or `waiting` for a person (`keel runs`).
    pub status: String,
    pub error: Option<String>,
}

impl Turn {
    pub fn completed(&self) -> bool {
        self.status == "completed"
    }

    /// `run run_… failed: why`, for a turn that did not complete.
    pub fn failure(&self) -> String {
        format!(
            "run {} {}: {}",
            self.run,
            self.status,
            self.error.as_deref().unwrap_or_default()
        )
    }
}

/// A place to chat: sessions to read, start and send messages to.
#[async_trait::async_trait(?Send)]
pub trait Client {
    /// Where the sessions are read from (lists, history, recaps).
    fn sessions(&self) -> SessionsAt<'_>;
    /// Where this client talks to, for people (`the data directory keel-data`).
    fn place(&self) -> String;
    /// Starts a session of `agent`.
    async fn new_session(&self, agent: &str) -> anyhow::Result<SessionId>;
    /// Sends one message and follows its run to the end, writing the reply to `out` as it
    /// streams (and tool calls to stderr) when given.
    async fn turn(
        &self,
        session: &SessionId,
        text: &str,
        out: Option<&mut (dyn Write + Send)>,
    ) -> anyhow::Result<Turn>;
    /// The run as `GET /v1/runs/{id}` shows it: output, usage, the models that served.
    async fn run_view(&self, run: &str) -> anyhow::Result<Value>;
    /// Every run of the tenant waiting for a person, newest first, each as `run_view` shows it
    /// (`GET /v1/runs?status=waiting`, all pages).
    async fn waiting_runs(&self) -> anyhow::Result<Vec<Value>>;
    /// A new session whose log is `session`'s up to seq `at` (all of it when `None`), as
    /// `POST /v1/sessions/{id}/fork` answers it.
    async fn fork(&self, session: &SessionId, at: Option<u64>) -> anyhow::Result<Value>;
    /// What the model received at seq `at` of `session`'s log (now when `None`), as
    /// `GET /v1/sessions/{id}/context` shows it.
    async fn context(&self, session: &SessionId, at: Option<u64>) -> anyhow::Result<Value>;
    /// The session's memory blocks (`{"data": [...]}`), or the one of `label`, after setting
    /// it to `set` when given, as `GET`/`PUT /v1/sessions/{id}/memory/blocks[/{label}]` answer.
    async fn memory_blocks(
        &self,
        session: &SessionId,
        label: Option<&str>,
        set: Option<String>,
    ) -> anyhow::Result<Value>;
    /// The session's `keel.session/1` export, as `GET /v1/sessions/{id}/export` writes it.
    async fn export_session(&self, session: &SessionId) -> anyhow::Result<String>;
    /// Moves the session out (marked exported, never driven here again) and answers its
    /// export, as `POST /v1/sessions/{id}/export` does; `to`: where it goes.
    async fn move_session_out(
        &self,
        session: &SessionId,
        to: Option<String>,
    ) -> anyhow::Result<String>;
    /// Creates the session an export holds, as `POST /v1/sessions/import` answers it.
    async fn import_session(&self, export: String) -> anyhow::Result<Value>;
    /// Starts a session from a Letta agent file, its agent a new version on `base`'s model,
    /// as `POST /v1/sessions/import?format=letta-af` does.
    async fn import_letta_agent(&self, file: String, base: &str) -> anyhow::Result<Value>;
    /// Starts a session of `agent` from an OpenAI conversation's items (listed in `order`), as
    /// `POST /v1/sessions/import?format=openai-items` does.
    async fn import_conversation(
        &self,
        items: String,
        order: Option<&str>,
        agent: &str,
    ) -> anyhow::Result<Value>;
    /// Logs `decisions` (`[{"call_id", "decision", …}]`) on a waiting run's calls, as
    /// `POST /v1/runs/{id}/resume` does, and answers the run as `run_view` shows it (locally,
    /// once it waits again or ends: the embedded engine drives it here).
    async fn resume(&self, run: &str, decisions: Value) -> anyhow::Result<Value>;
    /// The session's or agent's schedules, as `GET /v1/sessions/{id}/schedules` and
    /// `GET /v1/agents/{name}/schedules` list them.
    async fn schedules(&self, owner: &TimerOwner) -> anyhow::Result<Value>;
    /// Adds a schedule to the session or agent; answers it as the API does.
    async fn add_schedule(
        &self,
        owner: &TimerOwner,
        when: &NewSchedule,
        tz: Option<&str>,
        note: &str,
    ) -> anyhow::Result<Value>;
    /// Deletes one of the session's or agent's schedules.
    async fn delete_schedule(&self, owner: &TimerOwner, schedule: &str) -> anyhow::Result<()>;
    /// The tenant's webhooks, as `GET /v1/webhooks` lists them.
    async fn webhooks(&self) -> anyhow::Result<Value>;
    /// Makes a webhook from a `POST /v1/webhooks` body; answers it with its secret.
    async fn add_webhook(&self, body: Value) -> anyhow::Result<Value>;
    async fn delete_webhook(&self, webhook: &str) -> anyhow::Result<()>;
    /// Where the tenant's long-term memory is (`keel memory`).
    fn memory(&self) -> super::memory::MemoryAt<'_>;
    /// Lets runs in flight log their results (local) before the process exits.
    async fn close(&self);
}

/// The client `server` asks for: the server at `--server`, else the embedded engine over the
/// data directory, else (the directory in use) the `keel serve` that holds it, said on stderr.
pub async fn connect(config: &Config, server: ServerArgs) -> anyhow::Result<Box<dyn Client>> {
    if let Some(url) = server.server {
        return Ok(Box::new(Remote::new(config, &url, server.api_key)?));
    }
    let dir = config.data_dir();
    let in_use = match Runtime::start(config).await {
        Ok(rt) => return Ok(Box::new(Local::new(rt, dir))),
        Err(e) if e.is::<DataDirInUse>() => e,
        Err(e) => return Err(e),
    };
    let Some(url) = runtime::served_at(&dir) else {
        return Err(in_use);
    };
    eprintln!(
        "keel serve is running on {}: talking to it at {url}",
        dir.display()
    );
    Ok(Box::new(Remote::new(config, &url, server.api_key)?))
}
