//! The tamper-evident journal: every event stored carries a hash that covers its predecessor's
//! hash, so a session's log is a chain and changing any byte of an event (or dropping one)
//! breaks it from there on. Both backends hash here, as they append, and `verify` walks a chain.
//!
//! A record is `sha256:` and 64 lowercase hex digits: SHA-256 over the canonical encoding
//!
//! ```text
//! <previous record, or nothing at the chain's start> \n <seq> \n <at, ms since the epoch> \n <type> \n <body>
//! ```
//!
//! where `<body>` is the event's JSON exactly as stored (`encode.rs`'s text). Events stored
//! before keel hashed its journal have no record; the chain starts at the first event that has
//! one (its previous record counts as nothing), and `verify` reports how many came before.

use keel_core::{SessionId, Timestamp};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// The algorithm a record names, as its prefix.
pub const ALGORITHM: &str = "sha256";

/// An event as stored, with its record: what `Store::read_journal` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: String,
    /// The body's JSON text as stored.
    pub body: String,
    /// `None` for an event stored before keel hashed its journal.
    pub hash: Option<String>,
}

/// The record of the event `seq` (stored at `at`, of type `kind`, with body text `body`)
/// following the record `previous` (`None` at the chain's start).
pub fn event_hash(
    previous: Option<&str>,
    seq: u64,
    at: Timestamp,
    kind: &str,
    body: &str,
) -> String {
    let mut digest = Sha256::new();
    digest.update(previous.unwrap_or_default().as_bytes());
    digest.update(format!("\n{seq}\n{}\n{kind}\n", at.millis()).as_bytes());
    digest.update(body.as_bytes());
    let mut record = String::with_capacity(ALGORITHM.len() + 1 + 64);
    record.push_str(ALGORITHM);
    record.push(':');
    for byte in digest.finalize() {
        record.push_str(&format!("{byte:02x}"));
    }
    record
}

/// The last record a store handle appended to each session (its chain's tip), so that the next
/// append there need not read it back: on PostgreSQL that read is a round trip of its own. A
/// record once stored never changes, so a remembered (seq, record) stays true; an append after
/// another seq (another node appended since) misses and reads. At most `TIPS` sessions are
/// remembered; past that the memory starts afresh.
#[derive(Debug, Default)]
pub(crate) struct ChainTips(std::sync::Mutex<std::collections::HashMap<SessionId, (u64, String)>>);

/// How many sessions' tips a store handle remembers (about 150 bytes each).
const TIPS: usize = 10_000;

impl ChainTips {
    /// The record of the session's event `seq`, if it is the tip remembered.
    pub(crate) fn get(&self, session: &SessionId, seq: u64) -> Option<String> {
        let tips = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tips.get(session)
            .filter(|(tip, _)| *tip == seq)
            .map(|(_, record)| record.clone())
    }

    pub(crate) fn set(&self, session: &SessionId, seq: u64, record: String) {
        let mut tips = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tips.len() >= TIPS && !tips.contains_key(session) {
            tips.clear();
        }
        tips.insert(session.clone(), (seq, record));
    }

    pub(crate) fn forget(&self, session: &SessionId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}

/// What walking a session's chain found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub session: SessionId,
    /// How each record is made (see the module's doc).
    pub algorithm: &'static str,
    /// Events read.
    pub events: u64,
    /// Events at the start of the log stored before keel hashed its journal (no record).
    pub unhashed: u64,
    /// Whether every hashed event's record is the one its content and predecessor give.
    pub intact: bool,
    /// The first event whose record does not match (or is missing, or whose seq is out of
    /// place): where the log was changed.
    pub first_bad_seq: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
    /// The record of the last event that checked out: the chain's tip when it is intact. Kept
    /// somewhere else, it shows a later rewrite of the whole chain too.
    pub last_record: Option<String>,
}

/// Walks `entries` (a session's events from seq 1, ascending) as one chain (also over rows
/// as `export` reads them, by `export::Census`).
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    report: ChainReport,
}

impl Walk {
    pub(crate) fn new(session: &SessionId) -> Walk {
        Walk {
            report: ChainReport {
                session: session.clone(),
                algorithm: ALGORITHM,
                events: 0,
                unhashed: 0,
                intact: true,
                first_bad_seq: None,
                problem: None,
                last_record: None,
            },
        }
    }

    /// What the walk found so far.
    pub(crate) fn report(&self) -> &ChainReport {
        &self.report
    }

