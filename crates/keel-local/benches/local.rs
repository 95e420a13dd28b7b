//! Benchmark of the embedded model: load time, prompt and generated tokens per second, peak
//! RSS, and the latency of turn 10 of a conversation with and without KV reuse; and llama.cpp
//! (through the `llama-cpp-python` package, if the Python in `KEEL_BENCH_PYTHON` or `python3`
//! has it) on the same GGUF with one thread, taking turns with keel so both see the same load.
//!
//! `cargo bench -p keel-local --bench local`

// The model file and request builders the tests use.
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_core::Message;
use keel_local::{LocalClient, LocalOptions};
use keel_models::{ModelClient, ModelRequest, StreamEvent};
use support::greedy;

const ROUNDS: usize = 5;
const GENERATE: u32 = 128;

fn long_prompt() -> Vec<Message> {
    let text = "The history of bread spans thousands of years, from flat cakes baked on hot stones to the \
                leavened loaves of ancient Egypt, the guild bakers of medieval Europe and the industrial \
                bakeries of today. ";
    vec![Message::user(format!(
        "{}Summarise this text in one sentence.",
        text.repeat(3)
    ))]
}

/// Generated tokens per second after the first token, and the whole call's time.
async fn timed_generation(client: &LocalClient, req: ModelRequest) -> (u64, Duration, Duration) {
    let start = Instant::now();
    let mut stream = client.stream(req).await.expect("stream");
    let mut first = None;
    let mut tokens = 0;
    while let Some(ev) = stream.next().await {
        match ev.expect("event") {
            StreamEvent::TextDelta(_) if first.is_none() => first = Some(Instant::now()),
            StreamEvent::Usage(u) => tokens = u.output_tokens,
            _ => {}
        }
    }
    let end = Instant::now();
    (tokens, end - first.unwrap_or(end), end - start)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = support::model_path();
    println!("model: {}", path.display());

    let start = Instant::now();
    let options = LocalOptions {
        prefix_cache_bytes: 0,
        ..LocalOptions::default()
    };
    let client = LocalClient::load(path, options).unwrap();
    let load = start.elapsed();
    println!(
        "keel  load: {:.0} ms (simd kernels: {})",
        load.as_secs_f64() * 1e3,
        client.uses_simd()
    );

    // keel and llama.cpp take turns, so both see the same background load.
    let prompt_req = greedy(long_prompt(), 1);
    let prompt_len = client.prompt_tokens(&prompt_req).unwrap().len();
    let story = || {
        greedy(
            vec![Message::user(
                "Write a long story about a lighthouse keeper and a storm.",
            )],
            GENERATE,
        )
    };
    let (mut keel_prompt, mut keel_gen, mut cpp_prompt, mut cpp_gen) =
        (vec![], vec![], vec![], vec![]);
    let mut cpp_report = None;
    for _ in 0..ROUNDS {
        // Prompt: one output token, so the time is the prompt's.
        let t = Instant::now();
        client.complete(prompt_req.clone()).await.unwrap();
        keel_prompt.push(prompt_len as f64 / t.elapsed().as_secs_f64());
        let (tokens, after_first, _) = timed_generation(&client, story()).await;
        keel_gen.push(tokens.saturating_sub(1) as f64 / after_first.as_secs_f64());
        match llama_cpp(path, prompt_len) {
            Ok(r) => {
                cpp_prompt.push(r.prompt_tps);
                cpp_gen.push(r.generate_tps);
                cpp_report = Some(r);
            }
            Err(why) => {
                println!("llama.cpp: skipped ({why})");
                break;
            }
        }
    }
    println!(
        "keel  peak RSS: {:.0} MB (one client, weights + context)",
        peak_rss_mb()
    );
    println!(
        "keel  prompt: {:.1} tok/s ({prompt_len} tokens, median of {ROUNDS})",
        median(&keel_prompt)
    );
    println!(
        "keel  generate: {:.1} tok/s (up to {GENERATE} tokens, median of {ROUNDS})",
        median(&keel_gen)
    );
    if let Some(r) = cpp_report {
        println!(
            "llama.cpp load: {:.0} ms, peak RSS {:.0} MB (Python process)",
            r.load_ms, r.rss_mb
        );
        println!(
            "llama.cpp prompt: {:.1} tok/s (median of {})",
            median(&cpp_prompt),
            cpp_prompt.len()
        );
        println!(
            "llama.cpp generate: {:.1} tok/s (128 tokens, median of {})",
            median(&cpp_gen),
            cpp_gen.len()
        );
        println!(
            "keel / llama.cpp: prompt {:.0}%, generate {:.0}%",
            100.0 * median(&keel_prompt) / median(&cpp_prompt),
            100.0 * median(&keel_gen) / median(&cpp_gen)
        );
    }

    // Turn 10 of a conversation: with reuse, only the new turn is computed.
    let reuse = LocalClient::load(path, LocalOptions::default()).unwrap();
    let questions = [
        "Hi! Who are you?",
        "What is the capital of France?",
        "And of Italy?",
        "Which one is older?",
        "Name a famous dish from each.",
        "How is pasta made?",
        "What about bread?",
        "Which flour is best for bread?",
        "How long should dough rise?",
        "Thanks! Can you summarise our chat?",
    ];
    let mut history = Vec::new();
    let mut turn10 = (Duration::ZERO, 0u64, 0u64);
    for (i, q) in questions.iter().enumerate() {
        history.push(Message::user(*q));
        let t = Instant::now();
        let reply = reuse.complete(greedy(history.clone(), 32)).await.unwrap();
        if i == questions.len() - 1 {
            turn10 = (
                t.elapsed(),
                reply.usage.input_tokens,
                reply.usage.cached_input_tokens,
            );
        }
        history.push(reply.message);
    }
    history.pop();
    let t = Instant::now();
    client.complete(greedy(history, 32)).await.unwrap();
    let cold = t.elapsed();
    println!(
        "keel  turn 10 latency: {:.0} ms with KV reuse ({} of {} prompt tokens reused), {:.0} ms without ({:.2}x)",
        turn10.0.as_secs_f64() * 1e3,
        turn10.2,
        turn10.1,
        cold.as_secs_f64() * 1e3,
        turn10.0.as_secs_f64() / cold.as_secs_f64()
    );
}

