//! The analytics store of `tollgate dev`: request logs in a SQLite file of their own, answering
//! the same questions as the ClickHouse store with the same meaning. Dev traffic is small, so a
//! query reads the matching rows of its range (through the `(organization_id, time_ms)` index)
//! and counts them here; percentiles are nearest-rank over those rows (see [`nearest_rank`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sea_orm::sqlx::{self, Row, Sqlite};
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

use crate::query::{
    Dimension, Filters, Latencies, Month, Percentiles, Point, SeriesQuery, TimeRange, TopQuery,
    TopRow, Totals, Usage, UsageTally,
};
use crate::{AnalyticsStore, Inserted, StoreError};

/// Created when missing, so a new data dir needs no migration step. Times are Unix
/// milliseconds (UTC), ids hyphenated lowercase text, counters integers.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS request_logs (
        id TEXT PRIMARY KEY NOT NULL,
        time_ms INTEGER NOT NULL,
        organization_id TEXT NOT NULL,
        control_plane_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        region TEXT NOT NULL,
        request_id TEXT NOT NULL,
        service_id TEXT,
        route_id TEXT,
        consumer_id TEXT,
        method TEXT NOT NULL,
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        latency_total_us INTEGER NOT NULL,
        latency_upstream_us INTEGER,
        latency_edge_us INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        client_ip TEXT NOT NULL,
        ai_provider TEXT,
        ai_model TEXT,
        ai_prompt_tokens INTEGER NOT NULL,
        ai_completion_tokens INTEGER NOT NULL,
        ai_cost_micros INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS request_logs_organization_time
        ON request_logs (organization_id, time_ms)",
    // One row per batch ever stored: what makes a redelivered batch a no-op.
    "CREATE TABLE IF NOT EXISTS log_batches (
        id TEXT PRIMARY KEY NOT NULL,
        node_id TEXT NOT NULL,
        rows INTEGER NOT NULL,
        stored_at_ms INTEGER NOT NULL
    )",
];

const INSERT_LOG: &str = "INSERT OR IGNORE INTO request_logs (
        id, time_ms, organization_id, control_plane_id, node_id, region, request_id,
        service_id, route_id, consumer_id, method, host, path, status,
        latency_total_us, latency_upstream_us, latency_edge_us, bytes_in, bytes_out, client_ip,
        ai_provider, ai_model, ai_prompt_tokens, ai_completion_tokens, ai_cost_micros
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Request logs in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the store at `path`, e.g. `<data dir>/analytics.db`.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL lets the dashboards read while the ingester writes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot create tables: {e}")))?;
        }
        Ok(SqliteStore { pool })
    }

    /// Reads the measured columns of the rows `selection` picks, plus `extra` (SQL expressions
    /// named `key`/`bucket_ms` by the caller) and hands each row to `each`.
    async fn scan(
        &self,
        selection: &Selection,
        extra: &str,
        mut each: impl FnMut(&SqliteRow, Measured) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT status, latency_total_us, latency_upstream_us, latency_edge_us, bytes_in, \
             bytes_out{extra} FROM request_logs WHERE {}",
            selection.sql
        );
        let rows = sqlx::query_with(&sql, selection.arguments()?)
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed)?;
        for row in &rows {
            let measured = Measured::read(row)?;
            each(row, measured)?;
        }
        Ok(())
    }
}

fn query_failed(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Counters are unsigned in the model and signed in SQLite; nothing real comes near 2^63.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The first whole millisecond at or after `time`: a row at `t_ms` is in `[from, to)` exactly
/// when `ms_at_or_after(from) <= t_ms < ms_at_or_after(to)`.
fn ms_at_or_after(time: DateTime<Utc>) -> i64 {
    let ms = time.timestamp_millis();
    if time.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    }
}

fn time_of(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Query(format!("stored time {ms} is out of range")))
}

fn uuid_of(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Query(format!("stored id '{text}': {e}")))
}

enum Bind {
    Text(String),
    Int(i64),
}

