//! Rows as they travel in ClickHouse's RowBinary format: fields in the order of the table's (or
//! the query's) columns, `DateTime` as seconds, `Date` as days since the epoch.

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use tollgate_model::request_log::{AiUsage, RequestLog};
use uuid::Uuid;

use crate::query::{Latencies, Percentiles, Totals};

/// One `request_logs` row, borrowing from the batch it came in.
#[derive(Row, Serialize)]
pub(crate) struct LogRow<'a> {
    pub time: u32,
    pub time_ms: u16,
    #[serde(with = "clickhouse::serde::uuid")]
    pub organization_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub control_plane_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub node_id: Uuid,
    pub region: &'a str,
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub batch_id: Uuid,
    pub request_id: &'a str,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub service_id: Option<Uuid>,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub route_id: Option<Uuid>,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub consumer_id: Option<Uuid>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_total_us: u64,
    pub latency_upstream_us: Option<u64>,
    pub latency_edge_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: &'a str,
    pub ai_provider: Option<&'a str>,
    pub ai_model: Option<&'a str>,
    pub ai_prompt_tokens: u64,
    pub ai_completion_tokens: u64,
    pub ai_cost_micros: u64,
}

impl<'a> LogRow<'a> {
    pub(crate) fn new(batch_id: Uuid, log: &'a RequestLog) -> Self {
        LogRow {
            time: super::sql::seconds(log.time),
            // A leap second shows as 1000+ ms in chrono; the column holds 0-999.
            time_ms: log.time.timestamp_subsec_millis().min(999) as u16,
            organization_id: log.organization_id,
            control_plane_id: log.control_plane_id,
            node_id: log.node_id,
            region: &log.region,
            id: log.id,
            batch_id,
            request_id: &log.request_id,
            service_id: log.service_id,
            route_id: log.route_id,
            consumer_id: log.consumer_id,
            method: &log.method,
            host: &log.host,
            path: &log.path,
            status: log.status,
            latency_total_us: log.latency_total_us,
            latency_upstream_us: log.latency_upstream_us,
            latency_edge_us: log.latency_edge_us,
            bytes_in: log.bytes_in,
            bytes_out: log.bytes_out,
            client_ip: &log.client_ip,
            ai_provider: log.ai.provider.as_deref(),
            ai_model: log.ai.model.as_deref(),
            ai_prompt_tokens: log.ai.prompt_tokens,
            ai_completion_tokens: log.ai.completion_tokens,
            ai_cost_micros: log.ai.cost_micros,
        }
    }
}

/// The columns `recent` selects, in [`LogRow`]'s order minus `batch_id`.
pub(crate) const RECENT_COLUMNS: &str = "time, time_ms, organization_id, control_plane_id, \
    node_id, region, id, request_id, service_id, route_id, consumer_id, method, host, path, \
    status, latency_total_us, latency_upstream_us, latency_edge_us, bytes_in, bytes_out, \
    client_ip, ai_provider, ai_model, ai_prompt_tokens, ai_completion_tokens, ai_cost_micros";

#[derive(Row, Deserialize)]
pub(crate) struct RecentRow {
    pub time: u32,
    pub time_ms: u16,
    #[serde(with = "clickhouse::serde::uuid")]
    pub organization_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub control_plane_id: Uuid,
    #[serde(with = "clickhouse::serde::uuid")]
    pub node_id: Uuid,
    pub region: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    pub request_id: String,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub service_id: Option<Uuid>,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub route_id: Option<Uuid>,
    #[serde(with = "clickhouse::serde::uuid::option")]
    pub consumer_id: Option<Uuid>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub latency_total_us: u64,
    pub latency_upstream_us: Option<u64>,
    pub latency_edge_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: String,
    pub ai_provider: Option<String>,
    pub ai_model: Option<String>,
    pub ai_prompt_tokens: u64,
    pub ai_completion_tokens: u64,
    pub ai_cost_micros: u64,
}

impl From<RecentRow> for RequestLog {
    fn from(row: RecentRow) -> Self {
        let millis = i64::from(row.time) * 1000 + i64::from(row.time_ms);
        RequestLog {
            id: row.id,
            time: DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default(),
            organization_id: row.organization_id,
            control_plane_id: row.control_plane_id,
            node_id: row.node_id,
            region: row.region,
            request_id: row.request_id,
            service_id: row.service_id,
            route_id: row.route_id,
            consumer_id: row.consumer_id,
            method: row.method,
            host: row.host,
            path: row.path,
            status: row.status,
            latency_total_us: row.latency_total_us,
            latency_upstream_us: row.latency_upstream_us,
            latency_edge_us: row.latency_edge_us,
            bytes_in: row.bytes_in,
            bytes_out: row.bytes_out,
            client_ip: row.client_ip,
            ai: AiUsage {
                provider: row.ai_provider,
                model: row.ai_model,
                prompt_tokens: row.ai_prompt_tokens,
                completion_tokens: row.ai_completion_tokens,
                cost_micros: row.ai_cost_micros,
            },
        }
    }
}

/// [`super::sql::MEASURES`]: counts, sums, and t-digest quantiles (p50, p95, p99) in µs.
#[derive(Deserialize)]
pub(crate) struct Measures {
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_total: Vec<f32>,
    pub latency_upstream: Vec<f32>,
    pub latency_edge: Vec<f32>,
}

impl Measures {
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            requests: self.requests,
            errors_4xx: self.errors_4xx,
            errors_5xx: self.errors_5xx,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            latency_ms: Latencies {
                total: percentiles_ms(&self.latency_total),
                upstream: percentiles_ms(&self.latency_upstream),
                edge: percentiles_ms(&self.latency_edge),
            },
        }
    }
}

/// Microsecond quantiles to milliseconds. A digest of no values gives NaN: zero, as documented
/// for [`Percentiles`].
fn percentiles_ms(micros: &[f32]) -> Percentiles {
    let ms = |i: usize| {
        let v = micros.get(i).copied().unwrap_or(0.0);
        if v.is_finite() {
            f64::from(v) / 1000.0
        } else {
            0.0
        }
    };
    Percentiles {
        p50: ms(0),
        p95: ms(1),
        p99: ms(2),
    }
}

#[derive(Row, Deserialize)]
pub(crate) struct SeriesRow {
    pub bucket: u32,
    pub group: String,
    pub measures: Measures,
}

#[derive(Row, Deserialize)]
pub(crate) struct TopRowData {
    pub key: String,
    pub measures: Measures,
}

#[derive(Row, Deserialize)]
pub(crate) struct TotalsRow {
    pub measures: Measures,
}

#[derive(Row, Deserialize)]
pub(crate) struct UsageRow {
    /// Days since 1970-01-01.
    pub day: u16,
    #[serde(with = "clickhouse::serde::uuid")]
    pub control_plane_id: Uuid,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub(crate) fn date_of(days: u16) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_days(chrono::Days::new(u64::from(days))))
        .unwrap_or_default()
}

#[derive(Row, Deserialize)]
pub(crate) struct BatchIdRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub batch_id: Uuid,
}
