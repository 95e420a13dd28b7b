//! Turns PostgreSQL's errors into `StoreError`s that say what went wrong and what to do, so no
//! caller reads an SQLSTATE: a lost or overloaded server is `Unavailable` (retry), a value
//! PostgreSQL cannot hold is `Invalid`, damage is `Corrupt`.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::StoreError;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
            return match e.is_closed() || io {
                true => StoreError::Unavailable(format!(
                    "the connection to PostgreSQL was lost ({e}): check that the server is up and \
                     reachable, then retry; a write whose commit was not acknowledged may or may not have committed"
                )),
                false => StoreError::Backend(format!("PostgreSQL: {e}")),
            };
        };
        let code = db.code();
        let class = &code.code()[..2];
        if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
            || *code == SqlState::UNTRANSLATABLE_CHARACTER
        {
            StoreError::Invalid(format!(
                "a value holds a character PostgreSQL cannot store in text, such as NUL ({db}): \
                 nothing was stored; remove the character and retry"
            ))
        } else if *code == SqlState::QUERY_CANCELED {
            StoreError::Unavailable(format!(
                "PostgreSQL cancelled a statement, past the statement timeout ({db}): retry, \
                 or raise the timeout if the database is slow"
            ))
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StoreError::Unavailable(format!(
                "the PostgreSQL database takes no writes ({db}): point keel at the primary"
            ))
        } else if class == "XX" {
            StoreError::Corrupt(format!(
                "PostgreSQL reports damage ({db}): restore the database from a backup"
            ))
        } else if matches!(class, "08" | "40" | "53" | "57" | "55") {
            // Connection lost, serialization failure or deadlock, out of disk or memory or
            // connections, shutting down, lock not available: all pass.
            StoreError::Unavailable(format!(
                "PostgreSQL could not serve the request now ({db}): nothing of it was stored; retry"
            ))
        } else {
            StoreError::Backend(format!("PostgreSQL refused a statement: {db}"))
        }
    }
}

/// Why the pool had no connection to hand out, naming the server, with every cause (a TLS
/// handshake's reason is two causes down).
pub(crate) fn no_connection(server: &str, e: PoolError) -> StoreError {
    let mut why = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(next) = cause {
        let said = next.to_string();
        if !why.contains(&said) {
            why = format!("{why}: {said}");
        }
        cause = next.source();
    }
    let hint = match why.contains("certificate") {
        true => {
            " (a server certificate signed by your provider's own CA needs that CA as \
                 [store] ca_file)"
        }
        false => "",
    };
    StoreError::Unavailable(format!(
        "cannot connect to the PostgreSQL database {server} ({why}): check that it is up, \
         reachable and accepts keel's user{hint}, then retry"
    ))
}

/// Whether `e` is a UNIQUE / PRIMARY KEY violation: the row is already there.
pub(crate) fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Whether `e` is a foreign key violation: the row it refers to is not there.
pub(crate) fn is_missing_reference(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}