/// A `WHERE` clause and its arguments: always the tenant and the range first, so every query
/// runs on the `(organization_id, time_ms)` index and cannot reach another tenant's rows.
struct Selection {
    sql: String,
    binds: Vec<Bind>,
}

impl Selection {
    fn new(organization: Uuid, range: &TimeRange, filters: &Filters) -> Selection {
        let mut selection = Selection {
            sql: "organization_id = ? AND time_ms >= ? AND time_ms < ?".into(),
            binds: vec![
                Bind::Text(organization.to_string()),
                Bind::Int(ms_at_or_after(range.from)),
                Bind::Int(ms_at_or_after(range.to)),
            ],
        };
        let ids = [
            ("control_plane_id", filters.control_plane),
            ("service_id", filters.service),
            ("route_id", filters.route),
            ("consumer_id", filters.consumer),
            ("node_id", filters.node),
        ];
        for (column, id) in ids {
            if let Some(id) = id {
                selection.and(column, Bind::Text(id.to_string()));
            }
        }
        if let Some(status) = filters.status {
            selection.and("status", Bind::Int(i64::from(status)));
        }
        if let Some(region) = &filters.region {
            selection.and("region", Bind::Text(region.clone()));
        }
        selection
    }

    fn and(&mut self, column: &str, value: Bind) {
        self.sql.push_str(&format!(" AND {column} = ?"));
        self.binds.push(value);
    }

    fn arguments(&self) -> Result<SqliteArguments<'static>, StoreError> {
        use sqlx::Arguments;
        let mut arguments = SqliteArguments::default();
        for bind in &self.binds {
            let added = match bind {
                Bind::Text(text) => arguments.add(text.clone()),
                Bind::Int(n) => arguments.add(*n),
            };
            added.map_err(|e| StoreError::Query(e.to_string()))?;
        }
        Ok(arguments)
    }
}

/// The column a dimension groups by, as text (`NULL` stays `NULL`).
fn dimension_sql(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::ControlPlane => "control_plane_id",
        Dimension::Service => "service_id",
        Dimension::Route => "route_id",
        Dimension::Consumer => "consumer_id",
        Dimension::Status => "CAST(status AS TEXT)",
        Dimension::Node => "node_id",
        Dimension::Region => "region",
    }
}

/// What one row contributes to [`Totals`].
struct Measured {
    status: u16,
    total_us: u64,
    upstream_us: Option<u64>,
    edge_us: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Measured {
    fn read(row: &SqliteRow) -> Result<Measured, StoreError> {
        let int = |name: &str| row.try_get::<i64, _>(name).map_err(query_failed);
        Ok(Measured {
            status: u16::try_from(int("status")?).unwrap_or(0),
            total_us: unsigned(int("latency_total_us")?),
            upstream_us: row
                .try_get::<Option<i64>, _>("latency_upstream_us")
                .map_err(query_failed)?
                .map(unsigned),
            edge_us: unsigned(int("latency_edge_us")?),
            bytes_in: unsigned(int("bytes_in")?),
            bytes_out: unsigned(int("bytes_out")?),
        })
    }
}

/// Counts rows into [`Totals`]; keeps latencies until the end for the percentiles.
#[derive(Default)]
struct Tally {
    requests: u64,
    errors_4xx: u64,
    errors_5xx: u64,
    bytes_in: u64,
    bytes_out: u64,
    total_us: Vec<u64>,
    upstream_us: Vec<u64>,
    edge_us: Vec<u64>,
}

impl Tally {
    fn add(&mut self, row: Measured) {
        self.requests += 1;
        match row.status {
            400..=499 => self.errors_4xx += 1,
            500..=599 => self.errors_5xx += 1,
            _ => {}
        }
        self.bytes_in += row.bytes_in;
        self.bytes_out += row.bytes_out;
        self.total_us.push(row.total_us);
        if let Some(upstream) = row.upstream_us {
            self.upstream_us.push(upstream);
        }
        self.edge_us.push(row.edge_us);
    }

