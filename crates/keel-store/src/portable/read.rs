//! Import's first half: a `keel.session/1` file checked whole — the header's format and
//! version, every line's shape, seqs 1.. without a gap, the hash chain recomputed, the end
//! line — before anything is written, then turned into the rows `Store::import` writes.

use keel_core::{AgentDef, EventBody, RunStatus, SessionId, TenantId, Timestamp};

use super::{FORMAT, Header, Line, VERSION, session_namespace};
use crate::export::{StoredRecord, TABLES, Value};
use crate::{StoreError, chain, encode};

/// A checked export, ready to be written under a tenant (`records`).
#[derive(Clone, Debug)]
pub struct ImportPlan {
    pub header: Header,
    /// The session's events, as (seq, at, type, body text as stored, hash record).
    events: Vec<(u64, Timestamp, String, String, Option<String>)>,
    lines: Vec<Line>,
}

/// Reads and checks `text` (see the module's doc); `Invalid` naming the line (and, for a
/// broken chain, the seq) at the first problem.
pub fn parse(text: &str) -> Result<ImportPlan, StoreError> {
    let mut numbered = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let (_, first) = numbered.next().ok_or_else(|| {
        invalid("the file is empty: a keel.session export starts with its header")
    })?;
    let header = read_header(first)?;
    let mut plan = ImportPlan {
        header,
        events: Vec::new(),
        lines: Vec::new(),
    };
    let mut previous: Option<String> = None;
    let mut ended = false;
    for (number, text) in numbered {
        if ended {
            return Err(invalid(format!("line {number} follows the end line")));
        }
        let line: Line = serde_json::from_str(text)
            .map_err(|e| invalid(format!("line {number} is not a keel.session line: {e}")))?;
        match line {
            Line::Event {
                seq,
                at,
                kind,
                body,
                hash,
            } => {
                let expected = plan.events.len() as u64 + 1;
                if seq != expected {
                    return Err(invalid(format!(
                        "line {number} holds seq {seq} where seq {expected} belongs: events must run 1, 2, 3… without a gap"
                    )));
                }
                let stored = event_text(seq, &kind, &body)?;
                match (&hash, &previous) {
                    (None, None) => {}
                    (None, Some(_)) => {
                        return Err(invalid(format!(
                            "the hash chain breaks at seq {seq}: it has no hash record though the events before it do"
                        )));
                    }
                    (Some(record), _) => {
                        let recomputed =
                            chain::event_hash(previous.as_deref(), seq, at, &kind, &stored);
                        if *record != recomputed {
                            return Err(invalid(format!(
                                "the hash chain breaks at seq {seq}: the event or one before it was changed \
                                 (its record says {record}, its content gives {recomputed})"
                            )));
                        }
                        previous = Some(recomputed);
                    }
                }
                plan.events.push((seq, at, kind, stored, hash));
            }
            Line::End { events } => {
                if events != plan.events.len() as u64 {
                    return Err(invalid(format!(
                        "the end line counts {events} events but the file holds {}",
                        plan.events.len()
                    )));
                }
                ended = true;
            }
            Line::Run { status, ref id, .. }
                if !matches!(
                    status,
                    RunStatus::Queued | RunStatus::Running | RunStatus::Waiting
                ) =>
            {
                return Err(invalid(format!(
                    "line {number}: run {id} is {}: only unfinished runs (queued, running, waiting) are carried",
                    status.as_str()
                )));
            }
            Line::Memory {
                ref id,
                ref namespace,
                ref text,
                ref metadata,
                ..
            } => {
                let own = session_namespace(&plan.header.session.id);
                if *namespace != own {
                    return Err(invalid(format!(
                        "line {number}: memory {id} is in namespace {namespace:?}; a session carries only its own, {own:?}"
                    )));
                }
                let record = crate::MemoryRecord {
                    id: id.clone(),
                    tenant: keel_core::TenantId::generate(0, 0),
                    namespace: namespace.clone(),
                    text: text.clone(),
                    metadata: metadata.clone(),
                    embedding: Vec::new(),
                    created_at: Timestamp::from_millis(0),
                    updated_at: Timestamp::from_millis(0),
                };
                record
                    .check()
                    .map_err(|e| invalid(format!("line {number}: {e}")))?;
                plan.lines.push(line);
            }
            other => plan.lines.push(other),
        }
    }
    if !ended {
        return Err(invalid(
            "the file is truncated: it lacks its end line ({\"kind\":\"end\",…}); export the session again",
        ));
    }
    Ok(plan)
}

