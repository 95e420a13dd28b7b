//! keel's HTTP API (`keel serve`): the native agents / sessions / runs API with SSE
//! streaming, tenants and API keys, hardening layers, Prometheus metrics and an OpenAPI
//! document generated from the code. Handlers are thin over `keel_engine::Engine`.
//!
//! Modules: `routes` (one per resource), `auth` (keys and the auth layer), `accounting`
//! (gateway usage per tenant and key, flushed to the store), `error` (the one
//! envelope), `layers` (tower stack), `listen` (accept loop, graceful shutdown), `progress`
//! (waiting on a run), `sse` (the one SSE bridge), `wire` (bodies), `metrics`, `openapi`,
//! `state`, and `openai` (the OpenAI-compatible paths).

pub mod accounting;
pub mod auth;
pub mod error;
mod layers;
pub mod letta_file;
mod listen;
pub mod metrics;
pub mod openai;
pub mod openapi;
mod progress;
pub mod routes;
mod sse;
mod state;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use keel_engine::Engine;
use tokio::net::TcpListener;

pub use auth::{BootstrapError, admin_key_path, bootstrap};
pub use layers::REQUEST_LOG_TARGET;
pub use state::{AppState, DEFAULT_IMPORT_LIMIT_MB, ServerConfig};

/// The whole application: routes wrapped in the layers. `shutdown` turning true ends open
/// streams. Gateway usage is only counted in memory here; `serve` also stores it.
pub fn app(
    engine: Engine,
    config: ServerConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Router {
    build(engine, config, shutdown).0
}

fn build(
    engine: Engine,
    config: ServerConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> (Router, Arc<AppState>) {
    let state = Arc::new(AppState {
        engine,
        config,
        metrics: metrics::Metrics::default(),
        keys: auth::KeyCache::default(),
        shutdown,
    });
    (
        layers::wrap(routes::router(state.clone()), state.clone()),
        state,
    )
}

/// Where `serve` listens: the API, and optionally a second address that serves only `/metrics`,
/// without a key (for a Prometheus on a private network; the API's `/metrics` still needs an
/// admin key). A bare `TcpListener` is the API alone.
pub struct Listeners {
    pub api: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(api: TcpListener) -> Self {
        Listeners { api, metrics: None }
    }
}

/// How long a provider may take to list its models at start.
const MODEL_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the API on `listeners` until `shutdown` completes, then stops accepting, ends open
/// streams, lets requests in flight finish and stores the gateway usage not yet stored (it is
/// stored every second meanwhile). Stopping the engine is the caller's part.
pub async fn serve(
    listeners: impl Into<Listeners>,
    engine: Engine,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let listeners = listeners.into();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let header_timeout = config.header_timeout;
    let (app, state) = build(engine, config, stopped.clone());
    // Background tasks restart after a panic (`supervised`); the API's accept loop runs here,
    // so a panic in it ends `serve` and the process with it, never a half-alive server.
    let flusher = tokio::spawn({
        let state = state.clone();
        keel_engine::supervised("storing gateway usage", move || {
            accounting::flush_until_shutdown(state.clone())
        })
    });
    // What OpenAI-compatible providers list goes into `/v1/models` once they answer; the API
    // serves meanwhile, and a provider that fails is logged and listed from the configuration.
    tokio::spawn({
        let engine = state.engine.clone();
        async move { engine.models().fetch_reported(MODEL_LIST_TIMEOUT).await }
    });
    let metrics = listeners.metrics.map(|listener| {
        let app = layers::wrap_metrics_only(routes::ops::metrics_only(state.clone()));
        let listener = Arc::new(listener);
        tokio::spawn(keel_engine::supervised("serving /metrics", move || {
            let mut stopped = stopped.clone();
            listen::accept_loop(listener.clone(), app.clone(), header_timeout, async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            })
        }))
    });
    let shutdown = async move {
        shutdown.await;
        stop.send_replace(true);
    };
    listen::accept_loop(Arc::new(listeners.api), app, header_timeout, shutdown).await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let _ = flusher.await;
    state.metrics.usage.flush(&state.engine).await;
}
