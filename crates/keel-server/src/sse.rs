//! The one bridge from a follower (`Engine::follow_run` / `follow_log`) to a server-sent-events
//! response, for the stream mode of `POST …/messages`, the events SSE and Responses streaming.
//! The response body pulls the events itself, with no task or channel in between: a slow
//! client slows its follower (which then catches up from the store), a client that goes away
//! drops the body and the follower with it, a comment keeps the connection open while nothing
//! happens, and every stream ends when the server shuts down.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

use crate::state::AppState;

/// The SSE response carrying `events`.
pub fn respond<S>(
    state: &AppState,
    events: S,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<S>>
where
    S: Stream<Item = Event> + Send + 'static,
{
    let mut shutdown = state.shutdown.clone();
    let stopping = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    Sse::new(events.take_until(Box::pin(stopping)).map(Ok)).keep_alive(KeepAlive::default())
}

/// An event named `name` carrying `data` as JSON.
pub fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

/// What an endpoint's stream is made of: a follower whose items each become a few events
/// (or none), asked for one batch at a time until it says it is done.
pub trait Batches: Send + 'static {
    /// The next events to send; `None` ends the stream.
    fn next_batch(&mut self) -> impl Future<Output = Option<Vec<Event>>> + Send;
}

/// The events of `source`, batch after batch.
pub fn batches(source: impl Batches) -> impl Stream<Item = Event> + Send + 'static {
    futures::stream::unfold(source, |mut source| async move {
        let batch = source.next_batch().await?;
        Some((futures::stream::iter(batch), source))
    })
    .flatten()
}