fn read_header(text: &str) -> Result<Header, StoreError> {
    #[derive(serde::Deserialize)]
    struct Version {
        format: String,
        version: u64,
    }
    let seen: Version = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "line 1 is not a keel.session header (format, version, exported_at, session): {e}"
        ))
    })?;
    if seen.format != FORMAT {
        return Err(invalid(format!(
            "line 1 says format {:?}: this keel reads {FORMAT:?} files",
            seen.format
        )));
    }
    if seen.version != VERSION {
        return Err(invalid(format!(
            "{FORMAT} version {} is not one this keel reads (it reads version {VERSION}): \
             import it with a keel that knows it",
            seen.version
        )));
    }
    serde_json::from_str(text).map_err(|e| invalid(format!("line 1, the header: {e}")))
}

/// The body's JSON text as a backend stores it, once it reads as an event of type `kind`.
fn event_text(seq: u64, kind: &str, body: &serde_json::Value) -> Result<String, StoreError> {
    let decoded = EventBody::decode(&body.to_string()).map_err(|e| {
        invalid(format!(
            "event seq {seq} does not read as a keel event: {e}"
        ))
    })?;
    if decoded.type_name() != kind {
        return Err(invalid(format!(
            "event seq {seq} says type {kind:?} but its body is a {}",
            decoded.type_name()
        )));
    }
    Ok(decoded.encode())
}

impl ImportPlan {
    pub fn session_id(&self) -> &SessionId {
        &self.header.session.id
    }

