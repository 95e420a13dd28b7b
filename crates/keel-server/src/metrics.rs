//! Prometheus metrics in the text exposition format: request counts and latency histograms by
//! route and status (kept here), runs by status read from the store's queue, the engine's
//! counters of steps, tokens and finished runs (background runs included), and the gateway's
//! calls, tokens and cost per tenant and model (`accounting`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::accounting::UsageLedger;

/// Latency bucket bounds, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (count, bound) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.total += 1;
    }
}

/// (method, route template, status)
type RequestKey = (String, String, u16);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, Histogram>>,
    /// The gateway's usage and cost, per tenant, key and model (rendered per tenant and model).
    pub usage: UsageLedger,
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let key = (method.to_string(), route.to_string(), status);
        self.requests
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// The exposition text; `runs` are the queue's run counts by status.
    pub fn render(&self, runs: &[(String, u64)], engine: &keel_engine::EngineStats) -> String {
        let mut out = String::new();
        out += "# HELP keel_http_requests_total HTTP requests by method, route and status.\n";
        out += "# TYPE keel_http_requests_total counter\n";
        let requests = self.requests.lock().unwrap();
        for ((method, route, status), h) in requests.iter() {
            let _ = writeln!(
                out,
                "keel_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                h.total
            );
        }
        out += "# HELP keel_http_request_duration_seconds HTTP request latency by method, route and status.\n";
        out += "# TYPE keel_http_request_duration_seconds histogram\n";
        for ((method, route, status), h) in requests.iter() {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(route)
            );
            for (bound, count) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "keel_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "keel_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(
                out,
                "keel_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "keel_http_request_duration_seconds_count{{{labels}}} {}",
                h.total
            );
        }
        drop(requests);
        out += "# HELP keel_runs Runs in the queue by status.\n# TYPE keel_runs gauge\n";
        for (status, count) in runs {
            let _ = writeln!(out, "keel_runs{{status=\"{status}\"}} {count}");
        }
        out += "# HELP keel_runs_finished_total Runs this node drove to their end, by how they ended.\n";
        out += "# TYPE keel_runs_finished_total counter\n";
        for (status, count) in [
            ("completed", engine.runs_completed),
            ("failed", engine.runs_failed),
            ("cancelled", engine.runs_cancelled),
        ] {
            let _ = writeln!(
                out,
                "keel_runs_finished_total{{status=\"{status}\"}} {count}"
            );
        }
        out += "# HELP keel_tokens_total Model tokens of the steps this node ran.\n";
        out += "# TYPE keel_tokens_total counter\n";
        let _ = writeln!(
            out,
            "keel_tokens_total{{kind=\"input\"}} {}",
            engine.input_tokens
        );
        let _ = writeln!(
            out,
            "keel_tokens_total{{kind=\"output\"}} {}",
            engine.output_tokens
        );
        out += "# HELP keel_steps_total Model steps (calls that got a reply) this node ran.\n";
        out += "# TYPE keel_steps_total counter\n";
        let steps = engine.steps;
        let _ = writeln!(out, "keel_steps_total {steps}");
        self.render_gateway(&mut out);
        out
    }

    /// The gateway's counters per tenant and model (keys are left out: label cardinality).
    fn render_gateway(&self, out: &mut String) {
        let totals = self.usage.by_tenant_and_model();
        let labels = |tenant: &str, model: &str| {
            format!("tenant=\"{}\",model=\"{}\"", escape(tenant), escape(model))
        };
        *out += "# HELP keel_gateway_requests_total OpenAI-compatible gateway calls served, by tenant and model.\n";
        *out += "# TYPE keel_gateway_requests_total counter\n";
        for ((tenant, model), t) in &totals {
            let _ = writeln!(
                out,
                "keel_gateway_requests_total{{{}}} {}",
                labels(tenant, model),
                t.requests
            );
        }
        *out += "# HELP keel_gateway_tokens_total Tokens of gateway calls, by tenant, model and kind.\n";
        *out += "# TYPE keel_gateway_tokens_total counter\n";
        for ((tenant, model), t) in &totals {
            for (kind, count) in [
                ("input", t.input_tokens),
                ("output", t.output_tokens),
                ("cached_input", t.cached_input_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "keel_gateway_tokens_total{{{},kind=\"{kind}\"}} {count}",
                    labels(tenant, model)
                );
            }
        }
        *out += "# HELP keel_gateway_cost_usd_total Cost of gateway calls in US dollars (catalog prices), by tenant and model.\n";
        *out += "# TYPE keel_gateway_cost_usd_total counter\n";
        for ((tenant, model), t) in &totals {
            let _ = writeln!(
                out,
                "keel_gateway_cost_usd_total{{{}}} {}",
                labels(tenant, model),
                t.cost_usd
            );
        }
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}
