//! The conformance suite on the SQLite backend: every case on a fresh database file in its own
//! temporary directory, with full durability and group commit, as keel runs by default.

use std::sync::Arc;

use keel_store::conformance::Subject;
use keel_store::{SqliteOptions, SqliteStore};

async fn sqlite_subject() -> Subject {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("data").join("keel.db")))
        .expect("open the store");
    Subject::keeping(Arc::new(store), dir)
}

keel_store::conformance_tests!(sqlite_subject());

/// The same suite with one transaction per write, the path group commit takes for a lone request.
mod without_group_commit {
    use super::*;

    async fn subject() -> Subject {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = SqliteOptions {
            group_commit: false,
            ..SqliteOptions::new(dir.path().join("keel.db"))
        };
        Subject::keeping(
            Arc::new(SqliteStore::open(options).expect("open the store")),
            dir,
        )
    }

    keel_store::conformance_tests!(subject());
}
