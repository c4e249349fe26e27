//! The Traffic dashboard's server side: reads the time range and filters from the query string,
//! asks the analytics store (tenant from the session, never from the query), puts names on ids
//! and renders the page — or, with `format=csv`, one of its tables as a CSV download.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tollgate_analytics::query::{
    Bucket, Dimension, FieldErrors, Filters, Latencies, Point, SeriesQuery, TimeRange, TopQuery,
    TopRow, Totals,
};
use tollgate_analytics::{AnalyticsStore, StoreError};
use tollgate_console::charts::{fill_buckets, TimeAxis};
use tollgate_console::pages::traffic::{
    traffic_page, Dashboard, FilterForm, RangeForm, Scope, SeriesView, TopEntry, TotalsView,
    TrafficData, TrafficPage, RANGES, TABLES,
};
use uuid::Uuid;

use super::plane_pages::header;
use super::{or_page, ConsoleUser};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{control_planes, entities};

type QueryMap = Query<BTreeMap<String, String>>;

/// Rows in each top-N table.
const TOP_ROWS: u32 = 10;

/// The organization's dashboard, `/traffic`.
pub async fn traffic(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): QueryMap,
) -> Response {
    or_page(&state, dashboard(&state, &user, None, &query).await)
}

/// One control plane's dashboard, its Traffic tab.
pub async fn plane_traffic(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    Query(query): QueryMap,
) -> Response {
    or_page(&state, dashboard(&state, &user, Some(&cp), &query).await)
}

/// A time range and bucket picked from the query, or why not.
struct Window {
    preset: String,
    range: TimeRange,
    bucket: Bucket,
}

const FORM_TIME: &str = "%Y-%m-%dT%H:%M";

/// `datetime-local` input (`2026-11-26T10:00`, read as UTC), with seconds, or RFC 3339.
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    NaiveDateTime::parse_from_str(value, FORM_TIME)
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| t.and_utc())
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(value)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

fn preset_span(preset: &str) -> Option<Duration> {
    Some(match preset {
        "15m" => Duration::minutes(15),
        "1h" => Duration::hours(1),
        "6h" => Duration::hours(6),
        "24h" => Duration::hours(24),
        "7d" => Duration::days(7),
        "30d" => Duration::days(30),
        _ => return None,
    })
}

/// The range the query asks for. Relative ranges end at the end of the current bucket, so the
/// newest bucket is the one requests are landing in now; custom ones are widened to whole
/// buckets.
fn window(
    query: &BTreeMap<String, String>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> Option<Window> {
    let given = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let preset = match given("range") {
        Some(p) => p.to_string(),
        None if given("from").is_some() || given("to").is_some() => "custom".into(),
        None => "1h".into(),
    };
    if let Some(span) = preset_span(&preset) {
        let bucket = Bucket::for_span(span);
        return Some(Window {
            preset,
            range: TimeRange::last(span, bucket, now),
            bucket,
        });
    }
    if preset != "custom" {
        errors.insert(
            "range".into(),
            "must be one of 15m, 1h, 6h, 24h, 7d, 30d or custom".into(),
        );
        return None;
    }
    let mut read = |field: &str| match given(field).map(|v| (v, parse_time(v))) {
        Some((_, Some(t))) => Some(t),
        Some((v, None)) => {
            errors.insert(
                field.into(),
                format!("'{v}' is not a time: use YYYY-MM-DDTHH:MM (UTC)"),
            );
            None
        }
        None => {
            errors.insert(field.into(), "required for a custom range".into());
            None
        }
    };
    let (from, to) = (read("from"), read("to"));
    let (from, to) = (from?, to?);
    if to <= from {
        errors.insert("to".into(), "must be after from".into());
        return None;
    }
    let bucket = Bucket::for_span(to - from);
    let end = bucket.start_of(to);
    let to = if end == to { end } else { end + bucket.width() };
    Some(Window {
        preset,
        range: TimeRange {
            from: bucket.start_of(from),
            to,
        },
        bucket,
    })
}

fn filters_of(query: &BTreeMap<String, String>, errors: &mut FieldErrors) -> Filters {
    let given = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut id = |field: &str| {
        given(field).and_then(|v| match Uuid::parse_str(v) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.insert(field.into(), "must be an id".into());
                None
            }
        })
    };
    let (control_plane, service, route, consumer, node) = (
        id("control_plane"),
        id("service"),
        id("route"),
        id("consumer"),
        id("node"),
    );
    let status = given("status").and_then(|v| match v.parse::<u16>() {
        Ok(s) => Some(s),
        Err(_) => {
            errors.insert(
                "status".into(),
                "must be an HTTP status code (100-599)".into(),
            );
            None
        }
    });
    let filters = Filters {
        control_plane,
        service,
        route,
        consumer,
        status,
        node,
        region: given("region").map(str::to_string),
    };
    filters.validate(errors);
    filters
}

