//! `keel mcp`: one MCP server on its own, through the client keel's runs use, to see what an
//! agent's `mcp` tool would offer the model (`tools`) and to try a call (`call`) before putting it
//! in keel.toml. The server is a URL (streamable HTTP) or a command after `--` (stdio).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keel_core::{HttpAuth, McpServer};
use keel_engine::tools::mcp::McpProbe;
use serde_json::Value;

#[derive(Subcommand)]
pub enum McpCommand {
    /// List the server's tools as the model would see them (JSON).
    Tools {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Call one of the server's tools (by its own name) and print the result.
    Call {
        /// The tool, as the server names it.
        tool: String,
        /// Its arguments, a JSON object.
        arguments: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Args)]
pub struct ServerArgs {
    /// The name that prefixes the tools' names (`NAME__tool`), as an agent's tool would.
    #[arg(long, default_value = "mcp")]
    name: String,
    /// A private range the HTTP server may be reached at (`127.0.0.0/8`); repeatable.
    #[arg(long = "allow-private", value_name = "RANGE")]
    allow_private: Vec<String>,
    /// The environment variable holding the HTTP server's secret (`Authorization: Bearer`).
    #[arg(long, value_name = "VAR")]
    auth_env: Option<String>,
    /// Seconds a call may take.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u32,
    /// `http(s)://…` (streamable HTTP), or the command that starts a stdio server.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    target: Vec<String>,
}

impl ServerArgs {
    fn probe(self) -> anyhow::Result<McpProbe> {
        let mut target = self.target.into_iter();
        let first = target
            .next()
            .context("name the server: a URL or a command")?;
        let server = if first.starts_with("http://") || first.starts_with("https://") {
            if target.len() > 0 {
                bail!("an MCP server URL takes no further arguments");
            }
            McpServer {
                auth: self.auth_env.map(|env| HttpAuth { env, header: None }),
                allow_private: self.allow_private,
                ..McpServer::http(first)
            }
        } else {
            let args: Vec<String> = target.collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            McpServer::stdio(first, &args)
        };
        let server = McpServer {
            timeout_secs: Some(self.timeout_secs),
            ..server
        };
        McpProbe::new(
            &self.name,
            server,
            Duration::from_secs(self.timeout_secs.into()),
        )
        .map_err(anyhow::Error::msg)
    }
}

/// Runs the subcommand; `Ok(false)` when the tool's result is an error.
pub async fn run(command: McpCommand) -> anyhow::Result<bool> {
    match command {
        McpCommand::Tools { server } => {
            let probe = server.probe()?;
            let listed = probe.tools().await;
            probe.close().await;
            let tools: Vec<Value> = listed
                .map_err(anyhow::Error::msg)?
                .into_iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&tools)?);
            Ok(true)
        }
        McpCommand::Call {
            tool,
            arguments,
            server,
        } => {
            let arguments: Value = serde_json::from_str(&arguments)
                .with_context(|| format!("the arguments are not JSON: {arguments}"))?;
            let probe = server.probe()?;
            let key = format!("keel-mcp-call:{}", std::process::id());
            let outcome = probe.call(&tool, &arguments, &key).await;
            probe.close().await;
            if outcome.is_error {
                eprintln!("error result: {}", outcome.content);
                return Ok(false);
            }
            println!("{}", outcome.content);
            Ok(true)
        }
    }
}
