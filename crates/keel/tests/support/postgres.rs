//! A PostgreSQL schema of a test's own, for `keel serve` nodes sharing one store: on the real
//! server (`KEEL_TEST_PG_URL`, else 127.0.0.1:5432 database `test`), dropped when the test
//! ends; `None` (with a loud message) where no server answers, a panic instead when `CI` is set.

use super::KeelHome;

pub fn pg_url() -> String {
    std::env::var("KEEL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A connection of the test's own (to make or drop schemas, or to cut keel's connections).
pub async fn connect() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A schema for this test, dropped when it ends.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn create() -> Option<Schema> {
        let client = match connect().await {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_some() => panic!("no PostgreSQL server: {e}"),
            Err(e) => {
                eprintln!(
                    "SKIPPED: no PostgreSQL server at KEEL_TEST_PG_URL or 127.0.0.1:5432 ({e})"
                );
                return None;
            }
        };
        let name = format!("keel_nodes_{}", &keel_engine::clock::new_hex_id()[..12]);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Some(Schema { name })
    }

    /// A node's data directory: `config` (providers, agents, `[engine]`) on this schema.
    pub fn node(&self, config: &str) -> KeelHome {
        self.node_at(&pg_url(), config, "")
    }

    /// A node's data directory on this schema through `url`, with more `[store]` settings.
    pub fn node_at(&self, url: &str, config: &str, store: &str) -> KeelHome {
        KeelHome::new(&format!(
            "{config}\n[store]\nurl = {url:?}\nschema = {:?}\n{store}\n",
            self.name
        ))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        execute_detached(format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// Runs `sql` on a connection and a runtime of its own, on a thread, and waits: for `Drop`s,
/// which may run while the test's runtime shuts down. Errors are ignored (cleanup only).
pub fn execute_detached(sql: String) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok(client) = connect().await {
                let _ = client.batch_execute(&sql).await;
            }
        });
    })
    .join();
}
