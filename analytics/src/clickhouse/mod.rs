//! The production [`AnalyticsStore`]: request logs in ClickHouse (`migrations/clickhouse/`).
//! Raw rows in `request_logs`; dashboards read rollups by minute or hour (the narrowest that
//! covers a query, see [`plan`]), billing the per-day `usage_1d`, all filled by materialized views
//! on the same insert. Written for Debian's
//! clickhouse-server 18.16 and current releases alike (DESIGN §9), over HTTP with the
//! `clickhouse` crate (uncompressed: 18.16 answers compressed selects with nothing).

mod rows;
pub mod schema;
mod sql;

pub use sql::{plan, Part, Rollup, Source};

use std::collections::HashSet;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use clickhouse::{Client, Compression};
use tollgate_model::request_log::{LogBatch, RequestLog};
use uuid::Uuid;

use crate::query::{
    Bucket, Dimension, Filters, Month, Point, SeriesQuery, TimeRange, TopQuery, TopRow, Totals,
    Usage, UsageTally,
};
use crate::{AnalyticsStore, Inserted, StoreError};
use rows::{
    BatchIdRow, LogRow, RecentRow, SeriesRow, TopRowData, TotalsRow, UsageRow, RECENT_COLUMNS,
};

/// Rows per `INSERT`. ClickHouse cuts an insert into blocks of `max_insert_block_size`
/// (1,048,576) rows and writes each block (with its materialized views) on its own; below that
/// an insert is one block, so a batch's rows and its `ingested_batches` entry land together.
const MAX_INSERT_ROWS: usize = 500_000;

/// Longer than any healthy insert of [`MAX_INSERT_ROWS`] and well inside the bus's 60 s
/// acknowledgement deadline.
const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// Dashboards want an answer or an error, not a hung request.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most rows `recent` returns, whatever is asked.
const MAX_RECENT: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("invalid ClickHouse URL: {0}")]
    InvalidUrl(String),
    #[error("ClickHouse unavailable: {0}")]
    Unavailable(String),
    #[error("ClickHouse query failed: {0}")]
    Query(String),
    #[error("ClickHouse migration {name} failed: {message}")]
    Migration { name: &'static str, message: String },
}

impl From<clickhouse::error::Error> for ClickHouseError {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error;
        match e {
            Error::Network(_) | Error::TimedOut => ClickHouseError::Unavailable(e.to_string()),
            other => ClickHouseError::Query(other.to_string()),
        }
    }
}

impl From<ClickHouseError> for StoreError {
    fn from(e: ClickHouseError) -> Self {
        match e {
            ClickHouseError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Query(other.to_string()),
        }
    }
}

/// Where the store lives: `http://[user[:password]@]host:port/database`. The database defaults
/// to `tollgate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseUrl {
    /// `http://host:port`.
    pub server: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl ClickHouseUrl {
    pub fn parse(text: &str) -> Result<ClickHouseUrl, ClickHouseError> {
        let bad = |why: &str| ClickHouseError::InvalidUrl(format!("'{text}': {why}"));
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("use http://host:8123/database"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let port = url.port().unwrap_or(8123);
        let database = url.path().trim_matches('/');
        let database = if database.is_empty() {
            "tollgate"
        } else {
            database
        };
        // The name is written into DDL unquoted.
        let valid = database
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad(
                "the database name is letters, digits and '_', not starting with a digit",
            ));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(ClickHouseUrl {
            server: format!("http://{host}:{port}"),
            database: database.to_string(),
            user,
            password,
        })
    }

    /// A client of the database.
    pub fn client(&self) -> Client {
        self.client_without_database()
            .with_database(self.database.clone())
    }

    /// A client of the server's default database (to create ours).
    pub fn client_without_database(&self) -> Client {
        let mut client = Client::default()
            .with_url(self.server.clone())
            .with_compression(Compression::None);
        if let Some(user) = &self.user {
            client = client.with_user(user.clone());
        }
        if let Some(password) = &self.password {
            client = client.with_password(password.clone());
        }
        client
    }
}

