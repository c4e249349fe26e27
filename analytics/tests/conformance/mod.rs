//! What every [`AnalyticsStore`] must answer, checked on a fixed fixture: two tenants' request
//! logs in three batches, with every expected number worked out by hand below. A store's test
//! file runs it with `mod conformance;` and `conformance::run(&store).await`. Each run makes
//! fresh tenant ids, so runs may share a store (or a ClickHouse database).
//!
//! Percentiles are nearest-rank (the smallest value with at least p% of values at or below it).
//! Every set whose percentiles are checked has a size n where p·n is never a whole number, so
//! ClickHouse's `quantileExact` (element ⌊p·n⌋ of the sorted values) gives the same answers.

#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use tollgate_analytics::query::{
    Bucket, Dimension, Filters, Latencies, Month, Percentiles, Point, SeriesQuery, TimeRange,
    TopQuery, TopRow, Totals,
};
use tollgate_analytics::{AnalyticsStore, Inserted};
use tollgate_model::request_log::{AiUsage, LogBatch, RequestLog};
use uuid::Uuid;

/// The ids one tenant's fixture rows use.
pub struct Tenant {
    pub organization: Uuid,
    pub control_planes: [Uuid; 2],
    pub services: [Uuid; 2],
    pub routes: [Uuid; 2],
    pub consumer: Uuid,
    pub nodes: [Uuid; 2],
}

impl Tenant {
    fn new() -> Tenant {
        let id = Uuid::now_v7;
        Tenant {
            organization: id(),
            control_planes: [id(), id()],
            services: [id(), id()],
            routes: [id(), id()],
            consumer: id(),
            nodes: [id(), id()],
        }
    }
}

/// 2025-03-10T10:00:00Z, the start of tenant A's busiest hour.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 10, 0, 0).unwrap()
}

fn range(from: DateTime<Utc>, to: DateTime<Utc>) -> TimeRange {
    TimeRange { from, to }
}

/// One row of the fixture: where it was, what it was and how long it took.
struct Row {
    at: DateTime<Utc>,
    control_plane: usize,
    service: Option<usize>,
    route: Option<usize>,
    consumer: bool,
    node: usize,
    status: u16,
    total_us: u64,
    upstream_us: Option<u64>,
    bytes_in: u64,
    bytes_out: u64,
}

