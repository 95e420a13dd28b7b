//! The route table: one module per resource, each handler thin over the engine and store.
//! Everything under `/v1` and `/metrics` (an admin's) needs a key; the other operational
//! endpoints do not.

pub mod admin;
pub mod agents;
pub mod blocks;
pub mod events;
pub mod journal;
pub mod memory;
pub mod messages;
pub mod ops;
mod paging;
pub mod portable;
pub mod runs;
pub mod schedules;
pub mod sessions;
pub mod travel;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::error::{no_route, wrong_method};
use crate::state::AppState;
use crate::{auth, openai};

/// Every route, as (method, path) — what the OpenAPI document must describe.
/// Where session files are imported: its body has a limit of its own (`import_limit`).
pub const IMPORT_PATH: &str = "/v1/sessions/import";

pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/agents"),
    ("post", "/v1/agents"),
    ("get", "/v1/agents/{name}"),
    ("put", "/v1/agents/{name}"),
    ("post", "/v1/agents/{name}/archive"),
    ("get", "/v1/agents/{name}/schedules"),
    ("post", "/v1/agents/{name}/schedules"),
    ("delete", "/v1/agents/{name}/schedules/{schedule_id}"),
    ("get", "/v1/sessions"),
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions/{id}"),
    ("delete", "/v1/sessions/{id}"),
    ("post", "/v1/sessions/{id}/messages"),
    ("post", "/v1/sessions/{id}/fork"),
    ("get", "/v1/sessions/{id}/context"),
    ("get", "/v1/sessions/{id}/schedules"),
    ("post", "/v1/sessions/{id}/schedules"),
    ("delete", "/v1/sessions/{id}/schedules/{schedule_id}"),
    ("get", "/v1/sessions/{id}/verify"),
    ("get", "/v1/sessions/{id}/export"),
    ("post", "/v1/sessions/{id}/export"),
    ("post", "/v1/sessions/import"),
    ("get", "/v1/sessions/{id}/events"),
    ("get", "/v1/runs"),
    ("get", "/v1/runs/{id}"),
    ("post", "/v1/runs/{id}/cancel"),
    ("post", "/v1/runs/{id}/resume"),
    ("post", "/v1/admin/tenants"),
    ("post", "/v1/admin/tenants/{id}/keys"),
    ("post", "/v1/admin/keys/{prefix}/revoke"),
    ("get", "/v1/admin/unreadable"),
    ("get", "/v1/usage"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("delete", "/v1/webhooks/{id}"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("post", "/v1/hooks/{token}"),
    ("post", "/v1/memory/{namespace}/records"),
    ("get", "/v1/memory/{namespace}/records/{id}"),
    ("delete", "/v1/memory/{namespace}/records/{id}"),
    ("post", "/v1/memory/{namespace}/search"),
    ("get", "/v1/sessions/{id}/memory/blocks"),
    ("get", "/v1/sessions/{id}/memory/blocks/{label}"),
    ("put", "/v1/sessions/{id}/memory/blocks/{label}"),
    ("get", "/v1/memory/blocks"),
    ("get", "/v1/memory/blocks/{label}"),
    ("put", "/v1/memory/blocks/{label}"),
    ("delete", "/v1/memory/blocks/{label}"),
    ("get", "/v1/memory/blocks/{label}/history"),
    ("post", "/v1/chat/completions"),
    ("post", "/v1/embeddings"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{id}"),
    ("post", "/v1/responses"),
    ("post", "/v1/responses/compact"),
    ("get", "/v1/responses/{id}"),
    ("delete", "/v1/responses/{id}"),
    ("post", "/v1/responses/{id}/cancel"),
    ("get", "/v1/responses/{id}/input_items"),
    ("post", "/v1/conversations"),
    ("get", "/v1/conversations/{id}"),
    ("post", "/v1/conversations/{id}"),
    ("delete", "/v1/conversations/{id}"),
    ("get", "/v1/conversations/{id}/items"),
    ("post", "/v1/conversations/{id}/items"),
    ("get", "/v1/conversations/{id}/items/{item_id}"),
];

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/agents", get(agents::list).post(agents::create))
        .route("/v1/agents/{name}", get(agents::get).put(agents::put))
        .route("/v1/agents/{name}/archive", post(agents::archive))
        .route(
            "/v1/agents/{name}/schedules",
            get(schedules::list_for_agent).post(schedules::create_for_agent),
        )
        .route(
            "/v1/agents/{name}/schedules/{schedule_id}",
            axum::routing::delete(schedules::delete_for_agent),
        )
        .route("/v1/sessions", get(sessions::list).post(sessions::create))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get).delete(sessions::delete),
        )
        .route("/v1/sessions/{id}/messages", post(messages::send))
        .route("/v1/sessions/{id}/fork", post(travel::fork))
        .route("/v1/sessions/{id}/context", get(travel::context))
        .route(
            "/v1/sessions/{id}/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/v1/sessions/{id}/schedules/{schedule_id}",
            axum::routing::delete(schedules::delete),
        )
        .route("/v1/sessions/{id}/verify", get(journal::verify))
        .route(
            "/v1/sessions/{id}/export",
            get(portable::export).post(portable::move_out),
        )
        // The body is read, within its limit, by `layers::read_body` already.
        .route(
            IMPORT_PATH,
            post(portable::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/sessions/{id}/events", get(events::list))
        .route("/v1/memory/{namespace}/records", post(memory::create))
        .route(
            "/v1/memory/{namespace}/records/{id}",
            get(memory::get).delete(memory::delete),
        )
        .route("/v1/memory/{namespace}/search", post(memory::search))
        .route(
            "/v1/sessions/{id}/memory/blocks",
            get(blocks::list_for_session),
        )
        .route(
            "/v1/sessions/{id}/memory/blocks/{label}",
            get(blocks::get_for_session).put(blocks::edit_for_session),
        )
        .route("/v1/memory/blocks", get(blocks::list_shared))
        .route(
            "/v1/memory/blocks/{label}",
            get(blocks::get_shared)
                .put(blocks::put_shared)
                .delete(blocks::delete_shared),
        )
        .route("/v1/memory/blocks/{label}/history", get(blocks::history))
        .route("/v1/runs", get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/resume", post(runs::resume))
        .route("/v1/admin/tenants", post(admin::create_tenant))
        .route("/v1/admin/tenants/{id}/keys", post(admin::create_key))
        .route("/v1/admin/keys/{prefix}/revoke", post(admin::revoke_key))
        .route("/v1/admin/unreadable", get(admin::unreadable))
        .route("/v1/usage", get(usage::list))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{id}", axum::routing::delete(webhooks::delete))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/metrics", get(ops::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let openai = Router::new()
        .route("/v1/chat/completions", post(openai::chat::completions))
        .route("/v1/embeddings", post(openai::embeddings::create))
        .route("/v1/models", get(openai::models::list))
        // Ids are `provider/model`: the rest of the path is the id.
        .route("/v1/models/{*id}", get(openai::models::retrieve))
        .route("/v1/responses", post(openai::responses::create))
        .route("/v1/responses/compact", post(openai::responses::compact))
        .route(
            "/v1/responses/{id}",
            get(openai::responses::get).delete(openai::responses::delete),
        )
        .route("/v1/responses/{id}/cancel", post(openai::responses::cancel))
        .route(
            "/v1/responses/{id}/input_items",
            get(openai::responses::input_items),
        )
        .route("/v1/conversations", post(openai::conversations::create))
        .route(
            "/v1/conversations/{id}",
            get(openai::conversations::get)
                .post(openai::conversations::update)
                .delete(openai::conversations::delete),
        )
        .route(
            "/v1/conversations/{id}/items",
            get(openai::conversations::list_items).post(openai::conversations::add_items),
        )
        .route(
            "/v1/conversations/{id}/items/{item_id}",
            get(openai::conversations::get_item),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(ops::openapi))
        // Its token is the credential: no API key.
        .route("/v1/hooks/{token}", post(webhooks::trigger))
        .merge(api)
        .merge(openai)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}
