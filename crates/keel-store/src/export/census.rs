//! What a store holds, in a form two stores can be compared by after a copy: how many rows of
//! each table, a SHA-256 digest of each table's rows in key order, and one of each session's
//! events (seq, type, time and body as stored), so a mismatch names the session it is in. It
//! also walks each session's hash chain (`chain.rs`) and keeps the first that is broken.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{StoredRecord, TABLES, Value};
use crate::chain::{ChainReport, JournalEntry, Walk};

type Sum = [u8; 32];

/// Counts and digests of the rows seen so far (`add` them in export order: a session's events
/// one after the other, so only the digest of the session being read is open).
#[derive(Clone)]
pub struct Census {
    counts: Vec<u64>,
    tables: Vec<Sha256>,
    sessions: BTreeMap<String, Sum>,
    open: Option<(String, Sha256)>,
    /// The open session's chain, until it is found broken.
    chain: Option<Walk>,
    broken: Option<ChainReport>,
}

impl Default for Census {
    fn default() -> Self {
        Census {
            counts: vec![0; TABLES.len()],
            tables: vec![Sha256::new(); TABLES.len()],
            sessions: BTreeMap::new(),
            open: None,
            chain: None,
            broken: None,
        }
    }
}

/// The first difference between two censuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// A table holds another number of rows on each side.
    Count {
        label: &'static str,
        source: u64,
        target: u64,
    },
    /// A session's events differ (or the session is on one side only).
    Events { session: String },
    /// A table's rows differ, with the same count on both sides.
    Rows { label: &'static str },
    /// The target cannot read back a row it was given.
    Unreadable { kind: String, id: String },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Count {
                label,
                source,
                target,
            } => write!(f, "the source holds {source} {label}, the target {target}"),
            Mismatch::Events { session } => write!(
                f,
                "the events of session {session} differ between the source and the target"
            ),
            Mismatch::Rows { label } => write!(
                f,
                "the {label} differ between the source and the target (same count)"
            ),
            Mismatch::Unreadable { kind, id } => {
                write!(f, "the target cannot read back its {kind} {id}")
            }
        }
    }
}

impl Census {
    pub fn add(&mut self, record: &StoredRecord) {
        self.counts[record.table] += 1;
        let table = &mut self.tables[record.table];
        for value in &record.values {
            hash_value(table, value);
        }
        if record.def().name == "events"
            && let Value::Text(session) = record.get("session")
        {
            if self.open.as_ref().is_none_or(|(open, _)| open != session) {
                if let Some((done, digest)) = self.open.take() {
                    self.sessions.insert(done, digest.finalize().into());
                }
                self.open = Some((session.clone(), Sha256::new()));
                self.chain = session.parse().ok().map(|id| Walk::new(&id));
            }
            self.walk_chain(record);
            if let Some((_, digest)) = &mut self.open {
                for value in &record.values[1..] {
                    hash_value(digest, value);
                }
            }
        }
    }

    /// Takes an event into its session's chain; keeps the first chain found broken.
    fn walk_chain(&mut self, record: &StoredRecord) {
        let Some(walk) = &mut self.chain else { return };
        let entry = match (
            record.get("seq"),
            record.get("at"),
            record.get("type"),
            record.get("body"),
            record.get("hash"),
        ) {
            (Value::Int(seq), Value::Int(at), Value::Text(kind), Value::Text(body), hash) => {
                JournalEntry {
                    seq: u64::try_from(*seq).unwrap_or(0),
                    at: keel_core::Timestamp::from_millis(*at),
                    kind: kind.clone(),
                    body: body.clone(),
                    hash: match hash {
                        Value::Text(hash) => Some(hash.clone()),
                        _ => None,
                    },
                }
            }
            _ => return,
        };
        if !walk.step(&entry) {
            self.broken.get_or_insert_with(|| walk.report().clone());
            self.chain = None;
        }
    }

    /// The first session whose hash chain is broken (an event changed or missing), if any.
    pub fn broken_chain(&self) -> Option<&ChainReport> {
        self.broken.as_ref()
    }

    /// Rows per table, with the tables' labels, in `TABLES` order.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        TABLES
            .iter()
            .map(|t| t.label)
            .zip(self.counts.iter().copied())
    }

    /// How many rows in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The first way `target` differs from `self`: counts, then each session's events, then
    /// each table's rows.
    pub fn compare(&self, target: &Census) -> Option<Mismatch> {
        for (i, table) in TABLES.iter().enumerate() {
            if self.counts[i] != target.counts[i] {
                return Some(Mismatch::Count {
                    label: table.label,
                    source: self.counts[i],
                    target: target.counts[i],
                });
            }
        }
        let (ours, theirs) = (self.session_sums(), target.session_sums());
        if let Some(session) = ours
            .keys()
            .chain(theirs.keys())
            .find(|s| ours.get(*s) != theirs.get(*s))
        {
            return Some(Mismatch::Events {
                session: session.to_string(),
            });
        }
        TABLES
            .iter()
            .zip(self.tables.iter().zip(&target.tables))
            .find(|(_, (a, b))| Sha256::clone(a).finalize() != Sha256::clone(b).finalize())
            .map(|(table, _)| Mismatch::Rows { label: table.label })
    }

    /// Each session's events digest, the open one finished too.
    fn session_sums(&self) -> BTreeMap<&str, Sum> {
        let mut sums: BTreeMap<&str, Sum> = self
            .sessions
            .iter()
            .map(|(s, sum)| (s.as_str(), *sum))
            .collect();
        if let Some((session, digest)) = &self.open {
            sums.insert(session, digest.clone().finalize().into());
        }
        sums
    }
}

/// Feeds one value, tagged with its type and its length, so no two rows hash alike by
/// running into each other.
fn hash_value(digest: &mut Sha256, value: &Value) {
    let framed = |digest: &mut Sha256, tag: u8, bytes: &[u8]| {
        digest.update([tag]);
        digest.update((bytes.len() as u64).to_be_bytes());
        digest.update(bytes);
    };
    match value {
        Value::Null => framed(digest, 0, &[]),
        Value::Int(n) => framed(digest, 1, &n.to_be_bytes()),
        Value::Real(x) => framed(digest, 2, &x.to_bits().to_be_bytes()),
        Value::Bool(b) => framed(digest, 3, &[u8::from(*b)]),
        Value::Text(t) => framed(digest, 4, t.as_bytes()),
        Value::Bytes(b) => framed(digest, 5, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(session: &str, seq: i64, body: &str) -> StoredRecord {
        let table = TABLES.iter().position(|t| t.name == "events").unwrap();
        StoredRecord {
            table,
            values: vec![
                Value::Text(session.into()),
                Value::Int(seq),
                Value::Text("note".into()),
                Value::Int(1),
                Value::Text(body.into()),
            ],
        }
    }

    #[test]
    fn a_changed_event_is_named_by_its_session() {
        let (mut a, mut b) = (Census::default(), Census::default());
        for census in [&mut a, &mut b] {
            census.add(&event("ses_1", 1, "{}"));
        }
        a.add(&event("ses_2", 1, r#"{"a":1}"#));
        b.add(&event("ses_2", 1, r#"{"a":2}"#));
        assert_eq!(a.compare(&a.clone()), None);
        assert_eq!(
            a.compare(&b),
            Some(Mismatch::Events {
                session: "ses_2".into()
            })
        );
        b.add(&event("ses_3", 1, "{}"));
        assert!(matches!(
            a.compare(&b),
            Some(Mismatch::Count {
                source: 2,
                target: 3,
                ..
            })
        ));
    }
}
