//! SQL text for ClickHouse. 18.16 has no server-side query parameters, so every value a query
//! carries is written here as a literal: ids and numbers from their types (they cannot carry
//! quotes), strings quoted and escaped.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::query::{Bucket, Dimension, Filters, TimeRange};

/// A string literal. Inside quotes ClickHouse reads backslash escapes, so backslashes and
/// quotes are escaped; every other character (control characters too) stands for itself.
pub(crate) fn string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

pub(crate) fn uuid(id: Uuid) -> String {
    format!("toUUID('{}')", id.hyphenated())
}

/// Whole seconds since the epoch, as ClickHouse's `DateTime` holds them. Instants before 1970
/// (never a log's) clamp to 0.
pub(crate) fn seconds(time: DateTime<Utc>) -> u32 {
    u32::try_from(time.timestamp().max(0)).unwrap_or(u32::MAX)
}

/// The nil UUID stands for "none" in the rollups' keys, which cannot be Nullable.
pub(crate) const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// A dimension's column: the same name in `request_logs` and every rollup (where "none" is the
/// nil UUID rather than NULL).
pub(crate) fn column(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::ControlPlane => "control_plane_id",
        Dimension::Service => "service_id",
        Dimension::Route => "route_id",
        Dimension::Consumer => "consumer_id",
        Dimension::Status => "status",
        Dimension::Node => "node_id",
        Dimension::Region => "region",
    }
}

/// The conditions every query starts with: the tenant (always first, never optional) and the
/// filters, ANDed; then the time range.
pub(crate) struct Where {
    sql: String,
}

impl Where {
    pub(crate) fn tenant(organization: Uuid) -> Where {
        Where {
            sql: format!("organization_id = {}", uuid(organization)),
        }
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }

    /// `[from, to)` over a rollup's buckets, `from` and `to` on its bucket boundaries.
    fn buckets(mut self, time_column: &str, from_ms: i64, to_ms: i64) -> Where {
        let (from, to) = (from_ms / 1000, to_ms / 1000);
        self.and(&format!(
            "{time_column} >= toDateTime({from}) AND {time_column} < toDateTime({to})"
        ));
        self
    }

    /// `[from, to)` over raw rows, to the millisecond: whole seconds for the index, then the
    /// exact bound with `time_ms`.
    pub(crate) fn instants(self, range: &TimeRange) -> Where {
        let from_ms = range.from.timestamp_millis().max(0);
        let to_ms = range.to.timestamp_millis().max(0);
        self.instants_ms(from_ms, to_ms)
    }

    fn instants_ms(mut self, from_ms: i64, to_ms: i64) -> Where {
        let from_s = from_ms / 1000;
        let to_s = to_ms / 1000;
        self.and(&format!(
            "time >= toDateTime({from_s}) AND time <= toDateTime({to_s}) \
             AND toUInt64(time) * 1000 + time_ms >= {from_ms} \
             AND toUInt64(time) * 1000 + time_ms < {to_ms}"
        ));
        self
    }

    pub(crate) fn filters(mut self, filters: &Filters) -> Where {
        let ids = [
            (Dimension::ControlPlane, filters.control_plane),
            (Dimension::Service, filters.service),
            (Dimension::Route, filters.route),
            (Dimension::Consumer, filters.consumer),
            (Dimension::Node, filters.node),
        ];
        for (dimension, id) in ids {
            if let Some(id) = id {
                self.and(&format!("{} = {}", column(dimension), uuid(id)));
            }
        }
        if let Some(status) = filters.status {
            self.and(&format!("status = {status}"));
        }
        if let Some(region) = &filters.region {
            self.and(&format!("region = {}", string(region)));
        }
        self
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }
}

