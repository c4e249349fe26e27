//! Traffic analytics and usage metering over the request logs (DESIGN §9): time series, top-N
//! tables, totals, recent requests and monthly usage (JSON or CSV). The tenant is always the
//! caller's organization; query parameters only narrow within it, and a `control_plane` that is
//! not the caller's answers 404 like every other endpoint. Any member role may read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tollgate_analytics::query::{
    Bucket, Dimension, FieldErrors, Filters, Month, Point, SeriesQuery, TimeRange, TopQuery,
    Totals, Usage, MAX_TOP,
};
use tollgate_analytics::AnalyticsStore;
use tollgate_model::request_log::RequestLog;
use tollgate_model::ValidationError;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::find_control_plane;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::store::{control_planes, entities, nodes};

/// The range when `from` and `to` are both left out: the last hour.
const DEFAULT_SPAN: Duration = Duration::hours(1);
const DEFAULT_TOP: u32 = 10;
const DEFAULT_RECENT: u32 = 100;
const MAX_RECENT: u32 = 1000;

/// `Query<T>` whose refusals (a repeated parameter, bad percent-encoding) are the API's own
/// error body instead of axum's plain text.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
    }
}

/// The time range of a query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// RFC 3339 start (inclusive), e.g. `2026-11-26T09:00:00Z`; default: an hour before `to`.
    pub from: Option<String>,
    /// RFC 3339 end (exclusive); default: now.
    pub to: Option<String>,
}

/// Filters; every one given must hold.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Control plane id or slug (one of yours; another's is 404).
    pub control_plane: Option<String>,
    /// Service id.
    pub service: Option<String>,
    /// Route id.
    pub route: Option<String>,
    /// Consumer id.
    pub consumer: Option<String>,
    /// An exact status code, e.g. `404`.
    pub status: Option<String>,
    /// Edge node id.
    pub node: Option<String>,
    /// Region name, e.g. `default`.
    pub region: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// `minute`, `hour` or `day` (UTC). Default: minute for ranges up to a day, hour up to 60
    /// days, day beyond.
    pub bucket: Option<String>,
    /// One series per value of `control_plane`, `service`, `route`, `consumer`, `status`,
    /// `node` or `region`; default: one series.
    pub group_by: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopParams {
    /// What to rank: `control_plane`, `service`, `route`, `consumer`, `status`, `node` or
    /// `region`; default `route`.
    pub by: Option<String>,
    /// Rows, 1 to 1000; default 10.
    pub limit: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentParams {
    /// Requests, 1 to 1000; default 100.
    pub limit: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// `YYYY-MM` (UTC); default: the current month.
    pub month: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesResponse {
    pub bucket: Bucket,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: Option<Dimension>,
    /// One point per bucket (and group) that had requests, in time order; within a bucket by
    /// group, requests without a value last.
    pub data: Vec<Point>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopEntry {
    /// The value ranked: an id, a status code or a region; null for requests without one (no
    /// route matched, no consumer).
    pub key: Option<String>,
    /// For control planes, services, routes and consumers the current name, for nodes the
    /// hostname; null when it has none or no longer exists.
    pub name: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopResponse {
    pub by: Dimension,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Most requests first; ties by key.
    pub data: Vec<TopEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotalsResponse {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// One request as the edge logged it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestLine {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub control_plane_id: Uuid,
    pub node_id: Uuid,
    pub region: String,
    /// `X-Request-Id`.
    pub request_id: String,
    pub service_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub consumer_id: Option<Uuid>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub latency_total_us: u64,
    /// Null when nothing went upstream.
    pub latency_upstream_us: Option<u64>,
    pub latency_edge_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: String,
}

impl From<RequestLog> for RequestLine {
    fn from(log: RequestLog) -> Self {
        RequestLine {
            id: log.id,
            time: log.time,
            control_plane_id: log.control_plane_id,
            node_id: log.node_id,
            region: log.region,
            request_id: log.request_id,
            service_id: log.service_id,
            route_id: log.route_id,
            consumer_id: log.consumer_id,
            method: log.method,
            host: log.host,
            path: log.path,
            status: log.status,
            latency_total_us: log.latency_total_us,
            latency_upstream_us: log.latency_upstream_us,
            latency_edge_us: log.latency_edge_us,
            bytes_in: log.bytes_in,
            bytes_out: log.bytes_out,
            client_ip: log.client_ip,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestsResponse {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Newest first.
    pub data: Vec<RequestLine>,
}

/// The store, or 503 when this server was started without one.
pub fn store(state: &AppState) -> ApiResult<Arc<dyn AnalyticsStore>> {
    state.analytics.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "analytics are not configured on this server (tollgate api needs an analytics \
             store such as --clickhouse-url)"
                .into(),
        )
    })
}

fn refused(errors: FieldErrors) -> ApiError {
    ApiError::Validation(ValidationError { fields: errors })
}

fn parse_time(name: &str, value: &str, errors: &mut FieldErrors) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(value) {
        Ok(time) => Some(time.with_timezone(&Utc)),
        Err(_) => {
            errors.insert(
                name.into(),
                format!("'{value}' is not an RFC 3339 time, e.g. 2026-11-26T09:00:00Z"),
            );
            None
        }
    }
}

/// `from`/`to` with their defaults (the hour before `to`; `to` is now). `None` after recording
/// an error.
fn time_range(params: &RangeParams, errors: &mut FieldErrors) -> Option<TimeRange> {
    let to = match &params.to {
        Some(value) => parse_time("to", value, errors),
        None => Some(Utc::now()),
    };
    let from = match &params.from {
        Some(value) => parse_time("from", value, errors),
        None => to.map(|to| to - DEFAULT_SPAN),
    };
    let range = TimeRange {
        from: from?,
        to: to?,
    };
    range.validate(errors);
    Some(range)
}

fn parse_id(name: &str, value: Option<&String>, errors: &mut FieldErrors) -> Option<Uuid> {
    let value = value?;
    match Uuid::parse_str(value) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.insert(name.into(), format!("'{value}' is not an id"));
            None
        }
    }
}

fn parse_limit(value: Option<&String>, default: u32, max: u32, errors: &mut FieldErrors) -> u32 {
    match value {
        None => default,
        Some(value) => match value.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.insert("limit".into(), format!("must be 1 to {max}"));
                default
            }
        },
    }
}