/// Names of what the dashboard shows by id, as they are now.
#[derive(Default)]
struct Names {
    control_planes: Vec<(Uuid, String)>,
    /// `(id, control plane, name)`.
    services: Vec<(Uuid, Uuid, String)>,
    routes: Vec<(Uuid, Uuid, String)>,
}

impl Names {
    async fn load(state: &AppState, organization: Uuid) -> ApiResult<Names> {
        let control_planes = control_planes::Entity::find()
            .filter(control_planes::Column::OrganizationId.eq(organization))
            .order_by_asc(control_planes::Column::Name)
            .all(&state.db)
            .await?
            .into_iter()
            .map(|cp| (cp.id, cp.name))
            .collect();
        let rows = entities::Entity::find()
            .filter(entities::Column::OrganizationId.eq(organization))
            .filter(entities::Column::Kind.is_in(["services", "routes"]))
            .order_by_asc(entities::Column::Name)
            .all(&state.db)
            .await?;
        let mut names = Names {
            control_planes,
            ..Names::default()
        };
        for row in rows {
            let name = row.name.unwrap_or_else(|| row.id.to_string());
            let entry = (row.id, row.control_plane_id, name);
            if row.kind == "services" {
                names.services.push(entry);
            } else {
                names.routes.push(entry);
            }
        }
        Ok(names)
    }

    fn plane(&self, id: Uuid) -> Option<&str> {
        self.control_planes
            .iter()
            .find(|(cp, _)| *cp == id)
            .map(|(_, n)| n.as_str())
    }

    /// `(id, name)` choices of a select: on the organization's dashboard names carry their
    /// control plane, as two planes may each have a service `api`.
    fn choices(
        &self,
        items: &[(Uuid, Uuid, String)],
        scope: Option<Uuid>,
    ) -> Vec<(String, String)> {
        items
            .iter()
            .filter(|(_, cp, _)| scope.is_none_or(|s| s == *cp))
            .map(|(id, cp, name)| {
                let label = match scope {
                    Some(_) => name.clone(),
                    None => format!("{} / {name}", self.plane(*cp).unwrap_or("?")),
                };
                (id.to_string(), label)
            })
            .collect()
    }

    fn label(&self, dimension: Dimension, key: &Option<String>) -> String {
        let Some(key) = key else {
            return match dimension {
                Dimension::Route => "(no route matched)",
                Dimension::Service => "(no service)",
                Dimension::Consumer => "(no consumer)",
                _ => "(none)",
            }
            .to_string();
        };
        let id = Uuid::parse_str(key).ok();
        let found = match (dimension, id) {
            (Dimension::ControlPlane, Some(id)) => self.plane(id).map(str::to_string),
            (Dimension::Service, Some(id)) => find(&self.services, id),
            (Dimension::Route, Some(id)) => find(&self.routes, id),
            _ => None,
        };
        match (dimension, found) {
            (_, Some(name)) => name,
            (Dimension::ControlPlane | Dimension::Service | Dimension::Route, None) => {
                format!("{key} (deleted)")
            }
            _ => key.clone(),
        }
    }
}

