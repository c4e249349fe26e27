//! The SQLite store (`tollgate dev`) against the conformance suite, and what is particular to it:
//! its file survives a restart, batch ids included.

mod conformance;

use chrono::{TimeZone, Utc};
use tollgate_analytics::query::{Filters, TimeRange};
use tollgate_analytics::{AnalyticsStore, Inserted, SqliteStore};

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("analytics.db"))
        .await
        .expect("open");
    conformance::run(&store).await;
}

#[tokio::test]
async fn rows_and_batch_ids_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("analytics.db");
    let fixture = conformance::Fixture::new();
    let store = SqliteStore::open(&path).await.expect("open");
    store.insert(&fixture.batches).await.expect("insert");
    drop(store);

    let reopened = SqliteStore::open(&path).await.expect("reopen");
    let redelivered = reopened
        .insert(&fixture.batches[..1])
        .await
        .expect("insert");
    assert_eq!(
        redelivered,
        Inserted {
            rows: 0,
            duplicate_batches: 1
        }
    );
    let year = TimeRange {
        from: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        to: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    };
    let totals = reopened
        .totals(fixture.a.organization, &year, &Filters::default())
        .await
        .expect("totals");
    assert_eq!(totals.requests, 10);
}

#[tokio::test]
async fn a_missing_directory_is_an_unavailable_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = SqliteStore::open(dir.path().join("no/such/dir/analytics.db"))
        .await
        .expect_err("cannot create a file in a missing directory");
    assert!(
        matches!(err, tollgate_analytics::StoreError::Unavailable(_)),
        "{err}"
    );
}

/// Writers racing on one file (two ingesters, a redelivery arriving while the first delivery is
/// being stored) still store every batch exactly once, and readers are not refused meanwhile.
#[tokio::test]
async fn concurrent_writers_store_each_batch_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(
        SqliteStore::open(dir.path().join("analytics.db"))
            .await
            .expect("open"),
    );
    let fixture = conformance::Fixture::new();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let writer = store.clone();
        let batches = fixture.batches.to_vec();
        tasks.push(tokio::spawn(async move {
            writer.insert(&batches).await.expect("insert")
        }));
        let reader = store.clone();
        let organization = fixture.a.organization;
        tasks.push(tokio::spawn(async move {
            let year = TimeRange {
                from: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
                to: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            };
            reader
                .totals(organization, &year, &Filters::default())
                .await
                .expect("read while writing");
            Inserted::default()
        }));
    }
    let mut total = Inserted::default();
    for task in tasks {
        let inserted = task.await.expect("task");
        total.rows += inserted.rows;
        total.duplicate_batches += inserted.duplicate_batches;
    }
    assert_eq!(
        total,
        Inserted {
            rows: 13,
            duplicate_batches: 7 * 3
        }
    );
}
