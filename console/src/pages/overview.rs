//! The organization's home: its control planes, and a walk to the first route when there are none.

use leptos::prelude::*;

use crate::forms::{error_summary, text_field, FormState};
use crate::layout::{csrf_field, frame, Crumb, Flash, Section, Viewer};
use crate::shell::{render_document, Document};

#[derive(Debug, Clone)]
pub struct ControlPlaneRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub proxy_url: String,
    pub config_version: i64,
    pub nodes: usize,
    pub nodes_current: usize,
    /// The distinct config versions the online nodes have applied, newest first.
    pub applied_versions: Vec<i64>,
}

/// The organization's requests since midnight UTC, as the overview shows them.
#[derive(Debug, Clone)]
pub enum RequestsToday {
    /// No analytics store: nothing is counted.
    NotCounted,
    Unavailable,
    Count(u64),
}

fn requests_today(today: &RequestsToday) -> impl IntoView {
    let value = match today {
        RequestsToday::NotCounted => {
            view! { <span class="muted">"not counted (no analytics store)"</span> }.into_any()
        }
        RequestsToday::Unavailable => view! { <span class="muted">"unavailable"</span> }.into_any(),
        RequestsToday::Count(n) => {
            view! { <a href="/traffic?range=24h">{crate::charts::group_thousands(*n)}</a> }
                .into_any()
        }
    };
    view! {
        <dl class="stats">
            <div class="stat"><dt>"Requests today (UTC)"</dt><dd data-stat="requests_today">{value}</dd></div>
        </dl>
    }
}

fn empty_state() -> impl IntoView {
    view! {
        <section class="empty">
            <h2>"Welcome to Tollgate"</h2>
            <p>"Three steps to your first request through the gateway:"</p>
            <ol class="steps">
                <li><strong>"Create a control plane"</strong>" below — it holds one gateway configuration and gets its own address."</li>
                <li><strong>"Add a service"</strong>": the upstream URL your API runs at."</li>
                <li><strong>"Add a route"</strong>": the paths or hosts that reach the service. The route page shows a ready-to-paste curl command."</li>
            </ol>
        </section>
    }
}

/// The overview page.
pub fn overview_page(
    viewer: &Viewer,
    planes: &[ControlPlaneRow],
    today: &RequestsToday,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let rows = planes
        .iter()
        .map(|p| {
            let status = if p.nodes == 0 {
                "no nodes".to_string()
            } else {
                let applied = p
                    .applied_versions
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let applied = if applied.is_empty() {
                    String::new()
                } else {
                    format!(" · applied {applied}")
                };
                format!("{} of {} nodes current{applied}", p.nodes_current, p.nodes)
            };
            view! {
                <tr>
                    <td><a href=format!("/control-planes/{}/services", p.id)>{p.name.clone()}</a></td>
                    <td><code>{p.proxy_url.clone()}</code></td>
                    <td class="num">{p.config_version}</td>
                    <td>{status}</td>
                </tr>
            }
        })
        .collect_view();
    let table = (!planes.is_empty()).then(|| {
        view! {
            <table class="list">
                <caption class="sr-only">"Control planes"</caption>
                <thead><tr><th scope="col">"Name"</th><th scope="col">"Proxy URL"</th><th scope="col" class="num">"Config version"</th><th scope="col">"Nodes"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        }
    });
    let create = viewer.can_write().then(|| {
        view! {
            <section class="panel">
                <h2>"New control plane"</h2>
                {error_summary(form, &["name"])}
                <form method="post" action="/control-planes" class="inline-form" novalidate>
                    {csrf_field(viewer)}
                    {text_field(form, "name", "Name", "text", "e.g. payments-prod")}
                    <button type="submit" class="btn">"Create control plane"</button>
                </form>
            </section>
        }
    });
    let content = view! {
        <h1>"Control planes"</h1>
        {requests_today(today)}
        {planes.is_empty().then(empty_state)}
        {table}
        {create}
    };
    render_document(
        &Document {
            title: "Control planes".into(),
            bundle,
        },
        frame(
            viewer,
            Section::ControlPlanes,
            vec![Crumb::here("Control planes")],
            flash,
            content,
        ),
    )
}