/// A query of SQL written by this module. The crate reads `?` as a placeholder for its own
/// binding, which this module does not use, so every `?` (only ever inside a string literal)
/// is doubled to stand for itself.
fn query(client: &Client, sql: &str) -> clickhouse::query::Query {
    client.query(&sql.replace('?', "??"))
}

async fn execute(client: &Client, sql: &str) -> Result<(), ClickHouseError> {
    query(client, sql).execute().await.map_err(Into::into)
}

async fn fetch_all<T>(client: &Client, sql: &str) -> Result<Vec<T>, StoreError>
where
    T: clickhouse::Row + for<'b> serde::Deserialize<'b>,
{
    match tokio::time::timeout(QUERY_TIMEOUT, query(client, sql).fetch_all::<T>()).await {
        Ok(result) => result.map_err(|e| ClickHouseError::from(e).into()),
        Err(_) => Err(StoreError::Unavailable(format!(
            "ClickHouse did not answer within {QUERY_TIMEOUT:?}"
        ))),
    }
}

pub struct ClickHouseStore {
    client: Client,
}

impl ClickHouseStore {
    /// A store on the database at `url` (migrated by `tollgate migrate --clickhouse-url`).
    /// Nothing is sent until the first call, so a store made while ClickHouse is down works
    /// once it is back.
    pub fn new(url: &ClickHouseUrl) -> ClickHouseStore {
        ClickHouseStore {
            client: url.client(),
        }
    }

    /// Which of `ids` are stored already.
    async fn stored_batches(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let list = ids
            .iter()
            .map(|id| sql::uuid(*id))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<BatchIdRow> = fetch_all(
            &self.client,
            &format!("SELECT DISTINCT batch_id FROM ingested_batches WHERE batch_id IN ({list})"),
        )
        .await?;
        Ok(rows.into_iter().map(|r| r.batch_id).collect())
    }

    async fn insert_rows(&self, batches: &[&LogBatch]) -> Result<(), ClickHouseError> {
        let started = std::time::Instant::now();
        let result = self.insert_rows_once(batches).await;
        tracing::debug!(batches = batches.len(), took = ?started.elapsed(), "inserted rows");
        result
    }

    async fn insert_rows_once(&self, batches: &[&LogBatch]) -> Result<(), ClickHouseError> {
        let mut insert = self
            .client
            .insert::<LogRow<'_>>("request_logs")?
            .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
        for batch in batches {
            for log in &batch.logs {
                insert.write(&LogRow::new(batch.id, log)).await?;
            }
        }
        insert.end().await?;
        Ok(())
    }
}

/// The tables a query over `range` with these filters and grouping reads, biggest piece first,
/// each once (what [`plan`] picks; for benchmarks and explanations).
pub fn tables_read(
    range: &TimeRange,
    filters: &Filters,
    group_by: Option<Dimension>,
    bucket: Option<Bucket>,
) -> Vec<&'static str> {
    let needed = sql::needed_dimensions(filters, group_by);
    let mut tables: Vec<&'static str> = Vec::new();
    for part in plan(
        range.from.timestamp_millis().max(0),
        range.to.timestamp_millis(),
        &needed,
        bucket,
    ) {
        if !tables.contains(&part.source.table()) {
            tables.push(part.source.table());
        }
    }
    tables
}

fn invalid(errors: crate::query::FieldErrors) -> StoreError {
    let text = errors
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ");
    StoreError::Query(format!("invalid query: {text}"))
}

/// A group or key as the API shows it: `None` for "none" (the nil UUID) and for no grouping.
fn key_of(text: String) -> Option<String> {
    if text.is_empty() || text == sql::NIL_UUID {
        None
    } else {
        Some(text)
    }
}

