//! `keel send` (one message, one reply: through the embedded engine, or a running server) and
//! `keel resume` (finish what a crash left).

use std::io::Read;

use anyhow::{Context, bail};
use clap::Args;
use keel_core::SessionId;

use super::client::{ServerArgs, connect};
use crate::config::Config;
use crate::runtime::{DEFAULT_AGENT, Runtime};

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
    /// Print the finished run as JSON (its output, usage and the model that served each step,
    /// as `GET /v1/runs/{id}` answers) instead of streaming the reply.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
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
    let client = connect(config, args.server).await?;
    let session = match args.session {
        Some(id) => id,
        None => client.new_session(&args.agent).await?,
    };
    let mut stdout = std::io::stdout();
    let out: Option<&mut (dyn std::io::Write + Send)> =
        if args.json { None } else { Some(&mut stdout) };
    let turn = client.turn(&session, &text, out).await?;
    if args.json {
        let view = client.run_view(&turn.run).await?;
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        // After the reply (which ends its line), so the id to continue with comes last.
        eprintln!("session: {session}");
    }
    client.close().await;
    if turn.status == "waiting" {
        // Not a failure: a person decides, then the run goes on.
        eprintln!(
            "run {} waits for a person's decision: `keel runs pending {}`",
            turn.run, turn.run
        );
    } else if !turn.completed() {
        bail!("{}", turn.failure());
    }
    Ok(())
}

pub async fn resume(config: &Config, _args: ResumeArgs) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    rt.engine.wait_idle().await;
    rt.engine.shutdown().await;
    Ok(())
}
