//! Calling an HTTP tool: the arguments go out with the call's `Idempotency-Key` and the tool's
//! secret (read from the environment now, never stored), through the SSRF guard; redirects
//! are followed here, a few hops, each checked again; connection failures, timeouts and
//! 408/429/5xx answers are retried with backoff (the key makes that safe); the answer is read
//! no further than the tool's cap and cut there with a note to the model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use keel_core::{HttpMethod, HttpTool};
use keel_models::error_chain;
use keel_models::router::{RetryPolicy, retry_wait};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::ToolOutcome;
use super::net_guard::{AddressPolicy, Refused, guarded_client, refusal_in};

/// Redirects followed before a call gives up.
const MAX_REDIRECTS: usize = 5;
/// Further attempts when a tool sets no `retries`.
const DEFAULT_RETRIES: u32 = 2;

/// The HTTP client of each address policy in use (one per distinct `allow_private` list, so
/// pooled connections never cross policies).
pub(crate) struct HttpTools {
    timeout: Duration,
    clients: Mutex<HashMap<Vec<String>, Guarded>>,
}

/// A client whose resolver enforces `policy`, and the policy, for the addresses in URLs.
#[derive(Clone)]
struct Guarded {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

/// Why an attempt produced no answer.
enum Failure {
    Refused(Refused),
    Transport(reqwest::Error),
    /// Not worth retrying: a bad URL, a redirect loop, a missing secret.
    Final(String),
}

impl HttpTools {
    /// Tools that set no timeout of their own get `timeout` per attempt.
    pub(crate) fn new(timeout: Duration) -> HttpTools {
        HttpTools {
            timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Performs one call of `tool`, its answer cut at `limit` bytes (or the tool's own cap).
    pub(crate) async fn call(
        &self,
        tool: &HttpTool,
        arguments: &Value,
        idempotency_key: &str,
        limit: usize,
    ) -> ToolOutcome {
        let limit = tool
            .max_response_bytes
            .map_or(limit, |cap| limit.min(cap as usize));
        let answer = match self.prepare(tool, idempotency_key) {
            Ok((guarded, headers)) => {
                self.send_with_retries(&guarded, tool, arguments, headers)
                    .await
            }
            Err(failure) => Err(failure),
        };
        let response = match answer {
            Ok(response) => response,
            Err(Failure::Refused(refused)) => return ToolOutcome::error(refused.to_string()),
            Err(Failure::Final(message)) => return ToolOutcome::error(message),
            Err(Failure::Transport(e)) => {
                return match refusal_in(&e) {
                    Some(refused) => ToolOutcome::error(refused.to_string()),
                    None => ToolOutcome::error(format!(
                        "tool endpoint {} could not be reached: {}",
                        tool.url,
                        error_chain(&e)
                    )),
                };
            }
        };
        let status = response.status();
        match read_capped(response, limit).await {
            Ok(body) => {
                let body = crate::quotas::cut_tool_result(body, limit);
                if status.is_success() {
                    ToolOutcome::ok(body)
                } else {
                    ToolOutcome::error(format!("tool endpoint answered HTTP {status}: {body}"))
                }
            }
            Err(e) => ToolOutcome::error(format!(
                "tool endpoint's answer could not be read: {}",
                error_chain(&e)
            )),
        }
    }

    /// The client for the tool's address policy and the headers every attempt carries.
    fn prepare(
        &self,
        tool: &HttpTool,
        idempotency_key: &str,
    ) -> Result<(Guarded, HeaderMap), Failure> {
        let guarded = self.guarded(&tool.allow_private).map_err(Failure::Final)?;
        let mut headers = HeaderMap::new();
        let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
            Failure::Final("the call's idempotency key is not a header value".into())
        })?;
        headers.insert("idempotency-key", key);
        if let Some(auth) = &tool.auth {
            let secret = std::env::var(&auth.env).map_err(|_| {
                Failure::Final(format!(
                    "the tool's secret is missing: environment variable {} is not set where keel runs",
                    auth.env
                ))
            })?;
            let (name, value) = match &auth.header {
                None => (AUTHORIZATION, format!("Bearer {secret}")),
                Some(header) => (
                    HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        Failure::Final(format!(
                            "the tool's auth header {header:?} is not a header name"
                        ))
                    })?,
                    secret,
                ),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                Failure::Final(format!(
                    "environment variable {} holds characters a header cannot carry",
                    auth.env
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok((guarded, headers))
    }

    fn guarded(&self, allow_private: &[String]) -> Result<Guarded, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(guarded) = clients.get(allow_private) {
            return Ok(guarded.clone());
        }
        let policy = Arc::new(AddressPolicy::new(allow_private)?);
        let client = guarded_client(policy.clone())?;
        let guarded = Guarded { client, policy };
        clients.insert(allow_private.to_vec(), guarded.clone());
        Ok(guarded)
    }

    async fn send_with_retries(
        &self,
        guarded: &Guarded,
        tool: &HttpTool,
        arguments: &Value,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, Failure> {
        let retries = tool.retries.unwrap_or(DEFAULT_RETRIES);
        let policy = RetryPolicy {
            attempts_per_target: retries + 1,
            initial_backoff_ms: 200,
            max_backoff_ms: 2_000,
            max_retry_after_ms: 10_000,
        };
        let timeout = tool
            .timeout_secs
            .map_or(self.timeout, |s| Duration::from_secs(s.into()));
        let mut retry = 0;
        loop {
            let answer = self
                .send_following_redirects(guarded, tool, arguments, &headers, timeout)
                .await;
            let retry_after = match &answer {
                Ok(r) if retryable_status(r.status()) => {
                    keel_models::retry_after(r.headers(), SystemTime::now())
                }
                Err(Failure::Transport(e)) if refusal_in(e).is_none() => None,
                _ => return answer,
            };
            retry += 1;
            if retry > retries {
                return answer;
            }
            match retry_wait(&policy, retry, retry_after, rand::random::<f64>()) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return answer,
            }
        }
    }

    /// One attempt: the request, then each redirect (checked by the guard like the first hop).
    async fn send_following_redirects(
        &self,
        guarded: &Guarded,
        tool: &HttpTool,
        arguments: &Value,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<reqwest::Response, Failure> {
        let first = Url::parse(&tool.url).map_err(|e| {
            Failure::Final(format!("the tool's URL {:?} is not valid: {e}", tool.url))
        })?;
        let mut url = first.clone();
        let mut method = tool.method;
        let mut with_arguments = true;
        for _ in 0..=MAX_REDIRECTS {
            guarded.policy.check_url(&url).map_err(Failure::Refused)?;
            let mut headers = headers.clone();
            if url.origin() != first.origin() {
                // Like browsers: a secret for one origin is not handed to another.
                headers.remove(AUTHORIZATION);
                if let Some(auth) = tool.auth.as_ref().and_then(|a| a.header.as_deref()) {
                    headers.remove(auth);
                }
            }
            let request = guarded
                .client
                .request(to_reqwest(method), url.clone())
                .headers(headers)
                .timeout(timeout);
            let request = match (with_arguments, method.has_body()) {
                (false, _) => request,
                (true, true) => request.json(arguments),
                (true, false) => request.query(&query_pairs(arguments)),
            };
            let response = request.send().await.map_err(Failure::Transport)?;
            let status = response.status();
            let Some(location) = status
                .is_redirection()
                .then(|| response.headers().get(LOCATION))
                .flatten()
            else {
                return Ok(response);
            };
            let next = location
                .to_str()
                .ok()
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| {
                    Failure::Final(format!(
                        "tool endpoint {url} redirected to a Location that is not a URL"
                    ))
                })?;
            // 303, and 301/302 after a POST, turn into a GET without the arguments; 307 and
            // 308 repeat the request as it was.
            if status == StatusCode::SEE_OTHER
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method != HttpMethod::Get)
            {
                method = HttpMethod::Get;
                with_arguments = false;
            }
            url = next;
        }
        Err(Failure::Final(format!(
            "tool endpoint {} redirected more than {MAX_REDIRECTS} times",
            tool.url
        )))
    }
}

fn to_reqwest(method: HttpMethod) -> reqwest::Method {
    match method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    }
}

/// A GET or DELETE tool's arguments as query parameters: strings as they are, anything else as
/// its JSON text.
fn query_pairs(arguments: &Value) -> Vec<(String, String)> {
    match arguments {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_string()),
            })
            .collect(),
        Value::Null => Vec::new(),
        other => vec![("arguments".into(), other.to_string())],
    }
}

/// Answers that say "try again": the request timed out, was throttled, or the server failed.
fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The response body as text, reading no more than one byte past `limit` (a larger body is
/// cut to the limit afterwards, so an endless answer cannot fill memory).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> reqwest::Result<String> {
    let mut body = Vec::new();
    while body.len() <= limit
        && let Some(chunk) = response.chunk().await?
    {
        body.extend_from_slice(&chunk);
    }
    body.truncate(limit.saturating_add(1));
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_arguments_keep_strings_and_write_the_rest_as_json() {
        let pairs = query_pairs(&json!({"q": "a b", "n": 2, "tags": ["x"]}));
        assert!(pairs.contains(&("q".into(), "a b".into())));
        assert!(pairs.contains(&("n".into(), "2".into())));
        assert!(pairs.contains(&("tags".into(), "[\"x\"]".into())));
        assert!(query_pairs(&Value::Null).is_empty());
    }

    #[test]
    fn only_answers_that_invite_a_retry_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(StatusCode::from_u16(code).unwrap()));
        }
        for code in [200, 301, 400, 401, 404, 422, 501] {
            assert!(!retryable_status(StatusCode::from_u16(code).unwrap()));
        }
    }
}
