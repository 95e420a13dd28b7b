//! What a `PgStore` connects to and how: the server's URL, the schema that holds keel's
//! tables, the pool's size and the timeouts. Settings reach the server at connection start
//! (`options=-c …`), so no connection is ever used before they apply.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{signals, tls};
use crate::StoreError;

/// How `PgStore::open` connects. `Debug` names the server but never the password.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?…]`, or the key=value form.
    pub url: String,
    /// The schema that holds keel's tables (created when missing); `None`: the server's
    /// `search_path` decides (usually `public`). Letters, digits and `_` only.
    pub schema: Option<String>,
    /// The most connections this store opens.
    pub pool_size: usize,
    /// How long connecting, or waiting for a free connection, may take.
    pub connect_timeout: Duration,
    /// The server cancels a statement that runs longer (`statement_timeout`); `None`: no limit.
    pub statement_timeout: Option<Duration>,
    /// A PEM file of CA certificates to trust besides the Mozilla roots, for a server whose
    /// certificate a provider's own CA signed; needs `sslmode=require` in the URL (`tls`).
    pub ca_file: Option<PathBuf>,
}

impl PgOptions {
    /// The defaults (the server's default schema, 16 connections, 10 s to connect, statements
    /// cancelled after 30 s) for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(30)),
            ca_file: None,
        }
    }

    /// The pool these options describe, the connection settings it uses (which the
    /// listener of `signals` connects with too), and the server (without credentials).
    pub(crate) fn pool(&self) -> Result<(Pool, Connect, String), StoreError> {
        let config = self.config()?;
        let server = describe(&config);
        let tls = tls::connector(&config, self.ca_file.as_deref())?;
        let manager_config = ManagerConfig {
            // A closed connection is dropped at checkout; one that broke silently fails its
            // statement as `Unavailable`, and the caller retries.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(config.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(self.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the connection pool: {e}")))?;
        Ok((pool, Connect { config, tls }, server))
    }

    /// How each connection is made: the URL, then keel's settings.
    fn config(&self) -> Result<Config, StoreError> {
        let mut config = Config::from_str(&self.url).map_err(|e| {
            StoreError::Invalid(format!(
                "the PostgreSQL URL is not valid ({e}): write it as postgres://user@host:port/database"
            ))
        })?;
        if let Some(schema) = &self.schema {
            check_schema_name(schema)?;
        }
        config.options(self.server_options(config.get_options()));
        if config.get_application_name().is_none() {
            config.application_name("keel");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        // A connection whose peer vanished without a word is found dead within a minute.
        config.keepalives_idle(Duration::from_secs(30));
        Ok(config)
    }

    /// The URL's own `options`, then keel's settings.
    fn server_options(&self, given: Option<&str>) -> String {
        let mut options: Vec<String> = given.map(str::to_string).into_iter().collect();
        if let Some(schema) = &self.schema {
            options.push(format!("-c search_path={schema}"));
        }
        options.push(format!(
            "-c keel.channel={}",
            signals::channel(self.schema.as_deref())
        ));
        if let Some(timeout) = self.statement_timeout {
            options.push(format!("-c statement_timeout={}", timeout.as_millis()));
        }
        options.join(" ")
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = Config::from_str(&self.url)
            .map_or_else(|_| "(not a valid URL)".into(), |c| describe(&c));
        f.debug_struct("PgOptions")
            .field("server", &server)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How to make one connection outside the pool (the listener of `signals`): the pool's settings.
#[derive(Clone)]
pub(crate) struct Connect {
    pub(crate) config: Config,
    pub(crate) tls: Option<MakeRustlsConnect>,
}

/// `Invalid` unless `name` is a plain identifier, which needs no quoting anywhere.
fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match plain {
        true => Ok(()),
        false => Err(StoreError::Invalid(format!(
            "the PostgreSQL schema name {name:?} is not usable: use lowercase letters, digits and \
             `_` (at most 63, not starting with a digit)"
        ))),
    }
}

/// `user@host:port/database`, never the password.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}
