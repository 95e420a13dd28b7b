//! Records that cannot be decoded — damaged, edited by hand, or written by a newer keel — are
//! isolated: a reader that walks many rows skips such a row (logged once, counted) and goes on,
//! and a queued run that cannot be read is failed with a message naming it, so one bad record
//! never stops anyone else's work. `Store::unreadable_records` lists what is there.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Distinct unreadable records met by this process (for the metric).
static SEEN: AtomicU64 = AtomicU64::new(0);
/// Records already logged; bounded, so a flood of bad rows cannot grow memory without end.
static LOGGED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
const LOGGED_MAX: usize = 10_000;

/// How many distinct unreadable records this process has met and isolated.
pub fn unreadable_records_seen() -> u64 {
    SEEN.load(Ordering::Relaxed)
}

/// Notes that the `kind` record `id` could not be decoded and was isolated: logged and counted
/// the first time it is met.
pub fn isolated(kind: &str, id: &str, error: &dyn std::fmt::Display) {
    let key = format!("{kind} {id}");
    let mut logged = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
    let logged = logged.get_or_insert_with(HashSet::new);
    if logged.contains(&key) {
        return;
    }
    if logged.len() < LOGGED_MAX {
        logged.insert(key);
    }
    SEEN.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        kind,
        id,
        error = %error,
        "a stored record cannot be read; it is isolated and everything else goes on \
         (`keel store check` lists such records)"
    );
}

/// The text of column `index` as an id for messages, whatever the row holds there.
pub(crate) fn row_id(row: &rusqlite::Row<'_>, index: usize) -> String {
    match row.get_ref(index) {
        Ok(rusqlite::types::ValueRef::Text(text)) => String::from_utf8_lossy(text).into_owned(),
        Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
        Ok(other) => format!("{other:?}"),
        Err(_) => "?".into(),
    }
}
