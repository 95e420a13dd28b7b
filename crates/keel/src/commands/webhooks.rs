//! `keel webhooks list | add | rm`: the tenant's webhooks, through the embedded engine or a
//! running `keel serve` alike (`Client`), printed one line each. `add` prints the secret (and
//! an inbound webhook's path) once: keel never shows them again.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{ServerArgs, connect};
use crate::config::Config;

#[derive(Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// The tenant's webhooks: `ID  DIRECTION  TARGET  EVENTS`.
    List,
    /// Add an inbound webhook (`--session` or `--agent`: a URL that starts runs there) or an
    /// outbound one (`--url`: told of run events, of one session or agent when named too).
    Add {
        /// Outbound: where keel posts run events.
        #[arg(long)]
        url: Option<String>,
        /// Inbound: runs start on this session. Outbound: only its runs.
        #[arg(long)]
        session: Option<String>,
        /// Inbound: a new session of this agent per call. Outbound: only its sessions' runs.
        #[arg(long)]
        agent: Option<String>,
        /// Outbound: run.completed, run.failed or run.waiting (repeat it); all by default.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Outbound: let the URL be a private or loopback address.
        #[arg(long)]
        allow_private: bool,
        /// Inbound: admit calls on the URL's token alone, unsigned.
        #[arg(long)]
        unsigned: bool,
    },
    /// Delete a webhook.
    Rm { webhook: String },
}

pub async fn run(config: &Config, args: WebhooksArgs) -> anyhow::Result<()> {
    let client = connect(config, args.server).await?;
    let done = match args.command {
        WebhooksCommand::List => client.webhooks().await.map(|list| {
            for webhook in list["data"].as_array().into_iter().flatten() {
                println!("{}", line(webhook));
            }
        }),
        WebhooksCommand::Add {
            url,
            session,
            agent,
            events,
            allow_private,
            unsigned,
        } => {
            let mut body = json!({"url": url, "session_id": session, "agent": agent,
                "allow_private": allow_private});
            if !events.is_empty() {
                body["events"] = json!(events);
            }
            if unsigned {
                body["signed"] = json!(false);
            }
            client.add_webhook(body).await.map(|added| {
                println!("{}", line(&added));
                println!("secret: {}", added["secret"].as_str().unwrap_or("?"));
                if let Some(path) = added["trigger_path"].as_str() {
                    println!("POST to: {path} (on this keel's address)");
                }
            })
        }
        WebhooksCommand::Rm { webhook } => client
            .delete_webhook(&webhook)
            .await
            .map(|()| println!("deleted {webhook}")),
    };
    client.close().await;
    done
}

/// `ID  DIRECTION  TARGET  EVENTS`.
fn line(webhook: &Value) -> String {
    let target = match (
        webhook["url"].as_str(),
        webhook["session_id"].as_str(),
        webhook["agent"].as_str(),
    ) {
        (Some(url), Some(session), _) => format!("{url} (session {session})"),
        (Some(url), _, Some(agent)) => format!("{url} (agent {agent})"),
        (Some(url), _, _) => url.to_string(),
        (None, Some(session), _) => format!("session {session}"),
        (None, _, Some(agent)) => format!("agent {agent}"),
        _ => "?".into(),
    };
    let events: Vec<&str> = webhook["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{}  {}  {target}  {}",
        webhook["id"].as_str().unwrap_or("?"),
        webhook["direction"].as_str().unwrap_or("?"),
        events.join(",")
    )
}
