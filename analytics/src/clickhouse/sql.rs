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
/// filters, ANDed; then the time range, which rounds to whole minutes on the rollup.
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

    /// `[from, to)` over the rollup's minutes: the minute `from` falls in up to the minute
    /// `to` falls in (inclusive only when `to` is not on a minute boundary).
    pub(crate) fn minutes(mut self, range: &TimeRange) -> Where {
        let from = seconds(range.from) / 60 * 60;
        let to = seconds(range.to).div_ceil(60) * 60;
        self.and(&format!(
            "minute >= toDateTime({from}) AND minute < toDateTime({to})"
        ));
        self
    }

    /// `[from, to)` over raw rows, to the millisecond: whole seconds for the index, then the
    /// exact bound with `time_ms`.
    pub(crate) fn instants(mut self, range: &TimeRange) -> Where {
        let from_s = seconds(range.from);
        let to_s = seconds(range.to);
        let from_ms = range.from.timestamp_millis().max(0);
        let to_ms = range.to.timestamp_millis().max(0);
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
