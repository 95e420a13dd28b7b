//! Hints from other handles on the same storage (other keel nodes): a session's log grew, a
//! run was asked to stop, a run became claimable. A hint says where to look again, never what
//! is there: the store stays the source of truth, and a node that misses hints (or whose
//! backend gives none) finds the same changes by polling, only later.

use keel_core::{RunId, SessionId};

/// What another handle on the storage changed, as `Store::signals` reports it. A node also
/// hears its own changes; acting on a hint twice must be harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSignal {
    /// The session's log now ends at `last_seq` (or later).
    Appended { session: SessionId, last_seq: u64 },
    /// A cancel was requested for the run.
    CancelRequested { run: RunId },
    /// A run may be claimable now (queued, or its session freed, or a lease released).
    RunClaimable,
    /// Hints may have been lost (the backend's listener reconnected): look again at everything
    /// this node waits on.
    Missed,
}

impl StoreSignal {
    /// The hint as a short text, for backends that carry hints as text (PostgreSQL's NOTIFY).
    pub fn encode(&self) -> String {
        match self {
            StoreSignal::Appended { session, last_seq } => format!("a {session} {last_seq}"),
            StoreSignal::CancelRequested { run } => format!("c {run}"),
            StoreSignal::RunClaimable => "q".into(),
            StoreSignal::Missed => "m".into(),
        }
    }

    /// A hint written by `encode`; `None` for any other text (a newer keel's hint, say).
    pub fn decode(text: &str) -> Option<StoreSignal> {
        let mut words = text.split(' ');
        let signal = match words.next()? {
            "a" => StoreSignal::Appended {
                session: words.next()?.parse().ok()?,
                last_seq: words.next()?.parse().ok()?,
            },
            "c" => StoreSignal::CancelRequested {
                run: words.next()?.parse().ok()?,
            },
            "q" => StoreSignal::RunClaimable,
            "m" => StoreSignal::Missed,
            _ => return None,
        };
        words.next().is_none().then_some(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_reads_back_and_other_text_is_ignored() {
        let signals = [
            StoreSignal::Appended {
                session: SessionId::generate(1, 2),
                last_seq: 42,
            },
            StoreSignal::CancelRequested {
                run: RunId::generate(3, 4),
            },
            StoreSignal::RunClaimable,
            StoreSignal::Missed,
        ];
        for signal in signals {
            assert_eq!(StoreSignal::decode(&signal.encode()), Some(signal));
        }
        for text in [
            "",
            "a",
            "a ses_x",
            "a ses_x 1",
            "z",
            "q extra",
            "c not-a-run",
        ] {
            assert_eq!(StoreSignal::decode(text), None, "{text:?}");
        }
    }
}
