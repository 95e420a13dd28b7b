//! The tables a store holds, as both backends lay them out (the same names and columns): the
//! one list `export_page` and `import` walk, in an order that writes every row after the rows
//! it refers to (keys after their tenant, events after their session). A column added to a
//! backend's schema is added here, or it is not moved (`every_column_is_listed` tests it).

use super::Value;
use crate::StoreError;

/// How a column's values are read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    Real,
    /// SQLite: an INTEGER 0 or 1; PostgreSQL: BOOLEAN.
    Bool,
    /// Bytes in both (a key's hash).
    Blob,
    /// Text keel does not encode itself (a scratchpad value, a run's output): SQLite TEXT,
    /// PostgreSQL BYTEA (which holds a NUL that its text cannot).
    Opaque,
}

use ColumnType::{Blob, Bool, Int, Opaque, Real, Text};

/// One table: its name, what its rows are called, its columns, and how many of the first
/// columns make its primary key (the order an export walks it in).
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    /// What its rows are, for summaries ("API keys").
    pub label: &'static str,
    pub columns: &'static [(&'static str, ColumnType)],
    pub key: usize,
}

pub static TABLES: &[TableDef] = &[
    TableDef {
        name: "tenants",
        label: "tenants",
        columns: &[("id", Text), ("name", Text), ("created_at", Int)],
        key: 1,
    },
    TableDef {
        name: "api_keys",
        label: "API keys",
        columns: &[
            ("prefix", Text),
            ("tenant", Text),
            ("scope", Text),
            ("secret_hash", Blob),
            ("created_at", Int),
            ("revoked_at", Int),
        ],
        key: 1,
    },
    TableDef {
        name: "agents",
        label: "agent versions",
        columns: &[
            ("tenant", Text),
            ("name", Text),
            ("version", Int),
            ("id", Text),
            ("def", Text),
        ],
        key: 3,
    },
    TableDef {
        name: "archived_agents",
        label: "archived agents",
        columns: &[("tenant", Text), ("name", Text), ("archived_at", Int)],
        key: 2,
    },
    TableDef {
        name: "sessions",
        label: "sessions",
        columns: &[
            ("id", Text),
            ("tenant", Text),
            ("agent_id", Text),
            ("agent_name", Text),
            ("agent_version", Int),
            ("created_at", Int),
            ("metadata", Text),
            ("last_seq", Int),
            ("exported_at", Int),
            ("exported_to", Text),
        ],
        key: 1,
    },
    TableDef {
        name: "events",
        label: "events",
        columns: &[
            ("session", Text),
            ("seq", Int),
            ("type", Text),
            ("at", Int),
            ("body", Text),
            ("hash", Text),
        ],
        key: 2,
    },
    TableDef {
        name: "snapshots",
        label: "snapshots",
        columns: &[("session", Text), ("seq", Int), ("state", Text)],
        key: 1,
    },
    TableDef {
        name: "scratchpad",
        label: "scratchpad values",
        columns: &[("session", Text), ("key", Text), ("value", Opaque)],
        key: 2,
    },
    TableDef {
        name: "runs",
        label: "runs",
        columns: &[
            ("id", Text),
            ("tenant", Text),
            ("session", Text),
            ("input", Text),
            ("status", Text),
            ("created_at", Int),
            ("output", Opaque),
            ("error", Opaque),
            ("cancel_requested", Bool),
            ("lease_owner", Text),
            ("lease_until", Int),
            ("options", Text),
            ("input_seq", Int),
        ],
        key: 1,
    },
    TableDef {
        name: "timers",
        label: "timers",
        columns: &[
            ("id", Text),
            ("tenant", Text),
            ("session", Text),
            ("schedule", Text),
            ("note", Text),
            ("next_at", Int),
            ("created_at", Int),
            ("fired", Int),
            ("last_fired_at", Int),
            ("agent", Text),
        ],
        key: 1,
    },
    TableDef {
        name: "webhooks",
        label: "webhooks",
        columns: &[
            ("id", Text),
            ("tenant", Text),
            ("direction", Text),
            ("session", Text),
            ("agent", Text),
            ("token_hash", Blob),
            ("url", Text),
            ("events", Text),
            ("secret", Text),
            ("signed", Bool),
            ("allow_private", Bool),
            ("created_at", Int),
        ],
        key: 1,
    },
    TableDef {
        name: "webhook_deliveries",
        label: "webhook deliveries",
        columns: &[
            ("id", Text),
            ("tenant", Text),
            ("webhook", Text),
            ("event", Text),
            ("payload", Text),
            ("created_at", Int),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("delivered_at", Int),
            ("failed_at", Int),
            ("last_error", Text),
        ],
        key: 1,
    },
    TableDef {
        name: "webhook_replays",
        label: "inbound webhook signatures seen",
        columns: &[("webhook", Text), ("signature", Text), ("expires_at", Int)],
        key: 2,
    },
    TableDef {
        name: "memory_records",
        label: "memory records",
        columns: &[
            ("tenant", Text),
            ("id", Text),
            ("namespace", Text),
            ("text", Text),
            ("metadata", Text),
            ("embedding", Blob),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        key: 2,
    },
    TableDef {
        name: "memory_blocks",
        label: "memory blocks",
        columns: &[
            ("tenant", Text),
            ("scope", Text),
            ("label", Text),
            ("session", Text),
            ("value", Text),
            ("char_limit", Int),
            ("description", Text),
            ("version", Int),
            ("updated_at", Int),
        ],
        key: 3,
    },
    TableDef {
        name: "memory_block_history",
        label: "memory block edits",
        columns: &[
            ("tenant", Text),
            ("label", Text),
            ("version", Int),
            ("before", Text),
            ("after", Text),
            ("by", Text),
            ("session", Text),
            ("run", Text),
            ("at", Int),
        ],
        key: 3,
    },
    TableDef {
        name: "usage_totals",
        label: "usage totals",
        columns: &[
            ("tenant", Text),
            ("day", Text),
            ("key_prefix", Text),
            ("model", Text),
            ("requests", Int),
            ("input_tokens", Int),
            ("output_tokens", Int),
            ("cached_input_tokens", Int),
            ("cost_usd", Real),
        ],
        key: 4,
    },
];

impl TableDef {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(c, _)| *c == name)
    }

    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    fn key_list(&self) -> String {
        let names: Vec<&str> = self.columns[..self.key].iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// The statement reading a page in key order: after the key bound at parameters
    /// `1..=key` when `after`, at most as many rows as the next parameter says. `mark` is the
    /// backend's parameter sign (`?` for SQLite, `$` for PostgreSQL).
    pub(crate) fn select_sql(&self, after: bool, mark: char) -> String {
        let (columns, key) = (self.column_list(), self.key_list());
        let limit = format!("{mark}{}", if after { self.key + 1 } else { 1 });
        let filter = match after {
            true => format!("WHERE ({key}) > ({})", params(mark, 1, self.key)),
            false => String::new(),
        };
        format!(
            "SELECT {columns} FROM {} {filter} ORDER BY {key} LIMIT {limit}",
            self.name
        )
    }

    /// The statement writing one row, every column bound in order.
    pub(crate) fn insert_sql(&self, mark: char) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            self.column_list(),
            params(mark, 1, self.columns.len())
        )
    }

    /// A row's primary key as text: its key values joined by `/` (`ses_…/12` for an event).
    pub fn name_row(&self, values: &[Value]) -> String {
        let parts: Vec<String> = values.iter().take(self.key).map(value_text).collect();
        parts.join("/")
    }
}

