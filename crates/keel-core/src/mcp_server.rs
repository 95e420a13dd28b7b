//! How an agent declares an MCP server (a tool of kind `mcp`): a command keel starts and talks
//! to over stdio, or a streamable-HTTP endpoint; which of its tools the model may call; secrets
//! named by environment variable, never written here. Plain data; `keel-engine`'s
//! `tools/mcp/` does the talking. The server's tools reach the model as `<name>__<tool>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::http_tool::HttpAuth;

/// What separates a server's name from its tools' names in the names the model sees.
pub const MCP_NAME_SEPARATOR: &str = "__";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McpServer {
    /// A stdio server: the program keel starts (found on `PATH` when not a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The stdio server's environment besides `PATH`, `HOME`, `LANG` and the temp directory
    /// (nothing else of keel's own environment reaches it): values as they are, or read from
    /// keel's environment when the server starts (`{ env = "VAR" }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// The stdio server's working directory; keel's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// A streamable-HTTP server: its endpoint (`https://…/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The HTTP server's secret header (as for `http` tools: `Authorization: Bearer <secret>`
    /// unless `header` names another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    /// Private, loopback or link-local ranges the HTTP server may be reached at (as for
    /// `http` tools); every other such address is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<String>,
    /// The server's tools (as the server names them) the model may see and call; all of them
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// Seconds one call may take before the model gets an error result; keel's `tool_timeout`
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

impl McpServer {
    /// A stdio server started as `command args…`, every other setting at its default.
    pub fn stdio(command: impl Into<String>, args: &[&str]) -> McpServer {
        McpServer {
            command: Some(command.into()),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..McpServer::http_or_empty(None)
        }
    }

    /// A streamable-HTTP server at `url`, every other setting at its default.
    pub fn http(url: impl Into<String>) -> McpServer {
        McpServer::http_or_empty(Some(url.into()))
    }

    fn http_or_empty(url: Option<String>) -> McpServer {
        McpServer {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url,
            auth: None,
            allow_private: Vec::new(),
            allowed_tools: None,
            timeout_secs: None,
        }
    }

    /// Whether the model may call the server's tool `tool` (its own name for it).
    pub fn allows(&self, tool: &str) -> bool {
        self.allowed_tools
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == tool))
    }

    /// Why this declaration cannot be used, if it cannot: not exactly one of `command` and
    /// `url`, or a setting of the other transport.
    pub fn problem(&self) -> Option<String> {
        match (&self.command, &self.url) {
            (None, None) => Some("an mcp tool needs `command` (stdio) or `url` (HTTP)".into()),
            (Some(_), Some(_)) => {
                Some("an mcp tool has `command` (stdio) or `url` (HTTP), not both".into())
            }
            (Some(_), None) => [
                ("auth", self.auth.is_some()),
                ("allow_private", !self.allow_private.is_empty()),
            ]
            .into_iter()
            .find_map(|(field, set)| {
                set.then(|| format!("`{field}` is only for mcp servers reached by `url`"))
            }),
            (None, Some(_)) => [
                ("args", !self.args.is_empty()),
                ("env", !self.env.is_empty()),
                ("cwd", self.cwd.is_some()),
            ]
            .into_iter()
            .find_map(|(field, set)| {
                set.then(|| format!("`{field}` is only for mcp servers started by `command`"))
            }),
        }
    }
}

/// One variable of a stdio server's environment: a value, or the name of keel's own
/// variable to read it from when the server starts (for secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    Value(String),
    FromEnv(FromEnv),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromEnv {
    pub env: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_transport_and_only_its_settings() {
        assert!(
            McpServer::stdio("python3", &["-m", "x"])
                .problem()
                .is_none()
        );
        assert!(
            McpServer::http("http://127.0.0.1:1/mcp")
                .problem()
                .is_none()
        );
        let both = McpServer {
            url: Some("http://x".into()),
            ..McpServer::stdio("x", &[])
        };
        assert!(both.problem().unwrap().contains("not both"));
        let neither = McpServer {
            command: None,
            ..McpServer::stdio("x", &[])
        };
        assert!(neither.problem().unwrap().contains("needs"));
        let args_on_http = McpServer {
            args: vec!["a".into()],
            ..McpServer::http("http://x")
        };
        assert!(args_on_http.problem().unwrap().contains("`args`"));
        let private_on_stdio = McpServer {
            allow_private: vec!["127.0.0.0/8".into()],
            ..McpServer::stdio("x", &[])
        };
        assert!(
            private_on_stdio
                .problem()
                .unwrap()
                .contains("allow_private")
        );
    }

    #[test]
    fn an_allowlist_limits_the_tools_and_none_allows_all() {
        let all = McpServer::stdio("x", &[]);
        assert!(all.allows("anything"));
        let some = McpServer {
            allowed_tools: Some(vec!["get_current_time".into()]),
            ..all
        };
        assert!(some.allows("get_current_time"));
        assert!(!some.allows("convert_time"));
    }

    #[test]
    fn env_values_are_literal_or_read_from_keel_s_environment() {
        let env: BTreeMap<String, EnvValue> =
            serde_json::from_str(r#"{"A": "1", "B": {"env": "KEEL_B"}}"#).unwrap();
        assert_eq!(env["A"], EnvValue::Value("1".into()));
        assert_eq!(
            env["B"],
            EnvValue::FromEnv(FromEnv {
                env: "KEEL_B".into()
            })
        );
        assert!(serde_json::from_str::<EnvValue>(r#"{"env": "X", "value": "s"}"#).is_err());
    }
}
