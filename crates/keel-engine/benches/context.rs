//! What compaction costs and saves over a long session (`cargo bench -p keel-engine --bench
//! context`): a 300-turn chat on the scripted model (a token is a word) under a token budget,
//! against resending the whole history each turn. It prints, per budget: the share of each
//! request's tokens that repeat the previous request's start (what a provider's prompt cache
//! or the local KV cache can reuse), the tokens sent per turn with compaction and naively,
//! and the tokens the summaries cost.

use std::sync::Arc;

use keel_core::{Message, Part};
use keel_engine::EngineConfig;
use keel_models::providers::scripted::ScriptedClient;
use keel_models::{ModelClient, ModelRequest};

/// The tests' recording scripted model.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{Recording, is_summary_request};

const TURNS: usize = 300;

/// A request as the sequence of tokens (words) a model reads, with a marker per message.
fn tokens(request: &ModelRequest) -> Vec<String> {
    let mut out: Vec<String> = request
        .system
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_string))
        .collect();
    for message in &request.messages {
        out.push(format!("<{:?}>", message.role));
        for part in &message.parts {
            if let Part::Text { text } = part {
                out.extend(text.split_whitespace().map(str::to_string));
            }
        }
    }
    out
}

fn words(message: &Message) -> usize {
    1 + message.text_content().split_whitespace().count()
}

struct Figures {
    prefix_share: f64,
    sent_per_turn: f64,
    naive_per_turn: f64,
    summary_tokens: u64,
    compactions: usize,
}

async fn session(budget: u32) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let recording = Arc::new(Recording::default());
    let test = common::engine(
        &dir,
        recording.registry(),
        EngineConfig::default(),
        Vec::new(),
        true,
    )
    .await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    common::edit_agent(engine, tenant, |agent| {
        agent.instructions =
            "You are a patient assistant who answers questions about the weather.".into();
        agent.limits.context_tokens = Some(budget);
        agent.limits.context_messages = 100_000;
    })
    .await;
    let session = common::session(engine, tenant).await;
    let mut history_tokens = 0usize;
    let mut naive = 0usize;
    for turn in 0..TURNS {
        let text = format!(
            "turn {turn}: what will the weather be like tomorrow in city number {} and why?",
            turn % 17
        );
        let input = Message::user(text);
        history_tokens += words(&input);
        let run = engine.submit(tenant, &session, input).await.unwrap();
        let ended = engine.wait_run(tenant, &run.id).await.unwrap();
        // A naive client sends the whole history and the system prompt every turn.
        naive += history_tokens + 12;
        history_tokens += ended
            .output
            .as_deref()
            .map_or(0, |o| 1 + o.split_whitespace().count());
    }
    engine.shutdown().await;
    let received = recording.received.lock().unwrap().clone();
    let steps: Vec<Vec<String>> = recording.steps().iter().map(tokens).collect();
    let summary_tokens: u64 = received
        .iter()
        .filter(|r| is_summary_request(r))
        .map(|r| ScriptedClient::default().count_tokens(r).unwrap())
        .sum();
    let (mut shared, mut total) = (0usize, 0usize);
    for pair in steps.windows(2) {
        let common = pair[0]
            .iter()
            .zip(&pair[1])
            .take_while(|(a, b)| a == b)
            .count();
        shared += common;
        total += pair[1].len();
    }
    let sent: usize = steps.iter().map(Vec::len).sum();
    Figures {
        prefix_share: shared as f64 / total as f64,
        sent_per_turn: sent as f64 / TURNS as f64,
        naive_per_turn: naive as f64 / TURNS as f64,
        summary_tokens,
        compactions: received.len() - steps.len(),
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("{TURNS} turns on the scripted model (a token is a word)");
    println!(
        "| budget (tokens) | compactions | prefix reused | tokens sent per turn | naive resend per turn | sent / naive | summary tokens per turn |"
    );
    println!("|---|---|---|---|---|---|---|");
    for budget in [1_000, 2_000, 4_000] {
        let f = rt.block_on(session(budget));
        println!(
            "| {budget} | {} | {:.1}% | {:.0} | {:.0} | {:.2} | {:.1} |",
            f.compactions,
            100.0 * f.prefix_share,
            f.sent_per_turn,
            f.naive_per_turn,
            f.sent_per_turn / f.naive_per_turn,
            f.summary_tokens as f64 / TURNS as f64,
        );
    }
}