fn log(tenant: &Tenant, row: &Row, number: usize) -> RequestLog {
    let node = tenant.nodes[row.node];
    RequestLog {
        id: Uuid::now_v7(),
        time: row.at,
        organization_id: tenant.organization,
        control_plane_id: tenant.control_planes[row.control_plane],
        node_id: node,
        region: if row.node == 0 { "eu-west" } else { "us-east" }.into(),
        request_id: format!("req-{number}"),
        service_id: row.service.map(|s| tenant.services[s]),
        route_id: row.route.map(|r| tenant.routes[r]),
        consumer_id: row.consumer.then_some(tenant.consumer),
        method: if number.is_multiple_of(2) {
            "GET"
        } else {
            "POST"
        }
        .into(),
        host: "api.example.com".into(),
        path: format!("/orders/{number}"),
        status: row.status,
        latency_total_us: row.total_us,
        latency_upstream_us: row.upstream_us,
        latency_edge_us: row.total_us - row.upstream_us.unwrap_or(0),
        bytes_in: row.bytes_in,
        bytes_out: row.bytes_out,
        client_ip: "192.0.2.7".into(),
        ai: AiUsage::default(),
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    at: DateTime<Utc>,
    control_plane: usize,
    service: Option<usize>,
    route: Option<usize>,
    consumer: bool,
    node: usize,
    status: u16,
    (total_us, upstream_us): (u64, Option<u64>),
    (bytes_in, bytes_out): (u64, u64),
) -> Row {
    Row {
        at,
        control_plane,
        service,
        route,
        consumer,
        node,
        status,
        total_us,
        upstream_us,
        bytes_in,
        bytes_out,
    }
}

/// Tenant A's ten rows, numbered 1 to 10 in the comments of the checks. Node 0 is in eu-west,
/// node 1 in us-east. Edge latency is total minus upstream.
///
/// | # | time             | cp | svc | route | consumer | node | status | total/up ms | in/out    |
/// |---|------------------|----|-----|-------|----------|------|--------|-------------|-----------|
/// | 1 | 03-10 10:00:00   | 0  | 0   | 0     | yes      | 0    | 200    | 10 / 8      | 100/1000  |
/// | 2 | 03-10 10:00:20   | 0  | 0   | 0     | no       | 0    | 200    | 20 / -      | 0/2000    |
/// | 3 | 03-10 10:00:45   | 0  | -   | -     | no       | 0    | 404    | 1 / -       | 0/50      |
/// | 4 | 03-10 10:01:10   | 0  | 0   | 0     | yes      | 1    | 500    | 30 / 29     | 200/100   |
/// | 5 | 03-10 10:01:30   | 0  | 1   | 1     | no       | 1    | 401    | 2 / -       | 0/30      |
/// | 6 | 03-10 11:00:05   | 1  | 1   | 1     | yes      | 1    | 200    | 40 / 30     | 300/3000  |
/// | 7 | 03-10 11:01:05   | 1  | 1   | 1     | yes      | 1    | 429    | 3 / -       | 0/40      |
/// | 8 | 03-11 09:00:00   | 0  | 0   | 0     | yes      | 0    | 200    | 5 / 4       | 50/500    |
/// | 9 | 02-28 23:59:59.999 | 0 | 0  | 0     | yes      | 0    | 200    | 6 / 5       | 1/11      |
/// |10 | 04-01 00:00:00   | 1  | 1   | 1     | yes      | 1    | 200    | 8 / 7       | 2/22      |
// A table reads better than rustfmt's one argument per line.
#[rustfmt::skip]
fn tenant_a_rows() -> Vec<Row> {
    let t = t0();
    let s = Duration::seconds;
    let at = |m, d, h, min, sec| Utc.with_ymd_and_hms(2025, m, d, h, min, sec).unwrap();
    vec![
        row(t,          0, Some(0), Some(0), true,  0, 200, (10_000, Some(8_000)),  (100, 1000)),
        row(t + s(20),  0, Some(0), Some(0), false, 0, 200, (20_000, None),         (0, 2000)),
        row(t + s(45),  0, None,    None,    false, 0, 404, (1_000, None),          (0, 50)),
        row(t + s(70),  0, Some(0), Some(0), true,  1, 500, (30_000, Some(29_000)), (200, 100)),
        row(t + s(90),  0, Some(1), Some(1), false, 1, 401, (2_000, None),          (0, 30)),
        row(t + s(3605), 1, Some(1), Some(1), true, 1, 200, (40_000, Some(30_000)), (300, 3000)),
        row(t + s(3665), 1, Some(1), Some(1), true, 1, 429, (3_000, None),          (0, 40)),
        row(at(3, 11, 9, 0, 0), 0, Some(0), Some(0), true, 0, 200, (5_000, Some(4_000)), (50, 500)),
        row(at(3, 1, 0, 0, 0) - Duration::milliseconds(1),
                        0, Some(0), Some(0), true,  0, 200, (6_000, Some(5_000)),   (1, 11)),
        row(at(4, 1, 0, 0, 0), 1, Some(1), Some(1), true, 1, 200, (8_000, Some(7_000)), (2, 22)),
    ]
}

/// Tenant B's three rows, all on its node 0 (region eu-west, like A's node 0), control plane 0,
/// service 0, route 0, with a consumer:
/// b1 03-10 10:00:30 200 7/6 ms 10/70; b2 03-10 10:02:00 503 9/8.5 ms 0/90;
/// b3 03-20 12:00:00 200 4/3 ms 5/45.
#[rustfmt::skip]
fn tenant_b_rows() -> Vec<Row> {
    let t = t0();
    let s = Duration::seconds;
    let march_20 = Utc.with_ymd_and_hms(2025, 3, 20, 12, 0, 0).unwrap();
    vec![
        row(t + s(30),  0, Some(0), Some(0), true, 0, 200, (7_000, Some(6_000)), (10, 70)),
        row(t + s(120), 0, Some(0), Some(0), true, 0, 503, (9_000, Some(8_500)), (0, 90)),
        row(march_20,   0, Some(0), Some(0), true, 0, 200, (4_000, Some(3_000)), (5, 45)),
    ]
}

/// The fixture as stored: A's rows 1-5 in one batch, 6-10 in another, B's in a third.
pub struct Fixture {
    pub a: Tenant,
    pub b: Tenant,
    /// A's logs in row order (index 0 is row 1).
    pub a_logs: Vec<RequestLog>,
    pub b_logs: Vec<RequestLog>,
    pub batches: [LogBatch; 3],
}

impl Fixture {
    pub fn new() -> Fixture {
        let a = Tenant::new();
        let b = Tenant::new();
        let a_logs: Vec<RequestLog> = tenant_a_rows()
            .iter()
            .enumerate()
            .map(|(i, r)| log(&a, r, i + 1))
            .collect();
        let b_logs: Vec<RequestLog> = tenant_b_rows()
            .iter()
            .enumerate()
            .map(|(i, r)| log(&b, r, i + 1))
            .collect();
        let batch = |node, logs: &[RequestLog]| LogBatch {
            id: Uuid::now_v7(),
            node_id: node,
            logs: logs.to_vec(),
        };
        let batches = [
            batch(a.nodes[0], &a_logs[..5]),
            batch(a.nodes[1], &a_logs[5..]),
            batch(b.nodes[0], &b_logs),
        ];
        Fixture {
            a,
            b,
            a_logs,
            b_logs,
            batches,
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

fn ms(p50: f64, p95: f64, p99: f64) -> Percentiles {
    Percentiles { p50, p95, p99 }
}

fn requests(points: &[Point]) -> Vec<(DateTime<Utc>, Option<String>, u64)> {
    points
        .iter()
        .map(|p| (p.time, p.group.clone(), p.totals.requests))
        .collect()
}

fn top_requests(rows: &[TopRow]) -> Vec<(Option<String>, u64)> {
    rows.iter()
        .map(|r| (r.key.clone(), r.totals.requests))
        .collect()
}

/// `(key, requests)` sorted the way stores order ties: by key, values without a key last.
fn sorted(mut rows: Vec<(Option<String>, u64)>) -> Vec<(Option<String>, u64)> {
    rows.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| (a.0.is_none(), &a.0).cmp(&(b.0.is_none(), &b.0)))
    });
    rows
}

/// Runs every check against `store`: insert and deduplication, then each query for both
/// tenants.
pub async fn run(store: &dyn AnalyticsStore) {
    let fixture = Fixture::new();
    inserts_each_batch_once(store, &fixture).await;
    totals(store, &fixture).await;
    series(store, &fixture).await;
    top(store, &fixture).await;
    recent(store, &fixture).await;
    usage(store, &fixture).await;
    ranges_with_ragged_edges(store, &fixture).await;
    tenants_are_isolated(store, &fixture).await;
}

async fn inserts_each_batch_once(store: &dyn AnalyticsStore, f: &Fixture) {
    assert_eq!(
        store.insert(&[]).await.expect("empty insert"),
        Inserted::default()
    );
    let first = store.insert(&f.batches).await.expect("insert");
    assert_eq!(
        first,
        Inserted {
            rows: 13,
            duplicate_batches: 0
        }
    );
    // A redelivery, mixed with nothing new.
    let again = store
        .insert(&[f.batches[1].clone(), f.batches[2].clone()])
        .await
        .expect("insert again");
    assert_eq!(
        again,
        Inserted {
            rows: 0,
            duplicate_batches: 2
        }
    );
    let all = range(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    );
    let a = store
        .totals(f.a.organization, &all, &Filters::default())
        .await
        .expect("totals");
    assert_eq!(a.requests, 10, "A's rows stored once");
    let b = store
        .totals(f.b.organization, &all, &Filters::default())
        .await
        .expect("totals");
    assert_eq!(b.requests, 3, "B's rows stored once");

    // The same new batch twice in one call: stored once, the second counted as a duplicate.
    let now_log = RequestLog {
        id: Uuid::now_v7(),
        time: Utc::now(),
        ..f.a_logs[0].clone()
    };
    let current = LogBatch {
        id: Uuid::now_v7(),
        node_id: f.a.nodes[0],
        logs: vec![now_log],
    };
    let twice = store
        .insert(&[current.clone(), current])
        .await
        .expect("insert twice");
    assert_eq!(
        twice,
        Inserted {
            rows: 1,
            duplicate_batches: 1
        }
    );
}

async fn totals(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.a.organization;
    let busy = range(t0(), t0() + Duration::hours(2));
    let totals = store
        .totals(org, &busy, &Filters::default())
        .await
        .expect("totals");
    // Rows 1-7. Total ms sorted 1,2,3,10,20,30,40 (n=7: p50 rank 4, p95 and p99 rank 7);
    // upstream 8,29,30 (rows 2, 3, 5, 7 never went upstream; p50 rank 2); edge
    // 1,1,2,2,3,10,20.
    assert_eq!(
        totals,
        Totals {
            requests: 7,
            errors_4xx: 3,
            errors_5xx: 1,
            bytes_in: 600,
            bytes_out: 6220,
            latency_ms: Latencies {
                total: ms(10.0, 40.0, 40.0),
                upstream: ms(29.0, 30.0, 30.0),
                edge: ms(2.0, 20.0, 20.0),
            },
        }
    );

    // The range is [from, to): row 1 at exactly t0 is in, a range ending at t0 excludes it.
    let before = store
        .totals(
            org,
            &range(t0() - Duration::hours(1), t0()),
            &Filters::default(),
        )
        .await
        .expect("totals");
    assert_eq!(before, Totals::default(), "nothing counted, latencies zero");
    let first_only = store
        .totals(
            org,
            &range(t0(), t0() + Duration::milliseconds(1)),
            &Filters::default(),
        )
        .await
        .expect("totals");
    assert_eq!(first_only.requests, 1);

    // Filters combine: node 1 and route 1 is rows 5, 6, 7.
    let filtered = store
        .totals(
            org,
            &busy,
            &Filters {
                node: Some(f.a.nodes[1]),
                route: Some(f.a.routes[1]),
                ..Filters::default()
            },
        )
        .await
        .expect("totals");
    assert_eq!(
        (
            filtered.requests,
            filtered.errors_4xx,
            filtered.bytes_in,
            filtered.bytes_out
        ),
        (3, 2, 300, 3070)
    );
    // Total ms 2,3,40 (n=3: p50 rank 2, p95 rank 3); upstream 30 alone; edge 2,3,10.
    assert_eq!(
        filtered.latency_ms,
        Latencies {
            total: ms(3.0, 40.0, 40.0),
            upstream: ms(30.0, 30.0, 30.0),
            edge: ms(3.0, 10.0, 10.0),
        }
    );
    for (filters, expected) in [
        (
            Filters {
                status: Some(404),
                ..Filters::default()
            },
            1,
        ),
        (
            Filters {
                region: Some("us-east".into()),
                ..Filters::default()
            },
            4,
        ),
        (
            Filters {
                consumer: Some(f.a.consumer),
                ..Filters::default()
            },
            4,
        ),
        (
            Filters {
                service: Some(f.a.services[0]),
                ..Filters::default()
            },
            3,
        ),
        (
            Filters {
                control_plane: Some(f.a.control_planes[1]),
                ..Filters::default()
            },
            2,
        ),
        (
            Filters {
                status: Some(418),
                ..Filters::default()
            },
            0,
        ),
    ] {
        let got = store.totals(org, &busy, &filters).await.expect("totals");
        assert_eq!(got.requests, expected, "{filters:?}");
    }
}

async fn series(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.a.organization;
    let minute = |m| t0() + Duration::minutes(m);
    let by_minute = store
        .series(
            org,
            &SeriesQuery {
                range: range(t0(), minute(2)),
                bucket: Bucket::Minute,
                filters: Filters::default(),
                group_by: None,
            },
        )
        .await
        .expect("series");
    assert_eq!(by_minute.len(), 2, "{by_minute:?}");
    // 10:00 holds rows 1-3: total ms 1,10,20; upstream 8; edge 1,2,20.
    assert_eq!(
        by_minute[0],
        Point {
            time: t0(),
            group: None,
            totals: Totals {
                requests: 3,
                errors_4xx: 1,
                errors_5xx: 0,
                bytes_in: 100,
                bytes_out: 3050,
                latency_ms: Latencies {
                    total: ms(10.0, 20.0, 20.0),
                    upstream: ms(8.0, 8.0, 8.0),
                    edge: ms(2.0, 20.0, 20.0),
                },
            },
        }
    );
    // 10:01 holds rows 4 and 5.
    let second = &by_minute[1];
    assert_eq!(second.time, minute(1));
    assert_eq!(
        (
            second.totals.requests,
            second.totals.errors_4xx,
            second.totals.errors_5xx,
            second.totals.bytes_in,
            second.totals.bytes_out
        ),
        (2, 1, 1, 200, 130)
    );
    assert_eq!(second.totals.latency_ms.total.p99, 30.0);

    let hour = |h| t0() + Duration::hours(h);
    let cps = f.a.control_planes.map(|id| Some(id.to_string()));
    let by_control_plane = store
        .series(
            org,
            &SeriesQuery {
                range: range(t0(), hour(2)),
                bucket: Bucket::Hour,
                filters: Filters::default(),
                group_by: Some(Dimension::ControlPlane),
            },
        )
        .await
        .expect("series");
    assert_eq!(
        requests(&by_control_plane),
        vec![(hour(0), cps[0].clone(), 5), (hour(1), cps[1].clone(), 2)]
    );

    // Within a bucket groups are ordered by value, requests without one (row 3) last.
    let routes = f.a.routes.map(|id| Some(id.to_string()));
    let mut ten = vec![(routes[0].clone(), 3), (routes[1].clone(), 1)];
    ten.sort();
    ten.push((None, 1));
    let mut expected: Vec<_> = ten.into_iter().map(|(g, n)| (hour(0), g, n)).collect();
    expected.push((hour(1), routes[1].clone(), 2));
    let by_route = store
        .series(
            org,
            &SeriesQuery {
                range: range(t0(), hour(2)),
                bucket: Bucket::Hour,
                filters: Filters::default(),
                group_by: Some(Dimension::Route),
            },
        )
        .await
        .expect("series");
    assert_eq!(requests(&by_route), expected);

    let day = |d| Utc.with_ymd_and_hms(2025, 3, d, 0, 0, 0).unwrap();
    let by_day = store
        .series(
            org,
            &SeriesQuery {
                range: range(day(10), day(12)),
                bucket: Bucket::Day,
                filters: Filters {
                    consumer: Some(f.a.consumer),
                    ..Filters::default()
                },
                group_by: None,
            },
        )
        .await
        .expect("series");
    assert_eq!(
        requests(&by_day),
        vec![(day(10), None, 4), (day(11), None, 1)]
    );

    let by_status = store
        .series(
            org,
            &SeriesQuery {
                range: range(day(10), day(12)),
                bucket: Bucket::Day,
                filters: Filters {
                    region: Some("eu-west".into()),
                    ..Filters::default()
                },
                group_by: Some(Dimension::Status),
            },
        )
        .await
        .expect("series");
    // eu-west is rows 1, 2, 3 (10th) and 8 (11th).
    assert_eq!(
        requests(&by_status),
        vec![
            (day(10), Some("200".into()), 2),
            (day(10), Some("404".into()), 1),
            (day(11), Some("200".into()), 1),
        ]
    );
}

async fn top(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.a.organization;
    let two_days = range(
        Utc.with_ymd_and_hms(2025, 3, 10, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 3, 12, 0, 0, 0).unwrap(),
    );
    let query = |by, limit, filters| TopQuery {
        range: two_days,
        filters,
        by,
        limit,
    };
    let id = |id: Uuid| Some(id.to_string());

    // Rows 1-8: route 0 has rows 1, 2, 4, 8; route 1 rows 5, 6, 7; row 3 none.
    let routes = store
        .top(org, &query(Dimension::Route, 10, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&routes),
        vec![(id(f.a.routes[0]), 4), (id(f.a.routes[1]), 3), (None, 1)]
    );
    // Route 0's own totals: total ms 5,10,20,30 (p95 rank 4); upstream 4,8,29.
    assert_eq!(
        (
            routes[0].totals.errors_5xx,
            routes[0].totals.bytes_in,
            routes[0].totals.bytes_out
        ),
        (1, 350, 3600)
    );
    assert_eq!(routes[0].totals.latency_ms.total.p95, 30.0);
    assert_eq!(routes[0].totals.latency_ms.upstream, ms(8.0, 29.0, 29.0));

    let limited = store
        .top(org, &query(Dimension::Route, 2, Filters::default()))
        .await
        .expect("top");
    assert_eq!(top_requests(&limited), top_requests(&routes[..2]));

    let statuses = store
        .top(org, &query(Dimension::Status, 10, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&statuses),
        sorted(vec![
            (Some("200".into()), 4),
            (Some("401".into()), 1),
            (Some("404".into()), 1),
            (Some("429".into()), 1),
            (Some("500".into()), 1),
        ])
    );

    let regions = store
        .top(org, &query(Dimension::Region, 10, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&regions),
        vec![(Some("eu-west".into()), 4), (Some("us-east".into()), 4)]
    );

    let services_on_node_1 = store
        .top(
            org,
            &query(
                Dimension::Service,
                10,
                Filters {
                    node: Some(f.a.nodes[1]),
                    ..Filters::default()
                },
            ),
        )
        .await
        .expect("top");
    assert_eq!(
        top_requests(&services_on_node_1),
        vec![(id(f.a.services[1]), 3), (id(f.a.services[0]), 1)]
    );

    let consumers = store
        .top(org, &query(Dimension::Consumer, 10, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&consumers),
        vec![(id(f.a.consumer), 5), (None, 3)]
    );

    let nodes = store
        .top(org, &query(Dimension::Node, 10, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&nodes),
        sorted(vec![(id(f.a.nodes[0]), 4), (id(f.a.nodes[1]), 4)])
    );
}

async fn recent(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.a.organization;
    let two_days = range(
        Utc.with_ymd_and_hms(2025, 3, 10, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 3, 12, 0, 0, 0).unwrap(),
    );
    let latest = store
        .recent(org, &two_days, &Filters::default(), 3)
        .await
        .expect("recent");
    // Newest first: rows 8, 7, 6, every field as the edge wrote it.
    assert_eq!(
        latest,
        vec![
            f.a_logs[7].clone(),
            f.a_logs[6].clone(),
            f.a_logs[5].clone()
        ]
    );

    let year = range(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    );
    let all = store
        .recent(org, &year, &Filters::default(), 100)
        .await
        .expect("recent");
    let numbers: Vec<&str> = all.iter().map(|l| l.request_id.as_str()).collect();
    assert_eq!(
        numbers,
        [
            "req-10", "req-8", "req-7", "req-6", "req-5", "req-4", "req-3", "req-2", "req-1",
            "req-9"
        ]
    );
    assert_eq!(
        all[9].time.timestamp_subsec_millis(),
        999,
        "milliseconds kept"
    );

    let not_found = store
        .recent(
            org,
            &year,
            &Filters {
                status: Some(404),
                ..Filters::default()
            },
            100,
        )
        .await
        .expect("recent");
    assert_eq!(not_found, vec![f.a_logs[2].clone()]);
}

/// Ranges that start and end inside minutes and hours. A store that keeps rollups reads such a
/// range in pieces (whole hours, whole minutes at the ends, single requests at the very edges;
/// and a narrower or wider rollup depending on what is filtered or grouped), and must still
/// count exactly the requests in `[from, to)`.
async fn ranges_with_ragged_edges(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.a.organization;
    let at = |d, h, m, s, ms| {
        Utc.with_ymd_and_hms(2025, 3, d, h, m, s).unwrap() + Duration::milliseconds(ms)
    };
    // From row 2 (exactly at its time) to row 8 (exactly at its time, plus 1 ms): rows 2-8.
    // In pieces: rows 2, 3 before the first whole minute; 4, 5 in whole minutes before the
    // first whole hour (10:01-11:00); 6, 7 in whole hours (11:00-09:00 the next day); row 8 in
    // the last partial minute.
    let ragged = range(at(10, 10, 0, 20, 0), at(11, 9, 0, 0, 1));
    let totals = store
        .totals(org, &ragged, &Filters::default())
        .await
        .expect("totals");
    // Total ms 20,1,30,2,40,3,5 sorted 1,2,3,5,20,30,40 (n=7: p50 rank 4, p95 and p99 rank 7);
    // upstream 29,30,4 sorted 4,29,30 (p50 rank 2); edge 20,1,1,2,10,3,1 sorted
    // 1,1,1,2,3,10,20.
    assert_eq!(
        totals,
        Totals {
            requests: 7,
            errors_4xx: 3,
            errors_5xx: 1,
            bytes_in: 550,
            bytes_out: 5720,
            latency_ms: Latencies {
                total: ms(5.0, 40.0, 40.0),
                upstream: ms(29.0, 30.0, 30.0),
                edge: ms(2.0, 20.0, 20.0),
            },
        }
    );
    // One millisecond less at either end drops the row at that end.
    for (narrower, expected) in [
        (range(at(10, 10, 0, 20, 1), at(11, 9, 0, 0, 1)), 6),
        (range(at(10, 10, 0, 20, 0), at(11, 9, 0, 0, 0)), 6),
        (range(at(10, 10, 0, 20, 1), at(11, 9, 0, 0, 0)), 5),
        // Whole hour 10:00-11:00 (rows 1-5), then 11:00:00-11:00:05 (row 6 is at 11:00:05).
        (range(at(10, 10, 0, 0, 0), at(10, 11, 0, 5, 0)), 5),
        (range(at(10, 10, 0, 0, 0), at(10, 11, 0, 5, 1)), 6),
        // Inside one minute: row 3 at 10:00:45 alone.
        (range(at(10, 10, 0, 21, 0), at(10, 10, 0, 59, 999)), 1),
    ] {
        let got = store
            .totals(org, &narrower, &Filters::default())
            .await
            .expect("totals");
        assert_eq!(got.requests, expected, "{narrower:?}");
    }

    let id = |id: Uuid| Some(id.to_string());
    let top = |by, filters| TopQuery {
        range: ragged,
        filters,
        by,
        limit: 10,
    };
    // Rows 2-8 by route: route 0 rows 2, 4, 8; route 1 rows 5, 6, 7; row 3 none.
    let routes = store
        .top(org, &top(Dimension::Route, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&routes),
        sorted(vec![
            (id(f.a.routes[0]), 3),
            (id(f.a.routes[1]), 3),
            (None, 1)
        ])
    );
    // Route 0: total ms 20, 30, 5 (n=3: p50 rank 2, p95 rank 3); bytes in 200 + 50.
    let route_0 = routes
        .iter()
        .find(|r| r.key == id(f.a.routes[0]))
        .expect("route 0");
    assert_eq!(
        (route_0.totals.errors_5xx, route_0.totals.bytes_in),
        (1, 250)
    );
    assert_eq!(route_0.totals.latency_ms.total, ms(20.0, 30.0, 30.0));
    // Service 0 is route 0's; service 1 route 1's.
    let services = store
        .top(org, &top(Dimension::Service, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&services),
        sorted(vec![
            (id(f.a.services[0]), 3),
            (id(f.a.services[1]), 3),
            (None, 1)
        ])
    );
    // Consumer on rows 4, 6, 7, 8.
    let consumers = store
        .top(org, &top(Dimension::Consumer, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&consumers),
        vec![(id(f.a.consumer), 4), (None, 3)]
    );
    // Node 0 (eu-west) rows 2, 3, 8; node 1 (us-east) rows 4-7.
    let nodes = store
        .top(org, &top(Dimension::Node, Filters::default()))
        .await
        .expect("top");
    assert_eq!(
        top_requests(&nodes),
        vec![(id(f.a.nodes[1]), 4), (id(f.a.nodes[0]), 3)]
    );
    let regions = store
        .top(
            org,
            &top(
                Dimension::Region,
                Filters {
                    control_plane: Some(f.a.control_planes[0]),
                    ..Filters::default()
                },
            ),
        )
        .await
        .expect("top");
    // Control plane 0: rows 2, 3, 8 (eu-west) and 4, 5 (us-east).
    assert_eq!(
        top_requests(&regions),
        vec![(Some("eu-west".into()), 3), (Some("us-east".into()), 2)]
    );
    // Status and route together: no narrow rollup keeps both. 200s are rows 2, 8 (route 0)
    // and 6 (route 1).
    let ok_routes = store
        .top(
            org,
            &top(
                Dimension::Route,
                Filters {
                    status: Some(200),
                    ..Filters::default()
                },
            ),
        )
        .await
        .expect("top");
    assert_eq!(
        top_requests(&ok_routes),
        vec![(id(f.a.routes[0]), 2), (id(f.a.routes[1]), 1)]
    );
    // The consumer's routes: rows 4, 8 (route 0) and 6, 7 (route 1).
    let consumer_routes = store
        .top(
            org,
            &top(
                Dimension::Route,
                Filters {
                    consumer: Some(f.a.consumer),
                    ..Filters::default()
                },
            ),
        )
        .await
        .expect("top");
    assert_eq!(
        top_requests(&consumer_routes),
        sorted(vec![(id(f.a.routes[0]), 2), (id(f.a.routes[1]), 2)])
    );
    // The top one only: the tie goes to the smaller key.
    let first = store
        .top(
            org,
            &TopQuery {
                limit: 1,
                ..top(
                    Dimension::Route,
                    Filters {
                        consumer: Some(f.a.consumer),
                        ..Filters::default()
                    },
                )
            },
        )
        .await
        .expect("top");
    assert_eq!(top_requests(&first), top_requests(&consumer_routes[..1]));

    // Hourly points by status: 10:00 has rows 2-5, 11:00 rows 6 and 7, 09:00 the next day
    // row 8 (from its first millisecond, the range's last).
    let hourly = store
        .series(
            org,
            &SeriesQuery {
                range: ragged,
                bucket: Bucket::Hour,
                filters: Filters::default(),
                group_by: Some(Dimension::Status),
            },
        )
        .await
        .expect("series");
    let status = |s: &str| Some(s.to_string());
    assert_eq!(
        requests(&hourly),
        vec![
            (at(10, 10, 0, 0, 0), status("200"), 1),
            (at(10, 10, 0, 0, 0), status("401"), 1),
            (at(10, 10, 0, 0, 0), status("404"), 1),
            (at(10, 10, 0, 0, 0), status("500"), 1),
            (at(10, 11, 0, 0, 0), status("200"), 1),
            (at(10, 11, 0, 0, 0), status("429"), 1),
            (at(11, 9, 0, 0, 0), status("200"), 1),
        ]
    );
    // Per minute from row 2 to row 7 (11:01:05 exactly, plus 1 ms): rows 2, 3 at 10:00,
    // 4, 5 at 10:01, 6 at 11:00, 7 at 11:01.
    let minutes = store
        .series(
            org,
            &SeriesQuery {
                range: range(at(10, 10, 0, 20, 0), at(10, 11, 1, 5, 1)),
                bucket: Bucket::Minute,
                filters: Filters::default(),
                group_by: None,
            },
        )
        .await
        .expect("series");
    assert_eq!(
        requests(&minutes),
        vec![
            (at(10, 10, 0, 0, 0), None, 2),
            (at(10, 10, 1, 0, 0), None, 2),
            (at(10, 11, 0, 0, 0), None, 1),
            (at(10, 11, 1, 0, 0), None, 1),
        ]
    );
    // 10:00 from 10:00:20: rows 2 and 3 only, total ms 1, 20 (n=2: p95 rank 2).
    assert_eq!(
        (
            minutes[0].totals.errors_4xx,
            minutes[0].totals.bytes_out,
            minutes[0].totals.latency_ms.total.p95
        ),
        (1, 2050, 20.0)
    );
    // Per day, by consumer: 03-10 has rows 4, 6, 7 with one and 2, 3, 5 without; 03-11 row 8.
    let daily = store
        .series(
            org,
            &SeriesQuery {
                range: ragged,
                bucket: Bucket::Day,
                filters: Filters::default(),
                group_by: Some(Dimension::Consumer),
            },
        )
        .await
        .expect("series");
    assert_eq!(
        requests(&daily),
        vec![
            (at(10, 0, 0, 0, 0), id(f.a.consumer), 3),
            (at(10, 0, 0, 0, 0), None, 3),
            (at(11, 0, 0, 0, 0), id(f.a.consumer), 1),
        ]
    );
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

async fn usage(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.a.organization;
    let march = store
        .usage(
            org,
            Month {
                year: 2025,
                month: 3,
            },
        )
        .await
        .expect("usage");
    // Rows 1-8; row 9 is the last millisecond of February, row 10 the first of April.
    assert_eq!(march.month, "2025-03");
    assert_eq!(
        (march.requests, march.bytes_in, march.bytes_out),
        (8, 650, 6720)
    );
    assert_eq!(march.days.len(), 31, "a past month shows every day");
    for (i, day) in march.days.iter().enumerate() {
        let n = u32::try_from(i).unwrap() + 1;
        assert_eq!(day.date, date(2025, 3, n));
        let expected = match n {
            10 => (7, 600, 6220),
            11 => (1, 50, 500),
            _ => (0, 0, 0),
        };
        assert_eq!(
            (day.requests, day.bytes_in, day.bytes_out),
            expected,
            "{}",
            day.date
        );
    }
    let per_cp: Vec<(Uuid, u64)> = march
        .control_planes
        .iter()
        .map(|c| (c.id, c.requests))
        .collect();
    assert_eq!(
        per_cp,
        vec![(f.a.control_planes[0], 6), (f.a.control_planes[1], 2)]
    );
    assert!(march.control_planes.iter().all(|c| c.name.is_empty()));

    let february = store
        .usage(
            org,
            Month {
                year: 2025,
                month: 2,
            },
        )
        .await
        .expect("usage");
    assert_eq!(february.days.len(), 28);
    assert_eq!(february.requests, 1);
    let last = february.days.last().unwrap();
    assert_eq!(
        (last.date, last.requests, last.bytes_in, last.bytes_out),
        (date(2025, 2, 28), 1, 1, 11)
    );

    let april = store
        .usage(
            org,
            Month {
                year: 2025,
                month: 4,
            },
        )
        .await
        .expect("usage");
    assert_eq!(april.days.len(), 30);
    assert_eq!((april.days[0].requests, april.days[0].bytes_out), (1, 22));
    assert_eq!(april.control_planes.len(), 1);
    assert_eq!(april.control_planes[0].id, f.a.control_planes[1]);

    // The current month runs from the 1st to today; the one inserted row of today is counted.
    let before = Utc::now().date_naive();
    let current = store
        .usage(org, Month::of(Utc::now()))
        .await
        .expect("usage");
    let after = Utc::now().date_naive();
    let last = current.days.last().expect("today is shown");
    assert!(
        last.date == before || last.date == after,
        "last day {} is today",
        last.date
    );
    assert_eq!(current.days[0].date.format("%d").to_string(), "01");
    assert_eq!(current.requests, 1);
    assert_eq!(current.days.iter().map(|d| d.requests).sum::<u64>(), 1);

    let future = store
        .usage(
            org,
            Month {
                year: 2099,
                month: 1,
            },
        )
        .await
        .expect("usage");
    assert!(future.days.is_empty(), "no day of a future month has come");
    assert_eq!((future.requests, future.control_planes.len()), (0, 0));
}

/// Tenant B asks about everything of A's it could name; it sees only its own rows.
async fn tenants_are_isolated(store: &dyn AnalyticsStore, f: &Fixture) {
    let org = f.b.organization;
    let busy = range(t0(), t0() + Duration::hours(2));
    let own = store
        .totals(org, &busy, &Filters::default())
        .await
        .expect("totals");
    // b1 and b2: total ms 7, 9; b2 is a 503.
    assert_eq!(
        (own.requests, own.errors_5xx, own.bytes_in, own.bytes_out),
        (2, 1, 10, 160)
    );
    // A's rows share B's region: filtering on it still gives only B's.
    let same_region = store
        .totals(
            org,
            &busy,
            &Filters {
                region: Some("eu-west".into()),
                ..Filters::default()
            },
        )
        .await
        .expect("totals");
    assert_eq!(same_region.requests, 2);
    let regions = store
        .top(
            org,
            &TopQuery {
                range: busy,
                filters: Filters::default(),
                by: Dimension::Region,
                limit: 10,
            },
        )
        .await
        .expect("top");
    assert_eq!(top_requests(&regions), vec![(Some("eu-west".into()), 2)]);

    let a = &f.a;
    let foreign = [
        Filters {
            control_plane: Some(a.control_planes[0]),
            ..Filters::default()
        },
        Filters {
            service: Some(a.services[0]),
            ..Filters::default()
        },
        Filters {
            route: Some(a.routes[0]),
            ..Filters::default()
        },
        Filters {
            consumer: Some(a.consumer),
            ..Filters::default()
        },
        Filters {
            node: Some(a.nodes[1]),
            ..Filters::default()
        },
        Filters {
            status: Some(404),
            ..Filters::default()
        },
        Filters {
            region: Some("us-east".into()),
            ..Filters::default()
        },
    ];
    let year = range(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    );
    for filters in foreign {
        let totals = store.totals(org, &year, &filters).await.expect("totals");
        assert_eq!(totals, Totals::default(), "{filters:?}");
        for by in Dimension::ALL {
            let rows = store
                .top(
                    org,
                    &TopQuery {
                        range: year,
                        filters: filters.clone(),
                        by,
                        limit: 100,
                    },
                )
                .await
                .expect("top");
            assert!(rows.is_empty(), "{by:?} {filters:?}: {rows:?}");
        }
        let points = store
            .series(
                org,
                &SeriesQuery {
                    range: year,
                    bucket: Bucket::Day,
                    filters: filters.clone(),
                    group_by: Some(Dimension::ControlPlane),
                },
            )
            .await
            .expect("series");
        assert!(points.is_empty(), "{filters:?}: {points:?}");
        let logs = store
            .recent(org, &year, &filters, 100)
            .await
            .expect("recent");
        assert!(logs.is_empty(), "{filters:?}");
    }

    let logs = store
        .recent(org, &year, &Filters::default(), 100)
        .await
        .expect("recent");
    let expected: Vec<RequestLog> = f.b_logs.iter().rev().cloned().collect();
    assert_eq!(logs, expected);

    let march = store
        .usage(
            org,
            Month {
                year: 2025,
                month: 3,
            },
        )
        .await
        .expect("usage");
    assert_eq!(
        (march.requests, march.bytes_in, march.bytes_out),
        (3, 15, 205)
    );
    let per_cp: Vec<(Uuid, u64)> = march
        .control_planes
        .iter()
        .map(|c| (c.id, c.requests))
        .collect();
    assert_eq!(per_cp, vec![(f.b.control_planes[0], 3)]);
    let other_months = store
        .usage(
            org,
            Month {
                year: 2025,
                month: 4,
            },
        )
        .await
        .expect("usage");
    assert_eq!(other_months.requests, 0);
}
