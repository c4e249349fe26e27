//! The ClickHouse store against a real server: what goes in comes out in every query, per
//! tenant and never across tenants, and a batch stored twice counts once.

mod common;

use chrono::Duration;
use common::*;
use tollgate_analytics::clickhouse::schema;
use tollgate_analytics::query::{
    Bucket, Dimension, Filters, Month, SeriesQuery, TimeRange, TopQuery,
};
use tollgate_analytics::{AnalyticsStore, Inserted};
use tollgate_model::request_log::{AiUsage, RequestLog};
use uuid::Uuid;

fn range(from: chrono::DateTime<chrono::Utc>, hours: i64) -> TimeRange {
    TimeRange {
        from,
        to: from + Duration::hours(hours),
    }
}

#[tokio::test]
async fn migrating_again_applies_nothing() {
    let db = TestDb::new().await;
    assert!(schema::migrate(&db.url).await.unwrap().is_empty());
    assert!(schema::pending(&db.url).await.unwrap().is_empty());
    assert_eq!(
        db.number("SELECT count() FROM schema_migrations").await,
        schema::MIGRATIONS.len() as u64
    );
}

#[tokio::test]
async fn each_tenant_sees_exactly_its_own_traffic() {
    let db = TestDb::new().await;
    let store = db.store.clone();
    let a = Tenant::new();
    let b = Tenant::new();
    let ten = at(2026, 1, 15, 10, 0, 0);

    // Tenant A: 10 OKs at 10:00 on route R1; 5 unmatched 404s at 10:01 (no service, route or
    // consumer); 2 503s at 11:30 that never reached an upstream; 4 OKs the next day on a
    // second control plane.
    let oks: Vec<RequestLog> = (0..10)
        .map(|n| a.log(ten + Duration::seconds(n), n as u64))
        .collect();
    let not_found: Vec<RequestLog> = (0..5)
        .map(|n| RequestLog {
            status: 404,
            service_id: None,
            route_id: None,
            consumer_id: None,
            latency_upstream_us: None,
            ..a.log(
                ten + Duration::minutes(1) + Duration::seconds(n),
                100 + n as u64,
            )
        })
        .collect();
    let failures: Vec<RequestLog> = (0..2)
        .map(|n| RequestLog {
            status: 503,
            latency_upstream_us: None,
            ..a.log(
                ten + Duration::minutes(90) + Duration::milliseconds(n),
                200 + n as u64,
            )
        })
        .collect();
    let second_cp = Uuid::now_v7();
    let next_day: Vec<RequestLog> = (0..4)
        .map(|n| RequestLog {
            control_plane_id: second_cp,
            ai: AiUsage {
                provider: Some("openai".into()),
                model: Some("gpt-4o".into()),
                prompt_tokens: 10,
                completion_tokens: 20,
                cost_micros: 1234,
            },
            ..a.log(
                ten + Duration::days(1) + Duration::milliseconds(n * 7),
                300 + n as u64,
            )
        })
        .collect();
    // Tenant B: 7 OKs in the same minute and region as A's.
    let b_logs: Vec<RequestLog> = (0..7)
        .map(|n| b.log(ten + Duration::seconds(n), n as u64))
        .collect();

    let a_batches = [
        batch(oks.clone()),
        batch(not_found.clone()),
        batch(failures.clone()),
        batch(next_day.clone()),
    ];
    let b_batches = vec![batch(b_logs.clone())];
    let all: Vec<_> = a_batches.iter().chain(&b_batches).cloned().collect();

    assert_eq!(
        store.insert(&all).await.unwrap(),
        Inserted {
            rows: 28,
            duplicate_batches: 0
        }
    );
    // A redelivery of everything stores nothing; nor does one batch given twice in one call.
    assert_eq!(
        store.insert(&all).await.unwrap(),
        Inserted {
            rows: 0,
            duplicate_batches: 5
        }
    );
    let fresh = batch(vec![a.log(ten + Duration::hours(2), 999)]);
    assert_eq!(
        store.insert(&[fresh.clone(), fresh.clone()]).await.unwrap(),
        Inserted {
            rows: 1,
            duplicate_batches: 1
        }
    );
    assert_eq!(db.number("SELECT count() FROM request_logs").await, 29);
    let a_total = 22u64;

    // Totals over both days.
    let two_days = range(at(2026, 1, 15, 0, 0, 0), 48);
    let totals = store
        .totals(a.organization, &two_days, &Filters::default())
        .await
        .unwrap();
    assert_eq!(totals.requests, a_total);
    assert_eq!(totals.errors_4xx, 5);
    assert_eq!(totals.errors_5xx, 2);
    assert_eq!(totals.bytes_in, 10 * a_total);
    let a_logs: Vec<&RequestLog> = a_batches
        .iter()
        .flat_map(|b| &b.logs)
        .chain(&fresh.logs)
        .collect();
    assert_eq!(
        totals.bytes_out,
        a_logs.iter().map(|l| l.bytes_out).sum::<u64>()
    );
    // Total latencies run from 1.000 to 1.999 ms, most near 1.0; the t-digest's quantiles stay
    // within what went in.
    let p = totals.latency_ms.total;
    assert!(p.p50 >= 1.0 && p.p50 <= 1.31 && p.p99 <= 2.0, "{p:?}");
    assert!(totals.latency_ms.upstream.p50 >= 0.8, "{totals:?}");
    assert_eq!(totals.latency_ms.edge.p50, 0.2);

    // Hourly series on the first day: 15 at 10:00, 2 at 11:00, 1 at 12:00.
    let day_one = SeriesQuery {
        range: range(at(2026, 1, 15, 0, 0, 0), 24),
        bucket: Bucket::Hour,
        filters: Filters::default(),
        group_by: None,
    };
    let points = store.series(a.organization, &day_one).await.unwrap();
    let shape: Vec<_> = points
        .iter()
        .map(|p| (p.time, p.group.clone(), p.totals.requests))
        .collect();
    assert_eq!(
        shape,
        vec![
            (ten, None, 15),
            (ten + Duration::hours(1), None, 2),
            (ten + Duration::hours(2), None, 1)
        ]
    );
    assert_eq!(points[1].totals.errors_5xx, 2);
    // No upstream latency at 11:00 (both 503s failed before one): zeros, not NaN.
    assert_eq!(points[1].totals.latency_ms.upstream.p99, 0.0);

    // Per minute, grouped by route: R1 and "none" at 10:00 and 10:01.
    let by_route = SeriesQuery {
        range: range(ten, 1),
        bucket: Bucket::Minute,
        group_by: Some(Dimension::Route),
        ..day_one.clone()
    };
    let points = store.series(a.organization, &by_route).await.unwrap();
    let shape: Vec<_> = points
        .iter()
        .map(|p| (p.time, p.group.clone(), p.totals.requests))
        .collect();
    assert_eq!(
        shape,
        vec![
            (ten, Some(a.route.to_string()), 10),
            (ten + Duration::minutes(1), None, 5)
        ]
    );

    // Daily buckets grouped by control plane.
    let by_cp = SeriesQuery {
        range: two_days,
        bucket: Bucket::Day,
        group_by: Some(Dimension::ControlPlane),
        ..day_one.clone()
    };
    let points = store.series(a.organization, &by_cp).await.unwrap();
    let shape: Vec<_> = points
        .iter()
        .map(|p| (p.time, p.group.clone(), p.totals.requests))
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                at(2026, 1, 15, 0, 0, 0),
                Some(a.control_plane.to_string()),
                18
            ),
            (at(2026, 1, 16, 0, 0, 0), Some(second_cp.to_string()), 4)
        ]
    );

    // Top statuses and routes.
    let top = |by| TopQuery {
        range: two_days,
        filters: Filters::default(),
        by,
        limit: 10,
    };
    let statuses = store
        .top(a.organization, &top(Dimension::Status))
        .await
        .unwrap();
    let shape: Vec<_> = statuses
        .iter()
        .map(|r| (r.key.clone(), r.totals.requests))
        .collect();
    assert_eq!(
        shape,
        vec![
            (Some("200".to_string()), 15),
            (Some("404".to_string()), 5),
            (Some("503".to_string()), 2)
        ]
    );
    let routes = store
        .top(
            a.organization,
            &TopQuery {
                limit: 1,
                ..top(Dimension::Route)
            },
        )
        .await
        .unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].key, Some(a.route.to_string()));
    assert_eq!(routes[0].totals.requests, 17);

    // Filters are ANDed.
    let filtered = store
        .totals(
            a.organization,
            &two_days,
            &Filters {
                control_plane: Some(a.control_plane),
                status: Some(200),
                region: Some("eu-west".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(filtered.requests, 11);

    // Recent: newest first, every field as it went in.
    let recent = store
        .recent(a.organization, &two_days, &Filters::default(), 5)
        .await
        .unwrap();
    let mut expected = next_day.clone();
    expected.reverse();
    assert_eq!(&recent[..4], &expected[..]);
    assert_eq!(recent[4], fresh.logs[0]);
    let unmatched = store
        .recent(
            a.organization,
            &two_days,
            &Filters {
                status: Some(404),
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    let mut expected = not_found.clone();
    expected.reverse();
    assert_eq!(unmatched, expected);
    // Ranges are exact to the millisecond on raw rows.
    let one_ms = store
        .recent(
            a.organization,
            &TimeRange {
                from: failures[1].time,
                to: failures[1].time + Duration::milliseconds(1),
            },
            &Filters::default(),
            100,
        )
        .await
        .unwrap();
    assert_eq!(one_ms, vec![failures[1].clone()]);

    // Usage: every day of a past month, per control plane.
    let january = Month {
        year: 2026,
        month: 1,
    };
    let usage = store.usage(a.organization, january).await.unwrap();
    assert_eq!(usage.month, "2026-01");
    assert_eq!(usage.requests, a_total);
    assert_eq!(usage.bytes_in, 10 * a_total);
    assert_eq!(usage.days.len(), 31);
    assert_eq!(usage.days[14].requests, 18);
    assert_eq!(usage.days[15].requests, 4);
    assert_eq!(usage.days[16].requests, 0);
    let cps: Vec<_> = usage
        .control_planes
        .iter()
        .map(|c| (c.id, c.requests))
        .collect();
    assert_eq!(cps, vec![(a.control_plane, 18), (second_cp, 4)]);

    // Tenant B sees its 7 and nothing of A's, whatever it filters on.
    let b_totals = store
        .totals(b.organization, &two_days, &Filters::default())
        .await
        .unwrap();
    assert_eq!(b_totals.requests, 7);
    assert_eq!(
        store.usage(b.organization, january).await.unwrap().requests,
        7
    );
    let b_recent = store
        .recent(b.organization, &two_days, &Filters::default(), 1000)
        .await
        .unwrap();
    assert_eq!(b_recent.len(), 7);
    assert!(b_recent.iter().all(|l| l.organization_id == b.organization));
    let a_filters = [
        Filters {
            control_plane: Some(a.control_plane),
            ..Default::default()
        },
        Filters {
            control_plane: Some(second_cp),
            ..Default::default()
        },
        Filters {
            service: Some(a.service),
            ..Default::default()
        },
        Filters {
            route: Some(a.route),
            ..Default::default()
        },
        Filters {
            consumer: Some(a.consumer),
            ..Default::default()
        },
        Filters {
            node: Some(a.node),
            ..Default::default()
        },
        Filters {
            status: Some(404),
            ..Default::default()
        },
        Filters {
            region: Some("x' OR 1=1 OR region = '".into()),
            ..Default::default()
        },
    ];
    for filters in &a_filters {
        let totals = store
            .totals(b.organization, &two_days, filters)
            .await
            .unwrap();
        assert_eq!(totals.requests, 0, "{filters:?}");
        let recent = store
            .recent(b.organization, &two_days, filters, 1000)
            .await
            .unwrap();
        assert!(recent.is_empty(), "{filters:?}");
        for by in Dimension::ALL {
            let top = store
                .top(
                    b.organization,
                    &TopQuery {
                        range: two_days,
                        filters: filters.clone(),
                        by,
                        limit: 100,
                    },
                )
                .await
                .unwrap();
            assert!(top.is_empty(), "{filters:?} {by:?}");
            let series = store
                .series(
                    b.organization,
                    &SeriesQuery {
                        range: two_days,
                        bucket: Bucket::Hour,
                        filters: filters.clone(),
                        group_by: Some(by),
                    },
                )
                .await
                .unwrap();
            assert!(series.is_empty(), "{filters:?} {by:?}");
        }
    }
    // The shared region filter keeps B to its own rows too.
    let shared_region = Filters {
        region: Some("eu-west".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .totals(b.organization, &two_days, &shared_region)
            .await
            .unwrap()
            .requests,
        7
    );
    // And an organization with no traffic sees nothing at all.
    let nobody = Uuid::now_v7();
    assert_eq!(
        store
            .totals(nobody, &two_days, &Filters::default())
            .await
            .unwrap()
            .requests,
        0
    );
}

#[tokio::test]
async fn strings_with_quotes_and_question_marks_are_stored_and_matched_literally() {
    let db = TestDb::new().await;
    let t = Tenant::new();
    let time = at(2026, 2, 1, 0, 0, 0);
    let odd = "we?ird\\'re\"gion\n";
    let log = RequestLog {
        region: odd.into(),
        path: "/a?b='c'\\".into(),
        ..t.log(time, 1)
    };
    db.store.insert(&[batch(vec![log.clone()])]).await.unwrap();
    let filters = Filters {
        region: Some(odd.into()),
        ..Default::default()
    };
    let day = range(time, 24);
    let recent = db
        .store
        .recent(t.organization, &day, &filters, 10)
        .await
        .unwrap();
    assert_eq!(recent, vec![log]);
    let top = db
        .store
        .top(
            t.organization,
            &TopQuery {
                range: day,
                filters,
                by: Dimension::Region,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].key.as_deref(), Some(odd));
}

#[tokio::test]
async fn invalid_queries_are_refused() {
    let db = TestDb::new().await;
    let t = Tenant::new();
    let backwards = TimeRange {
        from: at(2026, 1, 2, 0, 0, 0),
        to: at(2026, 1, 1, 0, 0, 0),
    };
    assert!(db
        .store
        .totals(t.organization, &backwards, &Filters::default())
        .await
        .is_err());
    let too_many_points = SeriesQuery {
        range: range(at(2026, 1, 1, 0, 0, 0), 24 * 30),
        bucket: Bucket::Minute,
        filters: Filters::default(),
        group_by: None,
    };
    assert!(db
        .store
        .series(t.organization, &too_many_points)
        .await
        .is_err());
}

/// Every rollup's total of requests, one per table.
async fn rollup_counts(db: &TestDb, organization: Uuid) -> Vec<(&'static str, u64)> {
    let mut counts = Vec::new();
    for table in [
        "requests_1m_cp",
        "requests_1h_cp",
        "requests_1h_route",
        "requests_1h_consumer",
        "requests_1h_node",
        "requests_1d_cp",
        "requests_1d_route",
        "requests_1d_consumer",
        "requests_1d_node",
        "requests_1m_status",
        "requests_1h_status",
        "requests_1d_status",
    ] {
        let n = db
            .number(&format!(
                "SELECT countMerge(requests) FROM {table} \
                 WHERE organization_id = toUUID('{organization}')"
            ))
            .await;
        counts.push((table, n));
    }
    counts
}

#[tokio::test]
async fn a_database_made_before_the_narrow_and_daily_rollups_is_backfilled_and_keeps_its_answers() {
    require_clickhouse(CLICKHOUSE).await;
    let name = format!("tg_test_{}", Uuid::new_v4().simple());
    let url = tollgate_analytics::clickhouse::ClickHouseUrl::parse(&format!("{CLICKHOUSE}/{name}"))
        .expect("test URL");
    let db = TestDb {
        store: std::sync::Arc::new(tollgate_analytics::clickhouse::ClickHouseStore::new(&url)),
        url,
    };
    // As the release before them left it: logs stored through 0002 only.
    let applied = schema::migrate_through(&db.url, "0002_rollups")
        .await
        .expect("migrate");
    assert_eq!(applied, ["0001_request_logs", "0002_rollups"]);
    let t = Tenant::new();
    let start = at(2026, 3, 2, 9, 59, 30);
    // 30 batches of 40, one log per 1.5 s: 09:59:30 to 10:29:30.
    let logs: Vec<RequestLog> = (0..1200)
        .map(|n| RequestLog {
            status: if n % 10 == 0 { 503 } else { 200 },
            ..t.log(start + Duration::milliseconds(1500 * n as i64), n)
        })
        .collect();
    let old: Vec<_> = logs[..600].chunks(40).map(|c| batch(c.to_vec())).collect();
    db.store.insert(&old).await.expect("insert");
    let range = TimeRange {
        from: start,
        to: start + Duration::hours(2),
    };
    // (The store of this release reads tables the old schema lacks: nothing to ask it yet.)
    let sums = |logs: &[RequestLog]| {
        (
            logs.len() as u64,
            logs.iter().filter(|l| l.status >= 500).count() as u64,
            logs.iter().map(|l| l.bytes_in).sum::<u64>(),
            logs.iter().map(|l| l.bytes_out).sum::<u64>(),
        )
    };

    assert_eq!(
        schema::migrate(&db.url).await.expect("migrate"),
        ["0003_narrow_rollups", "0004_daily_and_status_rollups"]
    );
    for (table, n) in rollup_counts(&db, t.organization).await {
        assert_eq!(n, 600, "{table} holds every stored request once");
    }
    // The migration's scaffolding is gone, and so is the all-dimension rollup.
    assert_eq!(
        db.number(&format!(
            "SELECT count() FROM system.tables WHERE database = '{}' \
             AND (name LIKE 'rollup_backfill%' OR name IN ('requests_1m', 'requests_1m_mv'))",
            db.url.database
        ))
        .await,
        0
    );
    let after = db
        .store
        .totals(t.organization, &range, &Filters::default())
        .await
        .expect("totals");
    let counts =
        |t: &tollgate_analytics::query::Totals| (t.requests, t.errors_5xx, t.bytes_in, t.bytes_out);
    assert_eq!(counts(&after), sums(&logs[..600]));

    // Later inserts reach every rollup once.
    let new: Vec<_> = logs[600..].chunks(40).map(|c| batch(c.to_vec())).collect();
    db.store.insert(&new).await.expect("insert");
    eventually(
        "every rollup to count 1200",
        std::time::Duration::from_secs(10),
        || async {
            let counts = rollup_counts(&db, t.organization).await;
            assert!(counts.iter().all(|(_, n)| *n <= 1200), "{counts:?}");
            counts.iter().all(|(_, n)| *n == 1200).then_some(())
        },
    )
    .await;
    let totals = db
        .store
        .totals(t.organization, &range, &Filters::default())
        .await
        .expect("totals");
    assert_eq!(counts(&totals), sums(&logs));
    // Whole days come from the daily rollups.
    let whole_day = TimeRange {
        from: at(2026, 3, 2, 0, 0, 0),
        to: at(2026, 3, 3, 0, 0, 0),
    };
    assert_eq!(
        tollgate_analytics::clickhouse::tables_read(&whole_day, &Filters::default(), None, None),
        ["requests_1d_status"]
    );
    let day_totals = db
        .store
        .totals(t.organization, &whole_day, &Filters::default())
        .await
        .expect("totals");
    assert_eq!(counts(&day_totals), sums(&logs));
    let top = db
        .store
        .top(
            t.organization,
            &TopQuery {
                range,
                filters: Filters::default(),
                by: Dimension::Consumer,
                limit: 10,
            },
        )
        .await
        .expect("top");
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].totals.requests, 1200);
}
