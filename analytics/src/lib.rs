//! Request-log storage and per-tenant analytics (DESIGN §9): the [`AnalyticsStore`] contract with
//! its ClickHouse (production) and SQLite (`tollgate dev`) implementations, the ingester that
//! moves log batches from the bus into a store, and usage metering.

pub mod clickhouse;
pub mod ingest;
pub mod query;
pub mod sqlite;

pub use sqlite::SqliteStore;

use tollgate_model::request_log::{LogBatch, RequestLog};
use uuid::Uuid;

use crate::query::{
    Filters, Month, Point, SeriesQuery, TimeRange, TopQuery, TopRow, Totals, Usage,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("analytics store unavailable: {0}")]
    Unavailable(String),
    #[error("analytics query failed: {0}")]
    Query(String),
}

/// What was written by one [`AnalyticsStore::insert`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Rows of batches not stored before.
    pub rows: u64,
    /// Batches skipped because their id was already stored (redeliveries).
    pub duplicate_batches: u64,
}

/// Where request logs are kept and queried. Every query takes the tenant as its own argument —
/// from the caller's session, never from the request — and sees only that tenant's rows.
#[async_trait::async_trait]
pub trait AnalyticsStore: Send + Sync + 'static {
    /// Stores the batches whose ids are not stored yet. Storing the same batch twice (a
    /// redelivery after a crash between insert and acknowledgement) writes it once.
    async fn insert(&self, batches: &[LogBatch]) -> Result<Inserted, StoreError>;
    /// One point per bucket (and group) that had requests, in time order.
    async fn series(
        &self,
        organization: Uuid,
        query: &SeriesQuery,
    ) -> Result<Vec<Point>, StoreError>;
    /// The `limit` values of `query.by` with the most requests.
    async fn top(&self, organization: Uuid, query: &TopQuery) -> Result<Vec<TopRow>, StoreError>;
    async fn totals(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
    ) -> Result<Totals, StoreError>;
    /// The latest `limit` requests, newest first.
    async fn recent(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
        limit: u32,
    ) -> Result<Vec<RequestLog>, StoreError>;
    /// Requests and bytes per day of `month` and per control plane (names left empty).
    async fn usage(&self, organization: Uuid, month: Month) -> Result<Usage, StoreError>;
}

impl std::fmt::Debug for dyn AnalyticsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnalyticsStore")
    }
}
