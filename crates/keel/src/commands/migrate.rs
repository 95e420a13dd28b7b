//! `keel migrate`: copies every record of one store into another, empty one — SQLite to
//! PostgreSQL or back — then checks the copy (counts and digests on both sides, from
//! `keel_store::export`) and prints what it moved. The source is only read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use keel_store::export::{CopyReport, copy_store, ensure_empty};
use keel_store::{PgStore, Store};

use crate::config::Config;
use crate::runtime::{DataDirLock, lock_data_dir, open_store, pg_options};

#[derive(Args)]
#[command(after_help = "\
The source is only read, and should not be in use: stop every keel serving it first (for a \
SQLite data directory, migrate takes its lock and refuses one in use). The target must be \
empty: a new data directory, or a PostgreSQL schema holding no keel records. Runs that were \
running arrive without their lease, for the target's nodes to resume.

Examples:
  keel migrate --from sqlite:./keel-data --to postgres://keel@db.internal/keel --to-schema prod
  keel migrate --from postgres://keel@db.internal/keel --from-schema prod --to sqlite:./keel-data-2")]
pub struct MigrateArgs {
    /// The store to copy: `sqlite:<data dir>` or `postgres://…`.
    #[arg(long, value_name = "STORE")]
    from: String,
    /// The source's PostgreSQL schema (default: the server's search_path).
    #[arg(long, value_name = "SCHEMA")]
    from_schema: Option<String>,
    /// The empty store to copy into: `sqlite:<data dir>` or `postgres://…`.
    #[arg(long, value_name = "STORE")]
    to: String,
    /// The target's PostgreSQL schema (created when missing).
    #[arg(long, value_name = "SCHEMA")]
    to_schema: Option<String>,
}

/// One side of a migration.
#[derive(Debug, PartialEq)]
enum Endpoint {
    /// A data directory, whose store is `keel.db` in it.
    Sqlite(PathBuf),
    Postgres {
        url: String,
        schema: Option<String>,
    },
}

