//! The ClickHouse store against the conformance suite every store passes.

mod common;
mod conformance;

#[tokio::test]
async fn clickhouse_store_conforms() {
    let db = common::TestDb::new().await;
    conformance::run(db.store.as_ref()).await;
}
