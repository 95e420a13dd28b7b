//! MCP tools, keel's side: an agent's tool of kind `mcp` stands for a server whose tools (those
//! its `allowed_tools` lets through) reach the model as `<server>__<tool>`, sorted by name so an
//! agent version's tool list is stable for providers' prompt caches. A call goes to the server
//! with keel's idempotency key in its `_meta` (`io.keel/idempotency-key`), within the server's
//! timeout; a server that fails, crashes or stays silent gives the model an error result, never
//! a stuck run. The SDK is spoken only in `session.rs` (and `http.rs`); `pool.rs` keeps the
//! connections.

mod http;
mod pool;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::{AgentDef, MCP_NAME_SEPARATOR, McpServer, TenantId, ToolDef, ToolKind};
use keel_models::ToolSpec;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::ToolOutcome;
use super::net_guard::{AddressPolicy, guarded_client};
use http::GuardedHttp;
use pool::{Connection, McpPool, PoolKey};
use session::{Failure, McpSession};

/// The `_meta` key of a call's idempotency key: the same for a call performed again after a
/// crash, so a server can tell a repeat from a new call.
pub const IDEMPOTENCY_META_KEY: &str = "io.keel/idempotency-key";
/// The longest tool name providers take (`^[a-zA-Z0-9_-]{1,64}$`).
const MAX_NAME: usize = 64;
/// The least time a server gets to start and complete the handshake (a `python -m` or `npx`
/// server takes seconds to start).
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct McpTools {
    /// A call's limit when its server sets none (keel's `tool_timeout`).
    timeout: Duration,
    pool: McpPool,
    /// The guarded HTTP client of each `allow_private` list in use.
    clients: Mutex<HashMap<Vec<String>, (reqwest::Client, Arc<AddressPolicy>)>>,
}

/// Refuses an agent whose `mcp` tool could never be used: a name that cannot prefix tool names,
/// a URL that is not http(s), an `allow_private` range that does not parse.
pub fn check_mcp_tools(def: &AgentDef) -> Result<(), String> {
    for tool in &def.tools {
        let ToolKind::Mcp(server) = &tool.kind else {
            continue;
        };
        let name = &tool.name;
        let good = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !name.contains(MCP_NAME_SEPARATOR)
            && !name.ends_with('_');
        if !good {
            return Err(format!(
                "mcp tool {name:?}: its name prefixes its tools' names (`{name}__<tool>`), so it \
                 is 1 to 32 letters, digits, `-` or `_`, with no `__` and not ending in `_`"
            ));
        }
        if let Some(problem) = server.problem() {
            return Err(format!("mcp tool {name:?}: {problem}"));
        }
        if let Some(url) = &server.url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("mcp tool {name:?}: url {url:?} is not valid: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "mcp tool {name:?}: url {url:?} is not http:// or https://"
                ));
            }
            AddressPolicy::new(&server.allow_private)
                .map_err(|e| format!("mcp tool {name:?}: {e}"))?;
        }
    }
    Ok(())
}

