//! One live connection to one MCP server, the only place that speaks the SDK (`rmcp`): it
//! starts a stdio server as a child process (its own process group, killed when dropped, its
//! stderr copied to keel's log) or opens a streamable-HTTP session, lists tools, calls one with
//! `_meta`, and notes the server's `notifications/tools/list_changed`. What leaves this module
//! is keel's own types, so a change of the SDK's API stays here.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keel_core::{EnvValue, McpServer};
use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    MetaObject, ProtocolVersion, RequestMetaObject,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::http::GuardedHttp;

/// Variables of keel's environment a stdio server gets besides its own `env`: enough to find
/// programs and a home, nothing that could carry keel's secrets.
const PASSED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];
/// Characters of one stderr line copied to keel's log.
const STDERR_LINE_CHARS: usize = 2_000;

/// A tool as the server lists it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServerTool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// A call's answer: the text the model sees and whether the server marked it an error.
#[derive(Debug)]
pub(crate) struct Answer {
    pub text: String,
    pub is_error: bool,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection is gone (the server exited, the HTTP session ended): a new one is needed.
    Lost(String),
    /// The server answered with an error (an unknown tool, bad arguments).
    Refused(String),
}

/// The client side of the SDK's service: keel's identity, and a flag set when the server says
/// its tools changed.
#[derive(Clone)]
struct Listener {
    label: Arc<str>,
    tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(server = %self.label, "the MCP server's tools changed; listing them again");
        self.tools_changed.store(true, Ordering::SeqCst);
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keel", env!("CARGO_PKG_VERSION")),
        );
        // The newest released revision with an `initialize` handshake, which servers in use
        // speak (the SDK's default is the next, still a draft).
        config.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
        config
    }
}

pub(crate) struct McpSession {
    service: RunningService<RoleClient, Listener>,
    tools_changed: Arc<AtomicBool>,
}

impl McpSession {
    /// Starts (stdio) or opens (HTTP) the server `label` and completes MCP's handshake. `http`
    /// is the guarded client for an HTTP server.
    pub(crate) async fn connect(
        label: &str,
        server: &McpServer,
        http: Option<GuardedHttp>,
    ) -> Result<McpSession, String> {
        let tools_changed = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            label: label.into(),
            tools_changed: tools_changed.clone(),
        };
        let service = match (&server.command, &server.url, http) {
            (Some(command), _, _) => {
                let transport = spawn(label, command, server)?;
                listener.serve(transport).await.map_err(|e| {
                    format!(
                        "MCP server `{label}` ({command}) did not complete MCP's handshake: {e}"
                    )
                })?
            }
            (None, Some(url), Some(http)) => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                let transport = StreamableHttpClientTransport::with_client(http, config);
                listener.serve(transport).await.map_err(|e| {
                    format!("MCP server `{label}` at {url} did not complete MCP's handshake: {e}")
                })?
            }
            _ => {
                return Err(format!(
                    "MCP server `{label}` has neither `command` nor `url`"
                ));
            }
        };
        Ok(McpSession {
            service,
            tools_changed,
        })
    }

    /// Whether the connection is gone (the server exited or closed it).
    pub(crate) fn is_closed(&self) -> bool {
        self.service.is_closed() || self.service.is_transport_closed()
    }

    /// Whether the server said its tools changed since the last call of this (and clears it).
    pub(crate) fn take_tools_changed(&self) -> bool {
        self.tools_changed.swap(false, Ordering::SeqCst)
    }

    /// Every tool the server lists, all pages.
    pub(crate) async fn list_tools(&self) -> Result<Vec<ServerTool>, Failure> {
        let tools = self
            .service
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| self.failure(e))?;
        Ok(tools
            .into_iter()
            .map(|t| ServerTool {
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Calls the server's tool `name` with `arguments` (an object, or null for none) and
    /// `meta` as the request's `_meta`. Dropping the future cancels the request
    /// (`notifications/cancelled`).
    pub(crate) async fn call_tool(
        &self,
        name: &str,
        arguments: &Value,
        meta: serde_json::Map<String, Value>,
    ) -> Result<Answer, Failure> {
        let mut params = CallToolRequestParams::new(name.to_string());
        match arguments {
            Value::Object(object) => params = params.with_arguments(object.clone()),
            Value::Null => {}
            other => {
                return Err(Failure::Refused(format!(
                    "the arguments of an MCP tool are a JSON object, not {other}"
                )));
            }
        }
        params.meta = Some(RequestMetaObject(MetaObject(meta)));
        let result = self
            .service
            .peer()
            .call_tool(params)
            .await
            .map_err(|e| self.failure(e))?;
        Ok(answer(result))
    }

    fn failure(&self, error: ServiceError) -> Failure {
        match error {
            ServiceError::McpError(e) => Failure::Refused(e.message.into_owned()),
            other if self.is_closed() => Failure::Lost(other.to_string()),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                Failure::Lost(error.to_string())
            }
            other => Failure::Refused(other.to_string()),
        }
    }

    /// Ends the session: a stdio server's stdin is closed, then it is asked to stop and, if it
    /// will not, killed (the SDK's shutdown sequence); an HTTP session is deleted.
    pub(crate) async fn close(self) {
        if let Err(e) = self.service.cancel().await {
            tracing::warn!(error = %e, "closing an MCP session failed");
        }
    }
}

/// The stdio server as a child process: its own process group (so a wrapper's children go
/// with it), killed when dropped, its stderr copied line by line to keel's log.
fn spawn(label: &str, command: &str, server: &McpServer) -> Result<TokioChildProcess, String> {
    let mut child = tokio::process::Command::new(command);
    child.args(&server.args).env_clear();
    for name in PASSED_ENV {
        if let Some(value) = std::env::var_os(name) {
            child.env(name, value);
        }
    }
    child.envs(server_env(label, &server.env)?);
    if let Some(cwd) = &server.cwd {
        child.current_dir(cwd);
    }
    let mut wrapped = CommandWrap::from(child);
    wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let (transport, stderr) = TokioChildProcess::builder(wrapped)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("MCP server `{label}` could not be started ({command}): {e}"))?;
    if let Some(stderr) = stderr {
        let label = label.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(STDERR_LINE_CHARS).collect();
                tracing::info!(server = %label, "mcp server stderr: {line}");
            }
        });
    }
    Ok(transport)
}

