//! The Usage page: what the organization used in one month — requests and bytes per day and per
//! control plane — with a month picker and CSV exports (what billing reads).

use leptos::prelude::*;

use super::traffic::no_store_notice;
use crate::charts::{bar_chart, Bar, Unit};
use crate::layout::{frame, Crumb, Section, Viewer};
use crate::shell::{render_document, Document};

#[derive(Debug, Clone)]
pub struct UsageDayRow {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone)]
pub struct PlaneUsageRow {
    pub id: String,
    /// The control plane's name; empty when it has been deleted.
    pub name: String,
    pub requests: u64,
}

#[derive(Debug, Clone)]
pub struct UsageView {
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub days: Vec<UsageDayRow>,
    pub control_planes: Vec<PlaneUsageRow>,
}

pub enum UsageData {
    NoStore,
    Unavailable(String),
    /// The month could not be read; the error is beside the picker.
    Invalid,
    Ready(UsageView),
}

pub struct UsagePage {
    /// `YYYY-MM` as typed.
    pub month: String,
    pub month_error: Option<String>,
    /// Neighbouring months, `YYYY-MM`.
    pub previous: Option<String>,
    pub next: Option<String>,
    pub data: UsageData,
}

fn month_link(month: &str) -> String {
    format!("/usage?month={month}")
}

fn usage_tables(page: &UsagePage, u: &UsageView) -> impl IntoView {
    let bars: Vec<Bar> = u
        .days
        .iter()
        .map(|d| Bar {
            // The day of the month: the page says which month.
            label: d.date.rsplit('-').next().unwrap_or(&d.date).to_string(),
            value: d.requests as f64,
            class: "s1",
            href: None,
            tip: format!(
                "{}: {} requests",
                d.date,
                Unit::Count.format(d.requests as f64)
            ),
        })
        .collect();
    let chart = bar_chart("Requests per day", &bars, Unit::Count);
    let days = u
        .days
        .iter()
        .map(|d| {
            view! {
                <tr>
                    <td>{d.date.clone()}</td>
                    <td class="num">{Unit::Count.format(d.requests as f64)}</td>
                    <td class="num">{Unit::Bytes.format(d.bytes_in as f64)}</td>
                    <td class="num">{Unit::Bytes.format(d.bytes_out as f64)}</td>
                </tr>
            }
        })
        .collect_view();
    let planes = u
        .control_planes
        .iter()
        .map(|p| {
            let name = if p.name.is_empty() {
                view! { <span class="muted">{format!("deleted ({})", p.id)}</span> }.into_any()
            } else {
                view! { <a href=format!("/control-planes/{}/traffic?range=30d", p.id)>{p.name.clone()}</a> }
                    .into_any()
            };
            view! {
                <tr>
                    <td>{name}</td>
                    <td class="num">{Unit::Count.format(p.requests as f64)}</td>
                </tr>
            }
        })
        .collect_view();
    let csv = |table: &str| format!("/usage?month={}&format=csv&table={table}", page.month);
    view! {
        <dl class="stats">
            <div class="stat"><dt>"Requests"</dt><dd data-stat="requests">{Unit::Count.format(u.requests as f64)}</dd></div>
            <div class="stat"><dt>"Bytes in"</dt><dd data-stat="bytes_in">{Unit::Bytes.format(u.bytes_in as f64)}</dd></div>
            <div class="stat"><dt>"Bytes out"</dt><dd data-stat="bytes_out">{Unit::Bytes.format(u.bytes_out as f64)}</dd></div>
        </dl>
        <div class="charts"><div inner_html=chart></div></div>
        <div class="tables">
            <section>
                <div class="table-head">
                    <h2>"Per day"</h2>
                    <a href=csv("days")>"CSV"</a>
                </div>
                <table class="list" id="days">
                    <thead><tr><th scope="col">"Date (UTC)"</th><th scope="col" class="num">"Requests"</th><th scope="col" class="num">"Bytes in"</th><th scope="col" class="num">"Bytes out"</th></tr></thead>
                    <tbody>{days}</tbody>
                </table>
            </section>
            <section>
                <div class="table-head">
                    <h2>"Per control plane"</h2>
                    <a href=csv("control_planes")>"CSV"</a>
                </div>
                <table class="list" id="control_planes">
                    <thead><tr><th scope="col">"Control plane"</th><th scope="col" class="num">"Requests"</th></tr></thead>
                    <tbody>{planes}</tbody>
                </table>
                {u.control_planes.is_empty().then(|| view! { <p class="muted">"No traffic this month."</p> })}
            </section>
        </div>
    }
}

pub fn usage_page(viewer: &Viewer, page: &UsagePage, bundle: bool) -> String {
    let data = match &page.data {
        UsageData::NoStore => no_store_notice().into_any(),
        UsageData::Unavailable(why) => view! {
            <p class="flash flash-error" role="alert">{format!("Usage is unavailable right now: {why}. Try again in a moment.")}</p>
        }
        .into_any(),
        UsageData::Invalid => ().into_any(),
        UsageData::Ready(u) => usage_tables(page, u).into_any(),
    };
    let invalid = page.month_error.is_some();
    let nav = view! {
        <form method="get" action="/usage" class="traffic-form" aria-label="Month">
            {page.previous.clone().map(|m| view! { <a class="btn btn-ghost" href=month_link(&m)>{format!("← {m}")}</a> })}
            <div class=if invalid { "field invalid" } else { "field" }>
                <label for="f-month">"Month"</label>
                <input id="f-month" name="month" type="month" value=page.month.clone() placeholder="YYYY-MM"/>
                {page.month_error.clone().map(|e| view! { <p class="field-error">{e}</p> })}
            </div>
            <button type="submit" class="btn">"Show"</button>
            {page.next.clone().map(|m| view! { <a class="btn btn-ghost" href=month_link(&m)>{format!("{m} →")}</a> })}
        </form>
    };
    let content = view! {
        <h1>{format!("Usage · {}", page.month)}</h1>
        {nav}
        {data}
    };
    render_document(
        &Document {
            title: "Usage".into(),
            bundle,
        },
        frame(
            viewer,
            Section::Usage,
            vec![Crumb::here("Usage")],
            None,
            content,
        ),
    )
}
