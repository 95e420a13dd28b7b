//! `keel send` (one message, one reply) and `keel resume` (finish what a crash left).

use std::io::{Read, Write};

use anyhow::{Context, bail};
use clap::Args;
use keel_core::{EventBody, Message, RunStatus, SessionId};
use keel_engine::{Engine, RunUpdate};
use keel_store::RunRecord;

use crate::config::Config;
use crate::runtime::{DEFAULT_AGENT, NO_PROVIDER_HELP, Runtime};

#[derive(Args)]
pub struct SendArgs {
    /// The message; `-` reads it from standard input.
    pub message: String,
    /// Continue this session (default: start a new one).
    #[arg(long)]
    pub session: Option<SessionId>,
    /// The agent of a new session.
    #[arg(long, default_value = DEFAULT_AGENT)]
    pub agent: String,
    /// Print the finished run as JSON instead of streaming the reply.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ResumeArgs {}

pub async fn send(config: &Config, args: SendArgs) -> anyhow::Result<()> {
    let text = if args.message == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the message from standard input")?;
        s
    } else {
        args.message
    };
    let rt = Runtime::start(config).await?;
    let session = match args.session {
        Some(id) => id,
        None => {
            let s = new_session(&rt, &args.agent).await?;
            eprintln!("session: {}", s);
            s
        }
    };
    let run = stream_turn(&rt.engine, &rt, &session, &text, !args.json).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    }
    rt.engine.shutdown().await;
    if run.status != RunStatus::Completed {
        bail!(
            "run {} {}: {}",
            run.id,
            run.status.as_str(),
            run.error.unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn resume(config: &Config, _args: ResumeArgs) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.engine.wait_idle().await;
    rt.engine.shutdown().await;
    Ok(())
}

/// Starts a session of `agent`, explaining what to configure when there is no such agent.
pub async fn new_session(rt: &Runtime, agent: &str) -> anyhow::Result<SessionId> {
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

/// Submits one message and, when `print` is set, streams the reply to stdout as it comes.
pub async fn stream_turn(
    engine: &Engine,
    rt: &Runtime,
    session: &SessionId,
    text: &str,
    print: bool,
) -> anyhow::Result<RunRecord> {
    let mut updates = engine.subscribe(session);
    let run = engine
        .submit(&rt.tenant, session, Message::user(text))
        .await?;
    let mut out = std::io::stdout();
    let mut printed_any = false;
    loop {
        match updates.recv().await {
            Ok(RunUpdate::TextDelta { run_id, text, .. }) if run_id == run.id && print => {
                print!("{text}");
                out.flush().ok();
                printed_any = true;
            }
            Ok(RunUpdate::TextReset { run_id, .. }) if run_id == run.id && print => {
                eprintln!("\n  [the model's target failed mid-reply; retrying on another]");
            }
            Ok(RunUpdate::Event(event)) if print => match &event.body {
                EventBody::ToolCalled {
                    run_id,
                    name,
                    arguments,
                    ..
                } if *run_id == run.id => {
                    eprintln!("\n  [tool {name}({arguments})]");
                }
                EventBody::ModelFailed { run_id, error, .. } if *run_id == run.id => {
                    eprintln!("\n  [model call failed: {error}]");
                }
                _ => {}
            },
            Ok(RunUpdate::Finished(record)) if record.id == run.id => {
                if print && printed_any {
                    println!();
                }
                return Ok(*record);
            }
            Ok(RunUpdate::Halted { run_id, error }) if run_id == run.id => {
                bail!(
                    "run {} stopped: {error}\nnothing stored was lost; `keel resume` finishes it once the cause is fixed",
                    run.id
                );
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Ok(engine.wait_run(&rt.tenant, &run.id).await?);
            }
        }
    }
}
