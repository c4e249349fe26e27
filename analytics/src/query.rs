//! What a tenant can ask of its traffic: time series, top-N tables, totals, recent requests and
//! monthly usage, each over a time range with optional filters. Validated here, so the API and
//! the console refuse the same bad queries with the same field names.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Width of one point of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn width(self) -> Duration {
        match self {
            Bucket::Minute => Duration::minutes(1),
            Bucket::Hour => Duration::hours(1),
            Bucket::Day => Duration::days(1),
        }
    }

    /// The bucket that gives a readable chart over `span`: at most a few hundred points.
    pub fn for_span(span: Duration) -> Bucket {
        if span <= Duration::hours(6) {
            Bucket::Minute
        } else if span <= Duration::days(7) {
            Bucket::Hour
        } else {
            Bucket::Day
        }
    }

    /// The start of the bucket `time` falls in (UTC).
    pub fn start_of(self, time: DateTime<Utc>) -> DateTime<Utc> {
        let width = self.width().num_seconds();
        let secs = time.timestamp().div_euclid(width) * width;
        Utc.timestamp_opt(secs, 0).single().unwrap_or(time)
    }
}

/// Most points one series may have: keeps a query's answer (and the chart) a sane size.
pub const MAX_POINTS: i64 = 10_080;

/// What rows can be grouped by and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    ControlPlane,
    Service,
    Route,
    Consumer,
    Status,
    Node,
    Region,
}

impl Dimension {
    pub const ALL: [Dimension; 7] = [
        Dimension::ControlPlane,
        Dimension::Service,
        Dimension::Route,
        Dimension::Consumer,
        Dimension::Status,
        Dimension::Node,
        Dimension::Region,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::ControlPlane => "control_plane",
            Dimension::Service => "service",
            Dimension::Route => "route",
            Dimension::Consumer => "consumer",
            Dimension::Status => "status",
            Dimension::Node => "node",
            Dimension::Region => "region",
        }
    }
}

impl FromStr for Dimension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                "must be one of control_plane, service, route, consumer, status, node, region"
                    .to_string()
            })
    }
}

/// `[from, to)`, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// The last `span`, ending at the end of the `bucket` that `now` falls in, so that the newest
    /// bucket is the one requests are landing in now (the console's relative ranges).
    pub fn last(span: Duration, bucket: Bucket, now: DateTime<Utc>) -> TimeRange {
        let to = bucket.start_of(now) + bucket.width();
        TimeRange {
            from: to - span,
            to,
        }
    }

    pub fn validate(&self, errors: &mut FieldErrors) {
        if self.to <= self.from {
            errors.insert("to".into(), "must be after from".into());
        }
    }
}

/// Every filter is optional; those given must all hold. The tenant is never a filter: it comes
/// from the session and is a separate argument of every store call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Filters {
    pub control_plane: Option<Uuid>,
    pub service: Option<Uuid>,
    pub route: Option<Uuid>,
    pub consumer: Option<Uuid>,
    /// An exact status code, e.g. 404.
    pub status: Option<u16>,
    pub node: Option<Uuid>,
    pub region: Option<String>,
}

impl Filters {
    pub fn validate(&self, errors: &mut FieldErrors) {
        if let Some(status) = self.status {
            if !(100..=599).contains(&status) {
                errors.insert(
                    "status".into(),
                    "must be an HTTP status code (100-599)".into(),
                );
            }
        }
        if let Some(region) = &self.region {
            if region.is_empty() || region.len() > 63 {
                errors.insert("region".into(), "must be 1 to 63 characters".into());
            }
        }
    }
}

/// Field name → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesQuery {
    pub range: TimeRange,
    pub bucket: Bucket,
    pub filters: Filters,
    /// One series per value of this dimension; `None` gives one series.
    pub group_by: Option<Dimension>,
}

impl SeriesQuery {
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        self.range.validate(&mut errors);
        self.filters.validate(&mut errors);
        let span = self.range.to - self.range.from;
        if span.num_seconds() / self.bucket.width().num_seconds() > MAX_POINTS {
            errors.insert(
                "bucket".into(),
                format!("gives more than {MAX_POINTS} points over this range: use a wider bucket"),
            );
        }
        done(errors)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopQuery {
    pub range: TimeRange,
    pub filters: Filters,
    pub by: Dimension,
    /// 1 to [`MAX_TOP`].
    pub limit: u32,
}

pub const MAX_TOP: u32 = 1000;

impl TopQuery {
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        self.range.validate(&mut errors);
        self.filters.validate(&mut errors);
        if !(1..=MAX_TOP).contains(&self.limit) {
            errors.insert("limit".into(), format!("must be 1 to {MAX_TOP}"));
        }
        done(errors)
    }
}

fn done(errors: FieldErrors) -> Result<(), FieldErrors> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Latency percentiles in milliseconds (fractions kept). Zero when no request had one.
/// Nearest-rank: p is the smallest latency with at least p% of the requests at or below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Latencies {
    pub total: Percentiles,
    /// Over the requests that went upstream.
    pub upstream: Percentiles,
    pub edge: Percentiles,
}