/// A table of pre-aggregated requests: one row per organization, time bucket and combination of
/// its dimensions, with the measures as `-State` columns (`migrations/clickhouse/`).
#[derive(Debug, PartialEq, Eq)]
pub struct Rollup {
    pub table: &'static str,
    /// The bucket's column (`minute`, `hour` or `day`) and its width.
    time_column: &'static str,
    width_ms: i64,
    dimensions: &'static [Dimension],
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// UTC days: ClickHouse's `toStartOfDay` on a `DateTime('UTC')`.
const DAY_MS: i64 = 86_400_000;

impl Rollup {
    fn covers(&self, needed: &[Dimension]) -> bool {
        needed.iter().all(|d| self.dimensions.contains(d))
    }
}

use Dimension::{Consumer, ControlPlane, Node, Region, Route, Service, Status};

const fn rollup(
    table: &'static str,
    time_column: &'static str,
    width_ms: i64,
    dimensions: &'static [Dimension],
) -> Rollup {
    Rollup {
        table,
        time_column,
        width_ms,
        dimensions,
    }
}

const STATUS: &[Dimension] = &[Status];
const CP: &[Dimension] = &[ControlPlane, Status];
const NODE: &[Dimension] = &[ControlPlane, Region, Node];
const ROUTE: &[Dimension] = &[ControlPlane, Service, Route];
const CONSUMER: &[Dimension] = &[ControlPlane, Consumer];

pub(crate) const MINUTE_STATUS: Rollup = rollup("requests_1m_status", "minute", MINUTE_MS, STATUS);
pub(crate) const HOUR_STATUS: Rollup = rollup("requests_1h_status", "hour", HOUR_MS, STATUS);
pub(crate) const DAY_STATUS: Rollup = rollup("requests_1d_status", "day", DAY_MS, STATUS);
pub(crate) const MINUTE_CP: Rollup = rollup("requests_1m_cp", "minute", MINUTE_MS, CP);
pub(crate) const HOUR_CP: Rollup = rollup("requests_1h_cp", "hour", HOUR_MS, CP);
pub(crate) const HOUR_NODE: Rollup = rollup("requests_1h_node", "hour", HOUR_MS, NODE);
pub(crate) const HOUR_ROUTE: Rollup = rollup("requests_1h_route", "hour", HOUR_MS, ROUTE);
pub(crate) const HOUR_CONSUMER: Rollup = rollup("requests_1h_consumer", "hour", HOUR_MS, CONSUMER);
pub(crate) const DAY_CP: Rollup = rollup("requests_1d_cp", "day", DAY_MS, CP);
pub(crate) const DAY_NODE: Rollup = rollup("requests_1d_node", "day", DAY_MS, NODE);
pub(crate) const DAY_ROUTE: Rollup = rollup("requests_1d_route", "day", DAY_MS, ROUTE);
pub(crate) const DAY_CONSUMER: Rollup = rollup("requests_1d_consumer", "day", DAY_MS, CONSUMER);

/// The rollups of each bucket width, coarsest width first and, within a width, fewest keys per
/// bucket first: the first of a width that covers a query is the cheapest. A query no minute
/// rollup covers reads raw rows for what the coarser ones do not give: an all-dimension rollup
/// would be as large as the raw table for a busy tenant, and cost more on every insert than all
/// the narrow ones together.
const LEVELS: [(i64, &[&Rollup]); 3] = [
    (
        DAY_MS,
        &[&DAY_STATUS, &DAY_CP, &DAY_NODE, &DAY_ROUTE, &DAY_CONSUMER],
    ),
    (
        HOUR_MS,
        &[
            &HOUR_STATUS,
            &HOUR_CP,
            &HOUR_NODE,
            &HOUR_ROUTE,
            &HOUR_CONSUMER,
        ],
    ),
    (MINUTE_MS, &[&MINUTE_STATUS, &MINUTE_CP]),
];

/// Where one piece of a range is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Rollup(&'static Rollup),
    /// `request_logs`, aggregated by the query itself.
    Raw,
}

impl Source {
    pub fn table(self) -> &'static str {
        match self {
            Source::Rollup(rollup) => rollup.table,
            Source::Raw => "request_logs",
        }
    }
}

/// `[from_ms, to_ms)` of a range, read from `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub source: Source,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The dimensions a query filters on or groups by: what its sources must keep.
pub(crate) fn needed_dimensions(filters: &Filters, group_by: Option<Dimension>) -> Vec<Dimension> {
    let mut needed: Vec<Dimension> = [
        (ControlPlane, filters.control_plane.is_some()),
        (Service, filters.service.is_some()),
        (Route, filters.route.is_some()),
        (Consumer, filters.consumer.is_some()),
        (Status, filters.status.is_some()),
        (Node, filters.node.is_some()),
        (Region, filters.region.is_some()),
    ]
    .into_iter()
    .filter_map(|(d, given)| given.then_some(d))
    .collect();
    if let Some(d) = group_by {
        if !needed.contains(&d) {
            needed.push(d);
        }
    }
    needed
}