impl Endpoint {
    fn parse(flag: &str, store: &str, schema: Option<String>) -> anyhow::Result<Endpoint> {
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            return Ok(Endpoint::Postgres {
                url: store.to_string(),
                schema,
            });
        }
        let Some(dir) = store.strip_prefix("sqlite:") else {
            anyhow::bail!(
                "--{flag} {:?} names no store keel knows: use sqlite:<data dir> or postgres://user@host/database",
                redacted(store)
            );
        };
        if dir.is_empty() {
            anyhow::bail!("--{flag} sqlite: needs a data directory, e.g. sqlite:./keel-data");
        }
        if schema.is_some() {
            anyhow::bail!("--{flag}-schema applies to a postgres:// store, not to {store}");
        }
        Ok(Endpoint::Sqlite(PathBuf::from(dir)))
    }

    /// The configuration that opens this store (the rest of `base` as it was).
    fn configure(&self, config: &mut Config) {
        match self {
            Endpoint::Sqlite(dir) => {
                config.data_dir = Some(dir.clone());
                config.store.url = None;
            }
            Endpoint::Postgres { url, schema } => {
                config.store.url = Some(url.clone());
                config.store.schema = schema.clone();
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Sqlite(dir) => write!(f, "sqlite:{}", dir.display()),
            Endpoint::Postgres { url, schema } => {
                write!(f, "{}", redacted(url))?;
                match schema {
                    Some(schema) => write!(f, " (schema {schema})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    super::config::redact_url_password(url).unwrap_or_else(|| url.to_string())
}

/// Copies and verifies; `Ok(false)` when source records could not be read (listed; the rest
/// was copied), an error naming the first mismatch when the copy differs.
pub async fn run(mut config: Config, args: MigrateArgs) -> anyhow::Result<bool> {
    let from = Endpoint::parse("from", &args.from, args.from_schema)?;
    let to = Endpoint::parse("to", &args.to, args.to_schema)?;
    if same_store(&from, &to) {
        anyhow::bail!("--from and --to name the same store ({from}): copy into another one");
    }
    let _source_lock = check_source(&mut config, &from).await?;
    let target_dir = match &to {
        Endpoint::Sqlite(dir) => Some((dir.clone(), !dir.exists())),
        Endpoint::Postgres { .. } => None,
    };
    let copied = async {
        let _target_lock = match &to {
            Endpoint::Sqlite(dir) => Some(lock_target(dir)?),
            Endpoint::Postgres { .. } => None,
        };
        let source = open(&mut config, &from).await?;
        let target = open(&mut config, &to).await?;
        ensure_empty(target.as_ref())
            .await
            .with_context(|| format!("cannot migrate into {to}"))?;
        let started = Instant::now();
        let report = copy_store(source.as_ref(), target.as_ref())
            .await
            .with_context(|| format!("migrating {from} to {to} failed"))?;
        anyhow::Ok((report, started.elapsed()))
    }
    .await;
    let (report, took) = match copied {
        Ok(done) => done,
        Err(e) => {
            // A data directory made for this copy goes with it; an existing one is left alone.
            if let Some((dir, true)) = &target_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
    };
    print_summary(&from, &to, &report, took);
    if let Some(mismatch) = &report.mismatch {
        anyhow::bail!("the copy in {to} does not match {from}: {mismatch}");
    }
    Ok(report.unreadable.is_empty())
}

/// Whether both sides are one store (the same directory, or the same URL and schema).
fn same_store(from: &Endpoint, to: &Endpoint) -> bool {
    match (from, to) {
        (Endpoint::Sqlite(a), Endpoint::Sqlite(b)) => {
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            canonical(a) == canonical(b)
        }
        _ => from == to,
    }
}

/// Refuses a source that holds no keel store, before anything is opened or written; for a
/// SQLite source, holds its data directory's lock.
async fn check_source(config: &mut Config, from: &Endpoint) -> anyhow::Result<Option<DataDirLock>> {
    match from {
        Endpoint::Sqlite(dir) => {
            if !dir.join("keel.db").is_file() {
                anyhow::bail!(
                    "there is no keel store to migrate from in {} (no keel.db): check --from",
                    dir.display()
                );
            }
            let lock =
                lock_data_dir(dir).context("the source must not be in use while it is copied")?;
            Ok(Some(lock))
        }
        Endpoint::Postgres { url, .. } => {
            from.configure(config);
            let options = pg_options(url, &config.store);
            let exists = PgStore::exists(&options)
                .await
                .with_context(|| format!("cannot read the source {from}"))?;
            if !exists {
                anyhow::bail!(
                    "there is no keel store to migrate from in {from}: check --from and --from-schema"
                );
            }
            Ok(None)
        }
    }
}

/// The target data directory's lock, so no keel starts on it while it is filled.
fn lock_target(dir: &Path) -> anyhow::Result<DataDirLock> {
    keel_models::durable::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    lock_data_dir(dir)
}

async fn open(config: &mut Config, endpoint: &Endpoint) -> anyhow::Result<Arc<dyn Store>> {
    endpoint.configure(config);
    open_store(config)
        .await
        .with_context(|| format!("cannot open {endpoint}"))
}

fn print_summary(from: &Endpoint, to: &Endpoint, report: &CopyReport, took: std::time::Duration) {
    println!(
        "copied {} records from {from} to {to} in {:.2} s:",
        report.copied.total(),
        took.as_secs_f64()
    );
    for (label, count) in report.copied.counts() {
        println!("  {count:>10}  {label}");
    }
    for record in &report.unreadable {
        println!(
            "not copied: {} {} cannot be read ({}); restore it from a backup, or copy it by hand",
            record.kind, record.id, record.reason
        );
    }
    if report.mismatch.is_none() {
        println!(
            "verified: the target holds the same rows in every table, and each session's events \
             (seq, type, time, body, hash) have the same SHA-256 on both sides"
        );
    }
    match report.copied.broken_chain() {
        None => println!("hash chains: every session's journal is intact"),
        Some(chain) => println!(
            "warning: the journal of session {} is broken in the source ({}); it was copied as it was",
            chain.session,
            chain.problem.as_deref().unwrap_or("a changed event")
        ),
    }
}
