//! How an agent declares an HTTP tool: where it is, how keel calls it, which private address
//! ranges it may reach (none unless named: the SSRF guard in `keel-engine` refuses the rest),
//! where its secret comes from (the name of an environment variable, never the secret), and
//! its limits. Plain data; the engine does the calling.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpTool {
    /// `http://` or `https://` URL the call goes to.
    pub url: String,
    #[serde(default, skip_serializing_if = "HttpMethod::is_post")]
    pub method: HttpMethod,
    /// CIDR ranges (`127.0.0.0/8`, `fd00::/8`, or one address) of private, loopback or
    /// link-local addresses this tool may reach; every other such address is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    /// Seconds one attempt may take; keel's `tool_timeout` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// Further attempts after a connection failure, a timeout or a 408/429/5xx answer (the
    /// `Idempotency-Key` lets the endpoint tell a retry from a new call); 2 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Bytes of the answer kept (a longer one is cut with a note to the model); never more
    /// than keel's `tool_result_bytes` limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u32>,
}

impl HttpTool {
    /// A tool POSTing to `url` with every other setting at its default.
    pub fn post(url: impl Into<String>) -> HttpTool {
        HttpTool {
            url: url.into(),
            method: HttpMethod::Post,
            allow_private: Vec::new(),
            auth: None,
            timeout_secs: None,
            retries: None,
            max_response_bytes: None,
        }
    }
}

/// `POST`, `PUT` and `PATCH` send the arguments as a JSON body; `GET` and `DELETE` as query
/// parameters (strings as they are, other values as JSON text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    fn is_post(&self) -> bool {
        *self == HttpMethod::Post
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether the arguments travel in the body.
    pub fn has_body(self) -> bool {
        matches!(self, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch)
    }
}

/// A secret sent with every call, read from the environment when the call is made, so the
/// secret itself is in no agent definition, event or log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// The environment variable holding the secret.
    pub env: String,
    /// The header it goes in: `Authorization: Bearer <secret>` when unset; any header named
    /// here carries the secret as it is (`X-Api-Key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}
