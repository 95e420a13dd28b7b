//! The OpenAI-compatible gateway's overhead: `POST /v1/chat/completions` through `keel serve`
//! (release binary, an `openai` provider pointing at a lean mock upstream) against the same
//! mock called directly, with the same load tool (oha) and the same request, at each
//! concurrency and upstream delay; then the time to the first streamed token, direct and
//! through keel. Prints markdown: requests/s, p50/p99, keel's CPU time per request (from
//! `/proc/<pid>/stat`), and whether the goals are met.
//!
//! `cargo bench -p keel --bench gateway`. Needs oha (`cargo install oha --locked`); without it
//! the bench says so and exits 0. Settings: `KEEL_BENCH_SECS` (each run, default 5),
//! `KEEL_BENCH_ROUNDS` (direct/keel alternations per case, medians reported, default 3),
//! `KEEL_BENCH_DELAYS` (upstream delays in ms, default `0,50`), `KEEL_BENCH_CONCURRENCY`
//! (default `50,200`), `KEEL_BENCH_AUTH=off` (serve with `--no-auth` instead of checking the
//! admin key on every request), `KEEL_BENCH_PIN=off` (no CPU pinning; see `procs::Pinning`),
//! `KEEL_BENCH_KEEL` (the keel binary to run, default this build's).

mod load;
mod mock;
#[allow(dead_code)] // `cpu_clock` and `start_keel_binary` serve the other benches
mod procs;
mod ttft;

use std::time::{Duration, Instant};

use load::{Load, Outcome};
use procs::{Pinning, Process};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

struct Settings {
    run: Duration,
    rounds: usize,
    delays: Vec<u64>,
    concurrency: Vec<u64>,
    auth: bool,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            run: Duration::from_secs_f64(env_or("KEEL_BENCH_SECS", 5.0)),
            rounds: env_or("KEEL_BENCH_ROUNDS", 3usize).max(1),
            delays: env_list("KEEL_BENCH_DELAYS", &[0, 50]),
            concurrency: env_list("KEEL_BENCH_CONCURRENCY", &[50, 200]),
            auth: std::env::var("KEEL_BENCH_AUTH").map_or(true, |v| v != "off"),
        }
    }
}

/// The two ways to the same upstream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Direct,
    Keel,
}

/// Everything the benchmark runs against.
struct Setup {
    oha: String,
    pinning: Pinning,
    mock: Process,
    mock_addr: String,
    keel: Process,
    keel_url: String,
    key: Option<String>,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn url(&self, path: Path, delay: u64) -> String {
        match path {
            Path::Direct => format!(
                "http://{}/delay/{delay}/v1/chat/completions",
                self.mock_addr
            ),
            Path::Keel => format!("{}/v1/chat/completions", self.keel_url),
        }
    }

    fn auth(&self, path: Path) -> Option<&str> {
        match path {
            Path::Direct => None,
            Path::Keel => self.key.as_deref(),
        }
    }
}

/// A typical small request; `model` is keel's `provider/model`, or any name for the mock.
fn body(path: Path, delay: u64, stream: bool) -> String {
    let model = match path {
        Path::Direct => "gpt-mock".to_string(),
        Path::Keel => format!("mock{delay}/gpt-mock"),
    };
    let mut body = serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Say hello to the benchmark in about ten words."},
        ],
        "max_tokens": 32,
    });
    if stream {
        body["stream"] = true.into();
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    body.to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("mock-upstream") {
        let threads = args
            .iter()
            .position(|a| a == "--threads")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        mock::run(threads);
        return;
    }
    let Some(oha) = load::oha() else {
        println!(
            "gateway bench skipped: the load tool oha is not installed. Install it with `{}` \
             (or point KEEL_BENCH_OHA at it) and run `cargo bench -p keel --bench gateway` again.",
            load::INSTALL
        );
        return;
    };
    let settings = Settings::from_env();
    let setup = start(oha, &settings);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start a tokio runtime");
    runtime.block_on(smoke_test(&setup, &settings.delays));

    println!("# Gateway: POST /v1/chat/completions, direct to the mock vs through keel\n");
    println!(
        "{}; keel {}; {} s per run, {} rounds (direct and keel alternating), medians.\n",
        setup.pinning.describe(),
        if settings.auth {
            "checks the admin key on every request"
        } else {
            "serves with --no-auth"
        },
        settings.run.as_secs_f64(),
        settings.rounds
    );
    let mut cases = Vec::new();
    for &delay in &settings.delays {
        for &concurrency in &settings.concurrency {
            cases.push(throughput_case(
                &setup,
                &settings,
                delay,
                concurrency as usize,
            ));
        }
    }
    print_throughput(&cases);
    let ttft = runtime.block_on(ttft_cases(&setup, &settings));
    print_ttft(&ttft);
    print_goals(&cases, &ttft);
}

