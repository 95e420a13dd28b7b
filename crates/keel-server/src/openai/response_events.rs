//! A response streamed as the Responses API's server-sent events: `response.created`,
//! `response.in_progress`, per output item `response.output_item.added` /
//! `response.content_part.added` / `response.output_text.delta` … `.done`, function calls
//! with their arguments, and `response.completed` (or `.failed` / `.incomplete`) carrying the
//! whole response. Item ids are the ones the stored response and its conversation show.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use keel_core::{RunStatus, SessionId, TenantId};
use keel_engine::RunUpdate;
use keel_store::RunRecord;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::items;
use super::responses::{discard, response_object};
use crate::progress::{Progress, RunProgress};
use crate::routes::messages::receiver_stream;
use crate::state::AppState;

pub fn response_events(
    state: Arc<AppState>,
    tenant: TenantId,
    run: RunRecord,
    updates: broadcast::Receiver<RunUpdate>,
    discard_after: Option<SessionId>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let progress = RunProgress::new(
            state.engine.clone(),
            tenant.clone(),
            run.id.clone(),
            updates,
        );
        let mut out = Emitter { tx, seq: 0 };
        let _ = follow(&state, run, progress, &mut out).await;
        if let Some(session) = discard_after {
            discard(&state, &tenant, &session).await;
        }
    });
    Sse::new(receiver_stream(rx)).keep_alive(KeepAlive::default())
}

/// Numbers the events (`sequence_number`) and stops when the client has gone.
struct Emitter {
    tx: mpsc::Sender<SseEvent>,
    seq: u64,
}

struct Gone;

impl Emitter {
    async fn send(&mut self, kind: &str, mut data: Value) -> Result<(), Gone> {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let event = SseEvent::default().event(kind).data(data.to_string());
        self.tx.send(event).await.map_err(|_| Gone)
    }
}

/// The text item of the step being streamed.
struct OpenText {
    id: String,
    output_index: usize,
    text: String,
}