fn parse_dimension(name: &str, value: &str, errors: &mut FieldErrors) -> Option<Dimension> {
    match value.parse::<Dimension>() {
        Ok(dimension) => Some(dimension),
        Err(message) => {
            errors.insert(name.into(), message);
            None
        }
    }
}

/// Filters from the query string. Values that do not parse are recorded in `errors`; the
/// control plane is looked up afterwards by [`scope_control_plane`].
fn filters(params: &FilterParams, errors: &mut FieldErrors) -> Filters {
    let status = params
        .status
        .as_ref()
        .and_then(|value| match value.parse::<u16>() {
            Ok(status) => Some(status),
            Err(_) => {
                errors.insert(
                    "status".into(),
                    "must be an HTTP status code (100-599)".into(),
                );
                None
            }
        });
    let filters = Filters {
        control_plane: None,
        service: parse_id("service", params.service.as_ref(), errors),
        route: parse_id("route", params.route.as_ref(), errors),
        consumer: parse_id("consumer", params.consumer.as_ref(), errors),
        status,
        node: parse_id("node", params.node.as_ref(), errors),
        region: params.region.clone(),
    };
    filters.validate(errors);
    filters
}

/// Resolves `control_plane` (id or slug) among the caller's control planes: another tenant's
/// answers 404, exactly as its own endpoints do.
async fn scope_control_plane(
    state: &AppState,
    auth: &Auth,
    params: &FilterParams,
    filters: &mut Filters,
) -> ApiResult<()> {
    if let Some(cp) = &params.control_plane {
        let found = find_control_plane(&state.db, auth.organization_id, cp).await?;
        filters.control_plane = Some(found.id);
    }
    Ok(())
}

