//! Property tests of the sans-IO session core: a simulated driver follows `decide` with
//! arbitrary model behaviour (text, tool calls, failures) and arbitrary interruptions, and
//! every log it produces must keep the invariants the rest of keel relies on. Some calls need
//! a person's approval: the simulated person approves some (with arguments edited to name the
//! call) and rejects others, and no decision ever reaches another call.

use std::collections::{HashMap, HashSet};

use keel_core::{
    Action, AgentDef, AgentId, Approval, Decision, Event, EventBody, FinishReason, Limits, Message,
    Part, Role, RunId, RunOptions, SessionState, TenantId, Timestamp, ToolDef, ToolKind, Usage,
    decide,
};
use proptest::prelude::*;

/// What the simulated world does when the driver acts.
#[derive(Clone, Debug)]
enum Outcome {
    /// The model replies with text, this many calls of keel's tools, of a tool that needs a
    /// person's approval, and of the caller's (client) tools.
    Reply { tools: u8, gated: u8, client: u8 },
    /// The model call fails.
    ModelFails { retryable: bool },
    /// The process dies after logging the intent (the driver restarts and re-decides).
    Crash,
    /// The driver is asked to cancel the run here.
    Cancel,
    /// The context passed its budget before a step: a compaction runs first (its summary
    /// written, or not when `fails`).
    Compacts { fails: bool },
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => (0u8..3, prop_oneof![2 => Just(0u8), 1 => 1u8..3], prop_oneof![3 => Just(0u8), 1 => 1u8..3])
            .prop_map(|(tools, gated, client)| Outcome::Reply { tools, gated, client }),
        1 => any::<bool>().prop_map(|retryable| Outcome::ModelFails { retryable }),
        1 => Just(Outcome::Crash),
        1 => Just(Outcome::Cancel),
        1 => any::<bool>().prop_map(|fails| Outcome::Compacts { fails }),
    ]
}

fn agent(max_steps: u32) -> AgentDef {
    AgentDef {
        id: AgentId::generate(1, 1),
        name: "test".into(),
        version: 1,
        instructions: String::new(),
        model: "scripted/echo".into(),
        tools: vec![ToolDef {
            name: "gated".into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
            require_approval: keel_core::ApprovalRule::Every(true),
            kind: ToolKind::Builtin,
        }],
        limits: Limits {
            max_steps,
            max_model_attempts: 2,
            ..Limits::default()
        },
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    }
}

struct Sim {
    state: SessionState,
    log: Vec<Event>,
}

impl Sim {
    fn new(max_steps: u32) -> Self {
        let mut sim = Sim {
            state: SessionState::default(),
            log: vec![],
        };
        sim.push(EventBody::SessionStarted {
            tenant: TenantId::default_tenant(),
            agent: agent(max_steps),
            metadata: Default::default(),
        });
        sim
    }

    fn push(&mut self, body: EventBody) {
        let event = Event {
            seq: self.state.last_seq + 1,
            at: Timestamp(self.log.len() as i64),
            body,
        };
        self.state
            .apply(&event)
            .unwrap_or_else(|e| panic!("the driver produced an invalid event: {e}"));
        self.log.push(event);
    }