    fn totals(mut self) -> Totals {
        Totals {
            requests: self.requests,
            errors_4xx: self.errors_4xx,
            errors_5xx: self.errors_5xx,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_ms: Latencies {
                total: percentiles_ms(&mut self.total_us),
                upstream: percentiles_ms(&mut self.upstream_us),
                edge: percentiles_ms(&mut self.edge_us),
            },
        }
    }
}

/// The nearest-rank percentile of sorted `values`: the smallest value such that at least
/// `percent`% of all values are at or below it, i.e. the value of rank ⌈percent/100 · n⌉
/// (1-based). `None` when there are no values.
pub fn nearest_rank(sorted: &[u64], percent: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(percent) * n).div_ceil(100).clamp(1, n);
    usize::try_from(rank - 1)
        .ok()
        .and_then(|i| sorted.get(i))
        .copied()
}

/// p50/p95/p99 of microsecond values, in milliseconds; zero without values.
fn percentiles_ms(values: &mut [u64]) -> Percentiles {
    values.sort_unstable();
    let ms = |percent| nearest_rank(values, percent).map_or(0.0, |us| us as f64 / 1000.0);
    Percentiles {
        p50: ms(50),
        p95: ms(95),
        p99: ms(99),
    }
}

/// `None` (no value) orders after every value, as ClickHouse's default `NULLS LAST` does.
fn nulls_last(key: &Option<String>) -> (bool, Option<&str>) {
    (key.is_none(), key.as_deref())
}

fn read_log(row: &SqliteRow) -> Result<RequestLog, StoreError> {
    let text = |name: &str| row.try_get::<String, _>(name).map_err(query_failed);
    let optional_text = |name: &str| row.try_get::<Option<String>, _>(name).map_err(query_failed);
    let int = |name: &str| row.try_get::<i64, _>(name).map_err(query_failed);
    let optional_id = |name: &str| -> Result<Option<Uuid>, StoreError> {
        optional_text(name)?.as_deref().map(uuid_of).transpose()
    };
    Ok(RequestLog {
        id: uuid_of(&text("id")?)?,
        time: time_of(int("time_ms")?)?,
        organization_id: uuid_of(&text("organization_id")?)?,
        control_plane_id: uuid_of(&text("control_plane_id")?)?,
        node_id: uuid_of(&text("node_id")?)?,
        region: text("region")?,
        request_id: text("request_id")?,
        service_id: optional_id("service_id")?,
        route_id: optional_id("route_id")?,
        consumer_id: optional_id("consumer_id")?,
        method: text("method")?,
        host: text("host")?,
        path: text("path")?,
        status: u16::try_from(int("status")?).unwrap_or(0),
        latency_total_us: unsigned(int("latency_total_us")?),
        latency_upstream_us: row
            .try_get::<Option<i64>, _>("latency_upstream_us")
            .map_err(query_failed)?
            .map(unsigned),
        latency_edge_us: unsigned(int("latency_edge_us")?),
        bytes_in: unsigned(int("bytes_in")?),
        bytes_out: unsigned(int("bytes_out")?),
        client_ip: text("client_ip")?,
        ai: AiUsage {
            provider: optional_text("ai_provider")?,
            model: optional_text("ai_model")?,
            prompt_tokens: unsigned(int("ai_prompt_tokens")?),
            completion_tokens: unsigned(int("ai_completion_tokens")?),
            cost_micros: unsigned(int("ai_cost_micros")?),
        },
    })
}

fn bind_log<'q>(
    query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    log: &'q RequestLog,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    let id = |id: Option<Uuid>| id.map(|id| id.to_string());
    query
        .bind(log.id.to_string())
        .bind(log.time.timestamp_millis())
        .bind(log.organization_id.to_string())
        .bind(log.control_plane_id.to_string())
        .bind(log.node_id.to_string())
        .bind(&log.region)
        .bind(&log.request_id)
        .bind(id(log.service_id))
        .bind(id(log.route_id))
        .bind(id(log.consumer_id))
        .bind(&log.method)
        .bind(&log.host)
        .bind(&log.path)
        .bind(i64::from(log.status))
        .bind(signed(log.latency_total_us))
        .bind(log.latency_upstream_us.map(signed))
        .bind(signed(log.latency_edge_us))
        .bind(signed(log.bytes_in))
        .bind(signed(log.bytes_out))
        .bind(&log.client_ip)
        .bind(log.ai.provider.as_deref())
        .bind(log.ai.model.as_deref())
        .bind(signed(log.ai.prompt_tokens))
        .bind(signed(log.ai.completion_tokens))
        .bind(signed(log.ai.cost_micros))
}