/// The bucket that keeps a range within a chart's reach when none is asked for.
fn default_bucket(range: &TimeRange) -> Bucket {
    let span = range.to - range.from;
    if span <= Duration::days(1) {
        Bucket::Minute
    } else if span <= Duration::days(60) {
        Bucket::Hour
    } else {
        Bucket::Day
    }
}

/// Requests, errors, bytes and latency percentiles over time.
#[utoipa::path(get, path = "/api/v1/analytics/series", tag = "analytics",
    params(RangeParams, SeriesParams, FilterParams),
    responses((status = 200, body = SeriesResponse),
        (status = 400, body = ErrorBody, description = "`fields` names the bad parameter"),
        (status = 404, body = ErrorBody, description = "`control_plane` is not one of yours"),
        (status = 503, body = ErrorBody, description = "no analytics store")))]
pub async fn series(
    State(state): State<AppState>,
    auth: Auth,
    Params(range): Params<RangeParams>,
    Params(series): Params<SeriesParams>,
    Params(filter): Params<FilterParams>,
) -> ApiResult<Json<SeriesResponse>> {
    let store = store(&state)?;
    let mut errors = FieldErrors::new();
    let range = time_range(&range, &mut errors);
    let bucket = match series.bucket.as_deref() {
        None => range.as_ref().map_or(Bucket::Minute, default_bucket),
        Some("minute") => Bucket::Minute,
        Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        Some(_) => {
            errors.insert("bucket".into(), "must be minute, hour or day".into());
            Bucket::Minute
        }
    };
    let group_by = series
        .group_by
        .as_deref()
        .and_then(|g| parse_dimension("group_by", g, &mut errors));
    let mut filters = filters(&filter, &mut errors);
    let range = match range {
        Some(range) if errors.is_empty() => range,
        _ => return Err(refused(errors)),
    };
    let query = SeriesQuery {
        range,
        bucket,
        filters: filters.clone(),
        group_by,
    };
    query.validate().map_err(refused)?;
    scope_control_plane(&state, &auth, &filter, &mut filters).await?;
    let query = SeriesQuery { filters, ..query };
    let data = store.series(auth.organization_id, &query).await?;
    Ok(Json(SeriesResponse {
        bucket,
        from: range.from,
        to: range.to,
        group_by,
        data,
    }))
}

/// The values of one dimension with the most requests, with their current names.
#[utoipa::path(get, path = "/api/v1/analytics/top", tag = "analytics",
    params(RangeParams, TopParams, FilterParams),
    responses((status = 200, body = TopResponse),
        (status = 400, body = ErrorBody, description = "`fields` names the bad parameter"),
        (status = 404, body = ErrorBody, description = "`control_plane` is not one of yours"),
        (status = 503, body = ErrorBody, description = "no analytics store")))]
pub async fn top(
    State(state): State<AppState>,
    auth: Auth,
    Params(range): Params<RangeParams>,
    Params(top): Params<TopParams>,
    Params(filter): Params<FilterParams>,
) -> ApiResult<Json<TopResponse>> {
    let store = store(&state)?;
    let mut errors = FieldErrors::new();
    let range = time_range(&range, &mut errors);
    let by = match top.by.as_deref() {
        None => Some(Dimension::Route),
        Some(by) => parse_dimension("by", by, &mut errors),
    };
    let limit = parse_limit(top.limit.as_ref(), DEFAULT_TOP, MAX_TOP, &mut errors);
    let mut filters = filters(&filter, &mut errors);
    let (range, by) = match (range, by) {
        (Some(range), Some(by)) if errors.is_empty() => (range, by),
        _ => return Err(refused(errors)),
    };
    let query = TopQuery {
        range,
        filters: filters.clone(),
        by,
        limit,
    };
    query.validate().map_err(refused)?;
    scope_control_plane(&state, &auth, &filter, &mut filters).await?;
    let rows = store
        .top(auth.organization_id, &TopQuery { filters, ..query })
        .await?;
    let keys: Vec<Uuid> = rows
        .iter()
        .filter_map(|row| row.key.as_deref().and_then(|k| Uuid::parse_str(k).ok()))
        .collect();
    let names = names(&state, auth.organization_id, by, &keys).await?;
    let data = rows
        .into_iter()
        .map(|row| TopEntry {
            name: row
                .key
                .as_deref()
                .and_then(|k| Uuid::parse_str(k).ok())
                .and_then(|id| names.get(&id).cloned()),
            key: row.key,
            totals: row.totals,
        })
        .collect();
    Ok(Json(TopResponse {
        by,
        from: range.from,
        to: range.to,
        data,
    }))
}

