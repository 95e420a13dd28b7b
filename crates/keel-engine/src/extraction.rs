//! Facts kept from finished turns (`memory = { extract = true }`): after a run completes, a
//! model lists the durable facts of its turn — who the user is, what they want, what was
//! decided — and each is saved into the agent's memory namespace with the session and run it
//! came from. It runs in a task of its own after the run has ended, so the user's turn never
//! waits for it; a failure is logged and loses only that turn's facts (a completed run is never
//! completed again, so a turn's facts are extracted at most once).

use std::sync::Arc;

use keel_core::{AgentDef, Message, RunId, SessionId, TenantId};
use keel_models::{ModelRequest, Params};
use serde_json::json;

use crate::{Engine, Inner, memory};

/// The most facts kept from one turn, and the longest one.
const MAX_FACTS: usize = 10;
const MAX_FACT_CHARS: usize = 500;

const EXTRACT: &str = "You keep an assistant's long-term memory. From the conversation turn \
below, list the facts worth remembering in later conversations: about the user (who they are, \
what they like, what they need), decisions made, commitments and open tasks. Write each as one \
self-contained sentence on its own line starting with \"- \". Leave out greetings, small talk \
and anything true only for this moment. If there is nothing worth remembering, reply NONE.";

/// Starts the extraction of run `run`'s facts when its agent asks for it.
pub(crate) fn after_completed_run(
    inner: &Arc<Inner>,
    tenant: &TenantId,
    session: &SessionId,
    run: &RunId,
    agent: &AgentDef,
    input: &Message,
    output: &str,
) {
    if !agent.memory.extract {
        return;
    }
    let engine = Engine {
        inner: inner.clone(),
    };
    let (tenant, session, run, agent) =
        (tenant.clone(), session.clone(), run.clone(), agent.clone());
    let turn = format!("User: {}\nAssistant: {output}", input.text_content());
    tokio::spawn(async move {
        match extract(&engine, &tenant, &session, &run, &agent, turn).await {
            Ok(saved) => tracing::debug!(%session, %run, saved, "kept the turn's facts in memory"),
            Err(error) => {
                tracing::warn!(%session, %run, %error, "extracting the turn's facts failed; none kept")
            }
        }
    });
}

async fn extract(
    engine: &Engine,
    tenant: &TenantId,
    session: &SessionId,
    run: &RunId,
    agent: &AgentDef,
    turn: String,
) -> Result<usize, String> {
    let model = agent
        .memory
        .extract_model
        .as_deref()
        .unwrap_or(&agent.model);
    let resolved = engine
        .inner
        .models
        .resolve(model)
        .map_err(|e| e.to_string())?;
    let request = ModelRequest {
        model: resolved.model.clone(),
        system: Some(EXTRACT.into()),
        messages: vec![Message::user(turn)],
        tools: Vec::new(),
        params: Params {
            max_tokens: Some(400),
            temperature: Some(0.0),
            ..Params::default()
        },
    };
    let reply = resolved
        .client
        .complete(request)
        .await
        .map_err(|e| e.to_string())?;
    let namespace = memory::agent_namespace(agent);
    let mut saved = 0;
    for fact in facts(&reply.message.text_content()) {
        let metadata =
            json!({"source": "extraction", "session": session.as_str(), "run": run.as_str()});
        engine
            .remember(tenant, &namespace, fact, metadata)
            .await
            .map_err(|e| e.to_string())?;
        saved += 1;
    }
    Ok(saved)
}

/// The facts of a reply: its lines that start with "- " (or "* "), trimmed, at most
/// `MAX_FACTS`, each cut to `MAX_FACT_CHARS`.
fn facts(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("- ").or_else(|| line.strip_prefix("* "))
        })
        .map(|fact| fact.trim().chars().take(MAX_FACT_CHARS).collect::<String>())
        .filter(|fact| !fact.is_empty())
        .fold(Vec::new(), |mut kept: Vec<String>, fact| {
            if !kept.contains(&fact) && kept.len() < MAX_FACTS {
                kept.push(fact);
            }
            kept
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_the_dashed_lines_of_the_reply() {
        let reply =
            "Here is what to keep:\n- Ada prefers green tea.\n  * She lives in Lyon.\n-\nNONE\n- ";
        assert_eq!(
            facts(reply),
            ["Ada prefers green tea.", "She lives in Lyon."]
        );
        assert!(facts("NONE").is_empty());
        let many: String = (0..20).map(|i| format!("- fact {i}\n")).collect();
        assert_eq!(facts(&many).len(), MAX_FACTS);
        assert_eq!(facts("- same\n- same"), ["same"]);
    }
}
