//! `keel runs waiting | pending | approve | reject | answer`: the runs and calls waiting for a
//! person, and a person's
//! decision on each (human approval), through the embedded engine or a running `keel serve`
//! alike (`Client`).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{ServerArgs, connect};
use crate::config::Config;

#[derive(Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Every run waiting for a person, newest first: `RUN  SESSION  CREATED`, then the calls it
    /// waits on, indented.
    Waiting,
    /// The calls a waiting run waits on: one line each, `CALL_ID  TOOL  ARGUMENTS`.
    Pending { run: String },
    /// Approve a waiting call, with these arguments (a JSON object) instead of the model's.
    Approve {
        run: String,
        call: String,
        #[arg(long)]
        arguments: Option<String>,
    },
    /// Reject a waiting call: the model gets the reason as the call's error result.
    Reject {
        run: String,
        call: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Answer an `ask_human` question.
    Answer {
        run: String,
        call: String,
        answer: String,
    },
}

pub async fn run(config: &Config, args: RunsArgs) -> anyhow::Result<()> {
    let client = connect(config, args.server).await?;
    let (run, decision) = match args.command {
        RunsCommand::Waiting => {
            let runs = client.waiting_runs().await;
            client.close().await;
            for view in runs? {
                println!(
                    "{}  {}  {}",
                    view["id"].as_str().unwrap_or("?"),
                    view["session_id"].as_str().unwrap_or("?"),
                    view["created_at"].as_str().unwrap_or("?")
                );
                for call in view["pending_approvals"].as_array().into_iter().flatten() {
                    println!("  {}", pending_line(call));
                }
            }
            return Ok(());
        }
        RunsCommand::Pending { run } => {
            let view = client.run_view(&run).await?;
            print_pending(&view);
            client.close().await;
            return Ok(());
        }
        RunsCommand::Approve {
            run,
            call,
            arguments,
        } => {
            let mut decision = json!({"call_id": call, "decision": "approve"});
            if let Some(text) = arguments {
                let arguments: Value = serde_json::from_str(&text).with_context(|| {
                    format!("--arguments {text:?} is not JSON; write e.g. '{{\"to\": \"ann\"}}'")
                })?;
                decision["arguments"] = arguments;
            }
            (run, decision)
        }
        RunsCommand::Reject { run, call, reason } => (
            run,
            json!({"call_id": call, "decision": "reject", "reason": reason}),
        ),
        RunsCommand::Answer { run, call, answer } => (
            run,
            json!({"call_id": call, "decision": "answer", "answer": answer}),
        ),
    };
    let view = client.resume(&run, json!([decision])).await;
    client.close().await;
    let view = view?;
    println!("run {run}: {}", view["status"].as_str().unwrap_or("?"));
    print_pending(&view);
    Ok(())
}

/// One line per call the run waits on; its status when there is none.
fn print_pending(view: &Value) {
    let calls = view["pending_approvals"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if calls.is_empty() {
        println!(
            "run {} waits on no call ({})",
            view["id"].as_str().unwrap_or("?"),
            view["status"].as_str().unwrap_or("?")
        );
    }
    for call in calls {
        println!("{}", pending_line(&call));
    }
}

/// `CALL_ID  TOOL  ARGUMENTS`.
fn pending_line(call: &Value) -> String {
    format!(
        "{}  {}  {}",
        call["call_id"].as_str().unwrap_or("?"),
        call["name"].as_str().unwrap_or("?"),
        call["arguments"]
    )
}