/// `?1, ?2, …` (or `$1, …`) for parameters `first..first + count`.
fn params(mark: char, first: usize, count: usize) -> String {
    let marks: Vec<String> = (first..first + count)
        .map(|i| format!("{mark}{i}"))
        .collect();
    marks.join(", ")
}

/// The table a record of `import` goes to, once its values fit that table's columns (a value
/// of the column's type, or `Null`), else `Invalid` naming the record.
pub(crate) fn table_of(record: &super::StoredRecord) -> Result<&'static TableDef, StoreError> {
    let def = TABLES.get(record.table).ok_or_else(|| {
        StoreError::Invalid(format!(
            "there is no table number {} to import into",
            record.table
        ))
    })?;
    let misfit = match record.values.len() == def.columns.len() {
        false => Some(format!(
            "{} values for {} columns",
            record.values.len(),
            def.columns.len()
        )),
        true => def
            .columns
            .iter()
            .zip(&record.values)
            .find_map(|((name, ty), value)| {
                (!fits(*ty, value))
                    .then(|| format!("{value:?} does not fit its column {name} ({ty:?})"))
            }),
    };
    match misfit {
        None => Ok(def),
        Some(why) => Err(StoreError::Invalid(format!(
            "the {} row {} cannot be imported: {why}",
            def.name,
            def.name_row(&record.values)
        ))),
    }
}

fn fits(ty: ColumnType, value: &Value) -> bool {
    matches!(
        (ty, value),
        (_, Value::Null)
            | (Text | Opaque, Value::Text(_))
            | (Int, Value::Int(_))
            | (Real, Value::Real(_))
            | (Bool, Value::Bool(_))
            | (Blob, Value::Bytes(_))
    )
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Int(n) => n.to_string(),
        Value::Real(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => t.clone(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_in_key_order_after_the_last_key() {
        let events = TABLES.iter().find(|t| t.name == "events").unwrap();
        assert_eq!(
            events.select_sql(true, '$'),
            "SELECT session, seq, type, at, body, hash FROM events WHERE (session, seq) > ($1, $2) \
             ORDER BY session, seq LIMIT $3"
        );
        assert_eq!(
            events.select_sql(false, '?'),
            "SELECT session, seq, type, at, body, hash FROM events  ORDER BY session, seq LIMIT ?1"
        );
        assert_eq!(
            events.insert_sql('?'),
            "INSERT INTO events (session, seq, type, at, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        );
    }

    #[test]
    fn rows_come_after_the_rows_they_refer_to() {
        let at = |name: &str| TABLES.iter().position(|t| t.name == name).unwrap();
        assert!(at("tenants") < at("api_keys"));
        for child in ["events", "snapshots", "scratchpad", "runs"] {
            assert!(at("sessions") < at(child), "{child}");
        }
    }
}