struct CppReport {
    load_ms: f64,
    prompt_tps: f64,
    generate_tps: f64,
    rss_mb: f64,
}

/// One round of the same measurements through llama.cpp (one thread) in a child Python.
fn llama_cpp(path: &std::path::Path, prompt_len: usize) -> Result<CppReport, String> {
    const SCRIPT: &str = r#"
import sys, time, resource
from llama_cpp import Llama
t = time.time()
llm = Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
print("load", (time.time() - t) * 1e3)
text = "The history of bread spans thousands of years, from flat cakes baked on hot stones to the leavened loaves of ancient Egypt, the guild bakers of medieval Europe and the industrial bakeries of today. " * 8
toks = llm.tokenize(text.encode(), add_bos=False)[:int(sys.argv[2])]
t = time.time()
llm.eval(toks)
print("prompt", len(toks) / (time.time() - t))
llm.reset()
chat = llm.tokenize(b"<|im_start|>user\nWrite a long story about a lighthouse keeper and a storm.<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True)
n = 0
for tok in llm.generate(chat, temp=0.0):
    n += 1
    if n == 1:
        t = time.time()
    if n >= 128:
        break
print("generate", (n - 1) / (time.time() - t))
print("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"#;
    let python = std::env::var("KEEL_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(path)
        .arg(prompt_len.to_string())
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{python} cannot run it; `pip install llama-cpp-python` and set KEEL_BENCH_PYTHON: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("no `{key}` in llama.cpp output: {text}"))
    };
    Ok(CppReport {
        load_ms: get("load")?,
        prompt_tps: get("prompt")?,
        generate_tps: get("generate")?,
        rss_mb: get("rss")?,
    })
}
