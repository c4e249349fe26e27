//! The Traffic dashboard, for the whole organization (`/traffic`) or one control plane (its
//! Traffic tab): totals, charts over time, status codes and top-N tables. Every choice — time
//! range, filters, auto refresh — is a GET parameter, so a view is a shareable URL and works
//! without JavaScript; drill-downs and CSV exports are plain links.

use leptos::prelude::*;

use super::auth::encode;
use super::control_plane::{refreshing_page, PlaneHeader, Tab};
use crate::charts::{bar_chart, line_chart, Bar, Line, TimeAxis, Unit};
use crate::layout::{frame, Crumb, Section, Viewer};
use crate::shell::{render_document_refreshing, Document};

/// The time ranges the picker offers, as `(value, label)`.
pub const RANGES: [(&str, &str); 7] = [
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("6h", "Last 6 hours"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("custom", "Custom (from – to, UTC)"),
];

/// How often an auto-refreshing dashboard reloads.
pub const REFRESH_SECONDS: u32 = 30;

/// The tables a dashboard can export as CSV (`?format=csv&table=…`), with their headings.
pub const TABLES: [(&str, &str); 6] = [
    ("series", "Requests over time"),
    ("status", "Status codes"),
    ("top_routes", "Top routes"),
    ("top_services", "Top services"),
    ("top_consumers", "Top consumers"),
    ("top_control_planes", "Top control planes"),
];

pub enum Scope {
    Organization,
    ControlPlane(PlaneHeader),
}

/// What the picker shows.
#[derive(Debug, Clone, Default)]
pub struct RangeForm {
    /// One of [`RANGES`]' values.
    pub preset: String,
    /// `YYYY-MM-DDTHH:MM`, UTC; filled for every range so switching to custom starts there.
    pub from: String,
    pub to: String,
    /// E.g. "2026-11-26 09:00 – 10:00 UTC, per minute".
    pub description: String,
}

/// The filter fields as typed, and the choices of the selects as `(id, name)`.
#[derive(Debug, Clone, Default)]
pub struct FilterForm {
    pub control_plane: String,
    pub service: String,
    pub route: String,
    pub consumer: String,
    pub status: String,
    pub node: String,
    pub region: String,
    pub control_planes: Vec<(String, String)>,
    pub services: Vec<(String, String)>,
    pub routes: Vec<(String, String)>,
}

/// Counts and latencies over a set of requests.
#[derive(Debug, Clone, Default)]
pub struct TotalsView {
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Milliseconds: `[total, upstream, edge]` × `[p50, p95, p99]`.
    pub latency_ms: [[f64; 3]; 3],
}

/// One row of a top-N table.
#[derive(Debug, Clone)]
pub struct TopEntry {
    /// The id filtered on when drilling down; `None` for requests without one.
    pub key: Option<String>,
    /// The thing's current name, or its id when it no longer exists.
    pub label: String,
    pub totals: TotalsView,
}

/// Per-bucket values, zero-filled over the axis.
#[derive(Debug, Clone, Default)]
pub struct SeriesView {
    pub requests: Vec<f64>,
    pub errors_4xx: Vec<f64>,
    pub errors_5xx: Vec<f64>,
    pub bytes_in: Vec<f64>,
    pub bytes_out: Vec<f64>,
    /// `[total, upstream, edge]` × `[p50, p95, p99]`, milliseconds.
    pub latency_ms: [[Vec<f64>; 3]; 3],
}

pub struct Dashboard {
    pub totals: TotalsView,
    pub axis: TimeAxis,
    pub series: SeriesView,
    /// `(status code, requests)`, by code.
    pub statuses: Vec<(u16, u64)>,
    pub top_routes: Vec<TopEntry>,
    pub top_services: Vec<TopEntry>,
    pub top_consumers: Vec<TopEntry>,
    /// Shown on the organization's dashboard only.
    pub top_control_planes: Vec<TopEntry>,
}

pub enum TrafficData {
    /// The server runs without an analytics store.
    NoStore,
    /// The store failed to answer.
    Unavailable(String),
    /// The query was refused; the errors are beside the fields.
    Invalid,
    Ready(Box<Dashboard>),
}

pub struct TrafficPage {
    pub scope: Scope,
    /// `/traffic` or `/control-planes/{id}/traffic`.
    pub base: String,
    /// The query string's pairs (without `format` and `table`), kept by every link.
    pub query: Vec<(String, String)>,
    pub range: RangeForm,
    pub filters: FilterForm,
    pub refresh: bool,
    /// Field → what is wrong with it.
    pub errors: Vec<(String, String)>,
    pub data: TrafficData,
}

impl TrafficPage {
    /// This view's address with `set` replacing (or adding) parameters and `remove` dropped.
    pub fn link(&self, set: &[(&str, &str)], remove: &[&str]) -> String {
        let mut pairs: Vec<(String, String)> = self
            .query
            .iter()
            .filter(|(k, _)| !remove.contains(&k.as_str()) && !set.iter().any(|(s, _)| s == k))
            .cloned()
            .collect();
        pairs.extend(set.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if pairs.is_empty() {
            return self.base.clone();
        }
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        format!("{}?{}", self.base, query.join("&"))
    }

    fn csv_link(&self, table: &str) -> String {
        self.link(&[("format", "csv"), ("table", table)], &[])
    }

    fn error(&self, field: &str) -> Option<String> {
        self.errors
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.clone())
    }

    fn organization_wide(&self) -> bool {
        matches!(self.scope, Scope::Organization)
    }
}

fn field_error(page: &TrafficPage, field: &str) -> impl IntoView {
    page.error(field)
        .map(|e| view! { <p class="field-error" id=format!("{field}-error")>{e}</p> })
}

fn select(
    page: &TrafficPage,
    name: &'static str,
    label: &'static str,
    chosen: &str,
    any: &'static str,
    options: &[(String, String)],
) -> impl IntoView {
    let mut all = vec![(String::new(), any.to_string())];
    all.extend(options.iter().cloned());
    // A chosen id that is not among the options (deleted since) stays selectable.
    if !chosen.is_empty() && !options.iter().any(|(id, _)| id == chosen) {
        all.push((chosen.to_string(), chosen.to_string()));
    }
    let options = all
        .into_iter()
        .map(|(value, text)| {
            let selected = value == chosen;
            view! { <option value=value selected=selected>{text}</option> }
        })
        .collect_view();
    view! {
        <div class="field">
            <label for=format!("f-{name}")>{label}</label>
            <select id=format!("f-{name}") name=name>{options}</select>
            {field_error(page, name)}
        </div>
    }
}

fn input(
    page: &TrafficPage,
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    value: &str,
    placeholder: &'static str,
) -> impl IntoView {
    let invalid = page.error(name).is_some();
    view! {
        <div class=if invalid { "field invalid" } else { "field" }>
            <label for=format!("f-{name}")>{label}</label>
            <input id=format!("f-{name}") name=name type=kind value=value.to_string() placeholder=placeholder aria-invalid=invalid.then_some("true")/>
            {field_error(page, name)}
        </div>
    }
}

/// The picker and the filters: one GET form, so Apply works without JavaScript.
fn picker(page: &TrafficPage) -> impl IntoView {
    let f = &page.filters;
    let presets = RANGES
        .iter()
        .map(|(value, label)| {
            let selected = *value == page.range.preset;
            view! { <option value=*value selected=selected>{*label}</option> }
        })
        .collect_view();
    let control_plane = page.organization_wide().then(|| {
        select(
            page,
            "control_plane",
            "Control plane",
            &f.control_plane,
            "All control planes",
            &f.control_planes,
        )
    });
    view! {
        <form method="get" action=page.base.clone() class="traffic-form" role="search" aria-label="Time range and filters">
            <div class="field">
                <label for="f-range">"Time range"</label>
                <select id="f-range" name="range">{presets}</select>
                {field_error(page, "range")}
            </div>
            {input(page, "from", "From (UTC, custom)", "datetime-local", &page.range.from, "")}
            {input(page, "to", "To (UTC, custom)", "datetime-local", &page.range.to, "")}
            {control_plane}
            {select(page, "service", "Service", &f.service, "All services", &f.services)}
            {select(page, "route", "Route", &f.route, "All routes", &f.routes)}
            {input(page, "consumer", "Consumer id", "text", &f.consumer, "any")}
            {input(page, "status", "Status code", "number", &f.status, "any")}
            {input(page, "node", "Node id", "text", &f.node, "any")}
            {input(page, "region", "Region", "text", &f.region, "any")}
            <div class="field field-check">
                <input id="f-refresh" name="refresh" type="checkbox" value="on" checked=page.refresh/>
                <label for="f-refresh">{format!("Auto refresh ({REFRESH_SECONDS} s)")}</label>
            </div>
            <button type="submit" class="btn">"Apply"</button>
        </form>
    }
}

/// The filters in force, each with a link that drops it.
fn active_filters(page: &TrafficPage) -> impl IntoView {
    let f = &page.filters;
    let name_of = |options: &[(String, String)], id: &str| {
        options
            .iter()
            .find(|(o, _)| o == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut chips = Vec::new();
    if page.organization_wide() && !f.control_plane.is_empty() {
        chips.push((
            "control_plane",
            format!(
                "control plane {}",
                name_of(&f.control_planes, &f.control_plane)
            ),
        ));
    }
    if !f.service.is_empty() {
        chips.push((
            "service",
            format!("service {}", name_of(&f.services, &f.service)),
        ));
    }
    if !f.route.is_empty() {
        chips.push(("route", format!("route {}", name_of(&f.routes, &f.route))));
    }
    for (name, value) in [
        ("consumer", &f.consumer),
        ("status", &f.status),
        ("node", &f.node),
        ("region", &f.region),
    ] {
        if !value.is_empty() {
            chips.push((name, format!("{name} {value}")));
        }
    }
    (!chips.is_empty()).then(|| {
        let chips = chips
            .into_iter()
            .map(|(param, label)| {
                let href = page.link(&[], &[param]);
                view! {
                    <li class="badge">{label}" "<a href=href aria-label=format!("Remove filter {param}")>"×"</a></li>
                }
            })
            .collect_view();
        view! {
            <div class="active-filters">
                <span class="muted">"Filtered by"</span>
                <ul class="plain active-filters" data-filters="">{chips}</ul>
                <a href=page.link(&[], &["control_plane", "service", "route", "consumer", "status", "node", "region"])>"Clear all"</a>
            </div>
        }
    })
}

fn stat(label: &'static str, value: String, name: &'static str) -> impl IntoView {
    view! { <div class="stat"><dt>{label}</dt><dd data-stat=name>{value}</dd></div> }
}

fn stats(totals: &TotalsView) -> impl IntoView {
    let rate = if totals.requests == 0 {
        "–".to_string()
    } else {
        format!(
            "{:.1} %",
            (totals.errors_4xx + totals.errors_5xx) as f64 * 100.0 / totals.requests as f64
        )
    };
    let ms = |v: f64| Unit::Millis.format(v);
    view! {
        <dl class="stats">
            {stat("Requests", Unit::Count.format(totals.requests as f64), "requests")}
            {stat("4xx errors", Unit::Count.format(totals.errors_4xx as f64), "errors_4xx")}
            {stat("5xx errors", Unit::Count.format(totals.errors_5xx as f64), "errors_5xx")}
            {stat("Error rate", rate, "error_rate")}
            {stat("Latency p50", ms(totals.latency_ms[0][0]), "p50")}
            {stat("Latency p95", ms(totals.latency_ms[0][1]), "p95")}
            {stat("Latency p99", ms(totals.latency_ms[0][2]), "p99")}
            {stat("Bytes in", Unit::Bytes.format(totals.bytes_in as f64), "bytes_in")}
            {stat("Bytes out", Unit::Bytes.format(totals.bytes_out as f64), "bytes_out")}
        </dl>
    }
}

fn status_class(code: u16) -> &'static str {
    match code {
        500.. => "b-bad",
        400..=499 => "b-warn",
        300..=399 => "b-info",
        _ => "b-ok",
    }
}

fn charts(page: &TrafficPage, d: &Dashboard) -> impl IntoView {
    let s = &d.series;
    let line = |name: &str, class: &'static str, values: &Vec<f64>| Line {
        name: name.to_string(),
        class,
        values: values.clone(),
    };
    let requests = line_chart(
        "Requests and errors",
        &d.axis,
        &[
            line("requests", "s1", &s.requests),
            line("4xx", "s2", &s.errors_4xx),
            line("5xx", "s3", &s.errors_5xx),
        ],
        Unit::Count,
        true,
    );
    let latency = |title: &str, which: usize| {
        line_chart(
            title,
            &d.axis,
            &[
                line("p50", "s4", &s.latency_ms[which][0]),
                line("p95", "s1", &s.latency_ms[which][1]),
                line("p99", "s5", &s.latency_ms[which][2]),
            ],
            Unit::Millis,
            false,
        )
    };
    let bytes = line_chart(
        "Bytes in and out",
        &d.axis,
        &[
            line("in", "s4", &s.bytes_in),
            line("out", "s1", &s.bytes_out),
        ],
        Unit::Bytes,
        true,
    );
    let bars: Vec<Bar> = d
        .statuses
        .iter()
        .map(|(code, n)| Bar {
            label: code.to_string(),
            value: *n as f64,
            class: status_class(*code),
            href: Some(page.link(&[("status", &code.to_string())], &[])),
            tip: format!("{code}: {} requests", Unit::Count.format(*n as f64)),
        })
        .collect();
    let statuses = bar_chart("Status codes", &bars, Unit::Count);
    view! {
        <div class="charts">
            <div inner_html=requests></div>
            <div inner_html=statuses></div>
            <div inner_html=latency("Latency, total", 0)></div>
            <div inner_html=latency("Latency, upstream", 1)></div>
            <div inner_html=latency("Latency, edge", 2)></div>
            <div inner_html=bytes></div>
        </div>
        <p class="muted"><a href=page.csv_link("series")>"Download the time series as CSV"</a></p>
    }
}

fn latency_table(totals: &TotalsView) -> impl IntoView {
    let rows = ["Total", "Upstream", "Edge"]
        .into_iter()
        .zip(totals.latency_ms)
        .map(|(label, p)| {
            view! {
                <tr>
                    <th scope="row">{label}</th>
                    <td class="num">{Unit::Millis.format(p[0])}</td>
                    <td class="num">{Unit::Millis.format(p[1])}</td>
                    <td class="num">{Unit::Millis.format(p[2])}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section>
            <h2 class="section-title">"Latency percentiles"</h2>
            <table class="list" id="latency">
                <thead><tr><th scope="col">"Latency"</th><th scope="col" class="num">"p50"</th><th scope="col" class="num">"p95"</th><th scope="col" class="num">"p99"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

fn status_table(page: &TrafficPage, statuses: &[(u16, u64)]) -> impl IntoView {
    let rows = statuses
        .iter()
        .map(|(code, n)| {
            view! {
                <tr>
                    <td><a href=page.link(&[("status", &code.to_string())], &[])>{code.to_string()}</a></td>
                    <td class="num">{Unit::Count.format(*n as f64)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section>
            <div class="table-head">
                <h2>"Status codes"</h2>
                <a href=page.csv_link("status")>"CSV"</a>
            </div>
            <table class="list" id="status">
                <thead><tr><th scope="col">"Status"</th><th scope="col" class="num">"Requests"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            {statuses.is_empty().then(|| view! { <p class="muted">"No requests."</p> })}
        </section>
    }
}

/// A top-N table whose names drill down: the dashboard again, filtered by that row.
fn top_table(
    page: &TrafficPage,
    table: &'static str,
    title: &'static str,
    column: &'static str,
    filter: &'static str,
    rows: &[TopEntry],
) -> impl IntoView {
    let body = rows
        .iter()
        .map(|r| {
            let name = match &r.key {
                Some(key) => {
                    view! { <a href=page.link(&[(filter, key)], &[]) data-drill=filter>{r.label.clone()}</a> }
                        .into_any()
                }
                None => view! { <span class="muted">{r.label.clone()}</span> }.into_any(),
            };
            let t = &r.totals;
            view! {
                <tr>
                    <td>{name}</td>
                    <td class="num">{Unit::Count.format(t.requests as f64)}</td>
                    <td class="num">{Unit::Count.format(t.errors_4xx as f64)}</td>
                    <td class="num">{Unit::Count.format(t.errors_5xx as f64)}</td>
                    <td class="num">{Unit::Millis.format(t.latency_ms[0][1])}</td>
                    <td class="num">{Unit::Bytes.format(t.bytes_out as f64)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section>
            <div class="table-head">
                <h2>{title}</h2>
                <a href=page.csv_link(table)>"CSV"</a>
            </div>
            <table class="list" id=table>
                <thead><tr>
                    <th scope="col">{column}</th>
                    <th scope="col" class="num">"Requests"</th>
                    <th scope="col" class="num">"4xx"</th>
                    <th scope="col" class="num">"5xx"</th>
                    <th scope="col" class="num">"p95"</th>
                    <th scope="col" class="num">"Bytes out"</th>
                </tr></thead>
                <tbody>{body}</tbody>
            </table>
            {rows.is_empty().then(|| view! { <p class="muted">"No requests."</p> })}
        </section>
    }
}

fn dashboard(page: &TrafficPage, d: &Dashboard) -> impl IntoView {
    let planes = page.organization_wide().then(|| {
        top_table(
            page,
            "top_control_planes",
            "Top control planes",
            "Control plane",
            "control_plane",
            &d.top_control_planes,
        )
    });
    view! {
        {stats(&d.totals)}
        {charts(page, d)}
        <div class="tables">
            {top_table(page, "top_routes", "Top routes", "Route", "route", &d.top_routes)}
            {top_table(page, "top_services", "Top services", "Service", "service", &d.top_services)}
            {top_table(page, "top_consumers", "Top consumers", "Consumer", "consumer", &d.top_consumers)}
            {planes}
            {status_table(page, &d.statuses)}
            {latency_table(&d.totals)}
        </div>
    }
}

/// What the page says when the server keeps no request logs.
pub fn no_store_notice() -> impl IntoView {
    view! {
        <section class="empty" data-analytics="off">
            <h2>"Analytics are not set up"</h2>
            <p>"This server was started without an analytics store, so it keeps no request logs and there is no traffic to show. "
               "Start it with an analytics store (ClickHouse in production; "<code>"tollgate dev"</code>" keeps one of its own) to see requests, errors and latency here."</p>
        </section>
    }
}

fn body(page: &TrafficPage) -> impl IntoView {
    let data = match &page.data {
        TrafficData::NoStore => no_store_notice().into_any(),
        TrafficData::Unavailable(why) => view! {
            <p class="flash flash-error" role="alert">{format!("Traffic data is unavailable right now: {why}. Try again in a moment.")}</p>
        }
        .into_any(),
        TrafficData::Invalid => view! {
            <p class="flash flash-error" role="alert">"Correct the highlighted fields to see traffic."</p>
        }
        .into_any(),
        TrafficData::Ready(d) => dashboard(page, d).into_any(),
    };
    view! {
        {picker(page)}
        <p class="muted" data-range="">{page.range.description.clone()}</p>
        {active_filters(page)}
        {data}
    }
}

/// The whole dashboard document.
pub fn traffic_page(viewer: &Viewer, page: &TrafficPage, bundle: bool) -> String {
    let refresh = page.refresh.then_some(REFRESH_SECONDS);
    match &page.scope {
        Scope::Organization => render_document_refreshing(
            &Document {
                title: "Traffic".into(),
                bundle,
            },
            refresh,
            frame(
                viewer,
                Section::Traffic,
                vec![Crumb::here("Traffic")],
                None,
                view! { <h1>"Traffic"</h1>{body(page)} },
            ),
        ),
        Scope::ControlPlane(header) => refreshing_page(
            viewer,
            header,
            Tab::Traffic,
            None,
            bundle,
            refresh,
            body(page),
        ),
    }
}
