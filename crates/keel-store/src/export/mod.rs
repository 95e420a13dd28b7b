//! Moving a whole store to another backend (`keel migrate`): every row of every table, read
//! and written as stored — JSON as the same text, nothing decoded — so what one backend holds,
//! readable or not, the other holds too. `tables` is the one list of what is copied.
//!
//! `Store::export_page` walks the rows a page at a time (`ExportCursor`), `Store::import`
//! writes a page in one transaction, and `copy` drives both and checks the result (`census`).

mod census;
mod copy;
mod page;
mod tables;

pub use census::{Census, Mismatch};
pub use copy::{CopyReport, copy_store, ensure_empty};
pub(crate) use page::PageBuilder;
pub(crate) use tables::table_of;
pub use tables::{ColumnType, TABLES, TableDef};

/// One stored value, typed as the column that holds it (`ColumnType`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

/// One row of one table (`TABLES[table]`), its values in the table's column order.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    pub table: usize,
    pub values: Vec<Value>,
}

impl StoredRecord {
    pub fn def(&self) -> &'static TableDef {
        &TABLES[self.table]
    }

    /// The value of column `name` (`Null` for a name the table lacks).
    pub fn get(&self, name: &str) -> &Value {
        self.def()
            .column(name)
            .and_then(|i| self.values.get(i))
            .unwrap_or(&Value::Null)
    }

    /// The row's primary key as text, to name it in messages (`ses_…#12` for an event).
    pub fn id(&self) -> String {
        self.def().name_row(&self.values)
    }
}

/// Where an export goes on: a table, and the key of the last row read of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportCursor {
    /// Index into `TABLES`.
    pub table: usize,
    /// The primary key of the last row read of `table`; `None` to start at its first.
    pub after: Option<Vec<Value>>,
}

impl ExportCursor {
    /// The first row of the first table.
    pub fn start() -> ExportCursor {
        ExportCursor::default()
    }

    /// Where the walk goes on after a page of `read` rows (of a requested `limit`), the
    /// last with key `last_key`: this table after that key while pages come full, else the
    /// next table; `None` after the last table.
    pub(crate) fn advance(
        &self,
        read: usize,
        limit: usize,
        last_key: Option<Vec<Value>>,
    ) -> Option<ExportCursor> {
        match (read >= limit.max(1), last_key) {
            (true, Some(key)) => Some(ExportCursor {
                table: self.table,
                after: Some(key),
            }),
            _ => (self.table + 1 < TABLES.len()).then(|| ExportCursor {
                table: self.table + 1,
                after: None,
            }),
        }
    }
}

/// A page of an export: the rows read, those that could not be (not copied: named with
/// why), and where the walk goes on (`None` when it is over).
#[derive(Clone, Debug, Default)]
pub struct ExportPage {
    pub records: Vec<StoredRecord>,
    pub unreadable: Vec<crate::UnreadableRecord>,
    pub next: Option<ExportCursor>,
}
