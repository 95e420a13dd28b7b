//! Builds an export page from rows as a backend reads them: each column read as its
//! `ColumnType` says, a row with a column that does not read listed as unreadable (named by its
//! key, never dropped silently), and the cursor where the next page starts.

use super::{ColumnType, ExportCursor, ExportPage, StoredRecord, TABLES, TableDef, Value};
use crate::{StoreError, UnreadableRecord};

pub(crate) struct PageBuilder<'a> {
    cursor: &'a ExportCursor,
    limit: usize,
    read: usize,
    last_key: Option<Vec<Value>>,
    page: ExportPage,
}

impl<'a> PageBuilder<'a> {
    /// The table `cursor` is at, and a builder of its page; `Invalid` for a cursor past the
    /// last table.
    pub(crate) fn start(
        cursor: &'a ExportCursor,
        limit: usize,
    ) -> Result<(&'static TableDef, PageBuilder<'a>), StoreError> {
        let def = TABLES.get(cursor.table).ok_or_else(|| {
            StoreError::Invalid(format!(
                "there is no table number {} to export",
                cursor.table
            ))
        })?;
        let builder = PageBuilder {
            cursor,
            limit,
            read: 0,
            last_key: None,
            page: ExportPage::default(),
        };
        Ok((def, builder))
    }

    /// Adds one row, whose column `i` `column(i, type)` reads. A key that does not read stops
    /// the export (`Corrupt`): the walk could not go on past it.
    pub(crate) fn push(
        &mut self,
        column: impl Fn(usize, ColumnType) -> Result<Value, String>,
    ) -> Result<(), StoreError> {
        let def = &TABLES[self.cursor.table];
        let read = |range: std::ops::Range<usize>| -> Result<Vec<Value>, String> {
            range
                .map(|i| {
                    let (name, ty) = def.columns[i];
                    column(i, ty).map_err(|why| format!("its {name} {why}"))
                })
                .collect()
        };
        let key = read(0..def.key).map_err(|why| {
            StoreError::Corrupt(format!(
                "a row of the {} table cannot be read ({why}), so the rows after it cannot be found: \
                 restore the database from a backup",
                def.name
            ))
        })?;
        self.read += 1;
        match read(def.key..def.columns.len()) {
            Ok(rest) => self.page.records.push(StoredRecord {
                table: self.cursor.table,
                values: key.iter().cloned().chain(rest).collect(),
            }),
            Err(reason) => {
                let tenant = def
                    .column("tenant")
                    .and_then(|i| match column(i, ColumnType::Text) {
                        Ok(Value::Text(tenant)) => Some(tenant),
                        _ => None,
                    });
                self.page.unreadable.push(UnreadableRecord {
                    kind: def.name.to_string(),
                    id: def.name_row(&key),
                    tenant,
                    reason,
                });
            }
        }
        self.last_key = Some(key);
        Ok(())
    }

    pub(crate) fn finish(mut self) -> ExportPage {
        self.page.next = self.cursor.advance(self.read, self.limit, self.last_key);
        self.page
    }
}