fn start(oha: String, settings: &Settings) -> Setup {
    let pinning = Pinning::choose();
    procs::pin_current(pinning.load);
    let threads = if pinning.load.is_some() { 1 } else { 2 };
    let (mock, mock_addr) = procs::start_mock(pinning.load, threads);
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("cannot create the bench's temporary directory");
    let dir = tempfile::Builder::new()
        .prefix("keel-gateway-bench-")
        .tempdir_in(&base)
        .expect("cannot create the bench's temporary directory");
    let data_dir = dir.path().join("data");
    let mut config = format!(
        "data_dir = {:?}\n\n[store]\ndurability = \"normal\"\n",
        data_dir.display().to_string()
    );
    for delay in &settings.delays {
        config.push_str(&format!(
            "\n[providers.mock{delay}]\nkind = \"openai\"\nbase_url = \"http://{mock_addr}/delay/{delay}/v1\"\napi_key_env = \"{}\"\n",
            procs::UPSTREAM_KEY_ENV
        ));
    }
    let config_path = dir.path().join("keel.toml");
    std::fs::write(&config_path, config).expect("cannot write keel.toml");
    let (keel, keel_url) = procs::start_keel(&config_path, settings.auth, pinning.keel);
    let key = settings.auth.then(|| {
        std::fs::read_to_string(data_dir.join("admin.key"))
            .expect("keel made no admin key")
            .trim()
            .to_string()
    });
    Setup {
        oha,
        pinning,
        mock,
        mock_addr,
        keel,
        keel_url,
        key,
        _dir: dir,
    }
}

/// One plain and one streamed request each way, so a misconfiguration fails loudly before
/// any number is printed.
async fn smoke_test(setup: &Setup, delays: &[u64]) {
    let client = reqwest::Client::new();
    for &delay in delays {
        for path in [Path::Direct, Path::Keel] {
            let mut request = client
                .post(setup.url(path, delay))
                .header("content-type", "application/json")
                .body(body(path, delay, false));
            if let Some(key) = setup.auth(path) {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.expect("smoke request failed");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            assert!(
                status.is_success() && text.contains("fast mock upstream"),
                "{path:?} with a {delay} ms upstream answered {status}: {text}"
            );
            let target = ttft::Target {
                url: setup.url(path, delay),
                body: body(path, delay, true),
                auth: setup.auth(path).map(str::to_string),
            };
            ttft::measure(&client, &target, 1, 1, Duration::ZERO).await;
        }
    }
}

/// One run's measurements.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    load: Outcome,
    keel_cpu: Duration,
    mock_cpu: Duration,
    wall: Duration,
}

fn run_load(
    setup: &Setup,
    path: Path,
    delay: u64,
    concurrency: usize,
    run: Duration,
    rate: Option<f64>,
) -> Sample {
    let url = setup.url(path, delay);
    let body = body(path, delay, false);
    let load = Load {
        url: &url,
        body: &body,
        auth: setup.auth(path),
        concurrency,
        duration: run,
        rate,
    };
    let (keel, mock, started) = (setup.keel.cpu(), setup.mock.cpu(), Instant::now());
    let outcome = load::run(&setup.oha, &load, setup.pinning.load);
    Sample {
        load: outcome,
        keel_cpu: setup.keel.cpu().saturating_sub(keel),
        mock_cpu: setup.mock.cpu().saturating_sub(mock),
        wall: started.elapsed(),
    }
}

struct Case {
    delay: u64,
    concurrency: usize,
    direct: Summary,
    keel: Summary,
    /// With a delayed upstream, the same again paced at `PACED` of the direct throughput:
    /// (rate, direct, keel).
    paced: Option<(f64, Summary, Summary)>,
}

/// The paced runs' rate, as a share of the direct closed-loop throughput. Closed-loop callers
/// with a fixed upstream delay move in step (every answer of a round lands in the same
/// instant, a burst keel's one core works through); paced requests arrive as independent
/// callers' would.
const PACED: f64 = 0.8;

