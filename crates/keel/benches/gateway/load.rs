//! The load tool: oha, the same binary and flags for the direct and the through-keel runs.
//! Reads its JSON summary (successful requests only for the latency percentiles).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::procs;

/// How to install the load tool when it is missing.
pub const INSTALL: &str = "cargo install oha --locked";

/// Whether `oha` can be run from PATH (or `KEEL_BENCH_OHA`).
pub fn oha() -> Option<String> {
    let path = std::env::var("KEEL_BENCH_OHA").unwrap_or_else(|_| "oha".into());
    let ok = Command::new(&path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(path)
}

/// One load run's request.
pub struct Load<'a> {
    pub url: &'a str,
    pub body: &'a str,
    pub auth: Option<&'a str>,
    pub concurrency: usize,
    pub duration: Duration,
    /// Requests per second, sent on a schedule (latency counted from when each was due),
    /// instead of as fast as answers come back.
    pub rate: Option<f64>,
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Successful (200) requests per second of the run.
    pub rps: f64,
    pub ok: u64,
    pub failed: u64,
    pub p50: Duration,
    pub p99: Duration,
    /// The load tool's own CPU time.
    pub tool_cpu: Duration,
}

pub fn run(oha: &str, load: &Load, cpu: Option<usize>) -> Outcome {
    let mut command = Command::new(oha);
    command
        .arg("-z")
        .arg(format!("{}ms", load.duration.as_millis()))
        .arg("-c")
        .arg(load.concurrency.to_string())
        .args(["-m", "POST", "-H", "content-type: application/json"])
        // -w: requests in flight at the deadline finish and count, rather than being aborted.
        .args(["-w", "--no-tui", "--output-format", "json"])
        .arg("--stats-success-breakdown")
        .arg("-d")
        .arg(load.body);
    if let Some(key) = load.auth {
        command
            .arg("-H")
            .arg(format!("authorization: Bearer {key}"));
    }
    if cpu.is_some() {
        // One CPU: more runtime threads would only take turns on it.
        command.args(["--worker-threads", "1"]);
    }
    if let Some(rate) = load.rate {
        command
            .arg("-q")
            .arg(format!("{rate:.0}"))
            .arg("--latency-correction");
    }
    command.arg(load.url);
    procs::pin_command(&mut command, cpu);
    let before = procs::reaped_children_cpu();
    let output = command.output().expect("cannot run oha");
    let tool_cpu = procs::reaped_children_cpu().saturating_sub(before);
    assert!(
        output.status.success(),
        "oha failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "oha's output is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let statuses = &report["statusCodeDistribution"];
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let ok = count(&statuses["200"]);
    let answered: u64 = statuses
        .as_object()
        .map_or(0, |m| m.values().map(count).sum());
    let errors: u64 = report["errorDistribution"]
        .as_object()
        .map_or(0, |m| m.values().map(count).sum());
    let total_secs = report["summary"]["total"].as_f64().unwrap_or(f64::NAN);
    let percentiles = &report["latencyPercentilesSuccessful"];
    let seconds = |v: &Value| Duration::from_secs_f64(v.as_f64().unwrap_or(0.0));
    Outcome {
        rps: ok as f64 / total_secs,
        ok,
        failed: answered - ok + errors,
        p50: seconds(&percentiles["p50"]),
        p99: seconds(&percentiles["p99"]),
        tool_cpu,
    }
}