    /// Drives one run to its end, consuming outcomes as the world's answers.
    fn run(&mut self, run_no: u64, outcomes: &mut impl Iterator<Item = Outcome>) {
        let run_id = RunId::generate(run_no, 7);
        // The caller answers the calls the last run handed over, as a client does.
        let input = if self.state.awaiting.is_empty() {
            Message::user("hi")
        } else {
            Message {
                role: Role::Tool,
                parts: self
                    .state
                    .awaiting
                    .iter()
                    .map(|c| Part::ToolResult {
                        call_id: c.call_id.clone(),
                        content: "client ok".into(),
                        is_error: false,
                    })
                    .collect(),
            }
        };
        self.push(EventBody::RunStarted {
            run_id: run_id.clone(),
            input,
            options: Box::new(client_tool_options()),
        });
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 500, "run did not terminate");
            if self.state.active.is_none() {
                return;
            }
            let world = outcomes.next().unwrap_or(Outcome::Reply {
                tools: 0,
                gated: 0,
                client: 0,
            });
            if let Outcome::Cancel = world {
                if let Some(run) = &self.state.active {
                    for call in run.tools.clone() {
                        self.push(EventBody::ToolReturned {
                            run_id: run_id.clone(),
                            call_id: call.call_id,
                            content: "cancelled".into(),
                            is_error: true,
                        });
                    }
                }
                self.push(EventBody::RunCancelled {
                    run_id: run_id.clone(),
                    reason: "test".into(),
                });
                return;
            }
            match decide(&self.state) {
                Action::Idle => return,
                Action::CallModel {
                    run_id,
                    step,
                    attempt,
                    intent_logged,
                } => {
                    if !intent_logged && let Outcome::Compacts { .. } = world {
                        let through_seq = self.state.last_seq;
                        self.push(EventBody::CompactionStarted {
                            run_id,
                            through_seq,
                        });
                        continue;
                    }
                    if !intent_logged {
                        self.push(EventBody::ModelCalled {
                            run_id: run_id.clone(),
                            step,
                            attempt,
                        });
                    }
                    match world {
                        Outcome::Crash | Outcome::Cancel | Outcome::Compacts { .. } => continue,
                        Outcome::ModelFails { retryable } => self.push(EventBody::ModelFailed {
                            run_id,
                            step,
                            attempt,
                            error: "boom".into(),
                            retryable,
                            kind: None,
                            status: None,
                            code: None,
                            retry_after_ms: None,
                        }),
                        Outcome::Reply {
                            tools,
                            gated,
                            client,
                        } => {
                            let mut parts = vec![Part::Text {
                                text: format!("step {step}"),
                            }];
                            for i in 0..tools + gated + client {
                                let name = match i {
                                    _ if i < tools => "t",
                                    _ if i < tools + gated => "gated",
                                    _ => "fn",
                                };
                                parts.push(Part::ToolCall {
                                    id: format!("c{}_{}", self.log.len(), i),
                                    name: name.into(),
                                    arguments: serde_json::json!({}),
                                });
                            }
                            let finish = if tools + gated + client > 0 {
                                FinishReason::ToolCalls
                            } else {
                                FinishReason::Stop
                            };
                            self.push(EventBody::ModelReplied {
                                run_id,
                                step,
                                message: Message {
                                    role: Role::Assistant,
                                    parts,
                                },
                                usage: Usage {
                                    input_tokens: 1,
                                    output_tokens: 1,
                                    cached_input_tokens: 0,
                                },
                                finish,
                                model: "scripted/echo".into(),
                                provider_kind: Some("scripted".into()),
                                latency_ms: 0,
                                queue_ms: 0,
                                target: None,
                                attempts: 1,
                                cost_usd: None,
                            });
                        }
                    }
                }
                Action::CallTool { run_id, call } => {
                    assert_ne!(call.name, "fn", "keel never performs the caller's tools");
                    if call.idempotency_key.is_none() {
                        let key = format!("ses:{}", self.state.last_seq + 1);
                        self.push(EventBody::ToolCalled {
                            run_id: run_id.clone(),
                            call_id: call.call_id.clone(),
                            name: call.name.clone(),
                            arguments: call.arguments.clone(),
                            idempotency_key: key,
                        });
                    }
                    if matches!(world, Outcome::Crash) {
                        continue;
                    }
                    self.push(EventBody::ToolReturned {
                        run_id,
                        call_id: call.call_id,
                        content: "ok".into(),
                        is_error: false,
                    });
                }
                Action::Compact {
                    run_id,
                    through_seq,
                } => {
                    if matches!(world, Outcome::Crash) {
                        continue;
                    }
                    let fails = matches!(world, Outcome::Compacts { fails: true });
                    self.push(EventBody::ContextCompacted {
                        run_id,
                        from_seq: self.state.compacted_through + 1,
                        through_seq,
                        summary: (!fails).then(|| format!("through {through_seq}")),
                        error: fails.then(|| "the summariser failed".into()),
                        model: Some("scripted/echo".into()),
                        usage: Usage {
                            input_tokens: 1,
                            output_tokens: 1,
                            cached_input_tokens: 0,
                        },
                    });
                }
                Action::RequestApproval { run_id, calls } => {
                    self.push(EventBody::ApprovalRequested { run_id, calls })
                }
                Action::ReturnDecided {
                    run_id,
                    call_id,
                    content,
                    is_error,
                } => self.push(EventBody::ToolReturned {
                    run_id,
                    call_id,
                    content,
                    is_error,
                }),
                // The run waits; after a crash nobody has decided yet, else a person decides
                // every waiting call: approve (arguments edited to name the call) or reject.
                Action::Wait { run_id } => {
                    if matches!(world, Outcome::Crash) {
                        continue;
                    }
                    let waiting: Vec<String> = self
                        .state
                        .active
                        .iter()
                        .flat_map(|r| &r.tools)
                        .filter(|c| c.approval == Some(Approval::Requested))
                        .map(|c| c.call_id.clone())
                        .collect();
                    let base = self.log.len();
                    for (i, call_id) in waiting.into_iter().enumerate() {
                        let decision = if (base + i) % 2 == 0 {
                            Decision::Approve {
                                arguments: Some(serde_json::json!({"for": call_id})),
                            }
                        } else {
                            Decision::Reject {
                                reason: format!("not {call_id}"),
                            }
                        };
                        self.push(EventBody::ApprovalDecided {
                            run_id: run_id.clone(),
                            call_id,
                            decision,
                            by: Some("person".into()),
                        });
                    }
                }
                Action::Finish { run_id, output } => self.push(EventBody::RunCompleted {
                    run_id,
                    output,
                    usage: Usage::default(),
                }),
                Action::Fail {
                    run_id,
                    code,
                    error,
                } => self.push(EventBody::RunFailed {
                    run_id,
                    code: code.into(),
                    error,
                }),
            }
        }
    }
}

