//! `export_page` and `import` for SQLite: rows read and written as stored, table by table as
//! `export::TABLES` lists them, so nothing is decoded on the way (`keel migrate`).

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params_from_iter};

use crate::StoreError;
use crate::export::{
    ColumnType, ExportCursor, ExportPage, PageBuilder, StoredRecord, Value, table_of,
};
use crate::stored::sql_limit;

pub(crate) fn export_page(
    conn: &Connection,
    cursor: &ExportCursor,
    limit: usize,
) -> Result<ExportPage, StoreError> {
    let (def, mut page) = PageBuilder::start(cursor, limit)?;
    let mut params: Vec<SqlValue> = cursor.after.iter().flatten().map(to_sql).collect();
    params.push(SqlValue::Integer(sql_limit(limit)));
    let mut stmt = conn.prepare_cached(&def.select_sql(cursor.after.is_some(), '?'))?;
    let mut rows = stmt.query(params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        page.push(|i, ty| match row.get_ref(i) {
            Ok(value) => from_sql(value, ty),
            Err(e) => Err(e.to_string()),
        })?;
    }
    Ok(page.finish())
}

/// Writes `records` as they are; the writer's savepoint makes them one transaction. A row
/// already there is `AlreadyExists`.
pub(crate) fn import(conn: &Connection, records: &[StoredRecord]) -> Result<(), StoreError> {
    for record in records {
        let def = table_of(record)?;
        conn.prepare_cached(&def.insert_sql('?'))?
            .execute(params_from_iter(record.values.iter().map(to_sql)))
            .map_err(|e| match super::error::is_duplicate(&e) {
                true => StoreError::AlreadyExists(format!("the {} row {}", def.name, record.id())),
                false => e.into(),
            })?;
    }
    Ok(())
}

fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Int(n) => SqlValue::Integer(*n),
        Value::Real(x) => SqlValue::Real(*x),
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Text(t) => SqlValue::Text(t.clone()),
        Value::Bytes(b) => SqlValue::Blob(b.clone()),
    }
}