fn find(items: &[(Uuid, Uuid, String)], id: Uuid) -> Option<String> {
    items
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, _, n)| n.clone())
}

fn totals_view(t: &Totals) -> TotalsView {
    let p = |l: &Latencies| {
        [
            [l.total.p50, l.total.p95, l.total.p99],
            [l.upstream.p50, l.upstream.p95, l.upstream.p99],
            [l.edge.p50, l.edge.p95, l.edge.p99],
        ]
    };
    TotalsView {
        requests: t.requests,
        errors_4xx: t.errors_4xx,
        errors_5xx: t.errors_5xx,
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        latency_ms: p(&t.latency_ms),
    }
}

fn axis_of(window: &Window) -> TimeAxis {
    let step = window.bucket.width().num_seconds();
    let span = (window.range.to - window.range.from).num_seconds();
    TimeAxis {
        start: window.range.from.timestamp(),
        step,
        count: (span / step).max(0) as usize,
    }
}

fn series_view(axis: &TimeAxis, points: &[Point]) -> SeriesView {
    let fill = |value: &dyn Fn(&TotalsView) -> f64| {
        let pairs: Vec<(i64, f64)> = points
            .iter()
            .map(|p| (p.time.timestamp(), value(&totals_view(&p.totals))))
            .collect();
        fill_buckets(axis, &pairs)
    };
    let latency = |which: usize, pct: usize| fill(&|t: &TotalsView| t.latency_ms[which][pct]);
    SeriesView {
        requests: fill(&|t| t.requests as f64),
        errors_4xx: fill(&|t| t.errors_4xx as f64),
        errors_5xx: fill(&|t| t.errors_5xx as f64),
        bytes_in: fill(&|t| t.bytes_in as f64),
        bytes_out: fill(&|t| t.bytes_out as f64),
        latency_ms: [0, 1, 2].map(|w| [0, 1, 2].map(|p| latency(w, p))),
    }
}

/// Everything a dashboard shows, straight from the store.
struct Fetched {
    totals: Totals,
    points: Vec<Point>,
    statuses: Vec<TopRow>,
    routes: Vec<TopRow>,
    services: Vec<TopRow>,
    consumers: Vec<TopRow>,
    control_planes: Vec<TopRow>,
}

async fn fetch(
    store: &Arc<dyn AnalyticsStore>,
    organization: Uuid,
    window: &Window,
    filters: &Filters,
    organization_wide: bool,
) -> Result<Fetched, StoreError> {
    let series = SeriesQuery {
        range: window.range,
        bucket: window.bucket,
        filters: filters.clone(),
        group_by: None,
    };
    let top = |by: Dimension, limit: u32| TopQuery {
        range: window.range,
        filters: filters.clone(),
        by,
        limit,
    };
    let (statuses_q, routes_q, services_q, consumers_q, planes_q) = (
        top(Dimension::Status, 100),
        top(Dimension::Route, TOP_ROWS),
        top(Dimension::Service, TOP_ROWS),
        top(Dimension::Consumer, TOP_ROWS),
        top(Dimension::ControlPlane, TOP_ROWS),
    );
    let planes = async {
        if organization_wide {
            store.top(organization, &planes_q).await
        } else {
            Ok(Vec::new())
        }
    };
    let (totals, points, statuses, routes, services, consumers, control_planes) = tokio::join!(
        store.totals(organization, &window.range, filters),
        store.series(organization, &series),
        store.top(organization, &statuses_q),
        store.top(organization, &routes_q),
        store.top(organization, &services_q),
        store.top(organization, &consumers_q),
        planes,
    );
    Ok(Fetched {
        totals: totals?,
        points: points?,
        statuses: statuses?,
        routes: routes?,
        services: services?,
        consumers: consumers?,
        control_planes: control_planes?,
    })
}

fn top_entries(names: &Names, dimension: Dimension, rows: &[TopRow]) -> Vec<TopEntry> {
    rows.iter()
        .map(|r| TopEntry {
            key: r.key.clone(),
            label: names.label(dimension, &r.key),
            totals: totals_view(&r.totals),
        })
        .collect()
}

