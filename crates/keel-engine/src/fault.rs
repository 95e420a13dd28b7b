//! Named fault points for crash tests. When `KEEL_FAULT_PAUSE=<point>[:<n>]` is set, the n-th
//! time (default 1st) the driver reaches `<point>` it prints `keel-fault-point: <point>` to
//! stderr and stops there, so a test can SIGKILL the real process at exactly that moment.
//! Unset (always, in production) it costs one load of a cached value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the driver can be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// `ModelCalled` is logged; the model has not been asked.
    ModelIntentLogged,
    /// The model's reply is streaming; nothing of it is logged.
    ModelStreaming,
    /// `ToolCalled` is logged; the tool has not run.
    ToolIntentLogged,
    /// The external tool ran; its result is not logged.
    ToolPerformed,
    /// `ToolReturned` is logged.
    ToolResultLogged,
    /// `CompactionStarted` is logged; the summariser has not been asked.
    CompactionIntentLogged,
}

impl FaultPoint {
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::ModelIntentLogged => "model_intent_logged",
            FaultPoint::ModelStreaming => "model_streaming",
            FaultPoint::ToolIntentLogged => "tool_intent_logged",
            FaultPoint::ToolPerformed => "tool_performed",
            FaultPoint::ToolResultLogged => "tool_result_logged",
            FaultPoint::CompactionIntentLogged => "compaction_intent_logged",
        }
    }
}

struct Armed {
    point: String,
    nth: u32,
    hits: AtomicU32,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("KEEL_FAULT_PAUSE").ok()?;
            let (point, nth) = match spec.split_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                point,
                nth,
                hits: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Stops here forever if this point is armed and this is its n-th hit.
pub async fn point(p: FaultPoint) {
    let Some(armed) = armed() else { return };
    if armed.point != p.name() || armed.hits.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
        return;
    }
    tracing::warn!(point = p.name(), "paused at fault point");
    eprintln!("keel-fault-point: {}", p.name());
    std::future::pending::<()>().await;
}