/// Splits `[from_ms, to_ms)` into the pieces that give it exactly, each from the coarsest table
/// that can, in order of `from_ms`: the whole days from the first daily rollup covering `needed`,
/// what is left at either end in whole hours from the first hourly one, then in whole minutes from
/// the minute rollup, the rest (partial minutes, or everything no rollup covers) from raw rows.
/// A series never reads rows coarser than its `bucket` (none: totals and top-N tables).
pub fn plan(from_ms: i64, to_ms: i64, needed: &[Dimension], bucket: Option<Bucket>) -> Vec<Part> {
    let to_ms = to_ms.max(from_ms);
    let coarsest = bucket.map_or(DAY_MS, |b| b.width().num_milliseconds());
    let ceil = |t: i64, width: i64| (t + width - 1).div_euclid(width) * width;
    let floor = |t: i64, width: i64| t.div_euclid(width) * width;
    let mut parts = Vec::with_capacity(7);
    // What is still to read, in order.
    let mut left = vec![(from_ms, to_ms)];
    for (width, rollups) in LEVELS {
        if width > coarsest {
            continue;
        }
        let Some(rollup) = rollups.iter().copied().find(|r| r.covers(needed)) else {
            continue;
        };
        let mut still = Vec::with_capacity(left.len() + 1);
        for (from, to) in left {
            let (whole_from, whole_to) = (ceil(from, width), floor(to, width));
            if whole_from >= whole_to {
                still.push((from, to));
                continue;
            }
            parts.push(Part {
                source: Source::Rollup(rollup),
                from_ms: whole_from,
                to_ms: whole_to,
            });
            if from < whole_from {
                still.push((from, whole_from));
            }
            if whole_to < to {
                still.push((whole_to, to));
            }
        }
        left = still;
    }
    parts.extend(
        left.into_iter()
            .filter(|(from, to)| from < to)
            .map(|(from, to)| Part {
                source: Source::Raw,
                from_ms: from,
                to_ms: to,
            }),
    );
    parts.sort_by_key(|p| p.from_ms);
    parts
}

/// The measures as states, computed from raw rows the way the rollups' views compute them.
const RAW_STATES: &str = "countState() AS requests, \
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx, \
    sumState(toUInt64(status >= 500)) AS errors_5xx, \
    sumState(bytes_in) AS bytes_in, \
    sumState(bytes_out) AS bytes_out, \
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total, \
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), \
        toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream, \
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge";

/// The state columns every rollup has.
const ROLLUP_STATES: &str = "requests, errors_4xx, errors_5xx, bytes_in, bytes_out, \
    latency_total, latency_upstream, latency_edge";

