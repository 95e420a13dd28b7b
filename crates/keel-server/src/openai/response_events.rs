//! A response streamed as the Responses API's server-sent events: `response.created`,
//! `response.in_progress`, per output item `response.output_item.added` /
//! `response.content_part.added` / `response.output_text.delta` … `.done`, function calls
//! with their arguments, and `response.completed` (or `.failed` / `.incomplete`) carrying the
//! whole response. Item ids are the ones the stored response and its conversation show.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, Sse};
use futures::Stream;
use keel_core::{Event, EventBody, RunStatus, SessionId, TenantId};
use keel_engine::{RunFollower, RunProgress};
use keel_store::RunRecord;
use serde_json::{Value, json};

use super::items;
use super::responses::{discard, response_object};
use crate::progress::stalled;
use crate::sse::{self, Batches};
use crate::state::AppState;

/// The response's events as an SSE stream; a `store: false` response's session
/// (`discard_after`) is deleted once the stream ends or its client goes.
pub fn response_events(
    state: Arc<AppState>,
    tenant: TenantId,
    run: RunRecord,
    follower: RunFollower,
    discard_after: Option<SessionId>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let discard = discard_after.map(|session| Discard {
        state: state.clone(),
        tenant,
        session,
    });
    let stream = ResponseStream {
        client: run.options.client_tools().map(str::to_string).collect(),
        run,
        follower,
        announced: false,
        over: false,
        out: Emitter::default(),
        events: Vec::new(),
        output_index: 0,
        reply_seq: 0,
        open: None,
        _discard: discard,
    };
    sse::respond(&state, sse::batches(stream))
}

/// Deletes a `store: false` response's session when the stream is dropped.
struct Discard {
    state: Arc<AppState>,
    tenant: TenantId,
    session: SessionId,
}

impl Drop for Discard {
    fn drop(&mut self) {
        let (state, tenant, session) = (
            self.state.clone(),
            self.tenant.clone(),
            self.session.clone(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { discard(&state, &tenant, &session).await });
        }
    }
}

/// Numbers the events (`sequence_number`) of a batch.
#[derive(Default)]
struct Emitter {
    batch: Vec<SseEvent>,
    seq: u64,
}

impl Emitter {
    fn send(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.batch
            .push(SseEvent::default().event(kind).data(data.to_string()));
    }
}

/// The text item of the step being streamed.
struct OpenText {
    id: String,
    output_index: usize,
    text: String,
}

/// A run followed as the Responses API's events.
struct ResponseStream {
    run: RunRecord,
    /// Function tools performed by the caller (their calls are output items).
    client: Vec<String>,
    /// Subscribed before the run was queued (`Engine::submit_followed`).
    follower: RunFollower,
    /// Whether `response.created` went out (the first batch).
    announced: bool,
    over: bool,
    out: Emitter,
    /// The run's events so far, for the final response object.
    events: Vec<Event>,
    output_index: usize,
    /// The seq the reply of the model call in progress will have.
    reply_seq: u64,
    open: Option<OpenText>,
    _discard: Option<Discard>,
}

impl Batches for ResponseStream {
    async fn next_batch(&mut self) -> Option<Vec<SseEvent>> {
        if self.over {
            return None;
        }
        if !self.announced {
            self.announce();
        } else {
            match self.follower.next().await {
                Some(Ok(progress)) => self.progress(progress),
                Some(Err(e)) => self.error(&e.into()),
                None => self.over = true,
            }
        }
        Some(std::mem::take(&mut self.out.batch))
    }
}

impl ResponseStream {
    fn announce(&mut self) {
        self.announced = true;
        let mut shown = self.run.clone();
        shown.status = RunStatus::Running;
        let shown = json!({"response": response_object(&shown, &[])});
        self.out.send("response.created", shown.clone());
        self.out.send("response.in_progress", shown);
    }

    fn error(&mut self, error: &crate::error::ApiError) {
        self.over = true;
        self.out.send(
            "error",
            json!({"code": error.code, "message": error.message, "param": null}),
        );
    }