    /// Takes the next entry; `false` once the chain is found broken.
    pub(crate) fn step(&mut self, entry: &JournalEntry) -> bool {
        let expected_seq = self.report.events + 1;
        self.report.events += 1;
        if entry.seq != expected_seq {
            return self.broken(expected_seq, format!("seq {expected_seq} is missing"));
        }
        match &entry.hash {
            None if self.report.last_record.is_none() && self.report.unhashed + 1 == entry.seq => {
                self.report.unhashed += 1;
                true
            }
            None => self.broken(entry.seq, "its hash is missing".into()),
            Some(stored) => {
                let computed = event_hash(
                    self.report.last_record.as_deref(),
                    entry.seq,
                    entry.at,
                    &entry.kind,
                    &entry.body,
                );
                if *stored != computed {
                    return self.broken(
                        entry.seq,
                        "its hash does not match its content and its predecessor's hash".into(),
                    );
                }
                self.report.last_record = Some(computed);
                true
            }
        }
    }

    fn broken(&mut self, seq: u64, problem: String) -> bool {
        self.report.intact = false;
        self.report.first_bad_seq = Some(seq);
        self.report.problem = Some(format!("event {seq}: {problem}"));
        false
    }
}

/// How many events one read of a chain asks for.
const PAGE: usize = 1000;

/// Walks the session's whole chain, a page at a time, stopping at the first bad event.
/// `NotFound` for an unknown session.
pub async fn verify(store: &dyn Store, session: &SessionId) -> Result<ChainReport, StoreError> {
    let mut walk = Walk::new(session);
    let mut after = 0;
    loop {
        let page = store.read_journal(session, after, PAGE).await?;
        for entry in &page {
            if !walk.step(entry) {
                return Ok(walk.report);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => return Ok(walk.report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<JournalEntry> {
        let mut previous: Option<String> = None;
        (1..=n)
            .map(|seq| {
                let at = Timestamp::from_millis(1_000 + seq as i64);
                let body = format!(r#"{{"n":{seq}}}"#);
                let hash = event_hash(previous.as_deref(), seq, at, "messages_added", &body);
                previous = Some(hash.clone());
                JournalEntry {
                    seq,
                    at,
                    kind: "messages_added".into(),
                    body,
                    hash: Some(hash),
                }
            })
            .collect()
    }

    fn walk(entries: &[JournalEntry]) -> ChainReport {
        let mut walk = Walk::new(&SessionId::generate(1, 1));
        for entry in entries {
            if !walk.step(entry) {
                break;
            }
        }
        walk.report
    }

    #[test]
    fn a_record_names_its_algorithm_and_covers_every_field() {
        let at = Timestamp::from_millis(5);
        let base = event_hash(None, 1, at, "t", "{}");
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        for other in [
            event_hash(Some("sha256:00"), 1, at, "t", "{}"),
            event_hash(None, 2, at, "t", "{}"),
            event_hash(None, 1, Timestamp::from_millis(6), "t", "{}"),
            event_hash(None, 1, at, "u", "{}"),
            event_hash(None, 1, at, "t", "{ }"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_names_its_seq() {
        let good = chain(5);
        assert!(walk(&good).intact);
        let mut edited = good.clone();
        edited[2].body = r#"{"n":9}"#.into();
        let report = walk(&edited);
        assert_eq!((report.intact, report.first_bad_seq), (false, Some(3)));
        let mut rehashed = good.clone();
        rehashed[1].hash = Some(event_hash(None, 2, rehashed[1].at, "x", "{}"));
        assert_eq!(walk(&rehashed).first_bad_seq, Some(2));
        let mut dropped = good.clone();
        dropped.remove(3);
        assert_eq!(walk(&dropped).first_bad_seq, Some(4));
        let mut unhashed = good;
        unhashed[4].hash = None;
        assert_eq!(walk(&unhashed).first_bad_seq, Some(5));
    }

    #[test]
    fn events_from_before_the_journal_was_hashed_start_the_chain_later() {
        let mut entries = chain(2);
        for e in &mut entries {
            e.hash = None;
        }
        let at = Timestamp::from_millis(9);
        let third = JournalEntry {
            seq: 3,
            at,
            kind: "t".into(),
            body: "{}".into(),
            hash: Some(event_hash(None, 3, at, "t", "{}")),
        };
        entries.push(third);
        let report = walk(&entries);
        assert!(report.intact, "{report:?}");
        assert_eq!((report.events, report.unhashed), (3, 2));
    }
}