/// Medians over a case's rounds.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    rps: f64,
    p50: Duration,
    p99: Duration,
    failed: u64,
    /// CPU time per successful request.
    keel_cpu: Duration,
    mock_cpu: Duration,
    tool_cpu: Duration,
    /// keel's CPU time over the run's wall time (1.0 = one core busy).
    keel_load: f64,
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

fn summarize(samples: &[Sample]) -> Summary {
    let per_request = |cpu: fn(&Sample) -> Duration| {
        median(
            samples
                .iter()
                .map(|s| cpu(s) / (s.load.ok.max(1) as u32))
                .collect(),
        )
    };
    Summary {
        rps: median(samples.iter().map(|s| s.load.rps).collect()),
        p50: median(samples.iter().map(|s| s.load.p50).collect()),
        p99: median(samples.iter().map(|s| s.load.p99).collect()),
        failed: samples.iter().map(|s| s.load.failed).sum(),
        keel_cpu: per_request(|s| s.keel_cpu),
        mock_cpu: per_request(|s| s.mock_cpu),
        tool_cpu: per_request(|s| s.load.tool_cpu),
        keel_load: median(
            samples
                .iter()
                .map(|s| s.keel_cpu.as_secs_f64() / s.wall.as_secs_f64())
                .collect(),
        ),
    }
}