fn client_tool_options() -> RunOptions {
    RunOptions {
        tools: vec![ToolDef {
            name: "fn".into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
            require_approval: Default::default(),
            kind: ToolKind::Client,
        }],
        ..RunOptions::default()
    }
}

fn simulate(max_steps: u32, runs: u64, outcomes: Vec<Outcome>) -> Sim {
    let mut sim = Sim::new(max_steps);
    let mut it = outcomes.into_iter();
    for r in 0..runs {
        sim.run(r + 1, &mut it);
    }
    sim
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn driver_logs_keep_every_invariant(max_steps in 1u32..6, runs in 1u64..4, outcomes in prop::collection::vec(outcome(), 0..60)) {
        let sim = simulate(max_steps, runs, outcomes);
        // seqs are contiguous from 1
        for (i, e) in sim.log.iter().enumerate() {
            prop_assert_eq!(e.seq, i as u64 + 1);
        }
        // every tool-call intent has at most one result, and every result has an intent or a reply asking for it
        let mut results: HashMap<&str, u32> = HashMap::new();
        let mut ended: HashSet<&RunId> = HashSet::new();
        let mut replied_steps: HashSet<(&RunId, u32)> = HashSet::new();
        for e in &sim.log {
            match &e.body {
                EventBody::ToolReturned { call_id, .. } => *results.entry(call_id).or_default() += 1,
                EventBody::RunCompleted { run_id, .. } | EventBody::RunFailed { run_id, .. } | EventBody::RunCancelled { run_id, .. } => {
                    prop_assert!(ended.insert(run_id), "run {} ended twice", run_id);
                }
                EventBody::ModelReplied { run_id, step, .. } => {
                    prop_assert!(replied_steps.insert((run_id, *step)), "step {} of {} replied twice", step, run_id);
                }
                _ => {}
            }
        }
        // results of the caller's tools come in the next run's input
        for e in &sim.log {
            if let EventBody::RunStarted { input, .. } = &e.body {
                for call_id in input.tool_results() {
                    *results.entry(call_id).or_default() += 1;
                }
            }
        }
        prop_assert!(results.values().all(|&n| n == 1));
        // a decision reaches its own call only: an approved call is performed with the
        // arguments edited for it, a rejected one never (its result is an error)
        let mut decided: HashMap<&str, &Decision> = HashMap::new();
        for e in &sim.log {
            match &e.body {
                EventBody::ApprovalDecided { call_id, decision, .. } => {
                    prop_assert!(decided.insert(call_id, decision).is_none(), "{} decided twice", call_id);
                }
                EventBody::ToolCalled { call_id, name, arguments, .. } if name == "gated" => {
                    let approved = matches!(decided.get(call_id.as_str()), Some(Decision::Approve { .. }));
                    prop_assert!(approved, "{} performed without approval", call_id);
                    prop_assert_eq!(arguments, &serde_json::json!({"for": call_id}));
                }
                EventBody::ToolReturned { call_id, is_error, .. } => {
                    if let Some(Decision::Reject { .. }) = decided.get(call_id.as_str()) {
                        prop_assert!(*is_error, "rejected {} got a result that is no error", call_id);
                    }
                }
                _ => {}
            }
        }
        // every call asked for has its result, except those the last run handed to the caller
        let mut unanswered: Vec<&str> = sim.log.iter().flat_map(|e| match &e.body {
            EventBody::ModelReplied { message, .. } => message.tool_calls().map(|(id, _, _)| id).collect(),
            _ => Vec::new(),
        }).filter(|id| !results.contains_key(id)).collect();
        unanswered.sort();
        let mut awaiting: Vec<&str> = sim.state.awaiting.iter().map(|c| c.call_id.as_str()).collect();
        awaiting.sort();
        prop_assert_eq!(unanswered, awaiting);
        // every run ended (the simulation drives each to its end)
        prop_assert_eq!(ended.len() as u64, runs);
        prop_assert!(sim.state.active.is_none());
    }

    #[test]
    fn folding_is_deterministic_and_snapshots_are_equivalent(max_steps in 1u32..6, outcomes in prop::collection::vec(outcome(), 0..40), cut in 0usize..200) {
        let sim = simulate(max_steps, 2, outcomes);
        let a = SessionState::default().fold(&sim.log).unwrap();
        let b = SessionState::default().fold(&sim.log).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &sim.state);
        // a snapshot taken anywhere (through its serialized form) plus the tail gives the same state
        let cut = cut % (sim.log.len() + 1);
        let prefix = SessionState::default().fold(&sim.log[..cut]).unwrap();
        let snapshot: SessionState = serde_json::from_str(&serde_json::to_string(&prefix).unwrap()).unwrap();
        prop_assert_eq!(snapshot.fold(&sim.log[cut..]).unwrap(), a);
    }

    #[test]
    fn decide_never_repeats_a_logged_result(max_steps in 1u32..6, outcomes in prop::collection::vec(outcome(), 0..40), cut in 0usize..200) {
        let sim = simulate(max_steps, 2, outcomes);
        // recovery at any point: whatever decide asks for next has no result in the log yet
        let cut = cut % (sim.log.len() + 1);
        let state = SessionState::default().fold(&sim.log[..cut]).unwrap();
        let logged = &sim.log[..cut];
        match decide(&state) {
            Action::CallModel { run_id, step, .. } => {
                let repeated = logged.iter().any(|e| matches!(&e.body, EventBody::ModelReplied { run_id: r, step: s, .. } if *r == run_id && *s == step));
                prop_assert!(!repeated, "decide repeats step {}", step);
            }
            Action::CallTool { call, .. } => {
                let repeated = logged.iter().any(|e| matches!(&e.body, EventBody::ToolReturned { call_id, .. } if *call_id == call.call_id));
                prop_assert!(!repeated, "decide repeats tool call {}", call.call_id);
            }
            Action::Finish { run_id, .. } | Action::Fail { run_id, .. } => {
                let ended = logged.iter().any(|e| matches!(&e.body, EventBody::RunCompleted { run_id: r, .. } | EventBody::RunFailed { run_id: r, .. } | EventBody::RunCancelled { run_id: r, .. } if *r == run_id));
                prop_assert!(!ended, "decide ends run {} twice", run_id);
            }
            Action::Compact { through_seq, .. } => {
                let done = logged.iter().rev().take_while(|e| !matches!(e.body, EventBody::CompactionStarted { .. })).any(|e| matches!(&e.body, EventBody::ContextCompacted { through_seq: t, .. } if *t == through_seq));
                prop_assert!(!done, "decide repeats the compaction through {}", through_seq);
            }
            Action::RequestApproval { calls, .. } => {
                let asked = logged.iter().any(|e| matches!(&e.body, EventBody::ApprovalRequested { calls: c, .. } if c.iter().any(|c| calls.iter().any(|a| a.call_id == c.call_id))));
                prop_assert!(!asked, "decide asks about a call twice");
            }
            Action::ReturnDecided { call_id, .. } => {
                let repeated = logged.iter().any(|e| matches!(&e.body, EventBody::ToolReturned { call_id: c, .. } if *c == call_id));
                prop_assert!(!repeated, "decide repeats the result of {}", call_id);
            }
            Action::Wait { .. } | Action::Idle => {}
        }
    }

    #[test]
    fn apply_rejects_events_that_break_the_log(max_steps in 1u32..6, outcomes in prop::collection::vec(outcome(), 0..40), pick in 0usize..200, drop in 0usize..200) {
        // Shuffling a valid log by dropping one event: what apply accepts never has two results
        // for one call or a run that ends twice, and a rejected event leaves the state unchanged.
        let sim = simulate(max_steps, 2, outcomes);
        let mut log = sim.log.clone();
        if log.len() > 1 {
            let drop = 1 + drop % (log.len() - 1);
            let dup = pick % log.len();
            let extra = log[dup].clone();
            log.remove(drop);
            log.push(extra);
        }
        let mut state = SessionState::default();
        let mut returned = HashSet::new();
        let mut ended = HashSet::new();
        for (i, e) in log.iter().enumerate() {
            let mut e = e.clone();
            e.seq = state.last_seq + 1;
            let before = state.clone();
            match state.apply(&e) {
                Ok(()) => match &e.body {
                    EventBody::ToolReturned { call_id, .. } => prop_assert!(returned.insert(call_id.clone())),
                    EventBody::RunCompleted { run_id, .. } | EventBody::RunFailed { run_id, .. } | EventBody::RunCancelled { run_id, .. } => prop_assert!(ended.insert(run_id.clone())),
                    _ => {}
                },
                Err(_) => { prop_assert_eq!(&state, &before, "rejected event {} changed the state", i); }
            }
        }
    }
}

