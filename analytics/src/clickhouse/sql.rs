//! SQL text for ClickHouse. 18.16 has no server-side query parameters, so every value a query
//! carries is written here as a literal: ids and numbers from their types (they cannot carry
//! quotes), strings quoted and escaped.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::query::{Dimension, Filters, TimeRange};

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

/// A dimension's column: the same name in `request_logs` and `requests_1m` (where "none" is
/// the nil UUID rather than NULL).
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

    /// `[from, to)` over the rollup's whole minutes, `from` and `to` on minute boundaries.
    fn minutes(mut self, from_ms: i64, to_ms: i64) -> Where {
        let (from, to) = (from_ms / 1000, to_ms / 1000);
        self.and(&format!(
            "minute >= toDateTime({from}) AND minute < toDateTime({to})"
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

/// The columns of `requests_1m`, in order.
const ROLLUP_COLUMNS: &str = "organization_id, minute, control_plane_id, service_id, route_id, \
    consumer_id, status, node_id, region, requests, errors_4xx, errors_5xx, bytes_in, bytes_out, \
    latency_total, latency_upstream, latency_edge";

/// `requests_1m_mv`'s aggregation, for raw rows a query reads itself.
const RAW_AS_ROLLUP: &str = "organization_id, toStartOfMinute(time) AS minute, control_plane_id, \
    ifNull(service_id, toUUID('00000000-0000-0000-0000-000000000000')) AS service_id, \
    ifNull(route_id, toUUID('00000000-0000-0000-0000-000000000000')) AS route_id, \
    ifNull(consumer_id, toUUID('00000000-0000-0000-0000-000000000000')) AS consumer_id, \
    status, node_id, region, \
    countState() AS requests, \
    sumState(toUInt64(status >= 400 AND status < 500)) AS errors_4xx, \
    sumState(toUInt64(status >= 500)) AS errors_5xx, \
    sumState(bytes_in) AS bytes_in, \
    sumState(bytes_out) AS bytes_out, \
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_total_us) AS latency_total, \
    quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_upstream_us, toUInt64(0)), \
        toUInt8(isNotNull(latency_upstream_us))) AS latency_upstream, \
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_edge_us) AS latency_edge";

const RAW_GROUP: &str =
    "organization_id, minute, control_plane_id, service_id, route_id, consumer_id, status, node_id, region";

/// Rows shaped like `requests_1m` for one tenant, its filters and exactly `[from, to)`: the
/// rollup for the whole minutes inside the range, and raw rows (aggregated the way the
/// materialized view does) for the partial minutes at its edges, so a range that starts or ends
/// inside a minute counts exactly what it covers.
pub(crate) fn rollup_source(organization: Uuid, range: &TimeRange, filters: &Filters) -> String {
    let from_ms = range.from.timestamp_millis().max(0);
    let to_ms = range.to.timestamp_millis().max(from_ms);
    let inner_from = (from_ms + 59_999) / 60_000 * 60_000;
    let inner_to = to_ms / 60_000 * 60_000;
    let raw = |from: i64, to: i64| {
        let condition = Where::tenant(organization)
            .instants_ms(from, to)
            .filters(filters);
        format!(
            "SELECT {RAW_AS_ROLLUP} FROM request_logs WHERE {} GROUP BY {RAW_GROUP}",
            condition.sql()
        )
    };
    if inner_from >= inner_to {
        return raw(from_ms, to_ms);
    }
    let whole = Where::tenant(organization)
        .minutes(inner_from, inner_to)
        .filters(filters);
    let mut parts = vec![format!(
        "SELECT {ROLLUP_COLUMNS} FROM requests_1m WHERE {}",
        whole.sql()
    )];
    if from_ms < inner_from {
        parts.push(raw(from_ms, inner_from));
    }
    if inner_to < to_ms {
        parts.push(raw(inner_to, to_ms));
    }
    parts.join(" UNION ALL ")
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

/// A dimension's value in the rollup as text (ids hyphenated, statuses in decimal).
pub(crate) fn group_expression(dimension: Dimension) -> String {
    format!("toString({})", column(dimension))
}

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
}
