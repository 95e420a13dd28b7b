//! `keel memory add | search | get | rm`: the tenant's long-term memory from the command line,
//! in the local data directory (the embedded engine, which embeds with the local model) or on
//! a running `keel serve` (`--server`) alike (`MemoryAt`). Input keel refuses — bad metadata,
//! an empty text or query, a limit out of range — is a usage error (exit code 2), with nothing
//! stored.

use clap::{Args, Subcommand};
use keel_core::TenantId;
use keel_engine::{Engine, EngineError, SearchMode};
use keel_server::routes::memory::{MemoryHitList, MemoryView};
use serde_json::{Map, Value, json};

use super::client::{ServerArgs, connect};
use super::remote::{self, Remote, ServerAnswered};
use crate::config::Config;

#[derive(Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    pub command: MemoryCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Remember TEXT in NAMESPACE (`user:ada`, `agent:support`); prints the record's id.
    Add {
        namespace: String,
        text: String,
        /// Metadata: a JSON object (`{"kind": "preference"}`), usable as a search filter.
        #[arg(long, value_name = "JSON")]
        meta: Option<String>,
    },
    /// Search NAMESPACE for QUERY, best first: `ID  SCORE  TEXT` a line.
    Search {
        namespace: String,
        query: String,
        /// At most this many hits (1 to 100).
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// `hybrid` (keywords and vectors fused), `keyword` or `vector`.
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// Print the hits as JSON, as the API answers them.
        #[arg(long)]
        json: bool,
    },
    /// Print a record (any namespace) as JSON.
    Get { id: String },
    /// Forget a record (any namespace).
    Rm { id: String },
}

/// A usage error: what was asked is not something keel takes (exit code 2).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

pub async fn run(config: &Config, args: MemoryArgs) -> anyhow::Result<()> {
    // Metadata is read before anything opens: bad JSON says so first.
    let metadata = match &args.command {
        MemoryCommand::Add {
            meta: Some(meta), ..
        } => metadata(meta)?,
        _ => Map::new(),
    };
    let client = connect(config, args.server).await?;
    let memory = client.memory();
    let done = match args.command {
        MemoryCommand::Add {
            namespace, text, ..
        } => memory
            .add(&namespace, text, metadata)
            .await
            .map(|r| println!("{}", r.id)),
        MemoryCommand::Search {
            namespace,
            query,
            limit,
            mode,
            json,
        } => memory
            .search(&namespace, &query, limit, mode)
            .await
            .map(|hits| {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&hits).unwrap_or_default()
                    );
                }
                for hit in hits.data.iter().filter(|_| !json) {
                    let text = hit.record.text.replace('\n', " ");
                    println!("{}  {:.4}  {text}", hit.record.id, hit.score);
                }
            }),
        MemoryCommand::Get { id } => memory.get(&id).await.map(|r| {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        }),
        MemoryCommand::Rm { id } => memory.rm(&id).await.map(|()| println!("forgot {id}")),
    };
    client.close().await;
    done.map_err(usage)
}

/// `--meta`'s JSON object.
fn metadata(text: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(BadInput(format!("--meta must be a JSON object, not {other}")).into()),
        Err(e) => Err(BadInput(format!(
            "--meta is not JSON ({e}): give an object like '{{\"kind\": \"fact\"}}'"
        ))
        .into()),
    }
}

/// What keel refused as input (the engine's `Invalid`, the server's 400) as a usage error.
fn usage(error: anyhow::Error) -> anyhow::Error {
    let refused = matches!(
        error.downcast_ref::<EngineError>(),
        Some(EngineError::Invalid(_))
    ) || matches!(
        error.downcast_ref::<EngineError>(),
        Some(EngineError::Store(keel_store::StoreError::Invalid(_)))
    ) || error
        .downcast_ref::<ServerAnswered>()
        .is_some_and(|a| a.status == reqwest::StatusCode::BAD_REQUEST);
    match refused {
        true => BadInput(format!("{error:#}")).into(),
        false => error,
    }
}

/// Where the memory is: the embedded engine's (the default tenant's) or a server's (the API
/// key's tenant). Both answer in the API's shapes.
pub enum MemoryAt<'a> {
    Local {
        engine: &'a Engine,
        tenant: &'a TenantId,
    },
    Remote(&'a Remote),
}

/// The server's 404 for a record said as the local engine says it.
fn not_found(id: &str, error: anyhow::Error) -> anyhow::Error {
    match remote::is_not_found(&error) {
        true => anyhow::anyhow!("memory record {id:?} not found"),
        false => error,
    }
}

/// The path of a record on the server: `*` stands for any namespace.
fn record_path(id: &str) -> String {
    format!("/v1/memory/*/records/{}", segment(id))
}

/// `text` as one path segment (`user:ada` stays readable; `/`, `?`, `#`, `%` and spaces are
/// escaped).
fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'@' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

impl MemoryAt<'_> {
    async fn add(
        &self,
        namespace: &str,
        text: String,
        metadata: Map<String, Value>,
    ) -> anyhow::Result<MemoryView> {
        match self {
            MemoryAt::Local { engine, tenant } => Ok(engine
                .remember(tenant, namespace, text, Value::Object(metadata))
                .await?
                .into()),
            MemoryAt::Remote(server) => {
                let path = format!("/v1/memory/{}/records", segment(namespace));
                let body = json!({"text": text, "metadata": metadata});
                Ok(serde_json::from_value(
                    server.post_json(&path, body).await?,
                )?)
            }
        }
    }

    async fn search(
        &self,
        namespace: &str,
        query: &str,
        limit: usize,
        mode: SearchMode,
    ) -> anyhow::Result<MemoryHitList> {
        match self {
            MemoryAt::Local { engine, tenant } => {
                let hits = engine
                    .recall(tenant, namespace, query, Vec::new(), limit, mode)
                    .await?;
                Ok(MemoryHitList {
                    data: hits.into_iter().map(Into::into).collect(),
                })
            }
            MemoryAt::Remote(server) => {
                let path = format!("/v1/memory/{}/search", segment(namespace));
                let body = json!({"query": query, "limit": limit, "mode": mode});
                Ok(serde_json::from_value(
                    server.post_json(&path, body).await?,
                )?)
            }
        }
    }

    async fn get(&self, id: &str) -> anyhow::Result<MemoryView> {
        match self {
            MemoryAt::Local { engine, tenant } => {
                Ok(engine.memory_record(tenant, id).await?.into())
            }
            MemoryAt::Remote(server) => {
                let record = server.get(&record_path(id)).await;
                Ok(serde_json::from_value(
                    record.map_err(|e| not_found(id, e))?,
                )?)
            }
        }
    }

    async fn rm(&self, id: &str) -> anyhow::Result<()> {
        match self {
            MemoryAt::Local { engine, tenant } => Ok(engine.forget(tenant, id).await?),
            MemoryAt::Remote(server) => {
                let deleted = server.delete(&record_path(id)).await;
                deleted.map_err(|e| not_found(id, e))
            }
        }
    }
}