/// Everything counted over a set of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Latency percentiles, in milliseconds.
    pub latency_ms: Latencies,
}

/// One bucket of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Point {
    /// The bucket's start.
    pub time: DateTime<Utc>,
    /// The group's value (an id, a status code, a region) when grouped; `None` for requests
    /// without one (no route matched, no consumer) and for an ungrouped series.
    pub group: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// One row of a top-N table, ordered by requests, most first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopRow {
    /// The dimension's value; `None` for requests without one.
    pub key: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(time: DateTime<Utc>) -> Month {
        Month {
            year: time.year(),
            month: time.month(),
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `[first instant of the month, first instant of the next)`.
    pub fn range(self) -> TimeRange {
        let start = |m: Month| {
            m.first_day()
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc()
        };
        TimeRange {
            from: start(self),
            to: start(self.next()),
        }
    }
}

impl FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a month: use YYYY-MM");
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// One tenant's metered use over a month (what billing reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// `YYYY-MM`.
    pub month: String,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Every day of the month up to today (days without traffic count zero).
    pub days: Vec<UsageDay>,
    /// Control planes with traffic this month, most requests first.
    pub control_planes: Vec<ControlPlaneUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageDay {
    pub date: NaiveDate,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ControlPlaneUsage {
    pub id: Uuid,
    /// Filled in by the API from the control plane's current name (empty when deleted).
    pub name: String,
    pub requests: u64,
}

/// Sums a store's per-day, per-control-plane counts into a month's [`Usage`]. Both stores count
/// rows their own way and then assemble the answer here, so they agree on its shape.
#[derive(Debug, Default)]
pub struct UsageTally {
    days: BTreeMap<NaiveDate, UsageDay>,
    control_planes: BTreeMap<Uuid, u64>,
}

impl UsageTally {
    /// Adds one day's counts for one control plane.
    pub fn add(
        &mut self,
        date: NaiveDate,
        control_plane: Uuid,
        requests: u64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let day = self.days.entry(date).or_insert(UsageDay {
            date,
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
        });
        day.requests += requests;
        day.bytes_in += bytes_in;
        day.bytes_out += bytes_out;
        *self.control_planes.entry(control_plane).or_default() += requests;
    }

    /// Every day from the 1st to `today` (the whole month when it is over, none when it has not
    /// begun), zero where nothing was counted; control planes by requests, most first.
    pub fn finish(mut self, month: Month, today: NaiveDate) -> Usage {
        let last_day = month.next().first_day().pred_opt().unwrap_or_default();
        let last_shown = last_day.min(today);
        let days: Vec<UsageDay> = month
            .first_day()
            .iter_days()
            .take_while(|date| *date <= last_shown)
            .map(|date| {
                self.days.remove(&date).unwrap_or(UsageDay {
                    date,
                    requests: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                })
            })
            .collect();
        // Traffic logged after `today` (a clock behind the edges') still counts in the sums.
        let late = self.days.values();
        let (requests, bytes_in, bytes_out) =
            days.iter().chain(late).fold((0, 0, 0), |(r, i, o), d| {
                (r + d.requests, i + d.bytes_in, o + d.bytes_out)
            });
        let mut control_planes: Vec<ControlPlaneUsage> = self
            .control_planes
            .into_iter()
            .map(|(id, requests)| ControlPlaneUsage {
                id,
                name: String::new(),
                requests,
            })
            .collect();
        control_planes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.id.cmp(&b.id)));
        Usage {
            month: month.to_string(),
            requests,
            bytes_in,
            bytes_out,
            days,
            control_planes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly() {
        assert_eq!(
            "2026-11".parse::<Month>(),
            Ok(Month {
                year: 2026,
                month: 11
            })
        );
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        let december = Month {
            year: 2026,
            month: 12,
        };
        assert_eq!(december.next().to_string(), "2027-01");
        assert_eq!(
            december.range().to.to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn too_many_points_are_refused() {
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let query = SeriesQuery {
            range: TimeRange {
                from,
                to: from + Duration::days(30),
            },
            bucket: Bucket::Minute,
            filters: Filters::default(),
            group_by: None,
        };
        assert!(query.validate().unwrap_err().contains_key("bucket"));
        let hourly = SeriesQuery {
            bucket: Bucket::Hour,
            ..query
        };
        assert!(hourly.validate().is_ok());
    }

    #[test]
    fn buckets_start_on_their_boundary() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 10, 37, 42).unwrap();
        assert_eq!(
            Bucket::Hour.start_of(t).to_rfc3339(),
            "2026-11-26T10:00:00+00:00"
        );
        assert_eq!(
            Bucket::Day.start_of(t).to_rfc3339(),
            "2026-11-26T00:00:00+00:00"
        );
    }
}