    fn progress(&mut self, progress: RunProgress) {
        if let Some(error) = stalled(&self.run.id, &progress) {
            return self.error(&error);
        }
        let session = self.run.session.clone();
        match progress {
            RunProgress::Text { text, .. } => {
                let out = &mut self.out;
                let text_item = match &mut self.open {
                    Some(item) => item,
                    None => {
                        let id = items::reply_text_item_id(&session, self.reply_seq);
                        let index = self.output_index;
                        out.send("response.output_item.added", json!({"output_index": index,
                            "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}));
                        out.send(
                            "response.content_part.added",
                            json!({"item_id": id, "output_index": index, "content_index": 0,
                            "part": {"type": "output_text", "text": "", "annotations": []}}),
                        );
                        self.output_index += 1;
                        self.open.insert(OpenText {
                            id,
                            output_index: index,
                            text: String::new(),
                        })
                    }
                };
                text_item.text.push_str(&text);
                let (id, index) = (text_item.id.clone(), text_item.output_index);
                out.send("response.output_text.delta", json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}));
            }
            RunProgress::Event(event) => {
                match &event.body {
                    EventBody::ModelCalled { .. } => self.reply_seq = event.seq + 1,
                    EventBody::ContextCompacted { .. } => {
                        if let Some(item) = items::compaction_item(&session, &event) {
                            let index = self.output_index;
                            self.output_index += 1;
                            self.out.send(
                                "response.output_item.added",
                                json!({"output_index": index, "item": item.clone()}),
                            );
                            self.out.send(
                                "response.output_item.done",
                                json!({"output_index": index, "item": item}),
                            );
                        }
                    }
                    EventBody::ModelReplied { .. } => {
                        reply_items(
                            &mut self.out,
                            &session,
                            &event,
                            &self.client,
                            &mut self.open,
                            &mut self.output_index,
                        );
                    }
                    _ => {}
                }
                self.events.push((*event).clone());
            }
            RunProgress::Ended(run) => {
                self.over = true;
                let object = response_object(&run, &self.events);
                let kind = match object["status"].as_str() {
                    Some("completed") => "response.completed",
                    Some("incomplete") => "response.incomplete",
                    _ => "response.failed",
                };
                self.out.send(kind, json!({"response": object}));
            }
            RunProgress::TextReset { .. }
            | RunProgress::Halted { .. }
            | RunProgress::NotStarted { .. } => {}
        }
    }
}

/// The item events of one logged model reply: its text item closed (or opened and closed at
/// once), then its function calls for the caller.
fn reply_items(
    out: &mut Emitter,
    session: &SessionId,
    event: &keel_core::Event,
    client: &[String],
    open: &mut Option<OpenText>,
    output_index: &mut usize,
) {
    let keep = |name: &str| client.iter().any(|c| c == name);
    for (_, item) in items::event_items(session, event, &keep) {
        if item["type"] == "message" {
            close_text(out, open.take(), &item, output_index);
        } else {
            function_call(out, &item, *output_index);
            *output_index += 1;
        }
    }
    // Text streamed by an attempt whose logged reply has none (a retry) ends as sent.
    if let Some(text) = open.take() {
        let item = json!({"type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text.text, "annotations": [], "logprobs": []}]});
        close_text(out, Some(text), &item, output_index);
    }
}

/// Ends the streamed text item with the logged reply's text (or starts and ends it at once
/// when nothing was streamed).
fn close_text(out: &mut Emitter, open: Option<OpenText>, item: &Value, output_index: &mut usize) {
    let text = item["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (id, index) = match open {
        Some(o) => (o.id, o.output_index),
        None => {
            let id = item["id"].as_str().unwrap_or("").to_string();
            out.send("response.output_item.added", json!({"output_index": *output_index,
                "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}));
            out.send(
                "response.content_part.added",
                json!({"item_id": id, "output_index": *output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            // Not seen streaming here: the whole text is its one delta, so deltas always
            // add up to the text.
            if !text.is_empty() {
                out.send(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": *output_index,
                    "content_index": 0, "delta": text, "logprobs": []}),
                );
            }
            *output_index += 1;
            (id, *output_index - 1)
        }
    };
    out.send("response.output_text.done", json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
    out.send(
        "response.content_part.done",
        json!({"item_id": id, "output_index": index, "content_index": 0,
        "part": {"type": "output_text", "text": text, "annotations": []}}),
    );
    let mut done = item.clone();
    done["id"] = json!(id);
    out.send(
        "response.output_item.done",
        json!({"output_index": index, "item": done}),
    )
}

fn function_call(out: &mut Emitter, item: &Value, output_index: usize) {
    let id = item["id"].clone();
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    added["arguments"] = json!("");
    out.send(
        "response.output_item.added",
        json!({"output_index": output_index, "item": added}),
    );
    out.send(
        "response.function_call_arguments.delta",
        json!({"item_id": id, "output_index": output_index, "delta": item["arguments"]}),
    );
    out.send("response.function_call_arguments.done", json!({"item_id": id, "output_index": output_index, "arguments": item["arguments"], "name": item["name"]}));
    out.send(
        "response.output_item.done",
        json!({"output_index": output_index, "item": item}),
    )
}