#[async_trait::async_trait]
impl AnalyticsStore for SqliteStore {
    async fn insert(&self, batches: &[LogBatch]) -> Result<Inserted, StoreError> {
        let mut inserted = Inserted::default();
        if batches.is_empty() {
            return Ok(inserted);
        }
        // One transaction per call: the caller acknowledges the whole call or none of it.
        let mut txn = self.pool.begin().await.map_err(query_failed)?;
        let now_ms = Utc::now().timestamp_millis();
        for batch in batches {
            let claimed = sqlx::query(
                "INSERT OR IGNORE INTO log_batches (id, node_id, rows, stored_at_ms) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(batch.id.to_string())
            .bind(batch.node_id.to_string())
            .bind(i64::try_from(batch.logs.len()).unwrap_or(i64::MAX))
            .bind(now_ms)
            .execute(&mut *txn)
            .await
            .map_err(query_failed)?;
            if claimed.rows_affected() == 0 {
                inserted.duplicate_batches += 1;
                continue;
            }
            for log in &batch.logs {
                // A log id is unique, so a line can never count twice even if it were shipped
                // again under another batch id.
                let written = bind_log(sqlx::query(INSERT_LOG), log)
                    .execute(&mut *txn)
                    .await
                    .map_err(query_failed)?;
                inserted.rows += written.rows_affected();
            }
        }
        txn.commit().await.map_err(query_failed)?;
        Ok(inserted)
    }

    async fn series(
        &self,
        organization: Uuid,
        query: &SeriesQuery,
    ) -> Result<Vec<Point>, StoreError> {
        let width_ms = query.bucket.width().num_milliseconds();
        // Integer division floors toward zero; every stored time is after 1970, so this is the
        // UTC bucket start.
        let mut extra = format!(", (time_ms / {width_ms}) * {width_ms} AS bucket_ms");
        if let Some(dimension) = query.group_by {
            extra.push_str(&format!(", {} AS key", dimension_sql(dimension)));
        }
        let selection = Selection::new(organization, &query.range, &query.filters);
        let mut tallies: BTreeMap<(i64, (bool, Option<String>)), Tally> = BTreeMap::new();
        self.scan(&selection, &extra, |row, measured| {
            let bucket = row.try_get::<i64, _>("bucket_ms").map_err(query_failed)?;
            let key = match query.group_by {
                Some(_) => row
                    .try_get::<Option<String>, _>("key")
                    .map_err(query_failed)?,
                None => None,
            };
            tallies
                .entry((bucket, (key.is_none(), key)))
                .or_default()
                .add(measured);
            Ok(())
        })
        .await?;
        tallies
            .into_iter()
            .map(|((bucket, (_, group)), tally)| {
                Ok(Point {
                    time: time_of(bucket)?,
                    group,
                    totals: tally.totals(),
                })
            })
            .collect()
    }

    async fn top(&self, organization: Uuid, query: &TopQuery) -> Result<Vec<TopRow>, StoreError> {
        let extra = format!(", {} AS key", dimension_sql(query.by));
        let selection = Selection::new(organization, &query.range, &query.filters);
        let mut tallies: BTreeMap<Option<String>, Tally> = BTreeMap::new();
        self.scan(&selection, &extra, |row, measured| {
            let key = row
                .try_get::<Option<String>, _>("key")
                .map_err(query_failed)?;
            tallies.entry(key).or_default().add(measured);
            Ok(())
        })
        .await?;
        let mut rows: Vec<TopRow> = tallies
            .into_iter()
            .map(|(key, tally)| TopRow {
                key,
                totals: tally.totals(),
            })
            .collect();
        // Most requests first; ties by key so the order is stable between calls.
        rows.sort_by(|a, b| {
            b.totals
                .requests
                .cmp(&a.totals.requests)
                .then_with(|| nulls_last(&a.key).cmp(&nulls_last(&b.key)))
        });
        rows.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
        Ok(rows)
    }

    async fn totals(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
    ) -> Result<Totals, StoreError> {
        let selection = Selection::new(organization, range, filters);
        let mut tally = Tally::default();
        self.scan(&selection, "", |_, measured| {
            tally.add(measured);
            Ok(())
        })
        .await?;
        Ok(tally.totals())
    }

    async fn recent(
        &self,
        organization: Uuid,
        range: &TimeRange,
        filters: &Filters,
        limit: u32,
    ) -> Result<Vec<RequestLog>, StoreError> {
        let selection = Selection::new(organization, range, filters);
        let sql = format!(
            "SELECT * FROM request_logs WHERE {} ORDER BY time_ms DESC, id DESC LIMIT {limit}",
            selection.sql
        );
        let rows = sqlx::query_with(&sql, selection.arguments()?)
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed)?;
        rows.iter().map(read_log).collect()
    }