fn throughput_case(setup: &Setup, settings: &Settings, delay: u64, concurrency: usize) -> Case {
    eprintln!(
        "upstream {delay} ms, concurrency {concurrency}: warming up, then {} rounds",
        settings.rounds
    );
    let warm_up = Duration::from_secs(1);
    for path in [Path::Direct, Path::Keel] {
        run_load(setup, path, delay, concurrency, warm_up, None);
    }
    let rounds = |rate: Option<f64>| {
        let (mut direct, mut keel) = (Vec::new(), Vec::new());
        for _ in 0..settings.rounds {
            direct.push(run_load(
                setup,
                Path::Direct,
                delay,
                concurrency,
                settings.run,
                rate,
            ));
            keel.push(run_load(
                setup,
                Path::Keel,
                delay,
                concurrency,
                settings.run,
                rate,
            ));
        }
        (summarize(&direct), summarize(&keel))
    };
    let (direct, keel) = rounds(None);
    let paced = (delay > 0).then(|| {
        let rate = direct.rps * PACED;
        let (direct, keel) = rounds(Some(rate));
        (rate, direct, keel)
    });
    Case {
        delay,
        concurrency,
        direct,
        keel,
        paced,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn print_throughput(cases: &[Case]) {
    println!("## Throughput and latency (non-streamed requests)\n");
    println!(
        "| upstream | concurrency | path | req/s | p50 | p99 | failed | keel CPU/req | keel CPU use | mock CPU/req | oha CPU/req |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in cases {
        let mut rows = vec![
            ("direct".to_string(), &case.direct),
            ("keel".to_string(), &case.keel),
        ];
        if let Some((rate, direct, keel)) = &case.paced {
            rows.push((format!("direct, paced {rate:.0}/s"), direct));
            rows.push((format!("keel, paced {rate:.0}/s"), keel));
        }
        for (name, s) in rows {
            println!(
                "| {} ms | {} | {name} | {:.0} | {} | {} | {} | {} | {:.0}% | {} | {} |",
                case.delay,
                case.concurrency,
                s.rps,
                ms(s.p50),
                ms(s.p99),
                s.failed,
                if name.starts_with("keel") {
                    us(s.keel_cpu)
                } else {
                    "—".into()
                },
                s.keel_load * 100.0,
                us(s.mock_cpu),
                us(s.tool_cpu),
            );
        }
    }
    println!();
}

struct TtftCase {
    delay: u64,
    concurrency: usize,
    /// The streams start spread over one upstream delay instead of all at once.
    staggered: bool,
    direct: (Duration, Duration),
    keel: (Duration, Duration),
    /// keel's CPU time per stream.
    keel_cpu: Duration,
}

impl TtftCase {
    fn label(&self) -> String {
        match (self.concurrency, self.staggered) {
            (1, _) => "1".into(),
            (n, true) => format!("{n} staggered"),
            (n, false) => format!("{n} in step"),
        }
    }
}

/// TTFT one stream at a time (the pure added latency) and 50 at once, in step and (with a
/// delayed upstream) staggered, direct and keel alternating.
async fn ttft_cases(setup: &Setup, settings: &Settings) -> Vec<TtftCase> {
    let client = reqwest::Client::new();
    let mut cases = Vec::new();
    for &delay in &settings.delays {
        let mut shapes = vec![(1usize, false), (50, false)];
        if delay > 0 {
            shapes.push((50, true));
        }
        for (concurrency, staggered) in shapes {
            let spread = match staggered {
                true => Duration::from_millis(delay),
                false => Duration::ZERO,
            };
            // About a second of requests per round whatever the delay.
            let per_second = concurrency as f64 * 1000.0 / (delay as f64 + 0.5);
            let requests = (per_second as usize).clamp(50, 2000);
            eprintln!(
                "TTFT: upstream {delay} ms, concurrency {concurrency}{}, {requests} streams per round",
                if staggered { " staggered" } else { "" }
            );
            let target = |path| ttft::Target {
                url: setup.url(path, delay),
                body: body(path, delay, true),
                auth: setup.auth(path).map(str::to_string),
            };
            let (direct_target, keel_target) = (target(Path::Direct), target(Path::Keel));
            let warm_up = concurrency * 4;
            ttft::measure(&client, &direct_target, warm_up, concurrency, spread).await;
            ttft::measure(&client, &keel_target, warm_up, concurrency, spread).await;
            let (mut direct, mut keel, mut keel_cpu) = (Vec::new(), Vec::new(), Duration::ZERO);
            for _ in 0..settings.rounds {
                direct.extend(
                    ttft::measure(&client, &direct_target, requests, concurrency, spread).await,
                );
                let cpu = setup.keel.cpu();
                keel.extend(
                    ttft::measure(&client, &keel_target, requests, concurrency, spread).await,
                );
                keel_cpu += setup.keel.cpu().saturating_sub(cpu);
            }
            let streams = keel.len().max(1) as u32;
            cases.push(TtftCase {
                delay,
                concurrency,
                staggered,
                direct: percentiles(direct),
                keel: percentiles(keel),
                keel_cpu: keel_cpu / streams,
            });
        }
    }
    cases
}

/// (p50, p99).
fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

fn print_ttft(cases: &[TtftCase]) {
    println!("## Streaming: time to the first content chunk\n");
    println!(
        "| upstream | streams | direct p50 | keel p50 | direct p99 | keel p99 | added p50 | added p99 | keel CPU/stream |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in cases {
        println!(
            "| {} ms | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.delay,
            c.label(),
            ms(c.direct.0),
            ms(c.keel.0),
            ms(c.direct.1),
            ms(c.keel.1),
            signed_ms(c.keel.0, c.direct.0),
            signed_ms(c.keel.1, c.direct.1),
            us(c.keel_cpu),
        );
    }
    println!();
}

fn signed_ms(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn print_goals(cases: &[Case], ttft: &[TtftCase]) {
    println!("## Goals\n");
    println!("| upstream | concurrency | goal | measured | |");
    println!("|---:|---:|---|---:|---|");
    for c in cases {
        if c.delay == 0 {
            let cpu = c.keel.keel_cpu;
            println!(
                "| 0 ms | {} | keel CPU < 0.1 ms per request | {} | {} |",
                c.concurrency,
                us(cpu),
                verdict(cpu < Duration::from_micros(100))
            );
        } else {
            let share = c.keel.rps / c.direct.rps;
            println!(
                "| {} ms | {} | ≥ 95% of direct req/s | {:.1}% | {} |",
                c.delay,
                c.concurrency,
                share * 100.0,
                verdict(share >= 0.95)
            );
            let added = c.keel.p99.as_secs_f64() - c.direct.p99.as_secs_f64();
            println!(
                "| {} ms | {} | added p99 < 1 ms | {:+.2} ms | {} |",
                c.delay,
                c.concurrency,
                added * 1e3,
                verdict(added < 1e-3)
            );
            if let Some((rate, direct, keel)) = &c.paced {
                let added = keel.p99.as_secs_f64() - direct.p99.as_secs_f64();
                println!(
                    "| {} ms | {}, paced {rate:.0}/s | added p99 < 1 ms | {:+.2} ms | {} |",
                    c.delay,
                    c.concurrency,
                    added * 1e3,
                    verdict(added < 1e-3)
                );
            }
        }
    }
    for c in ttft {
        let added = c.keel.1.as_secs_f64() - c.direct.1.as_secs_f64();
        println!(
            "| {} ms | {} | streaming: added TTFT p99 < 1 ms | {:+.2} ms | {} |",
            c.delay,
            c.label(),
            added * 1e3,
            verdict(added < 1e-3)
        );
    }
    println!();
}