/// The server's own variables, those named by `{ env = "VAR" }` read from keel's environment.
fn server_env(
    label: &str,
    env: &BTreeMap<String, EnvValue>,
) -> Result<Vec<(String, String)>, String> {
    env.iter()
        .map(|(name, value)| match value {
            EnvValue::Value(v) => Ok((name.clone(), v.clone())),
            EnvValue::FromEnv(from) => {
                std::env::var(&from.env)
                    .map(|v| (name.clone(), v))
                    .map_err(|_| {
                        format!(
                            "MCP server `{label}` needs environment variable {} (for its {name}), \
                         which is not set where keel runs",
                            from.env
                        )
                    })
            }
        })
        .collect()
}

/// The result as the model reads it: text blocks as they are, other blocks as short notes or
/// their JSON, the structured content when there is nothing else.
fn answer(result: CallToolResult) -> Answer {
    let is_error = result.is_error.unwrap_or(false);
    let blocks = serde_json::to_value(&result.content).unwrap_or(Value::Null);
    let mut parts: Vec<String> = blocks
        .as_array()
        .into_iter()
        .flatten()
        .map(render_block)
        .collect();
    if parts.is_empty()
        && let Some(structured) = result.structured_content
    {
        parts.push(structured.to_string());
    }
    Answer {
        text: parts.join("\n"),
        is_error,
    }
}

fn render_block(block: &Value) -> String {
    let field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "text" => field("text").to_string(),
        kind @ ("image" | "audio") => format!(
            "[{kind} {}, {} bytes of base64]",
            field("mimeType"),
            field("data").len()
        ),
        "resource" => {
            let resource = &block["resource"];
            match resource.get("text").and_then(Value::as_str) {
                Some(text) => text.to_string(),
                None => format!(
                    "[resource {}]",
                    resource.get("uri").and_then(Value::as_str).unwrap_or("")
                ),
            }
        }
        "resource_link" => format!("[resource {}]", field("uri")),
        _ => block.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_blocks_read_as_they_are_and_others_as_short_notes() {
        let result: CallToolResult = serde_json::from_value(json!({
            "content": [
                {"type": "text", "text": "12:00"},
                {"type": "image", "mimeType": "image/png", "data": "AAAA"},
                {"type": "resource", "resource": {"uri": "file:///a", "text": "inside"}},
                {"type": "resource_link", "uri": "file:///b", "name": "b"},
            ],
            "isError": true
        }))
        .unwrap();
        let answer = answer(result);
        assert!(answer.is_error);
        assert_eq!(
            answer.text,
            "12:00\n[image image/png, 4 bytes of base64]\ninside\n[resource file:///b]"
        );
        let structured: CallToolResult =
            serde_json::from_value(json!({"content": [], "structuredContent": {"t": 1}})).unwrap();
        let answer = super::answer(structured);
        assert_eq!(
            (answer.text.as_str(), answer.is_error),
            ("{\"t\":1}", false)
        );
    }

    #[test]
    fn a_secret_comes_from_keel_s_environment_and_a_missing_one_is_named() {
        let env: BTreeMap<String, EnvValue> =
            serde_json::from_value(json!({"A": "1", "TOKEN": {"env": "KEEL_TEST_MCP_UNSET_VAR"}}))
                .unwrap();
        let error = server_env("s", &env).unwrap_err();
        assert!(error.contains("KEEL_TEST_MCP_UNSET_VAR"), "{error}");
        let env: BTreeMap<String, EnvValue> = serde_json::from_value(json!({"A": "1"})).unwrap();
        assert_eq!(server_env("s", &env).unwrap(), [("A".into(), "1".into())]);
    }
}