#[async_trait::async_trait]
impl AnalyticsStore for ClickHouseStore {
    async fn insert(&self, batches: &[LogBatch]) -> Result<Inserted, StoreError> {
        let ids: Vec<Uuid> = batches
            .iter()
            .filter(|b| !b.logs.is_empty())
            .map(|b| b.id)
            .collect();
        let started = std::time::Instant::now();
        let mut seen = self.stored_batches(&ids).await?;
        tracing::debug!(batches = ids.len(), took = ?started.elapsed(), "looked up stored batch ids");
        let mut inserted = Inserted::default();
        let mut fresh: Vec<&LogBatch> = Vec::new();
        let mut fresh_rows = 0usize;
        for batch in batches.iter().filter(|b| !b.logs.is_empty()) {
            // `seen` also catches a batch given twice in one call.
            if !seen.insert(batch.id) {
                inserted.duplicate_batches += 1;
                continue;
            }
            // Whole batches per insert: a batch is never split between two.
            if fresh_rows + batch.logs.len() > MAX_INSERT_ROWS && !fresh.is_empty() {
                self.insert_rows(&fresh).await?;
                inserted.rows += fresh_rows as u64;
                fresh.clear();
                fresh_rows = 0;
            }
            fresh_rows += batch.logs.len();
            fresh.push(batch);
        }
        if !fresh.is_empty() {
            self.insert_rows(&fresh).await?;
            inserted.rows += fresh_rows as u64;
        }
        Ok(inserted)
    }

    async fn series(
        &self,
        organization: Uuid,
        query: &SeriesQuery,
    ) -> Result<Vec<Point>, StoreError> {
        query.validate().map_err(invalid)?;
        let source = sql::grouped_source(
            organization,
            &query.range,
            &query.filters,
            query.group_by,
            Some(query.bucket),
        );
        let bucket = match query.bucket {
            Bucket::Minute => "t",
            Bucket::Hour => "toStartOfHour(t)",
            Bucket::Day => "toStartOfDay(t)",
        };
        let rows: Vec<SeriesRow> = fetch_all(
            &self.client,
            &format!(
                "SELECT toUInt32({bucket}) AS bucket, grp, {measures} \
                 FROM ({source}) GROUP BY bucket, grp ORDER BY bucket, grp",
                measures = sql::MEASURES,
            ),
        )
        .await?;
        let mut points: Vec<Point> = rows
            .into_iter()
            .map(|row| Point {
                time: Utc
                    .timestamp_opt(i64::from(row.bucket), 0)
                    .single()
                    .unwrap_or_default(),
                totals: row.measures.totals(),
                group: key_of(row.group),
            })
            .collect();
        // Within a bucket, groups by value with "none" last (ClickHouse sorts the nil UUID
        // first).
        points.sort_by(|a, b| {
            (a.time, a.group.is_none(), &a.group).cmp(&(b.time, b.group.is_none(), &b.group))
        });
        Ok(points)
    }