#[test]
fn a_gap_in_seq_is_rejected() {
    let mut state = SessionState::default();
    let start = Event {
        seq: 2,
        at: Timestamp(0),
        body: EventBody::SessionStarted {
            tenant: TenantId::default_tenant(),
            agent: agent(3),
            metadata: Default::default(),
        },
    };
    let err = state.apply(&start).unwrap_err();
    assert!(err.to_string().contains("expected seq 1"), "{err}");
}

#[test]
fn max_steps_ends_a_run_that_keeps_calling_tools() {
    let mut sim = Sim::new(2);
    let outcomes = vec![
        Outcome::Reply {
            tools: 1,
            gated: 0,
            client: 0
        };
        10
    ];
    sim.run(1, &mut outcomes.into_iter());
    let last = sim.log.last().unwrap();
    assert!(
        matches!(&last.body, EventBody::RunFailed { code, .. } if code == "max_steps"),
        "{last:?}"
    );
}

#[test]
fn a_run_ends_handing_client_tool_calls_to_the_caller() {
    let mut sim = Sim::new(5);
    let outcomes = vec![
        Outcome::Reply {
            tools: 1,
            gated: 0,
            client: 2,
        },
        Outcome::Reply {
            tools: 0,
            gated: 0,
            client: 0,
        },
    ];
    let mut outcomes = outcomes.into_iter();
    sim.run(1, &mut outcomes);
    // keel performed its own tool, then ended the run with the client calls pending
    let returned = sim
        .log
        .iter()
        .filter(|e| matches!(e.body, EventBody::ToolReturned { .. }))
        .count();
    assert_eq!(returned, 1);
    assert!(matches!(
        sim.log.last().unwrap().body,
        EventBody::RunCompleted { .. }
    ));
    assert_eq!(sim.state.awaiting.len(), 2);
    assert!(sim.state.awaiting.iter().all(|c| c.name == "fn"));
    // the next run's input answers them and the model goes on
    sim.run(2, &mut outcomes);
    assert!(sim.state.awaiting.is_empty());
    let EventBody::RunStarted { input, .. } = &sim.log[sim.log.len() - 4].body else {
        panic!("{:?}", sim.log);
    };
    assert_eq!(input.tool_results().count(), 2);
}