/// The current names of the caller's `ids` of kind `by` (nodes: hostnames). What no longer
/// exists, or has no name, is left out.
async fn names(
    state: &AppState,
    organization: Uuid,
    by: Dimension,
    ids: &[Uuid],
) -> ApiResult<BTreeMap<Uuid, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids = ids.iter().copied();
    let kind = match by {
        Dimension::ControlPlane => {
            let planes = control_planes::Entity::find()
                .filter(control_planes::Column::OrganizationId.eq(organization))
                .filter(control_planes::Column::Id.is_in(ids))
                .all(&state.db)
                .await?;
            return Ok(planes.into_iter().map(|cp| (cp.id, cp.name)).collect());
        }
        Dimension::Node => {
            let rows = nodes::Entity::find()
                .filter(nodes::Column::OrganizationId.eq(organization))
                .filter(nodes::Column::NodeId.is_in(ids))
                .all(&state.db)
                .await?;
            return Ok(rows.into_iter().map(|n| (n.node_id, n.hostname)).collect());
        }
        Dimension::Service => "services",
        Dimension::Route => "routes",
        Dimension::Consumer => "consumers",
        Dimension::Status | Dimension::Region => return Ok(BTreeMap::new()),
    };
    let rows = entities::Entity::find()
        .filter(entities::Column::OrganizationId.eq(organization))
        .filter(entities::Column::Kind.eq(kind))
        .filter(entities::Column::Id.is_in(ids))
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|e| e.name.map(|name| (e.id, name)))
        .collect())
}

/// Everything counted over the range: requests, errors, bytes and latency percentiles.
#[utoipa::path(get, path = "/api/v1/analytics/totals", tag = "analytics",
    params(RangeParams, FilterParams),
    responses((status = 200, body = TotalsResponse),
        (status = 400, body = ErrorBody, description = "`fields` names the bad parameter"),
        (status = 404, body = ErrorBody, description = "`control_plane` is not one of yours"),
        (status = 503, body = ErrorBody, description = "no analytics store")))]
pub async fn totals(
    State(state): State<AppState>,
    auth: Auth,
    Params(range): Params<RangeParams>,
    Params(filter): Params<FilterParams>,
) -> ApiResult<Json<TotalsResponse>> {
    let store = store(&state)?;
    let mut errors = FieldErrors::new();
    let range = time_range(&range, &mut errors);
    let mut filters = filters(&filter, &mut errors);
    let range = match range {
        Some(range) if errors.is_empty() => range,
        _ => return Err(refused(errors)),
    };
    scope_control_plane(&state, &auth, &filter, &mut filters).await?;
    let totals = store.totals(auth.organization_id, &range, &filters).await?;
    Ok(Json(TotalsResponse {
        from: range.from,
        to: range.to,
        totals,
    }))
}

/// The latest requests, newest first.
#[utoipa::path(get, path = "/api/v1/analytics/requests", tag = "analytics",
    params(RangeParams, RecentParams, FilterParams),
    responses((status = 200, body = RequestsResponse),
        (status = 400, body = ErrorBody, description = "`fields` names the bad parameter"),
        (status = 404, body = ErrorBody, description = "`control_plane` is not one of yours"),
        (status = 503, body = ErrorBody, description = "no analytics store")))]
