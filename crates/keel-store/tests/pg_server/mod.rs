//! The real PostgreSQL server the PostgreSQL tests run against: `KEEL_TEST_PG_URL`, else the
//! local server's `test` database. Each store gets a schema of its own (a unique name), dropped
//! when its guard is, so tests run in parallel without seeing each other. Where no server
//! answers, a test is skipped with a loud message — and fails under CI (`CI` set), where the
//! server must be there.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_store::{PgOptions, PgStore};

const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("KEEL_TEST_PG_URL").unwrap_or_else(|_| LOCAL_SERVER.into())
}

/// A schema of its own, dropped (with everything in it) when this is.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    /// A fresh schema name on the test server, or `None` (said loudly) where the server cannot
    /// be reached and this is not CI.
    pub async fn fresh() -> Option<Schema> {
        let url = url();
        if let Err(e) = connect(&url).await {
            // The variable's URL may hold a password: name the variable instead.
            let server = match std::env::var_os("KEEL_TEST_PG_URL") {
                Some(_) => "the server KEEL_TEST_PG_URL names".to_string(),
                None => url.clone(),
            };
            let message = format!(
                "\n!!! PostgreSQL is not reachable at {server} ({e}).\n\
                 !!! The PostgreSQL tests need a server: start one, or set KEEL_TEST_PG_URL.\n"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{message}!!! Under CI the server must be there: failing.");
            }
            eprintln!("{message}!!! SKIPPED: this test checked nothing.");
            return None;
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "keel_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(Schema { url, name })
    }

    /// Options for a store on this schema, with a small pool.
    pub fn options(&self) -> PgOptions {
        PgOptions {
            schema: Some(self.name.clone()),
            pool_size: 4,
            ..PgOptions::new(&self.url)
        }
    }

    pub async fn open(&self) -> PgStore {
        PgStore::open(self.options())
            .await
            .expect("open a PgStore on the test schema")
    }

    /// Runs `sql` on this schema with a connection of the test's own (to damage rows).
    pub async fn execute(&self, sql: &str) {
        let client = connect(&self.url)
            .await
            .expect("connect to the test server");
        client
            .batch_execute(&format!("SET search_path TO {}; {sql}", self.name))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop may run inside the test's runtime: drop the schema from a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = connect(&url).await?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {}: {dropped:?}", self.name);
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