#[test]
fn messages_are_added_only_between_runs_and_answer_awaited_calls() {
    let mut sim = Sim::new(5);
    let mut outcomes = vec![Outcome::Reply {
        tools: 0,
        gated: 0,
        client: 1,
    }]
    .into_iter();
    sim.run(1, &mut outcomes);
    let call = sim.state.awaiting[0].call_id.clone();
    let added = EventBody::MessagesAdded {
        messages: vec![Message {
            role: Role::Tool,
            parts: vec![Part::ToolResult {
                call_id: call,
                content: "done".into(),
                is_error: false,
            }],
        }],
    };
    let count = sim.state.message_count;
    sim.push(added.clone());
    assert!(sim.state.awaiting.is_empty());
    assert_eq!(sim.state.message_count, count + 1);
    // during a run, refused
    sim.push(EventBody::RunStarted {
        run_id: RunId::generate(9, 9),
        input: Message::user("x"),
        options: Box::default(),
    });
    let event = Event {
        seq: sim.state.last_seq + 1,
        at: Timestamp(0),
        body: added,
    };
    let before = sim.state.clone();
    assert!(sim.state.apply(&event).is_err());
    assert_eq!(sim.state, before);
}

#[test]
fn parallel_calls_waiting_for_a_person_each_get_their_own_decision() {
    let mut sim = Sim::new(5);
    let mut outcomes = vec![Outcome::Reply {
        tools: 0,
        gated: 2,
        client: 0,
    }]
    .into_iter();
    sim.run(1, &mut outcomes);
    let requested: Vec<&Event> = sim
        .log
        .iter()
        .filter(|e| matches!(e.body, EventBody::ApprovalRequested { .. }))
        .collect();
    let [request] = requested[..] else {
        panic!("one request listing both calls: {:?}", sim.log);
    };
    let EventBody::ApprovalRequested { calls, .. } = &request.body else {
        unreachable!()
    };
    assert_eq!(calls.len(), 2);
    // One was approved and performed with its own edited arguments, the other rejected.
    let performed: Vec<_> = sim
        .log
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ToolCalled {
                call_id, arguments, ..
            } => Some((call_id.clone(), arguments.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(performed.len(), 1, "{:?}", sim.log);
    assert_eq!(performed[0].1, serde_json::json!({"for": performed[0].0}));
    assert!(sim.log.iter().any(|e| matches!(&e.body,
        EventBody::ToolReturned { is_error: true, content, .. } if content.starts_with("a person rejected this call"))));
    assert!(matches!(
        sim.log.last().unwrap().body,
        EventBody::RunCompleted { .. }
    ));
}

#[test]
fn a_spending_rule_asks_a_person_once_the_runs_model_steps_cost_more_than_its_limit() {
    let mut pay = agent(8);
    pay.tools[0].require_approval =
        keel_core::ApprovalRule::Spending(keel_core::approval::SpendingLimit {
            run_cost_usd_over: 0.5,
        });
    let mut state = SessionState::default();
    let mut seq = 0;
    let mut push = |state: &mut SessionState, body: EventBody| {
        seq += 1;
        state
            .apply(&Event {
                seq,
                at: Timestamp(seq as i64),
                body,
            })
            .unwrap();
    };
    let run = RunId::generate(1, 1);
    push(
        &mut state,
        EventBody::SessionStarted {
            tenant: TenantId::default_tenant(),
            agent: pay,
            metadata: Default::default(),
        },
    );
    push(
        &mut state,
        EventBody::RunStarted {
            run_id: run.clone(),
            input: Message::user("pay"),
            options: Box::default(),
        },
    );
    // Each step costs 0.3: the first call is made at 0.3 spent, the second at 0.6.
    for step in 1..=2u32 {
        push(
            &mut state,
            EventBody::ModelCalled {
                run_id: run.clone(),
                step,
                attempt: 1,
            },
        );
        push(
            &mut state,
            EventBody::ModelReplied {
                run_id: run.clone(),
                step,
                message: Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall {
                        id: format!("c{step}"),
                        name: "gated".into(),
                        arguments: serde_json::json!({}),
                    }],
                },
                usage: Usage::default(),
                finish: FinishReason::ToolCalls,
                model: "openai/gpt-4o".into(),
                provider_kind: None,
                latency_ms: 0,
                queue_ms: 0,
                target: None,
                attempts: 1,
                cost_usd: Some(0.3),
            },
        );
        let asked = state.active.as_ref().unwrap().tools[0].approval.clone();
        if step == 1 {
            assert_eq!(asked, None, "0.3 spent: under the limit");
            assert!(matches!(decide(&state), Action::CallTool { .. }));
            push(
                &mut state,
                EventBody::ToolReturned {
                    run_id: run.clone(),
                    call_id: "c1".into(),
                    content: "paid".into(),
                    is_error: false,
                },
            );
        } else {
            assert_eq!(asked, Some(Approval::Required), "0.6 spent: over the limit");
            assert!(matches!(decide(&state), Action::RequestApproval { .. }));
        }
    }
    // The rule reads back as written in keel.toml or the API.
    let rule: keel_core::ApprovalRule =
        serde_json::from_str(r#"{"run_cost_usd_over": 0.5}"#).unwrap();
    assert_eq!(
        rule,
        keel_core::ApprovalRule::Spending(keel_core::approval::SpendingLimit {
            run_cost_usd_over: 0.5
        })
    );
}
