//! The embedded engine as a chat client: a `Runtime` over the data directory (holding its
//! lock), driving each turn in this process and streaming the reply as it is made.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use keel_core::{EventBody, Message, RunId, RunStatus, SessionId, TenantId, TimerId, WebhookId};
use keel_engine::{BusyPolicy, Engine, RunProgress};
use keel_store::{RunRecord, TimerOwner};
use serde_json::Value;

use super::client::{Client, Turn};
use super::schedules::NewSchedule;
use super::sessions_at::SessionsAt;
use crate::runtime::{DEFAULT_AGENT, NO_PROVIDER_HELP, Runtime};
use keel_server::routes::schedules::ScheduleView;
use keel_server::routes::webhooks::{CreateWebhook, CreatedWebhookView, WebhookView};

/// The engine started over the local data directory `dir`.
pub struct Local {
    rt: Runtime,
    dir: PathBuf,
}

impl Local {
    pub fn new(rt: Runtime, dir: PathBuf) -> Local {
        Local { rt, dir }
    }
}

#[async_trait::async_trait(?Send)]
impl Client for Local {
    fn sessions(&self) -> SessionsAt<'_> {
        SessionsAt::Local(self.rt.engine.store())
    }

    fn place(&self) -> String {
        format!("the data directory {}", self.dir.display())
    }

    async fn new_session(&self, agent: &str) -> anyhow::Result<SessionId> {
        let rt = &self.rt;
        if rt
            .engine
            .store()
            .get_agent(&rt.tenant, agent, None)
            .await?
            .is_none()
        {
            if agent == DEFAULT_AGENT {
                bail!("{NO_PROVIDER_HELP}");
            }
            bail!(
                "agent {agent:?} not found; define it under [[agents]] in keel.toml (`keel agents list` shows the agents)"
            );
        }
        Ok(rt
            .engine
            .create_session(&rt.tenant, agent, Default::default())
            .await?
            .id)
    }

    async fn turn(
        &self,
        session: &SessionId,
        text: &str,
        out: Option<&mut (dyn Write + Send)>,
    ) -> anyhow::Result<Turn> {
        let run = follow_turn(&self.rt.engine, &self.rt.tenant, session, text, out).await?;
        Ok(Turn {
            run: run.id.to_string(),
            status: run.status.as_str().to_string(),
            error: run.error,
        })
    }

    async fn run_view(&self, run: &str) -> anyhow::Result<Value> {
        let id = RunId::parse(run).with_context(|| format!("invalid run id {run:?}"))?;
        let engine = &self.rt.engine;
        let record = engine.get_run(&self.rt.tenant, &id).await?;
        let events = engine.run_events(&record).await?;
        let waiting = record.status == keel_core::RunStatus::Waiting;
        let mut view = keel_server::wire::RunView::from_log(record, &events);
        if waiting {
            view.pending_approvals = engine.pending_approvals(&self.rt.tenant, &id).await?;
        }
        Ok(serde_json::to_value(view)?)
    }

    async fn waiting_runs(&self) -> anyhow::Result<Vec<Value>> {
        let reader = self.rt.engine.store();
        let (mut views, mut before) = (Vec::new(), None);
        loop {
            let page = reader
                .runs_with_status(&self.rt.tenant, RunStatus::Waiting, before.as_ref(), 100)
                .await?;
            for run in &page {
                views.push(self.run_view(run.id.as_str()).await?);
            }
            match page.last() {
                Some(last) if page.len() == 100 => before = Some(last.id.clone()),
                _ => return Ok(views),
            }
        }
    }

    async fn resume(&self, run: &str, decisions: Value) -> anyhow::Result<Value> {
        let id = RunId::parse(run).with_context(|| format!("invalid run id {run:?}"))?;
        let decisions = serde_json::from_value(decisions)?;
        let engine = &self.rt.engine;
        let resumed = engine
            .resume_run(&self.rt.tenant, &id, decisions, Some("cli".into()))
            .await?;
        if !resumed.status.is_resting() {
            engine.wait_run(&self.rt.tenant, &id).await?;
        }
        self.run_view(run).await
    }

    async fn fork(&self, session: &SessionId, at: Option<u64>) -> anyhow::Result<Value> {
        let engine = &self.rt.engine;
        let record = engine
            .fork_session(&self.rt.tenant, session, at, Default::default())
            .await?;
        Ok(serde_json::to_value(keel_server::wire::SessionView::from(
            record,
        ))?)
    }

    async fn memory_blocks(
        &self,
        session: &SessionId,
        label: Option<&str>,
        set: Option<String>,
    ) -> anyhow::Result<Value> {
        let (engine, tenant) = (&self.rt.engine, &self.rt.tenant);
        let view = |b| serde_json::to_value(keel_server::wire::BlockView::from(b));
        Ok(match (label, set) {
            (Some(label), Some(value)) => view(
                engine
                    .edit_session_memory_block(tenant, session, label, value)
                    .await?,
            )?,
            (Some(label), None) => {
                view(engine.session_memory_block(tenant, session, label).await?)?
            }
            (None, _) => {
                let blocks = engine.session_memory_blocks(tenant, session).await?;
                let data: Vec<keel_server::wire::BlockView> =
                    blocks.into_iter().map(Into::into).collect();
                serde_json::json!({ "data": data })
            }
        })
    }

    async fn context(&self, session: &SessionId, at: Option<u64>) -> anyhow::Result<Value> {
        let engine = &self.rt.engine;
        let context = engine.session_context(&self.rt.tenant, session, at).await?;
        Ok(serde_json::to_value(keel_server::wire::ContextView::from(
            context,
        ))?)
    }

    async fn export_session(&self, session: &SessionId) -> anyhow::Result<String> {
        let lines = self
            .rt
            .engine
            .store()
            .export_session(&self.rt.tenant, session)
            .await?;
        Ok(lines.iter().map(|line| format!("{line}\n")).collect())
    }

    async fn move_session_out(
        &self,
        session: &SessionId,
        to: Option<String>,
    ) -> anyhow::Result<String> {
        let engine = &self.rt.engine;
        let lines = engine
            .move_session_out(&self.rt.tenant, session, to)
            .await?;
        Ok(lines.iter().map(|line| format!("{line}\n")).collect())
    }

    async fn import_conversation(
        &self,
        items: String,
        order: Option<&str>,
        agent: &str,
    ) -> anyhow::Result<Value> {
        let messages = keel_server::openai::items_file::messages(items.as_bytes(), order)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let engine = &self.rt.engine;
        let record = engine
            .import_conversation(&self.rt.tenant, agent, Default::default(), messages)
            .await?;
        Ok(serde_json::to_value(keel_server::wire::SessionView::from(
            record,
        ))?)
    }

    async fn import_letta_agent(&self, file: String, base: &str) -> anyhow::Result<Value> {
        let agent = keel_server::letta_file::read(file.as_bytes())
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let engine = &self.rt.engine;
        let record = engine
            .import_agent_conversation(
                &self.rt.tenant,
                base,
                &agent.name,
                agent.instructions,
                agent.blocks,
                agent.messages,
            )
            .await?;
        Ok(serde_json::to_value(keel_server::wire::SessionView::from(
            record,
        ))?)
    }

    async fn import_session(&self, export: String) -> anyhow::Result<Value> {
        let engine = &self.rt.engine;
        let record = engine.import_session(&self.rt.tenant, &export).await?;
        Ok(serde_json::to_value(keel_server::wire::SessionView::from(
            record,
        ))?)
    }

    async fn schedules(&self, owner: &TimerOwner) -> anyhow::Result<Value> {
        let timers = self.rt.engine.list_timers(&self.rt.tenant, owner).await?;
        let views: Vec<ScheduleView> = timers.into_iter().map(Into::into).collect();
        Ok(serde_json::json!({ "data": views }))
    }

    async fn add_schedule(
        &self,
        owner: &TimerOwner,
        when: &NewSchedule,
        tz: Option<&str>,
        note: &str,
    ) -> anyhow::Result<Value> {
        let engine = &self.rt.engine;
        let timer = engine
            .add_timer(&self.rt.tenant, owner, when.when(tz)?, note.into())
            .await?;
        Ok(serde_json::to_value(ScheduleView::from(timer))?)
    }

    async fn delete_schedule(&self, owner: &TimerOwner, schedule: &str) -> anyhow::Result<()> {
        let id = TimerId::parse(schedule).map_err(|e| anyhow::anyhow!("{e}"))?;
        let engine = &self.rt.engine;
        Ok(engine.delete_timer(&self.rt.tenant, owner, &id).await?)
    }

    async fn webhooks(&self) -> anyhow::Result<Value> {
        let webhooks = self.rt.engine.list_webhooks(&self.rt.tenant).await?;
        let views: Vec<WebhookView> = webhooks.into_iter().map(Into::into).collect();
        Ok(serde_json::json!({ "data": views }))
    }

    async fn add_webhook(&self, body: Value) -> anyhow::Result<Value> {
        let body: CreateWebhook = serde_json::from_value(body)?;
        let new = body
            .into_new()
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let created = self.rt.engine.create_webhook(&self.rt.tenant, new).await?;
        Ok(serde_json::to_value(CreatedWebhookView::from(created))?)
    }

    async fn delete_webhook(&self, webhook: &str) -> anyhow::Result<()> {
        let id = WebhookId::parse(webhook).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(self.rt.engine.delete_webhook(&self.rt.tenant, &id).await?)
    }

    fn memory(&self) -> super::memory::MemoryAt<'_> {
        let (engine, tenant) = (&self.rt.engine, &self.rt.tenant);
        super::memory::MemoryAt::Local { engine, tenant }
    }

    async fn close(&self) {
        self.rt.engine.shutdown().await;
    }
}