/// The name the model sees for the server `server`'s tool `tool`: `<server>__<tool>`, with any
/// character providers refuse as `_`, and a long one cut with a hash of the whole name.
pub fn model_name(server: &str, tool: &str) -> String {
    let name: String = format!("{server}{MCP_NAME_SEPARATOR}{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.len() <= MAX_NAME {
        return name;
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = tool.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{:08x}", &name[..MAX_NAME - 9], hash as u32)
}

impl McpTools {
    pub(crate) fn new(timeout: Duration) -> McpTools {
        McpTools {
            timeout,
            pool: McpPool::default(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The tool specs of the agent's MCP servers, each server's sorted by name. A server that
    /// cannot be reached now offers none this step (the reason is logged); the model's calls of
    /// its tools then get error results.
    pub(crate) async fn specs(&self, tenant: &TenantId, agent: &AgentDef) -> Vec<ToolSpec> {
        let mut specs = Vec::new();
        for def in &agent.tools {
            let ToolKind::Mcp(server) = &def.kind else {
                continue;
            };
            match self.server_specs(tenant, agent, def, server).await {
                Ok(listed) => specs.extend(listed),
                Err(e) => {
                    tracing::warn!(server = %def.name, error = %e, "the MCP server's tools could not be listed; the model sees none of them this step");
                }
            }
        }
        specs
    }

    /// The specs of one server's tools that `allowed_tools` lets through, sorted by name.
    async fn server_specs(
        &self,
        tenant: &TenantId,
        agent: &AgentDef,
        def: &ToolDef,
        server: &McpServer,
    ) -> Result<Vec<ToolSpec>, String> {
        let (key, connection) = self.connection(tenant, agent, def, server).await?;
        let listed = self.tools(&key, &connection, server).await?;
        let mut specs: Vec<ToolSpec> = listed
            .iter()
            .filter(|t| server.allows(&t.name))
            .map(|t| ToolSpec {
                name: model_name(&def.name, &t.name),
                description: t.description.clone(),
                parameters: t.input_schema.clone(),
                strict: None,
            })
            .collect();
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs.dedup_by(|a, b| a.name == b.name);
        Ok(specs)
    }

    /// Performs the model's call `name` of a tool of `def`'s server.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call(
        &self,
        tenant: &TenantId,
        agent: &AgentDef,
        def: &ToolDef,
        server: &McpServer,
        name: &str,
        arguments: &Value,
        idempotency_key: &str,
    ) -> ToolOutcome {
        let label = &def.name;
        let (key, connection) = match self.connection(tenant, agent, def, server).await {
            Ok(found) => found,
            Err(e) => return ToolOutcome::error(e),
        };
        let tools = match self.tools(&key, &connection, server).await {
            Ok(tools) => tools,
            Err(e) => return ToolOutcome::error(e),
        };
        let Some(tool) = tools.iter().find(|t| model_name(label, &t.name) == name) else {
            return ToolOutcome::error(format!(
                "MCP server `{label}` has no tool called {name:?} (it has: {})",
                tools
                    .iter()
                    .filter(|t| server.allows(&t.name))
                    .map(|t| model_name(label, &t.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if !server.allows(&tool.name) {
            return ToolOutcome::error(format!(
                "tool {:?} of MCP server `{label}` is not in the agent's allowed_tools for it",
                tool.name
            ));
        }
        let timeout = self.timeout_of(server);
        let meta = serde_json::Map::from_iter([(
            IDEMPOTENCY_META_KEY.to_string(),
            Value::String(idempotency_key.to_string()),
        )]);
        let call = connection.session.call_tool(&tool.name, arguments, meta);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => ToolOutcome {
                content: answer.text,
                is_error: answer.is_error,
                ..ToolOutcome::default()
            },
            Ok(Err(Failure::Refused(message))) => ToolOutcome::error(format!(
                "MCP server `{label}` refused the call of {:?}: {message}",
                tool.name
            )),
            Ok(Err(Failure::Lost(message))) => {
                self.pool.forget(&key, &connection).await;
                ToolOutcome::error(format!(
                    "MCP server `{label}` failed during the call of {:?} (it exited or closed \
                     the connection: {message}); keel starts it again at the next call",
                    tool.name
                ))
            }
            Err(_) => ToolOutcome::error(format!(
                "MCP server `{label}` did not answer the call of {:?} within {} s (its \
                 `timeout_secs`, else keel's tool_timeout); the call was cancelled",
                tool.name,
                timeout.as_secs_f64()
            )),
        }
    }

    /// Closes every connection (stops every stdio server).
    pub(crate) async fn shutdown(&self) {
        self.pool.shutdown().await;
    }

    fn timeout_of(&self, server: &McpServer) -> Duration {
        server
            .timeout_secs
            .map_or(self.timeout, |s| Duration::from_secs(s.into()))
    }

    /// The server's tools, listed within its timeout; a lost connection is forgotten.
    async fn tools(
        &self,
        key: &PoolKey,
        connection: &Arc<Connection>,
        server: &McpServer,
    ) -> Result<Arc<Vec<session::ServerTool>>, String> {
        let label = &key.server;
        match tokio::time::timeout(self.timeout_of(server), connection.tools()).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(Failure::Refused(e))) => Err(format!(
                "MCP server `{label}` refused to list its tools: {e}"
            )),
            Ok(Err(Failure::Lost(e))) => {
                self.pool.forget(key, connection).await;
                Err(format!(
                    "MCP server `{label}` failed while listing its tools ({e}); keel starts it \
                     again at the next call"
                ))
            }
            Err(_) => Err(format!(
                "MCP server `{label}` did not list its tools within {} s",
                self.timeout_of(server).as_secs_f64()
            )),
        }
    }

    /// The live connection to `def`'s server for this tenant's agent, connecting if needed.
    async fn connection(
        &self,
        tenant: &TenantId,
        agent: &AgentDef,
        def: &ToolDef,
        server: &McpServer,
    ) -> Result<(PoolKey, Arc<Connection>), String> {
        let key = PoolKey {
            tenant: tenant.clone(),
            agent: agent.id.clone(),
            server: def.name.clone(),
            definition: serde_json::to_string(server).unwrap_or_default(),
        };
        let label = def.name.as_str();
        let limit = self.timeout_of(server).max(MIN_CONNECT_TIMEOUT);
        let connection = self
            .pool
            .connection(&key, || async {
                let http = match &server.url {
                    Some(url) => Some(self.guarded_http(label, url, server)?),
                    None => None,
                };
                tokio::time::timeout(limit, McpSession::connect(label, server, http))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "MCP server `{label}` did not complete MCP's handshake within {} s",
                            limit.as_secs()
                        ))
                    })
            })
            .await?;
        Ok((key, connection))
    }

    /// The guarded client for an HTTP server, with its secret header read from the
    /// environment now.
    fn guarded_http(
        &self,
        label: &str,
        url: &str,
        server: &McpServer,
    ) -> Result<GuardedHttp, String> {
        let (client, policy) = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            match clients.get(&server.allow_private) {
                Some(found) => found.clone(),
                None => {
                    let policy = Arc::new(
                        AddressPolicy::new(&server.allow_private)
                            .map_err(|e| format!("MCP server `{label}`: {e}"))?,
                    );
                    let client = guarded_client(policy.clone())?;
                    clients.insert(
                        server.allow_private.clone(),
                        (client.clone(), policy.clone()),
                    );
                    (client, policy)
                }
            }
        };
        // A literal address is checked here, so the refusal reads plainly (the transport would
        // only report that the handshake failed); names are checked by the client's resolver.
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("MCP server `{label}`: url {url:?} is not valid: {e}"))?;
        policy
            .check_url(&parsed)
            .map_err(|refused| format!("MCP server `{label}`: {refused}"))?;
        let mut headers = HeaderMap::new();
        if let Some(auth) = &server.auth {
            let secret = std::env::var(&auth.env).map_err(|_| {
                format!(
                    "MCP server `{label}`'s secret is missing: environment variable {} is not set \
                     where keel runs",
                    auth.env
                )
            })?;
            let (name, value) = match &auth.header {
                None => (AUTHORIZATION, format!("Bearer {secret}")),
                Some(header) => (
                    HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        format!(
                            "MCP server `{label}`'s auth header {header:?} is not a header name"
                        )
                    })?,
                    secret,
                ),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "environment variable {} holds characters a header cannot carry",
                    auth.env
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(GuardedHttp {
            client,
            policy,
            headers,
        })
    }
}

