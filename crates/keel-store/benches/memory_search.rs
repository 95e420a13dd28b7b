//! Long-term memory search on SQLite at 10k and 100k records in one namespace: latency p50 and
//! p99 of hybrid (full text + vectors, fused), keyword-only and vector-only searches, and the
//! database's size per record — the numbers behind the choice of a brute-force vector scan.
//! Records: 12 words from a 2,000-word vocabulary, a random unit vector of 384 dimensions (what
//! all-MiniLM-L6-v2 gives); queries: 5 words and a random vector. 200 queries per mode, the
//! modes interleaved.
//!
//! `cargo bench -p keel-store --bench memory_search` (`KEEL_BENCH_RECORDS=10000,100000`).

use std::sync::Arc;
use std::time::Instant;

use keel_core::{TenantId, Timestamp};
use keel_store::{
    Durability, Fusion, MemoryQuery, MemoryRecord, SqliteOptions, SqliteStore, Store,
};

const DIMENSIONS: usize = 384;
const QUERIES: usize = 200;
const NAMESPACE: &str = "user:bench";

/// A small deterministic generator (xorshift), so runs compare.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| format!("w{}", self.next() % 2_000))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn unit_vector(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIMENSIONS)
            .map(|_| (self.next() % 2_001) as f32 / 1_000.0 - 1.0)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KEEL_BENCH_RECORDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("keel.db");
    let mut options = SqliteOptions::new(&path);
    options.durability = Durability::Normal;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(options).expect("open the store"));
    let tenant = TenantId::default_tenant();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut stored = 0;
    println!("| records | mode | p50 ms | p99 ms |");
    println!("|---:|---|---:|---:|");
    for &size in &sizes {
        let started = Instant::now();
        runtime.block_on(async {
            while stored < size {
                let batch: Vec<MemoryRecord> = (stored..size.min(stored + 1_000))
                    .map(|i| MemoryRecord {
                        id: format!("mem_{i:08}"),
                        tenant: tenant.clone(),
                        namespace: NAMESPACE.into(),
                        text: dice.words(12),
                        metadata: serde_json::json!({"n": i % 10}),
                        embedding: dice.unit_vector(),
                        created_at: Timestamp::from_millis(1),
                        updated_at: Timestamp::from_millis(1),
                    })
                    .collect();
                let puts = batch.iter().map(|r| store.put_memory(r));
                for put in futures::future::join_all(puts).await {
                    put.expect("stored");
                }
                stored += batch.len();
            }
        });
        let load_s = started.elapsed().as_secs_f64();
        let modes = ["hybrid", "keyword", "vector"];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for _ in 0..QUERIES {
            let (text, vector) = (dice.words(5), dice.unit_vector());
            for (m, mode) in modes.iter().enumerate() {
                let query = MemoryQuery {
                    namespace: NAMESPACE.into(),
                    text: if *mode == "vector" {
                        String::new()
                    } else {
                        text.clone()
                    },
                    embedding: (*mode != "keyword").then(|| vector.clone()),
                    filter: Vec::new(),
                    limit: 10,
                    fusion: Fusion::default(),
                };
                let start = Instant::now();
                let hits = runtime
                    .block_on(store.search_memory(&tenant, &query))
                    .expect("searched");
                times[m].push(start.elapsed().as_secs_f64() * 1e3);
                std::hint::black_box(hits);
            }
        }
        for (m, mode) in modes.iter().enumerate() {
            let sorted = {
                let mut t = times[m].clone();
                t.sort_by(f64::total_cmp);
                t
            };
            println!(
                "| {size} | {mode} | {:.2} | {:.2} |",
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.99)
            );
        }
        runtime.block_on(store.ping()).expect("ping");
        let bytes: u64 = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "<!-- {size} records: stored in {load_s:.1} s; database and WAL {:.1} MB, {:.0} bytes per record -->",
            bytes as f64 / 1e6,
            bytes as f64 / size as f64
        );
    }
}