pub async fn requests(
    State(state): State<AppState>,
    auth: Auth,
    Params(range): Params<RangeParams>,
    Params(recent): Params<RecentParams>,
    Params(filter): Params<FilterParams>,
) -> ApiResult<Json<RequestsResponse>> {
    let store = store(&state)?;
    let mut errors = FieldErrors::new();
    let range = time_range(&range, &mut errors);
    let limit = parse_limit(
        recent.limit.as_ref(),
        DEFAULT_RECENT,
        MAX_RECENT,
        &mut errors,
    );
    let mut filters = filters(&filter, &mut errors);
    let range = match range {
        Some(range) if errors.is_empty() => range,
        _ => return Err(refused(errors)),
    };
    scope_control_plane(&state, &auth, &filter, &mut filters).await?;
    let logs = store
        .recent(auth.organization_id, &range, &filters, limit)
        .await?;
    Ok(Json(RequestsResponse {
        from: range.from,
        to: range.to,
        data: logs.into_iter().map(RequestLine::from).collect(),
    }))
}

/// The month's usage with control plane names from the database (empty when deleted).
async fn month_usage(state: &AppState, auth: &Auth, params: &UsageParams) -> ApiResult<Usage> {
    let store = store(state)?;
    let month = match &params.month {
        None => Month::of(Utc::now()),
        Some(value) => value
            .parse::<Month>()
            .map_err(|message| ApiError::field("month", message))?,
    };
    let mut usage = store.usage(auth.organization_id, month).await?;
    let ids: BTreeSet<Uuid> = usage.control_planes.iter().map(|c| c.id).collect();
    let names = names(
        state,
        auth.organization_id,
        Dimension::ControlPlane,
        &ids.into_iter().collect::<Vec<_>>(),
    )
    .await?;
    for cp in &mut usage.control_planes {
        cp.name = names.get(&cp.id).cloned().unwrap_or_default();
    }
    Ok(usage)
}

/// Requests and bytes per day and per control plane over a month, for billing. Sends CSV (one
/// row per day) when asked with `Accept: text/csv`.
#[utoipa::path(get, path = "/api/v1/usage", tag = "usage",
    params(UsageParams),
    responses((status = 200, body = Usage),
        (status = 200, content_type = "text/csv", body = String,
            description = "`date,requests,bytes_in,bytes_out`, one row per day"),
        (status = 400, body = ErrorBody, description = "`fields.month`"),
        (status = 503, body = ErrorBody, description = "no analytics store")))]
pub async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Params(params): Params<UsageParams>,
) -> ApiResult<Response> {
    let usage = month_usage(&state, &auth, &params).await?;
    let wants_csv = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"));
    Ok(if wants_csv {
        csv_response(&usage)
    } else {
        Json(usage).into_response()
    })
}

/// The month's usage as CSV, one row per day.
#[utoipa::path(get, path = "/api/v1/usage.csv", tag = "usage",
    params(UsageParams),
    responses((status = 200, content_type = "text/csv", body = String,
            description = "`date,requests,bytes_in,bytes_out`, one row per day"),
        (status = 400, body = ErrorBody, description = "`fields.month`"),
        (status = 503, body = ErrorBody, description = "no analytics store")))]
pub async fn usage_csv(
    State(state): State<AppState>,
    auth: Auth,
    Params(params): Params<UsageParams>,
) -> ApiResult<Response> {
    let usage = month_usage(&state, &auth, &params).await?;
    Ok(csv_response(&usage))
}

/// Dates and integers only, so no field ever needs quoting.
pub fn usage_csv_text(usage: &Usage) -> String {
    let mut csv = String::from("date,requests,bytes_in,bytes_out\n");
    for day in &usage.days {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            day.date, day.requests, day.bytes_in, day.bytes_out
        ));
    }
    csv
}

fn csv_response(usage: &Usage) -> Response {
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"usage-{}.csv\"", usage.month),
            ),
        ],
        usage_csv_text(usage),
    )
        .into_response()
}