fn statuses_of(rows: &[TopRow]) -> Vec<(u16, u64)> {
    let mut statuses: Vec<(u16, u64)> = rows
        .iter()
        .filter_map(|r| Some((r.key.as_deref()?.parse().ok()?, r.totals.requests)))
        .collect();
    statuses.sort_unstable();
    statuses
}

fn form_time(t: DateTime<Utc>) -> String {
    t.format(FORM_TIME).to_string()
}

fn describe(window: &Window) -> String {
    let bucket = match window.bucket {
        Bucket::Minute => "per minute",
        Bucket::Hour => "per hour",
        Bucket::Day => "per day",
    };
    let label = RANGES
        .iter()
        .find(|(v, _)| *v == window.preset)
        .map(|(_, l)| *l)
        .unwrap_or("Custom");
    let label = if window.preset == "custom" {
        "Custom range"
    } else {
        label
    };
    format!(
        "{label}: {} – {} UTC, {bucket}",
        window.range.from.format("%Y-%m-%d %H:%M"),
        window.range.to.format("%Y-%m-%d %H:%M")
    )
}

async fn dashboard(
    state: &AppState,
    user: &ConsoleUser,
    cp: Option<&str>,
    query: &BTreeMap<String, String>,
) -> ApiResult<Response> {
    let organization = user.auth.organization_id;
    let (scope, base, plane_id) = match cp {
        Some(cp) => {
            let (model, header) = header(state, user, cp).await?;
            let base = format!("/control-planes/{}/traffic", header.id);
            (Scope::ControlPlane(header), base, Some(model.id))
        }
        None => (Scope::Organization, "/traffic".to_string(), None),
    };
    let names = Names::load(state, organization).await?;
    let mut errors = FieldErrors::new();
    let window = window(query, Utc::now(), &mut errors);
    let mut filters = filters_of(query, &mut errors);
    match plane_id {
        // The tab's own control plane, whatever the query says.
        Some(id) => filters.control_plane = Some(id),
        // Another tenant's control plane is not found, as on every other page.
        None => {
            if let Some(id) = filters.control_plane {
                if names.plane(id).is_none() {
                    return Err(ApiError::NotFound);
                }
            }
        }
    }
    if let Some(w) = &window {
        let series = SeriesQuery {
            range: w.range,
            bucket: w.bucket,
            filters: filters.clone(),
            group_by: None,
        };
        if let Err(more) = series.validate() {
            errors.extend(more);
        }
    }
    let csv_table = (query.get("format").map(String::as_str) == Some("csv"))
        .then(|| query.get("table").cloned().unwrap_or_default());
    if let Some(table) = &csv_table {
        if !TABLES.iter().any(|(t, _)| t == table) {
            let known: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
            return Ok((
                StatusCode::BAD_REQUEST,
                format!("table: must be one of {}\n", known.join(", ")),
            )
                .into_response());
        }
    }

    let data = match (&state.analytics, &window) {
        (None, _) => Err(TrafficData::NoStore),
        (Some(_), _) if !errors.is_empty() => Err(TrafficData::Invalid),
        (Some(store), Some(w)) => {
            match fetch(store, organization, w, &filters, plane_id.is_none()).await {
                Ok(fetched) => Ok(fetched),
                Err(e) => {
                    tracing::warn!(error = %e, "traffic dashboard query failed");
                    Err(TrafficData::Unavailable(e.to_string()))
                }
            }
        }
        (Some(_), None) => Err(TrafficData::Invalid),
    };

    if let Some(table) = csv_table {
        return Ok(match (data, &window) {
            (Ok(fetched), Some(w)) => csv_response(&table, w, &fetched, &names),
            (Err(TrafficData::NoStore), _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no analytics store is configured on this server\n",
            )
                .into_response(),
            (Err(TrafficData::Unavailable(why)), _) => {
                (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
            }
            _ => {
                let lines: Vec<String> =
                    errors.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                (StatusCode::BAD_REQUEST, lines.concat()).into_response()
            }
        });
    }

    let status = match &data {
        Err(TrafficData::Invalid) => StatusCode::BAD_REQUEST,
        Err(TrafficData::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let data = match (data, &window) {
        (Ok(f), Some(w)) => {
            let axis = axis_of(w);
            TrafficData::Ready(Box::new(Dashboard {
                totals: totals_view(&f.totals),
                series: series_view(&axis, &f.points),
                axis,
                statuses: statuses_of(&f.statuses),
                top_routes: top_entries(&names, Dimension::Route, &f.routes),
                top_services: top_entries(&names, Dimension::Service, &f.services),
                top_consumers: top_entries(&names, Dimension::Consumer, &f.consumers),
                top_control_planes: top_entries(&names, Dimension::ControlPlane, &f.control_planes),
            }))
        }
        (Ok(_), None) => TrafficData::Invalid,
        (Err(d), _) => d,
    };

    let value = |k: &str| query.get(k).cloned().unwrap_or_default();
    let range = match &window {
        Some(w) => RangeForm {
            preset: w.preset.clone(),
            from: form_time(w.range.from),
            to: form_time(w.range.to),
            description: describe(w),
        },
        None => RangeForm {
            preset: value("range"),
            from: value("from"),
            to: value("to"),
            description: String::new(),
        },
    };
    let filter_form = FilterForm {
        control_plane: if plane_id.is_some() {
            String::new()
        } else {
            value("control_plane")
        },
        service: value("service"),
        route: value("route"),
        consumer: value("consumer"),
        status: value("status"),
        node: value("node"),
        region: value("region"),
        control_planes: names
            .control_planes
            .iter()
            .map(|(id, n)| (id.to_string(), n.clone()))
            .collect(),
        services: names.choices(&names.services, plane_id),
        routes: names.choices(&names.routes, plane_id),
    };
    let kept: Vec<(String, String)> = query
        .iter()
        .filter(|(k, v)| !v.is_empty() && !matches!(k.as_str(), "format" | "table"))
        .filter(|(k, _)| plane_id.is_none() || k.as_str() != "control_plane")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let page = TrafficPage {
        scope,
        base,
        query: kept,
        range,
        filters: filter_form,
        refresh: query.get("refresh").is_some_and(|v| v == "on"),
        errors: errors.into_iter().collect(),
        data,
    };
    let html = traffic_page(&user.viewer, &page, user.bundle);
    Ok((status, Html(html)).into_response())
}

// ---- CSV ------------------------------------------------------------------------------------

/// One CSV field, quoted when it must be. A leading `=`, `+`, `-` or `@` is defused with a `'`
/// so a spreadsheet does not run a name as a formula.
pub(super) fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

pub(super) fn csv_line(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

pub(super) fn csv_download(filename: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

const LATENCY_COLUMNS: [&str; 9] = [
    "latency_total_p50_ms",
    "latency_total_p95_ms",
    "latency_total_p99_ms",
    "latency_upstream_p50_ms",
    "latency_upstream_p95_ms",
    "latency_upstream_p99_ms",
    "latency_edge_p50_ms",
    "latency_edge_p95_ms",
    "latency_edge_p99_ms",
];

fn totals_fields(t: &TotalsView) -> Vec<String> {
    let mut fields = vec![
        t.requests.to_string(),
        t.errors_4xx.to_string(),
        t.errors_5xx.to_string(),
        t.bytes_in.to_string(),
        t.bytes_out.to_string(),
    ];
    fields.extend(t.latency_ms.iter().flatten().map(|v| format!("{v:.3}")));
    fields
}

fn totals_header(first: &[&str]) -> Vec<String> {
    let mut header: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    header.extend(
        [
            "requests",
            "errors_4xx",
            "errors_5xx",
            "bytes_in",
            "bytes_out",
        ]
        .iter()
        .chain(LATENCY_COLUMNS.iter())
        .map(|s| s.to_string()),
    );
    header
}

fn csv_response(table: &str, window: &Window, f: &Fetched, names: &Names) -> Response {
    let mut body = String::new();
    match table {
        "series" => {
            // Every bucket of the range, the empty ones as zeros, as the chart shows them.
            let axis = axis_of(window);
            let by_time: BTreeMap<i64, &Totals> = f
                .points
                .iter()
                .map(|p| (p.time.timestamp(), &p.totals))
                .collect();
            body.push_str(&csv_line(&totals_header(&["time"])));
            for i in 0..axis.count {
                let time = axis.time(i);
                let totals = by_time
                    .get(&time)
                    .map(|t| totals_view(t))
                    .unwrap_or_default();
                let mut fields = vec![DateTime::<Utc>::from_timestamp(time, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()];
                fields.extend(totals_fields(&totals));
                body.push_str(&csv_line(&fields));
            }
        }
        "status" => {
            body.push_str(&csv_line(&["status".into(), "requests".into()]));
            for (code, n) in statuses_of(&f.statuses) {
                body.push_str(&csv_line(&[code.to_string(), n.to_string()]));
            }
        }
        _ => {
            let (dimension, rows) = match table {
                "top_routes" => (Dimension::Route, &f.routes),
                "top_services" => (Dimension::Service, &f.services),
                "top_consumers" => (Dimension::Consumer, &f.consumers),
                _ => (Dimension::ControlPlane, &f.control_planes),
            };
            body.push_str(&csv_line(&totals_header(&["id", "name"])));
            for entry in top_entries(names, dimension, rows) {
                let mut fields = vec![entry.key.clone().unwrap_or_default(), entry.label];
                fields.extend(totals_fields(&entry.totals));
                body.push_str(&csv_line(&fields));
            }
        }
    }
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%MZ").to_string();
    csv_download(
        &format!(
            "traffic-{table}-{}-{}.csv",
            stamp(window.range.from),
            stamp(window.range.to)
        ),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn relative_ranges_end_with_the_current_bucket() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 37, 42).unwrap();
        let mut errors = FieldErrors::new();
        let w = window(&query(&[("range", "15m")]), now, &mut errors).unwrap();
        assert_eq!(w.bucket, Bucket::Minute);
        assert_eq!(w.range.to.to_rfc3339(), "2026-11-26T10:38:00+00:00");
        assert_eq!(w.range.from.to_rfc3339(), "2026-11-26T10:23:00+00:00");
        let w = window(&query(&[("range", "7d")]), now, &mut errors).unwrap();
        assert_eq!(w.bucket, Bucket::Hour);
        let w = window(&query(&[("range", "30d")]), now, &mut errors).unwrap();
        assert_eq!((w.bucket, axis_of(&w).count), (Bucket::Day, 30));
        let w = window(&query(&[]), now, &mut errors).unwrap();
        assert_eq!((w.preset.as_str(), axis_of(&w).count), ("1h", 60));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn custom_ranges_pick_a_bucket_and_name_bad_fields() {
        let now = Utc::now();
        let mut errors = FieldErrors::new();
        let w = window(
            &query(&[("from", "2026-11-01T00:00"), ("to", "2026-11-03T12:30")]),
            now,
            &mut errors,
        )
        .unwrap();
        assert_eq!((w.preset.as_str(), w.bucket), ("custom", Bucket::Hour));
        assert_eq!(w.range.to.to_rfc3339(), "2026-11-03T13:00:00+00:00");
        assert!(window(
            &query(&[
                ("range", "custom"),
                ("from", "yesterday"),
                ("to", "2026-11-03T12:30")
            ]),
            now,
            &mut errors,
        )
        .is_none());
        assert!(errors["from"].contains("not a time"), "{errors:?}");
        let mut errors = FieldErrors::new();
        assert!(window(&query(&[("range", "2y")]), now, &mut errors).is_none());
        assert!(errors.contains_key("range"));
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