    async fn usage(&self, organization: Uuid, month: Month) -> Result<Usage, StoreError> {
        let range = month.range();
        let selection = Selection::new(organization, &range, &Filters::default());
        let day_ms = chrono::Duration::days(1).num_milliseconds();
        let sql = format!(
            "SELECT time_ms / {day_ms} AS day, control_plane_id, COUNT(*) AS requests, \
             SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out \
             FROM request_logs WHERE {} GROUP BY day, control_plane_id",
            selection.sql
        );
        let rows = sqlx::query_with(&sql, selection.arguments()?)
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed)?;
        let mut tally = UsageTally::default();
        for row in &rows {
            let int = |name: &str| row.try_get::<i64, _>(name).map_err(query_failed);
            let control_plane = row
                .try_get::<String, _>("control_plane_id")
                .map_err(query_failed)?;
            tally.add(
                time_of(int("day")? * day_ms)?.date_naive(),
                uuid_of(&control_plane)?,
                unsigned(int("requests")?),
                unsigned(int("bytes_in")?),
                unsigned(int("bytes_out")?),
            );
        }
        Ok(tally.finish(month, Utc::now().date_naive()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_the_smallest_value_covering_the_percent() {
        let values = [1, 2, 3, 10, 20, 30, 40];
        assert_eq!(nearest_rank(&values, 50), Some(10));
        assert_eq!(nearest_rank(&values, 95), Some(40));
        assert_eq!(nearest_rank(&[5, 7], 50), Some(5));
        assert_eq!(nearest_rank(&[5, 7], 51), Some(7));
        assert_eq!(nearest_rank(&[9], 1), Some(9));
        assert_eq!(nearest_rank(&[], 50), None);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 99), Some(99));
        assert_eq!(nearest_rank(&hundred, 100), Some(100));
    }

    #[test]
    fn a_month_shows_its_days_up_to_today() {
        let march = Month {
            year: 2026,
            month: 3,
        };
        let date = |d| chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let counted = || {
            let mut tally = UsageTally::default();
            tally.add(date(2), Uuid::from_u128(1), 4, 1, 2);
            tally
        };
        let usage = counted().finish(march, date(5));
        assert_eq!(usage.days.len(), 5);
        assert_eq!(usage.days[1].requests, 4);
        assert_eq!(usage.requests, 4);
        let over = counted().finish(march, date(5) + chrono::Days::new(60));
        assert_eq!(over.days.len(), 31);
        assert_eq!(over.days.last().unwrap().date, date(31));
        let not_begun = UsageTally::default().finish(march, date(1).pred_opt().unwrap());
        assert!(not_begun.days.is_empty());
    }
}