/// Submits one message and follows its run to the end (`Engine::submit_followed`: nothing is missed
/// however slow `out` is), writing the reply to `out` as it streams and tool calls and failed
/// model calls to stderr.
async fn follow_turn(
    engine: &Engine,
    tenant: &TenantId,
    session: &SessionId,
    text: &str,
    mut out: Option<&mut (dyn Write + Send)>,
) -> anyhow::Result<RunRecord> {
    // Subscribed before queueing (`submit_followed`): the first text streams live.
    let (run, mut follower) = engine
        .submit_followed(
            tenant,
            session,
            Message::user(text),
            Default::default(),
            BusyPolicy::Enqueue,
        )
        .await?;
    let mut printed_any = false;
    let print = out.is_some();
    while let Some(progress) = follower.next().await {
        match progress? {
            RunProgress::Text { text, .. } => {
                if let Some(out) = out.as_deref_mut() {
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                    printed_any |= !text.is_empty();
                }
            }
            RunProgress::TextReset { .. } if print => {
                eprintln!("\n  [the model's target failed mid-reply; retrying on another]");
            }
            RunProgress::Event(event) if print => match &event.body {
                EventBody::ToolCalled {
                    name, arguments, ..
                } => eprintln!("\n  [tool {name}({arguments})]"),
                EventBody::ModelFailed { error, .. } => {
                    eprintln!("\n  [model call failed: {error}]")
                }
                _ => {}
            },
            RunProgress::TextReset { .. } | RunProgress::Event(_) => {}
            RunProgress::Ended(record) => {
                if let Some(out) = out.as_deref_mut()
                    && printed_any
                {
                    writeln!(out)?;
                }
                return Ok(*record);
            }
            RunProgress::Halted { error } => bail!(
                "run {} stopped: {error}\nnothing stored was lost; `keel resume` finishes it once the cause is fixed",
                run.id
            ),
            RunProgress::NotStarted { error } => bail!(
                "run {} cannot start: the store cannot commit ({error})\nit stays queued; `keel resume` finishes it once the cause is fixed",
                run.id
            ),
        }
    }
    bail!("following run {} stopped before its end", run.id)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::{Duration, Instant};

    use keel_core::{AgentDef, AgentId, Limits, Role, RunStatus};
    use keel_engine::{EngineConfig, ModelRegistry};
    use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
    use keel_store::{SqliteOptions, SqliteStore};

    use super::*;

    /// Standard output that blocks at its first write until the test opens the gate.
    struct GatedOutput {
        gate: Option<mpsc::Receiver<()>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedOutput {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The CLI's turn with a broadcast of two updates and an output stuck until the run has
    /// logged its reply: the follower lags by hundreds of deltas, and the whole reply is
    /// printed anyway, and the turn ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_turn_printed_through_a_stuck_output_prints_the_whole_reply_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("keel.db"))).unwrap());
        let models = ModelRegistry::new().with(
            "scripted",
            Arc::new(ScriptedClient::new(ScriptedConfig::default())),
        );
        let config = EngineConfig {
            updates_capacity: 2,
            poll_interval: Duration::from_millis(50),
            ..EngineConfig::default()
        };
        let engine = Engine::new(store, models, config);
        let tenant = TenantId::default_tenant();
        let agent = AgentDef {
            id: AgentId::generate(1, 1),
            name: "a".into(),
            version: 0,
            instructions: String::new(),
            model: "scripted/echo".into(),
            tools: vec![],
            limits: Limits::default(),
            memory_blocks: Vec::new(),
            compaction: Default::default(),
            memory: Default::default(),
        };
        engine.put_agent(&tenant, agent).await.unwrap();
        let session = engine
            .create_session(&tenant, "a", Default::default())
            .await
            .unwrap()
            .id;
        engine.start().await.unwrap();

        let (open, gate) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let turn = {
            let (engine, tenant, session) = (engine.clone(), tenant.clone(), session.clone());
            let mut out = GatedOutput {
                gate: Some(gate),
                written: written.clone(),
            };
            let text: String = (0..500).map(|i| format!("w{i} ")).collect();
            tokio::spawn(async move {
                follow_turn(&engine, &tenant, &session, &text, Some(&mut out)).await
            })
        };
        // The reply is logged (every delta sent) before the output takes its first write.
        let deadline = Instant::now() + Duration::from_secs(30);
        let reply = loop {
            let history = engine.history(&session, 0, 100).await.unwrap();
            if let Some((_, m)) = history.iter().find(|(_, m)| m.role == Role::Assistant) {
                break m.text_content();
            }
            assert!(Instant::now() < deadline, "the run never replied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        open.send(()).unwrap();
        let run = tokio::time::timeout(Duration::from_secs(30), turn)
            .await
            .expect("the turn never ended")
            .unwrap()
            .unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert!(reply.split_whitespace().count() >= 500, "{reply}");
        let printed = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(printed, format!("{reply}\n"));
    }
}