/// A stored value as its column's type, or why it is not one.
fn from_sql(value: ValueRef<'_>, ty: ColumnType) -> Result<Value, String> {
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .map(Value::Text)
            .map_err(|e| format!("is not UTF-8 text ({e})"))
    };
    match (ty, value) {
        (_, ValueRef::Null) => Ok(Value::Null),
        (ColumnType::Text | ColumnType::Opaque, ValueRef::Text(bytes)) => text(bytes),
        (ColumnType::Int, ValueRef::Integer(n)) => Ok(Value::Int(n)),
        (ColumnType::Real, ValueRef::Real(x)) => Ok(Value::Real(x)),
        (ColumnType::Real, ValueRef::Integer(n)) => Ok(Value::Real(n as f64)),
        (ColumnType::Bool, ValueRef::Integer(n)) => Ok(Value::Bool(n != 0)),
        (ColumnType::Blob, ValueRef::Blob(bytes)) => Ok(Value::Bytes(bytes.to_vec())),
        (ty, other) => Err(format!(
            "holds {:?} where {ty:?} belongs",
            other.data_type()
        )),
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{Message, RunId, RunStatus, SessionId, TenantId, Timestamp};
    use rusqlite::Connection;

    use crate::export::{TABLES, copy_store};
    use crate::sqlite::schema;
    use crate::{
        AppendBatch, NewEvent, RunOutcome, RunRecord, SessionRecord, SqliteOptions, SqliteStore,
        Store,
    };

    /// A row that does not decode moves as it is; one whose columns cannot even be read as
    /// their types is listed by its key, not copied, and everything else moves.
    #[tokio::test]
    async fn damaged_rows_move_as_they_are_or_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a.db"), dir.path().join("b.db"));
        let (tenant, session) = (TenantId::generate(1, 1), SessionId::generate(1, 2));
        let run_id = RunId::generate(1, 3);
        {
            let store = SqliteStore::open(SqliteOptions::new(&from)).unwrap();
            let record = SessionRecord {
                id: session.clone(),
                tenant: tenant.clone(),
                agent_id: keel_core::AgentId::generate(1, 4),
                agent_name: "a".into(),
                agent_version: 1,
                created_at: Timestamp::from_millis(1),
                metadata: Default::default(),
                last_seq: 0,
            };
            store.create_session(&record, Vec::new()).await.unwrap();
            let note = |text: &str| NewEvent {
                at: Timestamp::from_millis(2),
                body: keel_core::EventBody::RunStarted {
                    run_id: RunId::generate(1, 1),
                    input: Message::user(text),
                    options: Box::default(),
                },
            };
            let batch = AppendBatch::events(vec![note("one"), note("two")]);
            store.append(&session, 0, batch).await.unwrap();
            let run = RunRecord {
                id: run_id.clone(),
                tenant: tenant.clone(),
                session: session.clone(),
                input: Message::user("go"),
                options: Default::default(),
                status: RunStatus::Queued,
                created_at: Timestamp::from_millis(3),
                output: None,
                error: None,
                cancel_requested: false,
                lease_owner: None,
                lease_until: None,
            };
            store.enqueue_run(&run).await.unwrap();
            let outcome = RunOutcome {
                output: Some("done".into()),
                error: None,
            };
            store
                .finish_run(&run_id, RunStatus::Completed, outcome)
                .await
                .unwrap();
        }
        let conn = Connection::open(&from).unwrap();
        conn.execute_batch(
            "UPDATE events SET body = '{not json' WHERE seq = 1;
             UPDATE runs SET output = x'fffe';",
        )
        .unwrap();
        drop(conn);

        let source = SqliteStore::open(SqliteOptions::new(&from)).unwrap();
        let target = SqliteStore::open(SqliteOptions::new(&to)).unwrap();
        let report = copy_store(&source, &target).await.unwrap();
        assert_eq!(report.mismatch, None);
        let broken = report
            .copied
            .broken_chain()
            .expect("the edited event breaks its chain");
        assert_eq!((&broken.session, broken.first_bad_seq), (&session, Some(1)));
        assert_eq!(report.unreadable.len(), 1, "{:?}", report.unreadable);
        let named = &report.unreadable[0];
        assert_eq!(
            (named.kind.as_str(), named.id.as_str()),
            ("runs", run_id.as_str())
        );
        assert!(named.reason.contains("output"), "{}", named.reason);
        assert_eq!(target.get_run(&tenant, &run_id).await.unwrap(), None);
        let (kept, copied) = (
            source.unreadable_records(10).await.unwrap(),
            target.unreadable_records(10).await.unwrap(),
        );
        assert!(
            kept.iter().any(|r| r.id == format!("{session}#1")),
            "{kept:?}"
        );
        assert!(
            copied.iter().any(|r| r.id == format!("{session}#1")),
            "{copied:?}"
        );
        let events = target.read_events(&session, 1, 10).await.unwrap();
        assert_eq!(events.len(), 1, "the readable event moved too");
    }

    const MISSING: &str = "the schema and export::TABLES differ: list every table and column \
        there (in an order that writes a row after those it refers to), or keel migrate leaves it behind";

    /// Every column of every table the schema makes is one `TABLES` lists, so a copy moves it.
    #[test]
    fn every_column_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate(&mut conn, &path).unwrap();
        let mut stmt = conn
            // The full-text index is derived: triggers rebuild it as memory rows are written.
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'memory_fts%'
                 ORDER BY name",
            )
            .unwrap();
        let tables: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut listed: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        listed.sort_unstable();
        assert_eq!(tables, listed, "{MISSING}");
        for table in TABLES {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}') ORDER BY name",
                    table.name
                ))
                .unwrap();
            let columns: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut listed: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
            listed.sort_unstable();
            assert_eq!(columns, listed, "{}: {MISSING}", table.name);
        }
    }
}
