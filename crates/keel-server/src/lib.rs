//! keel's HTTP API (`keel serve`): the native agents / sessions / runs API with SSE
//! streaming, tenants and API keys, hardening layers, Prometheus metrics and an OpenAPI
//! document generated from the code. Handlers are thin over `keel_engine::Engine`.
//!
//! Modules: `routes` (one per resource), `auth` (keys and the auth layer), `accounting`
//! (gateway usage per tenant and key, flushed to the store), `error` (the one
//! envelope), `layers` (tower stack), `listen` (accept loop, graceful shutdown), `progress`
//! (following a run), `wire` (bodies), `metrics`, `openapi`, `state`, and `openai` (the
//! OpenAI-compatible paths).

pub mod accounting;
pub mod auth;
pub mod error;
mod layers;
mod listen;
pub mod metrics;
pub mod openai;
pub mod openapi;
mod progress;
pub mod routes;
mod state;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use keel_engine::Engine;
use tokio::net::TcpListener;

pub use auth::{BootstrapError, admin_key_path, bootstrap};
pub use state::{AppState, ServerConfig};

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

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, ends open
/// streams, lets requests in flight finish and stores the gateway usage not yet stored (it is
/// stored every second meanwhile). Stopping the engine is the caller's part.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let header_timeout = config.header_timeout;
    let (app, state) = build(engine, config, stopped);
    let flusher = tokio::spawn(accounting::flush_until_shutdown(state.clone()));
    let shutdown = async move {
        shutdown.await;
        stop.send_replace(true);
    };
    listen::accept_loop(listener, app, header_timeout, shutdown).await;
    let _ = flusher.await;
    state
        .metrics
        .usage
        .flush(state.engine.store().as_ref())
        .await;
}
