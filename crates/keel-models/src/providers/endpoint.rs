//! What every HTTP provider's client is built from: a checked base URL, the fixed headers (the
//! credentials marked sensitive, never echoed), an HTTP client under the provider's deadlines,
//! and the POST whose streamed reply a provider's decoder reads. A provider adds its paths and
//! its wire format; `new` and `stream` look alike in every provider because they are this.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};

use super::streaming::{ErrorBody, EventDecoder, HttpTimeouts, SseCall, config_error};
use crate::{ModelError, ModelStream};

/// How one provider is reached.
pub(crate) struct Endpoint {
    provider: &'static str,
    /// The base URL, checked, without a trailing slash.
    base: String,
    headers: HeaderMap,
    http: reqwest::Client,
    timeouts: HttpTimeouts,
    /// Reads the provider's error body.
    error_message: fn(&str) -> ErrorBody,
}

/// A URL a client posts to, kept as text (for messages) and parsed (for requests).
pub(crate) struct Target {
    text: String,
    url: reqwest::Url,
}

impl Target {
    pub(crate) fn parse(provider: &str, text: String) -> Result<Target, ModelError> {
        match reqwest::Url::parse(&text) {
            Ok(url) => Ok(Target { text, url }),
            Err(e) => Err(config_error(
                provider,
                format!("`{text}` is not a valid URL: {e}"),
            )),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// The settings an `Endpoint` is built from, as each provider's config gives them.
pub(crate) struct EndpointConfig<'a> {
    pub provider: &'static str,
    pub base_url: &'a str,
    /// A base URL to show when `base_url` is not one.
    pub example: &'a str,
    /// Headers besides `Accept: text/event-stream`, as (name, value, secret) triples; secrets
    /// are marked sensitive and never echoed.
    pub headers: &'a [(&'a str, &'a str, bool)],
    pub timeouts: &'a HttpTimeouts,
    pub error_message: fn(&str) -> ErrorBody,
}

impl Endpoint {
    /// Checks the base URL and the headers, and builds the HTTP client. Redirects are not
    /// followed: a provider's API answers in place, and a redirected POST would carry the
    /// credentials to another address.
    pub(crate) fn new(config: EndpointConfig<'_>) -> Result<Endpoint, ModelError> {
        let provider = config.provider;
        let base = config.base_url.trim_end_matches('/');
        match reqwest::Url::parse(base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(config_error(
                    provider,
                    format!(
                        "base_url `{}` is not an http(s) URL; use e.g. {}",
                        config.base_url, config.example
                    ),
                ));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.timeouts.connect_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config_error(provider, format!("cannot build the HTTP client: {e}")))?;
        Ok(Endpoint {
            provider,
            base: base.to_string(),
            headers: headers(provider, config.headers)?,
            http,
            timeouts: config.timeouts.clone(),
            error_message: config.error_message,
        })
    }

    /// `{base}{path}`, parsed.
    pub(crate) fn target(&self, path: &str) -> Result<Target, ModelError> {
        Target::parse(self.provider, format!("{}{path}", self.base))
    }

    /// The fixed headers, for a call that changes one of them.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A POST of `body` as JSON to `target` with `headers`.
    pub(crate) fn post(
        &self,
        target: &Target,
        headers: HeaderMap,
        body: &serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(target.url.clone())
            .headers(headers)
            .json(body)
    }

    /// A GET of `target` with `headers` (a listing, not a model call).
    pub(crate) fn get(&self, target: &Target, headers: HeaderMap) -> reqwest::RequestBuilder {
        self.http.get(target.url.clone()).headers(headers)
    }

    /// The HTTP call to `target` under the provider's deadlines and error bodies.
    pub(crate) fn call<'a>(&'a self, target: &'a Target) -> SseCall<'a> {
        SseCall {
            provider: self.provider,
            url: &target.text,
            timeouts: &self.timeouts,
            error_message: self.error_message,
        }
    }

    /// POSTs `body` to `target` and returns the whole JSON reply (a call that does not stream,
    /// such as embeddings), under the provider's deadlines and error bodies.
    pub(crate) async fn post_json(
        &self,
        target: &Target,
        body: &serde_json::Value,
    ) -> Result<String, ModelError> {
        let mut headers = self.headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let send = self.post(target, headers, body);
        self.call(target).whole(send).await
    }

    /// POSTs `body` to `target` and reads the streamed reply with `decoder`.
    pub(crate) async fn stream(
        &self,
        target: &Target,
        body: &serde_json::Value,
        decoder: impl EventDecoder,
    ) -> Result<ModelStream, ModelError> {
        let send = self.post(target, self.headers.clone(), body);
        self.call(target).run(send, decoder).await
    }
}

/// `Accept: text/event-stream` and the headers from (name, value, secret) triples; secrets are
/// marked sensitive and never echoed.
fn headers(provider: &str, pairs: &[(&str, &str, bool)]) -> Result<HeaderMap, ModelError> {
    let mut map = HeaderMap::new();
    map.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    for (name, value, secret) in pairs {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            config_error(
                provider,
                format!("`{name}` is not a valid HTTP header name"),
            )
        })?;
        let shown = if *secret { "the credential" } else { value };
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            config_error(
                provider,
                format!(
                    "the value of header `{name}` ({shown}) holds characters HTTP does not allow"
                ),
            )
        })?;
        value.set_sensitive(*secret);
        map.insert(header, value);
    }
    Ok(map)
}