    async fn top(&self, organization: Uuid, query: &TopQuery) -> Result<Vec<TopRow>, StoreError> {
        query.validate().map_err(invalid)?;
        let source = sql::grouped_source(
            organization,
            &query.range,
            &query.filters,
            Some(query.by),
            None,
        );
        // The latency digests are what costs: merge them only for the groups that make the
        // list, picked first by their counts (the same order, so the same groups).
        let rows: Vec<TopRowData> = fetch_all(
            &self.client,
            &format!(
                "SELECT grp, {measures} FROM ({source}) \
                 WHERE grp IN (SELECT grp FROM (SELECT grp, countMerge(requests) AS n \
                 FROM ({source}) GROUP BY grp ORDER BY n DESC, grp LIMIT {limit})) \
                 GROUP BY grp ORDER BY m_requests DESC, grp LIMIT {limit}",
                measures = sql::MEASURES,
                limit = query.limit,
            ),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| TopRow {
                totals: row.measures.totals(),
                key: key_of(row.key),
            })
            .collect())
    }

    async fn totals(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
    ) -> Result<Totals, StoreError> {
        let mut errors = crate::query::FieldErrors::new();
        range.validate(&mut errors);
        filters.validate(&mut errors);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let source = sql::grouped_source(organization, range, filters, None, None);
        let rows: Vec<TotalsRow> = fetch_all(
            &self.client,
            &format!(
                "SELECT {measures} FROM ({source})",
                measures = sql::MEASURES,
            ),
        )
        .await?;
        Ok(rows
            .first()
            .map(|row| row.measures.totals())
            .unwrap_or_default())
    }

    async fn recent(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
        limit: u32,
    ) -> Result<Vec<RequestLog>, StoreError> {
        let mut errors = crate::query::FieldErrors::new();
        range.validate(&mut errors);
        filters.validate(&mut errors);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let condition = sql::Where::tenant(organization)
            .instants(range)
            .filters(filters);
        let rows: Vec<RecentRow> = fetch_all(
            &self.client,
            &format!(
                "SELECT {RECENT_COLUMNS} FROM request_logs WHERE {condition} \
                 ORDER BY time DESC, time_ms DESC, id DESC LIMIT {limit}",
                condition = condition.sql(),
                limit = limit.clamp(1, MAX_RECENT),
            ),
        )
        .await?;
        Ok(rows.into_iter().map(RequestLog::from).collect())
    }

    async fn usage(&self, organization: Uuid, month: Month) -> Result<Usage, StoreError> {
        let first = month.first_day();
        let next = month.next().first_day();
        let rows: Vec<UsageRow> = fetch_all(
            &self.client,
            &format!(
                "SELECT day, control_plane_id, sum(requests), sum(bytes_in), sum(bytes_out) \
                 FROM usage_1d WHERE organization_id = {org} \
                 AND day >= toDate('{first}') AND day < toDate('{next}') \
                 GROUP BY day, control_plane_id",
                org = sql::uuid(organization),
                first = first.format("%Y-%m-%d"),
                next = next.format("%Y-%m-%d"),
            ),
        )
        .await?;
        Ok(usage_of(month, Utc::now().date_naive(), rows))
    }
}

/// Sums rows of `usage_1d` into the month's answer.
fn usage_of(month: Month, today: NaiveDate, rows: Vec<UsageRow>) -> Usage {
    let mut tally = UsageTally::default();
    for row in rows {
        tally.add(
            rows::date_of(row.day),
            row.control_plane_id,
            row.requests,
            row.bytes_in,
            row.bytes_out,
        );
    }
    tally.finish(month, today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_server_database_and_credentials() {
        let url = ClickHouseUrl::parse("http://reader:s%40cret@127.0.0.1:8124/analytics").unwrap();
        assert_eq!(url.server, "http://127.0.0.1:8124");
        assert_eq!(url.database, "analytics");
        assert_eq!(url.user.as_deref(), Some("reader"));
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        let plain = ClickHouseUrl::parse("http://localhost").unwrap();
        assert_eq!(plain.server, "http://localhost:8123");
        assert_eq!(plain.database, "tollgate");
        for bad in [
            "https://h/db",
            "http://h/1db",
            "http://h/a-b",
            "http://h/a;DROP",
            "nonsense",
        ] {
            assert!(ClickHouseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_fills_days_up_to_today_and_orders_control_planes() {
        let month: Month = "2026-02".parse().unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 2, d).unwrap();
        let epoch_days =
            |d: NaiveDate| (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as u16;
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let rows = vec![
            UsageRow {
                day: epoch_days(day(2)),
                control_plane_id: a,
                requests: 3,
                bytes_in: 30,
                bytes_out: 300,
            },
            UsageRow {
                day: epoch_days(day(2)),
                control_plane_id: b,
                requests: 5,
                bytes_in: 50,
                bytes_out: 500,
            },
        ];
        let usage = usage_of(month, day(4), rows);
        assert_eq!(usage.requests, 8);
        assert_eq!(usage.bytes_out, 800);
        assert_eq!(usage.days.len(), 4);
        assert_eq!(usage.days[1].requests, 8);
        assert_eq!(usage.days[3].requests, 0);
        assert_eq!(usage.control_planes[0].id, b);
        // A past month lists every day of it.
        let past = usage_of(month, NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(), vec![]);
        assert_eq!(past.days.len(), 28);
        // A future month lists none.
        let future = usage_of(month, NaiveDate::from_ymd_opt(2026, 1, 10).unwrap(), vec![]);
        assert!(future.days.is_empty());
    }
}