async fn follow(
    state: &AppState,
    run: RunRecord,
    mut progress: RunProgress,
    out: &mut Emitter,
) -> Result<(), Gone> {
    let session = run.session.clone();
    let client: Vec<String> = run.options.client_tools().map(str::to_string).collect();
    let mut shown = run.clone();
    shown.status = RunStatus::Running;
    let mut shutdown = state.shutdown.clone();
    out.send(
        "response.created",
        json!({"response": response_object(&shown, &[])}),
    )
    .await?;
    out.send(
        "response.in_progress",
        json!({"response": response_object(&shown, &[])}),
    )
    .await?;
    let mut output_index = 0usize;
    let mut reply_seq = 0u64;
    let mut open: Option<OpenText> = None;
    let mut last_reply = 0u64;
    loop {
        let next = tokio::select! {
            next = progress.next() => next,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        match next {
            Err(e) => {
                return out
                    .send(
                        "error",
                        json!({"code": e.code, "message": e.message, "param": null}),
                    )
                    .await;
            }
            Ok(Progress::ModelCalled { seq }) => reply_seq = seq + 1,
            Ok(Progress::Text { text, .. }) => {
                let text_item = match &mut open {
                    Some(item) => item,
                    None => {
                        let id = items::reply_text_item_id(&session, reply_seq);
                        out.send("response.output_item.added", json!({"output_index": output_index,
                            "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})).await?;
                        out.send(
                            "response.content_part.added",
                            json!({"item_id": id, "output_index": output_index, "content_index": 0,
                            "part": {"type": "output_text", "text": "", "annotations": []}}),
                        )
                        .await?;
                        output_index += 1;
                        open.insert(OpenText {
                            id,
                            output_index: output_index - 1,
                            text: String::new(),
                        })
                    }
                };
                text_item.text.push_str(&text);
                let (id, index) = (text_item.id.clone(), text_item.output_index);
                out.send("response.output_text.delta", json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []})).await?;
            }
            Ok(Progress::Replied(event)) => {
                last_reply = event.seq;
                reply_items(out, &session, &event, &client, &mut open, &mut output_index).await?;
            }
            Ok(Progress::Ended { run, .. }) => {
                let events = state.engine.run_events(&run).await.unwrap_or_default();
                // Replies logged after the last one seen live (the end can be read from the
                // store before the last updates arrive) still get their item events.
                for event in events.iter().filter(|e| e.seq > last_reply) {
                    if matches!(event.body, keel_core::EventBody::ModelReplied { .. }) {
                        reply_items(out, &session, event, &client, &mut open, &mut output_index)
                            .await?;
                    }
                }
                let object = response_object(&run, &events);
                let kind = match object["status"].as_str() {
                    Some("completed") => "response.completed",
                    Some("incomplete") => "response.incomplete",
                    _ => "response.failed",
                };
                return out.send(kind, json!({"response": object})).await;
            }
            Ok(Progress::Halted { error }) => {
                return out
                    .send(
                        "error",
                        json!({"code": "run_halted", "message": error, "param": null}),
                    )
                    .await;
            }
            Ok(Progress::Started | Progress::ToolCall { .. } | Progress::ToolResult { .. }) => {}
        }
    }
}

/// The item events of one logged model reply: its text item closed (or opened and closed at
/// once), then its function calls for the caller.
async fn reply_items(
    out: &mut Emitter,
    session: &SessionId,
    event: &keel_core::Event,
    client: &[String],
    open: &mut Option<OpenText>,
    output_index: &mut usize,
) -> Result<(), Gone> {
    let keep = |name: &str| client.iter().any(|c| c == name);
    for (_, item) in items::event_items(session, event, &keep) {
        if item["type"] == "message" {
            close_text(out, open.take(), &item, output_index).await?;
        } else {
            function_call(out, &item, *output_index).await?;
            *output_index += 1;
        }
    }
    // Text streamed by an attempt whose logged reply has none (a retry) ends as sent.
    if let Some(text) = open.take() {
        let item = json!({"type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text.text, "annotations": [], "logprobs": []}]});
        close_text(out, Some(text), &item, output_index).await?;
    }
    Ok(())
}

/// Ends the streamed text item with the logged reply's text (or starts and ends it at once
/// when nothing was streamed).
async fn close_text(
    out: &mut Emitter,
    open: Option<OpenText>,
    item: &Value,
    output_index: &mut usize,
) -> Result<(), Gone> {
    let text = item["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (id, index) = match open {
        Some(o) => (o.id, o.output_index),
        None => {
            let id = item["id"].as_str().unwrap_or("").to_string();
            out.send("response.output_item.added", json!({"output_index": *output_index,
                "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})).await?;
            out.send(
                "response.content_part.added",
                json!({"item_id": id, "output_index": *output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            )
            .await?;
            // Not seen streaming here: the whole text is its one delta, so deltas always
            // add up to the text.
            if !text.is_empty() {
                out.send(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": *output_index,
                    "content_index": 0, "delta": text, "logprobs": []}),
                )
                .await?;
            }
            *output_index += 1;
            (id, *output_index - 1)
        }
    };
    out.send("response.output_text.done", json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []})).await?;
    out.send(
        "response.content_part.done",
        json!({"item_id": id, "output_index": index, "content_index": 0,
        "part": {"type": "output_text", "text": text, "annotations": []}}),
    )
    .await?;
    let mut done = item.clone();
    done["id"] = json!(id);
    out.send(
        "response.output_item.done",
        json!({"output_index": index, "item": done}),
    )
    .await
}

async fn function_call(out: &mut Emitter, item: &Value, output_index: usize) -> Result<(), Gone> {
    let id = item["id"].clone();
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    added["arguments"] = json!("");
    out.send(
        "response.output_item.added",
        json!({"output_index": output_index, "item": added}),
    )
    .await?;
    out.send(
        "response.function_call_arguments.delta",
        json!({"item_id": id, "output_index": output_index, "delta": item["arguments"]}),
    )
    .await?;
    out.send("response.function_call_arguments.done", json!({"item_id": id, "output_index": output_index, "arguments": item["arguments"], "name": item["name"]})).await?;
    out.send(
        "response.output_item.done",
        json!({"output_index": output_index, "item": item}),
    )
    .await
}
