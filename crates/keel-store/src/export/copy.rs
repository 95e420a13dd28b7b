//! Copies every row of one store into another, empty one, a page per transaction, then reads
//! the target back and compares it with what was read from the source (`Census`). Leases are
//! not copied: a run that was running arrives claimable, for the target's nodes to take over.

use super::{Census, ExportCursor, ExportPage, Mismatch, StoredRecord, Value};
use crate::{Store, StoreError, UnreadableRecord};

/// Rows per page: one transaction of the target each.
const PAGE: usize = 500;

/// What a copy did.
#[derive(Clone)]
pub struct CopyReport {
    /// What was read from the source and written to the target.
    pub copied: Census,
    /// Source rows that could not be read, so were not copied.
    pub unreadable: Vec<UnreadableRecord>,
    /// How the target differs from what was copied; `None` when it holds exactly that.
    pub mismatch: Option<Mismatch>,
}

/// A store's pages, one after the other.
struct Pages<'a> {
    store: &'a dyn Store,
    cursor: Option<ExportCursor>,
    limit: usize,
}

impl<'a> Pages<'a> {
    fn of(store: &'a dyn Store, limit: usize) -> Pages<'a> {
        Pages {
            store,
            cursor: Some(ExportCursor::start()),
            limit,
        }
    }

    async fn next(&mut self) -> Result<Option<ExportPage>, StoreError> {
        let Some(cursor) = self.cursor.take() else {
            return Ok(None);
        };
        let page = self.store.export_page(&cursor, self.limit).await?;
        self.cursor = page.next.clone();
        Ok(Some(page))
    }
}

/// `Invalid` naming the first row `store` holds, unless it holds none.
pub async fn ensure_empty(store: &dyn Store) -> Result<(), StoreError> {
    let mut pages = Pages::of(store, 1);
    while let Some(page) = pages.next().await? {
        let held = match (page.records.first(), page.unreadable.first()) {
            (Some(record), _) => format!("its {} table holds {}", record.def().name, record.id()),
            (None, Some(record)) => format!("its {} table holds {}", record.kind, record.id),
            (None, None) => continue,
        };
        return Err(StoreError::Invalid(format!(
            "the target store is not empty: {held} (and maybe more); copy only into an empty store"
        )));
    }
    Ok(())
}

/// Copies every row of `source` into `target` (which must be empty: `ensure_empty`), then
/// checks that the target holds what was copied. An error stops the copy part way: the target
/// then holds part of the source, and must be emptied before trying again.
pub async fn copy_store(source: &dyn Store, target: &dyn Store) -> Result<CopyReport, StoreError> {
    ensure_empty(target).await?;
    let mut copied = Census::default();
    let mut unreadable = Vec::new();
    let mut pages = Pages::of(source, PAGE);
    while let Some(page) = pages.next().await? {
        unreadable.extend(page.unreadable);
        let records: Vec<StoredRecord> = page.records.into_iter().map(without_lease).collect();
        records.iter().for_each(|r| copied.add(r));
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            continue;
        };
        let what = format!("{} {} to {}", first.def().label, first.id(), last.id());
        target.import(records).await.map_err(|e| {
            StoreError::Backend(format!(
                "writing {what} into the target failed: {e}; the target holds part of the copy: \
                 empty it before trying again"
            ))
        })?;
    }
    let found = census(target).await?;
    let mismatch = match found.unreadable.first() {
        Some(record) => Some(Mismatch::Unreadable {
            kind: record.kind.clone(),
            id: record.id.clone(),
        }),
        None => copied.compare(&found.census),
    };
    Ok(CopyReport {
        copied,
        unreadable,
        mismatch,
    })
}

/// Everything a store holds, counted and digested, and the rows it could not read.
struct Found {
    census: Census,
    unreadable: Vec<UnreadableRecord>,
}

/// Reads every row of `store` into a census.
async fn census(store: &dyn Store) -> Result<Found, StoreError> {
    let mut found = Found {
        census: Census::default(),
        unreadable: Vec::new(),
    };
    let mut pages = Pages::of(store, PAGE);
    while let Some(page) = pages.next().await? {
        page.records.iter().for_each(|r| found.census.add(r));
        found.unreadable.extend(page.unreadable);
    }
    Ok(found)
}

/// A run's row without its lease: whoever held it is not a node of the target.
fn without_lease(mut record: StoredRecord) -> StoredRecord {
    if record.def().name == "runs" {
        for column in ["lease_owner", "lease_until"] {
            if let Some(i) = record.def().column(column) {
                record.values[i] = Value::Null;
            }
        }
    }
    record
}
