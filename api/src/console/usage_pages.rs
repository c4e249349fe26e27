//! The Usage page's server side (`/usage?month=YYYY-MM`, and its CSV exports with
//! `format=csv&table=days|control_planes`), and the overview's "requests today".

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tollgate_analytics::query::{Bucket, Filters, Month, TimeRange, Usage};
use tollgate_console::pages::overview::RequestsToday;
use tollgate_console::pages::usage::{
    usage_page, PlaneUsageRow, UsageData, UsageDayRow, UsagePage, UsageView,
};
use uuid::Uuid;

use super::traffic_pages::{csv_download, csv_line};
use super::{or_page, ConsoleUser};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::store::control_planes;

type QueryMap = Query<BTreeMap<String, String>>;

fn previous(month: Month) -> Month {
    if month.month == 1 {
        Month {
            year: month.year - 1,
            month: 12,
        }
    } else {
        Month {
            year: month.year,
            month: month.month - 1,
        }
    }
}

/// The store's usage with each control plane's current name (empty when it was deleted).
async fn named_usage(state: &AppState, organization: Uuid, mut usage: Usage) -> ApiResult<Usage> {
    let planes: BTreeMap<Uuid, String> = control_planes::Entity::find()
        .filter(control_planes::Column::OrganizationId.eq(organization))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|cp| (cp.id, cp.name))
        .collect();
    for cp in &mut usage.control_planes {
        cp.name = planes.get(&cp.id).cloned().unwrap_or_default();
    }
    Ok(usage)
}

pub async fn usage(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): QueryMap,
) -> Response {
    or_page(&state, render(&state, &user, &query).await)
}

async fn render(
    state: &AppState,
    user: &ConsoleUser,
    query: &BTreeMap<String, String>,
) -> ApiResult<Response> {
    let this_month = Month::of(Utc::now());
    let typed = query
        .get("month")
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    let month = match &typed {
        Some(m) => m.parse::<Month>(),
        None => Ok(this_month),
    };
    let csv = (query.get("format").map(String::as_str) == Some("csv"))
        .then(|| query.get("table").cloned().unwrap_or_default());
    if let Some(table) = &csv {
        if !matches!(table.as_str(), "days" | "control_planes") {
            return Ok((
                StatusCode::BAD_REQUEST,
                "table: must be one of days, control_planes\n",
            )
                .into_response());
        }
    }
    let (status, data) = match (&month, &state.analytics) {
        (Err(_), _) => (StatusCode::BAD_REQUEST, UsageData::Invalid),
        (Ok(_), None) => (StatusCode::OK, UsageData::NoStore),
        (Ok(m), Some(store)) => match store.usage(user.auth.organization_id, *m).await {
            Ok(usage) => {
                let usage = named_usage(state, user.auth.organization_id, usage).await?;
                if let Some(table) = &csv {
                    return Ok(usage_csv(table, &usage));
                }
                (StatusCode::OK, UsageData::Ready(usage_view(&usage)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "usage query failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    UsageData::Unavailable(e.to_string()),
                )
            }
        },
    };
    if csv.is_some() {
        let message = match (&month, &data) {
            (Err(e), _) => format!("month: {e}\n"),
            (_, UsageData::NoStore) => "no analytics store is configured on this server\n".into(),
            (_, UsageData::Unavailable(why)) => format!("{why}\n"),
            _ => String::new(),
        };
        let status = if status == StatusCode::OK {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            status
        };
        return Ok((status, message).into_response());
    }
    let page = UsagePage {
        month: match (&month, typed) {
            (Ok(m), _) => m.to_string(),
            (Err(_), typed) => typed.unwrap_or_default(),
        },
        month_error: month.as_ref().err().cloned(),
        previous: month.as_ref().ok().map(|m| previous(*m).to_string()),
        next: month
            .as_ref()
            .ok()
            .map(|m| m.next())
            .filter(|n| *n <= this_month)
            .map(|n| n.to_string()),
        data,
    };
    Ok((status, Html(usage_page(&user.viewer, &page, user.bundle))).into_response())
}

fn usage_view(usage: &Usage) -> UsageView {
    UsageView {
        requests: usage.requests,
        bytes_in: usage.bytes_in,
        bytes_out: usage.bytes_out,
        days: usage
            .days
            .iter()
            .map(|d| UsageDayRow {
                date: d.date.to_string(),
                requests: d.requests,
                bytes_in: d.bytes_in,
                bytes_out: d.bytes_out,
            })
            .collect(),
        control_planes: usage
            .control_planes
            .iter()
            .map(|cp| PlaneUsageRow {
                id: cp.id.to_string(),
                name: cp.name.clone(),
                requests: cp.requests,
            })
            .collect(),
    }
}

fn usage_csv(table: &str, usage: &Usage) -> Response {
    let mut body = String::new();
    if table == "days" {
        body.push_str(&csv_line(&[
            "date".into(),
            "requests".into(),
            "bytes_in".into(),
            "bytes_out".into(),
        ]));
        for d in &usage.days {
            body.push_str(&csv_line(&[
                d.date.to_string(),
                d.requests.to_string(),
                d.bytes_in.to_string(),
                d.bytes_out.to_string(),
            ]));
        }
    } else {
        body.push_str(&csv_line(&["id".into(), "name".into(), "requests".into()]));
        for cp in &usage.control_planes {
            body.push_str(&csv_line(&[
                cp.id.to_string(),
                cp.name.clone(),
                cp.requests.to_string(),
            ]));
        }
    }
    csv_download(&format!("usage-{}-{table}.csv", usage.month), body)
}

/// The organization's requests since midnight UTC, for the overview.
pub async fn requests_today(state: &AppState, organization: Uuid) -> RequestsToday {
    let Some(store) = &state.analytics else {
        return RequestsToday::NotCounted;
    };
    let from = Bucket::Day.start_of(Utc::now());
    let range = TimeRange {
        from,
        to: from + Duration::days(1),
    };
    match store
        .totals(organization, &range, &Filters::default())
        .await
    {
        Ok(totals) => RequestsToday::Count(totals.requests),
        Err(e) => {
            tracing::warn!(error = %e, "requests today: analytics query failed");
            RequestsToday::Unavailable
        }
    }
}
