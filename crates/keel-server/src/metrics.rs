//! Prometheus metrics in the text exposition format: request counts and latency histograms by
//! route and status (kept here), runs by status read from the store's queue, the engine's
//! counters of steps, tokens and finished runs (background runs included), and the gateway's
//! calls, tokens and cost per model (`accounting`) — per tenant and model only when the
//! operator asks (`ServerConfig::metrics_tenant_labels`): a tenant's id is not a label by
//! default, so a scrape does not list the tenants or their usage.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::accounting::{Totals, UsageLedger};

/// Log lines this process could not write (its log's disk full, its pipe closed) and dropped.
static LOG_LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Counts a log line dropped by keel's log writer (`keel_log_lines_dropped_total`).
pub fn log_line_dropped() {
    LOG_LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
}

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
    /// The gateway's usage and cost, per tenant, key and model (rendered per model, or per
    /// tenant and model).
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

    /// The exposition text; `runs` are the queue's run counts by status; `per_tenant` labels
    /// the gateway's counters by tenant.
    pub fn render(
        &self,
        runs: &[(String, u64)],
        engine: &keel_engine::EngineStats,
        per_tenant: bool,
    ) -> String {
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
        render_providers(&mut out, &engine.by_provider);
        render_sessions(&mut out, &engine.sessions);
        out += "# HELP keel_store_unreadable_records Stored records this process met that cannot be decoded, and isolated (`keel store check` lists them).\n";
        out += "# TYPE keel_store_unreadable_records counter\n";
        let unreadable = keel_store::unreadable_records_seen();
        let _ = writeln!(out, "keel_store_unreadable_records {unreadable}");
        out += "# HELP keel_log_lines_dropped_total Log lines that could not be written (the log's disk full, its pipe closed) and were dropped.\n";
        out += "# TYPE keel_log_lines_dropped_total counter\n";
        let dropped = LOG_LINES_DROPPED.load(Ordering::Relaxed);
        let _ = writeln!(out, "keel_log_lines_dropped_total {dropped}");
        self.render_gateway(&mut out, per_tenant);
        out
    }

    /// The gateway's counters per model, or per tenant and model (keys are never labels:
    /// cardinality, and a key's prefix names it).
    fn render_gateway(&self, out: &mut String, per_tenant: bool) {
        let totals = self.usage.by_tenant_and_model();
        let rows: Vec<(String, Totals)> = if per_tenant {
            totals
                .into_iter()
                .map(|((tenant, model), t)| {
                    let labels = format!(
                        "tenant=\"{}\",model=\"{}\"",
                        escape(&tenant),
                        escape(&model)
                    );
                    (labels, t)
                })
                .collect()
        } else {
            let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
            for ((_, model), t) in totals {
                let sum = by_model.entry(model).or_default();
                sum.requests += t.requests;
                sum.input_tokens += t.input_tokens;
                sum.output_tokens += t.output_tokens;
                sum.cached_input_tokens += t.cached_input_tokens;
                sum.cost_usd += t.cost_usd;
            }
            by_model
                .into_iter()
                .map(|(model, t)| (format!("model=\"{}\"", escape(&model)), t))
                .collect()
        };
        let by = if per_tenant {
            "tenant and model"
        } else {
            "model"
        };
        let _ = writeln!(
            out,
            "# HELP keel_gateway_requests_total OpenAI-compatible gateway calls served, by {by}."
        );
        *out += "# TYPE keel_gateway_requests_total counter\n";
        for (labels, t) in &rows {
            let _ = writeln!(
                out,
                "keel_gateway_requests_total{{{labels}}} {}",
                t.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP keel_gateway_tokens_total Tokens of gateway calls, by {by} and kind."
        );
        *out += "# TYPE keel_gateway_tokens_total counter\n";
        for (labels, t) in &rows {
            for (kind, count) in [
                ("input", t.input_tokens),
                ("output", t.output_tokens),
                ("cached_input", t.cached_input_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "keel_gateway_tokens_total{{{labels},kind=\"{kind}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP keel_gateway_cost_usd_total Cost of gateway calls in US dollars (catalog prices), by {by}."
        );
        *out += "# TYPE keel_gateway_cost_usd_total counter\n";
        for (labels, t) in &rows {
            let _ = writeln!(
                out,
                "keel_gateway_cost_usd_total{{{labels}}} {}",
                t.cost_usd
            );
        }
    }
}

/// Steps and tokens by the configured provider that served them (`[providers.NAME]`) and its
/// kind, so two providers of one kind are told apart.
fn render_providers(
    out: &mut String,
    by_provider: &BTreeMap<keel_engine::ServedBy, keel_engine::StepTotals>,
) {
    *out += "# HELP keel_provider_steps_total Model steps this node ran, by the configured provider that served them and its kind.\n";
    *out += "# TYPE keel_provider_steps_total counter\n";
    for ((provider, kind), t) in by_provider {
        let _ = writeln!(
            out,
            "keel_provider_steps_total{{provider=\"{}\",provider_kind=\"{}\"}} {}",
            escape(provider),
            escape(kind),
            t.steps
        );
    }
    *out += "# HELP keel_provider_tokens_total Model tokens of the steps this node ran, by the configured provider that served them.\n";
    *out += "# TYPE keel_provider_tokens_total counter\n";
    for ((provider, kind), t) in by_provider {
        for (direction, n) in [("input", t.input_tokens), ("output", t.output_tokens)] {
            let _ = writeln!(
                out,
                "keel_provider_tokens_total{{provider=\"{}\",provider_kind=\"{}\",kind=\"{direction}\"}} {n}",
                escape(provider),
                escape(kind),
            );
        }
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The sessions this node holds in memory: in use, kept warm (and their estimated bytes), and
/// what the warm cache did.
fn render_sessions(out: &mut String, s: &keel_engine::SessionCacheStats) {
    *out += "# HELP keel_sessions_in_memory Sessions in memory: driven, submitted to or followed (in_use), or idle and kept warm (warm).\n";
    *out += "# TYPE keel_sessions_in_memory gauge\n";
    let _ = writeln!(
        out,
        "keel_sessions_in_memory{{state=\"in_use\"}} {}",
        s.in_use
    );
    let _ = writeln!(
        out,
        "keel_sessions_in_memory{{state=\"warm\"}} {}",
        s.entries
    );
    *out += "# HELP keel_session_cache_bytes The estimated bytes of the idle sessions kept warm (bounded by [engine] session_cache_mb).\n";
    *out += "# TYPE keel_session_cache_bytes gauge\n";
    let _ = writeln!(out, "keel_session_cache_bytes {}", s.bytes);
    *out += "# HELP keel_session_cache_total What became of sessions taken up: warm (hit), loaded from the store (load), dropped for room (eviction) or after their idle grace (expiration).\n";
    *out += "# TYPE keel_session_cache_total counter\n";
    for (event, count) in [
        ("hit", s.hits),
        ("load", s.loads),
        ("eviction", s.evictions),
        ("expiration", s.expirations),
    ] {
        let _ = writeln!(out, "keel_session_cache_total{{event=\"{event}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{TenantId, Timestamp, Usage};

    use super::*;

    /// Two tenants' calls to one model, and one tenant's to another.
    fn metrics() -> (Metrics, [TenantId; 2]) {
        let metrics = Metrics::default();
        let tenants = [TenantId::generate(1, 1), TenantId::generate(1, 2)];
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 3,
            cached_input_tokens: 0,
        };
        let at = Timestamp::from_millis(0);
        for (tenant, model) in [
            (&tenants[0], "scripted/echo"),
            (&tenants[1], "scripted/echo"),
            (&tenants[1], "scripted/other"),
        ] {
            metrics
                .usage
                .record(tenant, Some("kk_1"), model, &usage, 0.5, at);
        }
        (metrics, tenants)
    }

    #[test]
    fn gateway_counters_are_summed_over_tenants_by_default() {
        let (metrics, tenants) = metrics();
        let text = metrics.render(&[], &Default::default(), false);
        assert!(
            text.contains("keel_gateway_requests_total{model=\"scripted/echo\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("keel_gateway_requests_total{model=\"scripted/other\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("keel_gateway_tokens_total{model=\"scripted/echo\",kind=\"input\"} 20\n"),
            "{text}"
        );
        assert!(
            text.contains("keel_gateway_cost_usd_total{model=\"scripted/echo\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("tenant"), "{text}");
        assert!(!text.contains(tenants[0].as_str()), "{text}");
        assert!(!text.contains("kk_1"), "{text}");
    }

    #[test]
    fn gateway_counters_are_per_tenant_when_asked() {
        let (metrics, tenants) = metrics();
        let text = metrics.render(&[], &Default::default(), true);
        for tenant in &tenants {
            let line = format!(
                "keel_gateway_requests_total{{tenant=\"{tenant}\",model=\"scripted/echo\"}} 1\n"
            );
            assert!(text.contains(&line), "{text}");
        }
        assert!(!text.contains("kk_1"), "{text}");
    }
}
