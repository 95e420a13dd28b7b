//! The conformance suite on the PostgreSQL backend, against the real server (`pg_server`):
//! every case on a fresh schema of its own, whose second handle is another `PgStore` on that
//! schema, as a second keel node would open it.

mod pg_server;

use std::sync::Arc;

use keel_store::PgStore;
use keel_store::conformance::Subject;

async fn pg_subject() -> Option<Subject> {
    let schema = pg_server::Schema::fresh().await?;
    let store = schema.open().await;
    let options = schema.options();
    Some(
        Subject::keeping(Arc::new(store), schema).with_second_handle(move || {
            let options = options.clone();
            // The conformance cases run on a multi-threaded runtime.
            let store = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(PgStore::open(options))
            });
            Arc::new(store.expect("open a second PgStore on the schema"))
        }),
    )
}

keel_store::conformance_tests!(pg_subject());

/// One byte of a stored event edited in the database, behind the store's back, is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_byte_in_the_database_is_found_at_its_seq() {
    let Some(schema) = pg_server::Schema::fresh().await else {
        return;
    };
    let store = Arc::new(schema.open().await);
    keel_store::conformance::an_edited_byte_of_a_stored_event_is_found_at_its_seq(store, |sql| {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(schema.execute(sql))
        })
    })
    .await;
}

/// A timer edited in the database into one that does not decode is skipped; the others fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timer_damaged_in_the_database_never_stops_the_others() {
    let Some(schema) = pg_server::Schema::fresh().await else {
        return;
    };
    let store = Arc::new(schema.open().await);
    keel_store::conformance::a_timer_that_cannot_be_decoded_never_stops_the_others(store, |sql| {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(schema.execute(sql))
        })
    })
    .await;
}
