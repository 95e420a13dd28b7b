//! `export_page` and `import` for PostgreSQL: rows read and written as stored, table by table
//! as `export::TABLES` lists them (opaque text as the BYTEA it is kept in), a page written in
//! one transaction with its inserts pipelined (`keel migrate`).

use deadpool_postgres::Client;
use futures::future::try_join_all;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PgOptions, PgStore, error, statements};
use crate::StoreError;
use crate::export::{
    ColumnType, ExportCursor, ExportPage, PageBuilder, StoredRecord, Value, table_of,
};
use crate::stored::sql_limit;

type Param = Box<dyn ToSql + Sync + Send>;

impl PgStore {
    /// Whether the schema `options` name holds keel's tables, asked without creating anything
    /// (`open` creates what is missing): for a store that must exist already, as the source of
    /// `keel migrate` must.
    pub async fn exists(options: &PgOptions) -> Result<bool, StoreError> {
        let (pool, _, server) = options.pool()?;
        let client = pool
            .get()
            .await
            .map_err(|e| error::no_connection(&server, e))?;
        let found = statements::query_opt(
            &client,
            "SELECT 1 FROM information_schema.tables
             WHERE table_schema = COALESCE($1::text, current_schema()) AND table_name = 'schema_version'",
            &[&options.schema],
        )
        .await?;
        Ok(found.is_some())
    }
}

pub(crate) async fn export_page(
    client: &Client,
    cursor: &ExportCursor,
    limit: usize,
) -> Result<ExportPage, StoreError> {
    let (def, mut page) = PageBuilder::start(cursor, limit)?;
    let mut params: Vec<Param> = match &cursor.after {
        Some(key) => def
            .columns
            .iter()
            .zip(key)
            .map(|((_, ty), v)| param(*ty, v))
            .collect(),
        None => Vec::new(),
    };
    params.push(Box::new(sql_limit(limit)));
    let sql = def.select_sql(cursor.after.is_some(), '$');
    let rows = statements::query(client, &sql, &borrowed(&params)).await?;
    for row in &rows {
        page.push(|i, ty| from_row(row, i, ty))?;
    }
    Ok(page.finish())
}

/// Writes `records` as they are, in one transaction.
pub(crate) async fn import(
    client: &mut Client,
    records: &[StoredRecord],
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        let def = table_of(record)?;
        let statement = tx.prepare_cached(&def.insert_sql('$')).await?;
        let params: Vec<Param> = def
            .columns
            .iter()
            .zip(&record.values)
            .map(|((_, ty), value)| param(*ty, value))
            .collect();
        rows.push((statement, params));
    }
    // Sent one after the other without waiting for each answer: one round trip for the page.
    let bound: Vec<_> = rows.iter().map(|(_, params)| borrowed(params)).collect();
    try_join_all(
        rows.iter()
            .zip(&bound)
            .map(|((statement, _), params)| tx.execute(statement, params)),
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => {
            StoreError::AlreadyExists("a row imported (a session, run or timer of its id)".into())
        }
        false => e.into(),
    })?;
    tx.commit().await?;
    Ok(())
}

fn borrowed(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// `value` bound as its column's PostgreSQL type (a `NULL` typed too).
fn param(ty: ColumnType, value: &Value) -> Param {
    match (ty, value) {
        (ColumnType::Opaque, Value::Text(t)) => Box::new(t.as_bytes().to_vec()),
        (_, Value::Text(t)) => Box::new(t.clone()),
        (_, Value::Int(n)) => Box::new(*n),
        (_, Value::Real(x)) => Box::new(*x),
        (_, Value::Bool(b)) => Box::new(*b),
        (_, Value::Bytes(b)) => Box::new(b.clone()),
        (ColumnType::Text, Value::Null) => Box::new(None::<String>),
        (ColumnType::Int, Value::Null) => Box::new(None::<i64>),
        (ColumnType::Real, Value::Null) => Box::new(None::<f64>),
        (ColumnType::Bool, Value::Null) => Box::new(None::<bool>),
        (ColumnType::Blob | ColumnType::Opaque, Value::Null) => Box::new(None::<Vec<u8>>),
    }
}

/// Column `i` of `row` as its type, or why it is not one.
fn from_row(row: &Row, i: usize, ty: ColumnType) -> Result<Value, String> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        i: usize,
    ) -> Result<Option<T>, String> {
        row.try_get::<_, Option<T>>(i)
            .map_err(|e| format!("cannot be read ({e})"))
    }
    let value = match ty {
        ColumnType::Text => get::<String>(row, i)?.map(Value::Text),
        ColumnType::Int => get::<i64>(row, i)?.map(Value::Int),
        ColumnType::Real => get::<f64>(row, i)?.map(Value::Real),
        ColumnType::Bool => get::<bool>(row, i)?.map(Value::Bool),
        ColumnType::Blob => get::<Vec<u8>>(row, i)?.map(Value::Bytes),
        ColumnType::Opaque => get::<Vec<u8>>(row, i)?
            .map(|bytes| String::from_utf8(bytes).map(Value::Text))
            .transpose()
            .map_err(|e| format!("is not UTF-8 text ({e})"))?,
    };
    Ok(value.unwrap_or(Value::Null))
}
