//! What one long conversation costs keel per turn, through the Responses API chained by
//! `previous_response_id` and through the native `POST /v1/sessions/{id}/messages`, in the same
//! run: the release `keel serve` with an `openai` provider pointing at the gateway bench's lean
//! mock upstream (re-executed as its own process), the two conversations' turns alternating so
//! both see the same machine. Per turn, keel's CPU time (user + system, the process's CPU clock
//! at nanosecond resolution: `/proc/<pid>/stat` counts in 10 ms ticks, coarser than a turn).
//! Prints markdown: CPU per turn over windows of the conversation, and whether it stays flat.
//!
//! `cargo bench -p keel --bench threading`. Settings: `KEEL_BENCH_TURNS` (default 200),
//! `KEEL_BENCH_PIN=off` (no CPU pinning; see `procs::Pinning`), `KEEL_BENCH_KEEL` (the keel
//! binary to run, default this build's: an A/B against an earlier commit).

#[path = "../gateway/mock.rs"]
mod mock;
#[allow(dead_code)]
#[path = "../gateway/procs.rs"]
mod procs;

use std::time::Duration;

use procs::{Pinning, Process};
use serde_json::{Value, json};

const MODEL: &str = "mock/gpt-mock";

/// The two ways to hold the same conversation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Responses,
    Native,
}

/// The running setup: the mock, keel, and an HTTP client with the admin key.
struct Bench {
    _mock: Process,
    keel: Process,
    url: String,
    key: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
    }
}

fn start() -> Bench {
    let pinning = Pinning::choose();
    procs::pin_current(pinning.load);
    let (mock, mock_addr) = procs::start_mock(pinning.load, 1);
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("cannot create the bench's temporary directory");
    let dir = tempfile::Builder::new()
        .prefix("keel-threading-bench-")
        .tempdir_in(&base)
        .expect("cannot create the bench's temporary directory");
    let data_dir = dir.path().join("data");
    let config = format!(
        "data_dir = {:?}\n\n[store]\ndurability = \"normal\"\n\n[providers.mock]\nkind = \"openai\"\nbase_url = \"http://{mock_addr}/v1\"\napi_key_env = \"{}\"\n",
        data_dir.display().to_string(),
        procs::UPSTREAM_KEY_ENV
    );
    let config_path = dir.path().join("keel.toml");
    std::fs::write(&config_path, config).expect("cannot write keel.toml");
    let (keel, url) = procs::start_keel(&config_path, true, pinning.keel);
    let key = std::fs::read_to_string(data_dir.join("admin.key"))
        .expect("keel made no admin key")
        .trim()
        .to_string();
    println!("{}.\n", pinning.describe());
    Bench {
        _mock: mock,
        keel,
        url,
        key,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

/// One conversation's state between turns.
struct Conversation {
    api: Api,
    /// The previous response's id (Responses) or the session's id (native).
    thread: Option<String>,
    /// keel's CPU per turn, in order.
    cpu: Vec<Duration>,
}

impl Conversation {
    fn new(api: Api) -> Self {
        Conversation {
            api,
            thread: None,
            cpu: Vec::new(),
        }
    }

    /// Sends turn `n` and waits for its answer.
    async fn turn(&mut self, bench: &Bench, n: usize) {
        let text = format!("Turn {n}: say something short about the number {n}.");
        match self.api {
            Api::Responses => {
                let mut body = json!({"model": MODEL, "input": text});
                if let Some(previous) = &self.thread {
                    body["previous_response_id"] = previous.clone().into();
                }
                let response = bench.post("/v1/responses", body).await;
                assert_eq!(response["status"], "completed", "turn {n}: {response}");
                self.thread = response["id"].as_str().map(str::to_string);
            }
            Api::Native => {
                let session = self.thread.as_ref().expect("the session is created first");
                let run = bench
                    .post(
                        &format!("/v1/sessions/{session}/messages"),
                        json!({"content": text}),
                    )
                    .await;
                assert_eq!(run["status"], "completed", "turn {n}: {run}");
            }
        }
    }
}

/// The windows the table shows, as 1-based inclusive turn ranges clipped to the run.
fn windows(turns: usize) -> Vec<(usize, usize)> {
    let mut all = vec![
        (1, 10),
        (11, 50),
        (51, 100),
        (101, 150),
        (151, 200),
        (191, 200),
    ];
    if turns > 200 {
        all.push((turns - 9, turns));
    }
    all.into_iter()
        .filter(|(from, _)| *from <= turns)
        .map(|(from, to)| (from, to.min(turns)))
        .collect()
}

fn mean_ms(cpu: &[Duration]) -> f64 {
    cpu.iter().sum::<Duration>().as_secs_f64() * 1000.0 / cpu.len().max(1) as f64
}

fn median_ms(cpu: &[Duration]) -> f64 {
    let mut sorted = cpu.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("mock-upstream") {
        mock::run(1);
        return;
    }
    let turns: usize = std::env::var("KEEL_BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    println!("# One {turns}-turn conversation: /v1/responses (previous_response_id) vs native\n");
    let bench = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start a tokio runtime");
    let (responses, native) = runtime.block_on(run(&bench, turns));
    print_table(turns, &responses, &native);
}

async fn run(bench: &Bench, turns: usize) -> (Conversation, Conversation) {
    bench
        .post(
            "/v1/agents",
            json!({"name": "bench", "model": MODEL, "instructions": ""}),
        )
        .await;
    let session = bench.post("/v1/sessions", json!({"agent": "bench"})).await;
    let mut responses = Conversation::new(Api::Responses);
    let mut native = Conversation::new(Api::Native);
    native.thread = session["id"].as_str().map(str::to_string);
    // Turns alternate, each measured from just before it is sent to just before the next one
    // (after a short pause), so work keel finishes after answering is counted with its turn.
    let settle = Duration::from_millis(2);
    for n in 1..=turns {
        for conversation in [&mut responses, &mut native] {
            let before = procs::cpu_clock(&bench.keel);
            conversation.turn(bench, n).await;
            tokio::time::sleep(settle).await;
            conversation
                .cpu
                .push(procs::cpu_clock(&bench.keel) - before);
        }
    }
    (responses, native)
}

fn print_table(turns: usize, responses: &Conversation, native: &Conversation) {
    println!(
        "keel CPU per turn, mean (median) in ms over each window of turns; turns alternate between the two conversations.\n"
    );
    println!("| turns | /v1/responses | native | responses / native |");
    println!("|---|---:|---:|---:|");
    for (from, to) in windows(turns) {
        let r = &responses.cpu[from - 1..to];
        let n = &native.cpu[from - 1..to];
        println!(
            "| {from}–{to} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2}x |",
            mean_ms(r),
            median_ms(r),
            mean_ms(n),
            median_ms(n),
            mean_ms(r) / mean_ms(n).max(f64::EPSILON)
        );
    }
    let last = turns.saturating_sub(9).max(1);
    let early = |c: &Conversation| mean_ms(&c.cpu[..10.min(turns)]);
    let late = |c: &Conversation| mean_ms(&c.cpu[last - 1..turns]);
    println!(
        "\nGrowth, turns {last}–{turns} over 1–10: responses {:.2}x, native {:.2}x. \
         Goal: flat, and responses within 1.5x of native at {last}–{turns}: {}.",
        late(responses) / early(responses).max(f64::EPSILON),
        late(native) / early(native).max(f64::EPSILON),
        if late(responses) <= 1.5 * late(native) {
            "met"
        } else {
            "missed"
        }
    );
}