/// Rows of `grp` (the group's value as text, or '' without grouping), the measures' states and,
/// for a series, `t` (a time inside the row's `bucket`, on its start or finer), for one tenant,
/// its filters and exactly `[from, to)`: the union of the pieces [`plan`] chose. The caller
/// merges the states.
pub(crate) fn grouped_source(
    organization: Uuid,
    range: &TimeRange,
    filters: &Filters,
    group_by: Option<Dimension>,
    bucket: Option<Bucket>,
) -> String {
    let from_ms = range.from.timestamp_millis().max(0);
    let to_ms = range.to.timestamp_millis().max(from_ms);
    let needed = needed_dimensions(filters, group_by);
    plan(from_ms, to_ms, &needed, bucket)
        .into_iter()
        .map(|part| part_sql(organization, &part, filters, group_by, bucket))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn part_sql(
    organization: Uuid,
    part: &Part,
    filters: &Filters,
    group_by: Option<Dimension>,
    bucket: Option<Bucket>,
) -> String {
    match part.source {
        Source::Rollup(rollup) => {
            let condition = Where::tenant(organization)
                .buckets(rollup.time_column, part.from_ms, part.to_ms)
                .filters(filters);
            let group = group_by
                .map(|d| format!("toString({})", column(d)))
                .unwrap_or_else(|| "''".to_string());
            let time = match bucket {
                Some(_) => format!("{} AS t, ", rollup.time_column),
                None => String::new(),
            };
            format!(
                "SELECT {time}{group} AS grp, {ROLLUP_STATES} FROM {table} WHERE {condition}",
                table = rollup.table,
                condition = condition.sql(),
            )
        }
        Source::Raw => {
            let condition = Where::tenant(organization)
                .instants_ms(part.from_ms, part.to_ms)
                .filters(filters);
            let group = group_by
                .map(raw_group_expression)
                .unwrap_or_else(|| "''".to_string());
            // Raw rows are aggregated here, as coarsely as the answer allows.
            let (time, keys) = match bucket {
                Some(Bucket::Minute) => ("toStartOfMinute(time) AS t, ", "t, grp"),
                Some(Bucket::Hour) => ("toStartOfHour(time) AS t, ", "t, grp"),
                Some(Bucket::Day) => ("toStartOfDay(time) AS t, ", "t, grp"),
                None => ("", "grp"),
            };
            format!(
                "SELECT {time}{group} AS grp, {RAW_STATES} \
                 FROM request_logs WHERE {condition} GROUP BY {keys}",
                condition = condition.sql(),
            )
        }
    }
}

/// A dimension's value in `request_logs` as text, "none" as the nil UUID like in the rollups.
fn raw_group_expression(dimension: Dimension) -> String {
    match dimension {
        Service | Route | Consumer => {
            format!(
                "toString(ifNull({}, toUUID('{NIL_UUID}')))",
                column(dimension)
            )
        }
        other => format!("toString({})", column(other)),
    }
}

/// `SELECT` list of the rollup's measures, in the order of [`super::rows::Measures`]. The
/// aliases differ from the columns' names: an alias equal to the column it aggregates would
/// shadow it elsewhere in the query.
pub(crate) const MEASURES: &str = "countMerge(requests) AS m_requests, \
    sumMerge(errors_4xx) AS m_errors_4xx, \
    sumMerge(errors_5xx) AS m_errors_5xx, \
    sumMerge(bytes_in) AS m_bytes_in, \
    sumMerge(bytes_out) AS m_bytes_out, \
    quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_total) AS m_latency_total, \
    quantilesTDigestIfMerge(0.5, 0.95, 0.99)(latency_upstream) AS m_latency_upstream, \
    quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_edge) AS m_latency_edge";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_quotes_and_backslashes() {
        assert_eq!(string("eu-west"), "'eu-west'");
        assert_eq!(string(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(string(r"\'"), r"'\\\''");
    }

    #[test]
    fn the_tenant_comes_first_and_filters_are_anded() {
        let org = Uuid::from_u128(1);
        let cp = Uuid::from_u128(2);
        let filters = Filters {
            control_plane: Some(cp),
            status: Some(404),
            region: Some("x' OR 1=1 --".into()),
            ..Default::default()
        };
        let sql = Where::tenant(org).filters(&filters).sql().to_string();
        assert_eq!(
            sql,
            "organization_id = toUUID('00000000-0000-0000-0000-000000000001') \
             AND control_plane_id = toUUID('00000000-0000-0000-0000-000000000002') \
             AND status = 404 AND region = 'x\\' OR 1=1 --'"
        );
    }

    /// `YYYY-MM-DD hh:mm:ss.mmm` as milliseconds since the epoch.
    fn ms(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f")
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn pieces(parts: &[Part]) -> Vec<(&'static str, i64, i64)> {
        parts
            .iter()
            .map(|p| (p.source.table(), p.from_ms, p.to_ms))
            .collect()
    }

    #[test]
    fn whole_days_then_hours_then_minutes_then_raw_rows() {
        let (from, to) = (ms("2026-11-19 10:17:42.250"), ms("2026-11-26 10:17:42.250"));
        let parts = plan(from, to, &[], None);
        assert_eq!(
            pieces(&parts),
            vec![
                ("request_logs", from, ms("2026-11-19 10:18:00.000")),
                (
                    "requests_1m_status",
                    ms("2026-11-19 10:18:00.000"),
                    ms("2026-11-19 11:00:00.000")
                ),
                (
                    "requests_1h_status",
                    ms("2026-11-19 11:00:00.000"),
                    ms("2026-11-20 00:00:00.000")
                ),
                (
                    "requests_1d_status",
                    ms("2026-11-20 00:00:00.000"),
                    ms("2026-11-26 00:00:00.000")
                ),
                (
                    "requests_1h_status",
                    ms("2026-11-26 00:00:00.000"),
                    ms("2026-11-26 10:00:00.000")
                ),
                (
                    "requests_1m_status",
                    ms("2026-11-26 10:00:00.000"),
                    ms("2026-11-26 10:17:00.000")
                ),
                ("request_logs", ms("2026-11-26 10:17:00.000"), to),
            ]
        );
        // An hourly series reads no days; a minute series neither days nor hours. (Without a
        // control plane to keep, the organization-wide tables by status.)
        let tables = |bucket| {
            let mut tables: Vec<_> = plan(from, to, &[], Some(bucket))
                .iter()
                .map(|p| p.source.table())
                .collect();
            tables.dedup();
            tables
        };
        assert_eq!(
            tables(Bucket::Hour),
            [
                "request_logs",
                "requests_1m_status",
                "requests_1h_status",
                "requests_1m_status",
                "request_logs"
            ]
        );
        assert_eq!(
            tables(Bucket::Minute),
            ["request_logs", "requests_1m_status", "request_logs"]
        );
        assert_eq!(
            tables(Bucket::Day),
            pieces(&parts).iter().map(|p| p.0).collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_dimension_reads_the_smallest_rollup_that_keeps_it() {
        let (from, to) = (ms("2026-11-19 00:00:00.000"), ms("2026-11-26 00:00:00.000"));
        let table = |needed: &[Dimension], bucket| {
            let parts = plan(from, to, needed, bucket);
            assert_eq!(parts.len(), 1, "aligned ranges need no edges");
            parts[0].source.table()
        };
        assert_eq!(table(&[], None), "requests_1d_status");
        assert_eq!(table(&[Status], Some(Bucket::Day)), "requests_1d_status");
        assert_eq!(table(&[ControlPlane], None), "requests_1d_cp");
        assert_eq!(table(&[ControlPlane, Status], None), "requests_1d_cp");
        assert_eq!(table(&[ControlPlane], Some(Bucket::Hour)), "requests_1h_cp");
        assert_eq!(
            table(&[ControlPlane], Some(Bucket::Minute)),
            "requests_1m_cp"
        );
        assert_eq!(table(&[Node], None), "requests_1d_node");
        assert_eq!(table(&[Region, ControlPlane], None), "requests_1d_node");
        assert_eq!(table(&[Route], None), "requests_1d_route");
        assert_eq!(table(&[Service, Route], None), "requests_1d_route");
        assert_eq!(table(&[Consumer], None), "requests_1d_consumer");
        assert_eq!(table(&[], Some(Bucket::Hour)), "requests_1h_status");
        assert_eq!(table(&[Node], Some(Bucket::Hour)), "requests_1h_node");
        assert_eq!(table(&[Route], Some(Bucket::Hour)), "requests_1h_route");
        assert_eq!(
            table(&[Consumer], Some(Bucket::Hour)),
            "requests_1h_consumer"
        );
        // Nothing keeps both: raw rows.
        assert_eq!(table(&[Consumer, Route], None), "request_logs");
        assert_eq!(table(&[Route, Status], None), "request_logs");
        assert_eq!(table(&[Node, Status], Some(Bucket::Hour)), "request_logs");
        // Minute buckets cannot come from hourly or daily rows.
        assert_eq!(table(&[], Some(Bucket::Minute)), "requests_1m_status");
        assert_eq!(table(&[Status], Some(Bucket::Minute)), "requests_1m_status");
        assert_eq!(table(&[Route], Some(Bucket::Minute)), "request_logs");
    }

    #[test]
    fn edges_of_a_narrow_rollup_without_a_minute_rollup_come_from_raw_rows() {
        let (from, to) = (ms("2026-11-25 09:30:00.000"), ms("2026-11-27 11:00:30.000"));
        assert_eq!(
            pieces(&plan(from, to, &[Route], None)),
            vec![
                ("request_logs", from, ms("2026-11-25 10:00:00.000")),
                (
                    "requests_1h_route",
                    ms("2026-11-25 10:00:00.000"),
                    ms("2026-11-26 00:00:00.000")
                ),
                (
                    "requests_1d_route",
                    ms("2026-11-26 00:00:00.000"),
                    ms("2026-11-27 00:00:00.000")
                ),
                (
                    "requests_1h_route",
                    ms("2026-11-27 00:00:00.000"),
                    ms("2026-11-27 11:00:00.000")
                ),
                ("request_logs", ms("2026-11-27 11:00:00.000"), to),
            ]
        );
    }

    #[test]
    fn short_ranges_use_minutes_or_only_raw_rows() {
        // Less than an hour: minutes only.
        let (from, to) = (ms("2026-11-26 10:05:00.000"), ms("2026-11-26 10:50:00.001"));
        assert_eq!(
            pieces(&plan(from, to, &[Status], None)),
            vec![
                ("requests_1m_status", from, ms("2026-11-26 10:50:00.000")),
                ("request_logs", ms("2026-11-26 10:50:00.000"), to),
            ]
        );
        // Two hours without a whole clock hour inside: minutes only.
        let (from, to) = (ms("2026-11-26 10:30:00.000"), ms("2026-11-26 11:30:00.000"));
        assert_eq!(
            pieces(&plan(from, to, &[], None)),
            vec![("requests_1m_status", from, to)]
        );
        // Inside one minute (or across a boundary without a whole minute): raw only.
        for (from, to) in [
            ("2026-11-26 10:05:01.000", "2026-11-26 10:05:59.999"),
            ("2026-11-26 10:05:30.000", "2026-11-26 10:06:29.999"),
        ] {
            let (from, to) = (ms(from), ms(to));
            assert_eq!(
                pieces(&plan(from, to, &[], None)),
                vec![("request_logs", from, to)]
            );
        }
    }

    #[test]
    fn every_piece_is_whole_buckets_of_its_source_and_the_pieces_tile_the_range() {
        let base = ms("2026-11-26 00:00:00.000");
        let offsets = [
            0,
            1,
            59_999,
            60_000,
            61_000,
            3_599_999,
            3_600_000,
            3_660_001,
            DAY_MS - 1,
            DAY_MS + 1,
        ];
        let buckets = [
            None,
            Some(Bucket::Minute),
            Some(Bucket::Hour),
            Some(Bucket::Day),
        ];
        for from_offset in offsets {
            for to_offset in offsets.iter().map(|o| o + DAY_MS + 2 * HOUR_MS) {
                for bucket in buckets {
                    for needed in [&[Status][..], &[Route], &[Route, Consumer]] {
                        let (from, to) = (base + from_offset, base + to_offset);
                        let parts = plan(from, to, needed, bucket);
                        assert_eq!(parts.first().unwrap().from_ms, from);
                        assert_eq!(parts.last().unwrap().to_ms, to);
                        for pair in parts.windows(2) {
                            assert_eq!(pair[0].to_ms, pair[1].from_ms, "{parts:?}");
                        }
                        for part in &parts {
                            assert!(part.from_ms < part.to_ms, "{parts:?}");
                            match part.source {
                                Source::Rollup(rollup) => {
                                    assert!(rollup.covers(needed), "{parts:?}");
                                    let widest =
                                        bucket.map_or(DAY_MS, |b| b.width().num_milliseconds());
                                    assert!(rollup.width_ms <= widest, "{parts:?}");
                                    assert_eq!(part.from_ms % rollup.width_ms, 0, "{parts:?}");
                                    assert_eq!(part.to_ms % rollup.width_ms, 0, "{parts:?}");
                                }
                                // With a minute rollup, raw rows only fill partial minutes.
                                Source::Raw if needed == [Status] => {
                                    assert!(part.to_ms - part.from_ms < MINUTE_MS, "{parts:?}");
                                }
                                Source::Raw => {}
                            }
                        }
                    }
                }
            }
        }
    }
}
