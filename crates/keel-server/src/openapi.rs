//! The OpenAPI document, generated from the handlers' annotations and the wire types, so it
//! cannot drift from the code; a test checks that every route in `routes::ROUTES` is in it.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::{ErrorBody, ErrorEnvelope};
use crate::openai::embeddings::{
    self, EmbeddingItem, EmbeddingList, EmbeddingUsage, EmbeddingsRequest,
};
use crate::openai::wire::*;
use crate::openai::{chat, conversations, models, responses};
use crate::routes::{
    admin, agents, blocks, events, journal, memory, messages, ops, portable, runs, schedules,
    sessions, travel, usage, webhooks,
};
use crate::wire::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "keel", description = "keel's native API: agents, sessions, runs and their event logs, long-term memory; and the OpenAI-compatible chat completions, embeddings, models, responses and conversations."),
    paths(
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
        agents::create, agents::list, agents::get, agents::put, agents::archive,
        sessions::create, sessions::get, sessions::list, sessions::delete,
        messages::send, travel::fork, travel::context, schedules::create, schedules::list, schedules::delete, schedules::create_for_agent, schedules::list_for_agent, schedules::delete_for_agent, journal::verify, portable::export, portable::move_out, portable::import, events::list, runs::list, runs::get, runs::cancel, runs::resume,
        admin::create_tenant, admin::create_key, admin::revoke_key, admin::unreadable, usage::list,
        webhooks::create, webhooks::list, webhooks::delete, webhooks::deliveries, webhooks::trigger,
        memory::create, memory::get, memory::delete, memory::search,
        blocks::list_for_session, blocks::get_for_session, blocks::edit_for_session,
        blocks::list_shared, blocks::get_shared, blocks::put_shared, blocks::delete_shared,
        blocks::history,
        chat::completions, embeddings::create, models::list, models::retrieve,
        responses::create, responses::compact, responses::get, responses::delete, responses::cancel,
        responses::input_items,
        conversations::create, conversations::get, conversations::update, conversations::delete,
        conversations::list_items, conversations::add_items, conversations::get_item,
    ),
    components(schemas(
        ErrorEnvelope, ErrorBody, AgentBody, AgentView, AgentList, CreateSession, ForkSession, ResumeRun, ContextView, ChainView, SessionView,
        SessionSummary, MovedView, SessionList, UsageView, SendMode, OnBusy, SendMessage, RunView, RunList, StepView, EventPage,
        CreateTenant, TenantView, CreateKey, KeyView, UnreadableView, UnreadableList, Health, usage::UsageList, usage::UsageRow,
        schedules::CreateSchedule, schedules::ScheduleView, schedules::ScheduleList, portable::MoveSession,
        webhooks::CreateWebhook, webhooks::WebhookView, webhooks::CreatedWebhookView, webhooks::WebhookList,
        webhooks::DeliveryView, webhooks::DeliveryList, webhooks::TriggeredView,
        memory::CreateMemory, memory::SearchMemory, memory::MemoryView, memory::MemoryHitView, memory::MemoryHitList,
        BlockView, BlockList, EditBlock, PutSharedBlock, BlockEditView, BlockEditList,
        ChatRequest, StreamOptions, ChatCompletion, ChatUsage, CachedTokens, ModelList, ModelEntry,
        OpenAiErrorEnvelope, OpenAiErrorBody, responses::CreateResponse, responses::CompactRequest,
        EmbeddingsRequest, EmbeddingList, EmbeddingItem, EmbeddingUsage,
        conversations::CreateConversation, conversations::UpdateConversation, conversations::AddItems,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use crate::routes::ROUTES;

    #[test]
    fn every_route_is_in_the_document() {
        let doc = serde_json::to_value(super::document()).unwrap();
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is missing from /openapi.json"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            ROUTES.len(),
            "a documented route is not in ROUTES"
        );
    }
}