/// One MCP server on its own, outside any run (`keel mcp`): its tools as the model would see
/// them, and a call of one, through the same client runs use.
pub struct McpProbe {
    tools: McpTools,
    tenant: TenantId,
    agent: AgentDef,
}

impl McpProbe {
    /// A probe of `server`, named `name` (what prefixes its tools' names).
    pub fn new(name: &str, server: McpServer, timeout: Duration) -> Result<McpProbe, String> {
        let agent: AgentDef = serde_json::from_value(serde_json::json!({
            "id": keel_core::AgentId::generate(0, 0).to_string(),
            "name": "mcp-probe",
            "version": 1,
            "model": "none",
            "tools": [ToolDef {
                name: name.to_string(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
                strict: None,
                require_approval: Default::default(),
                kind: ToolKind::Mcp(server),
            }],
        }))
        .map_err(|e| e.to_string())?;
        check_mcp_tools(&agent)?;
        Ok(McpProbe {
            tools: McpTools::new(timeout),
            tenant: TenantId::generate(0, 0),
            agent,
        })
    }

    fn server(&self) -> (&ToolDef, &McpServer) {
        let def = &self.agent.tools[0];
        match &def.kind {
            ToolKind::Mcp(server) => (def, server),
            _ => unreachable!("a probe holds one mcp tool"),
        }
    }

    /// The server's tools, as the model would see them.
    pub async fn tools(&self) -> Result<Vec<ToolSpec>, String> {
        let (def, server) = self.server();
        self.tools
            .server_specs(&self.tenant, &self.agent, def, server)
            .await
    }

    /// Calls the server's tool `tool` (its own name for it) with `arguments`.
    pub async fn call(&self, tool: &str, arguments: &Value, idempotency_key: &str) -> ToolOutcome {
        let (def, server) = self.server();
        let name = model_name(&def.name, tool);
        self.tools
            .call(
                &self.tenant,
                &self.agent,
                def,
                server,
                &name,
                arguments,
                idempotency_key,
            )
            .await
    }

    /// Closes the connection (stops a stdio server).
    pub async fn close(&self) {
        self.tools.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_follow_providers_rules_and_stay_apart() {
        assert_eq!(
            model_name("time", "get_current_time"),
            "time__get_current_time"
        );
        assert_eq!(model_name("fs", "read.file/v2"), "fs__read_file_v2");
        let long = "a".repeat(100);
        let one = model_name("srv", &format!("{long}1"));
        let two = model_name("srv", &format!("{long}2"));
        assert_eq!(one.len(), MAX_NAME);
        assert_ne!(one, two);
        assert_eq!(one, model_name("srv", &format!("{long}1")));
        assert!(
            one.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
    }
}