    /// The texts of the memory records carried, in file order: what the importer embeds.
    pub fn memory_texts(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|line| match line {
                Line::Memory { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The rows that create the session under `tenant`, pinning `agent` (its version there),
    /// with an `agents` row for it first when `new_agent_version`: for one `Store::import`.
    /// `embeddings` are the memory records' vectors in `memory_texts`' order (none: keyword
    /// search only).
    pub fn records(
        &self,
        tenant: &TenantId,
        agent: &AgentDef,
        new_agent_version: bool,
        embeddings: &[Vec<f32>],
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let mut vectors = embeddings.iter();
        let id = self.session_id();
        let text = |s: &str| Value::Text(s.to_string());
        let at = |t: Timestamp| Value::Int(t.millis());
        let opt_at = |t: Option<Timestamp>| t.map_or(Value::Null, at);
        let row = |table: &str, values: Vec<Value>| StoredRecord {
            table: TABLES
                .iter()
                .position(|t| t.name == table)
                .expect("a listed table"),
            values,
        };
        let mut rows = Vec::with_capacity(self.events.len() + self.lines.len() + 2);
        if new_agent_version {
            let def = encode::json(agent, || format!("agent {:?}", agent.name))?;
            rows.push(row(
                "agents",
                vec![
                    text(tenant.as_str()),
                    text(&agent.name),
                    Value::Int(agent.version.into()),
                    text(agent.id.as_str()),
                    Value::Text(def),
                ],
            ));
        }
        let head = &self.header.session;
        let metadata = encode::json(&head.metadata, || format!("the metadata of session {id}"))?;
        rows.push(row(
            "sessions",
            vec![
                text(id.as_str()),
                text(tenant.as_str()),
                text(agent.id.as_str()),
                text(&agent.name),
                Value::Int(agent.version.into()),
                at(head.created_at),
                Value::Text(metadata),
                Value::Int(self.events.len() as i64),
                Value::Null,
                Value::Null,
            ],
        ));
        for (seq, when, kind, body, hash) in &self.events {
            let body = encode::readable(body.clone(), || format!("event {id}#{seq}"))?;
            rows.push(row(
                "events",
                vec![
                    text(id.as_str()),
                    Value::Int(*seq as i64),
                    text(kind),
                    at(*when),
                    Value::Text(body),
                    hash.as_deref().map_or(Value::Null, text),
                ],
            ));
        }
        // The session's own memory blocks, as its log's edits leave them.
        let edits = self
            .events
            .iter()
            .filter(|(_, _, kind, ..)| kind == "memory_block_edited")
            .map(|(_, when, _, body, _)| (body.as_str(), *when));
        for (label, value, edits, updated_at) in crate::blocks::from_log(edits) {
            rows.push(row(
                "memory_blocks",
                vec![
                    text(tenant.as_str()),
                    text(&crate::blocks::session_scope(id)),
                    text(&label),
                    text(id.as_str()),
                    Value::Text(value),
                    Value::Null,
                    Value::Null,
                    Value::Int(edits as i64),
                    at(updated_at),
                ],
            ));
        }
        for line in &self.lines {
            match line {
                Line::Scratchpad { key, value } => rows.push(row(
                    "scratchpad",
                    vec![text(id.as_str()), text(key), text(value)],
                )),
                Line::Timer {
                    id: timer,
                    schedule,
                    note,
                    next_at,
                    created_at,
                    fired,
                    last_fired_at,
                } => {
                    let schedule =
                        encode::json(schedule, || format!("the schedule of timer {timer}"))?;
                    rows.push(row(
                        "timers",
                        vec![
                            text(timer.as_str()),
                            text(tenant.as_str()),
                            text(id.as_str()),
                            Value::Text(schedule),
                            text(note),
                            opt_at(*next_at),
                            at(*created_at),
                            Value::Int(*fired as i64),
                            opt_at(*last_fired_at),
                            // A session's timer: no agent owns it.
                            Value::Null,
                        ],
                    ));
                }
                Line::Run {
                    id: run,
                    input,
                    options,
                    status,
                    created_at,
                    cancel_requested,
                } => {
                    let input = encode::json(input, || format!("the input of run {run}"))?;
                    let options = match options.is_default() {
                        true => Value::Null,
                        false => Value::Text(encode::json(options, || {
                            format!("the options of run {run}")
                        })?),
                    };
                    rows.push(row(
                        "runs",
                        vec![
                            text(run.as_str()),
                            text(tenant.as_str()),
                            text(id.as_str()),
                            Value::Text(input),
                            text(status.as_str()),
                            at(*created_at),
                            Value::Null,
                            Value::Null,
                            Value::Bool(*cancel_requested),
                            Value::Null,
                            Value::Null,
                            options,
                            Value::Null,
                        ],
                    ));
                }
                Line::Memory {
                    id: record,
                    namespace,
                    text: body,
                    metadata,
                    created_at,
                    updated_at,
                } => {
                    let metadata =
                        encode::json(metadata, || format!("the metadata of memory {record}"))?;
                    let vector = vectors.next().map(Vec::as_slice).unwrap_or_default();
                    rows.push(row(
                        "memory_records",
                        vec![
                            text(tenant.as_str()),
                            text(record),
                            text(namespace),
                            text(body),
                            Value::Text(metadata),
                            Value::Bytes(crate::memory::vector_bytes(vector)),
                            at(*created_at),
                            at(*updated_at),
                        ],
                    ));
                }
                Line::Event { .. } | Line::End { .. } => {}
            }
        }
        Ok(rows)
    }
}

fn invalid(why: impl Into<String>) -> StoreError {
    StoreError::Invalid(why.into())
}
