//! The export catalog against the PostgreSQL schema keel makes: every table and column the
//! migrations create is one `export::TABLES` lists, so `keel migrate` moves it. On the real
//! server (`pg_server`), in a schema of its own.

mod pg_server;

use keel_store::export::TABLES;

#[tokio::test]
async fn every_column_is_listed() {
    let Some(schema) = pg_server::Schema::fresh().await else {
        return;
    };
    drop(schema.open().await);
    let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name <> 'schema_version'
             ORDER BY table_name, column_name",
            &[&schema.name],
        )
        .await
        .unwrap();
    let found: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut listed: Vec<(String, String)> = TABLES
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(|(c, _)| (t.name.to_string(), c.to_string()))
        })
        .collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "the schema and export::TABLES differ: list every table and column there, or keel \
         migrate leaves it behind"
    );
}
