//! What every handler shares: the engine (every state change is one of its methods; the store
//! only as its read-only `StoreReader`), the server's configuration and its metrics.

use std::time::Duration;

use keel_engine::Engine;

use crate::metrics::Metrics;

/// `ServerConfig::import_limit` unless configured, in MiB.
pub const DEFAULT_IMPORT_LIMIT_MB: usize = 256;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Check `Authorization: Bearer` keys. Off only for loopback development servers.
    pub auth: bool,
    /// The largest request body accepted.
    pub body_limit: usize,
    /// The largest session file `POST /v1/sessions/import` accepts: a session's whole log is
    /// one body, far over what any other request needs.
    pub import_limit: usize,
    /// The longest a request may take, body included (streams excepted once they start).
    pub request_timeout: Duration,
    /// The longest a client may take to send a request's headers (also closes idle
    /// keep-alive connections).
    pub header_timeout: Duration,
    /// Requests served at once; more are answered 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// The longest `mode: wait` waits before answering with the run still in progress.
    pub wait_timeout: Duration,
    /// Label the gateway's counters in `/metrics` by tenant (off: summed over tenants, so a
    /// scrape does not list the tenants).
    pub metrics_tenant_labels: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: true,
            body_limit: 1024 * 1024,
            import_limit: DEFAULT_IMPORT_LIMIT_MB << 20,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            wait_timeout: Duration::from_secs(300),
            metrics_tenant_labels: false,
        }
    }
}

pub struct AppState {
    pub engine: Engine,
    pub config: ServerConfig,
    pub metrics: Metrics,
    /// API keys read recently, so a busy client's requests do not each read the store.
    pub keys: crate::auth::KeyCache,
    /// Becomes true when the server shuts down: open streams end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
