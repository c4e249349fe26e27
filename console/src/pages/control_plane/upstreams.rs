//! The Upstreams tab: upstreams with their targets and the health the online edges report, and
//! one upstream's page to add and remove targets.

use leptos::prelude::*;

use super::{filters, page, pager, ListPage, PlaneHeader, Tab};
use crate::forms::{error_summary, select_field, text_field, FormState};
use crate::islands::ConfirmSubmit;
use crate::layout::{csrf_field, Flash, Viewer};

#[derive(Debug, Clone)]
pub struct TargetRow {
    pub id: String,
    /// `host:port`.
    pub target: String,
    pub weight: i64,
    /// `HEALTHY`, `UNHEALTHY`, `DNS_ERROR`, `HEALTHCHECKS_OFF` or `UNKNOWN`, across online nodes.
    pub health: String,
    /// `(hostname, health)` per online node that reports the target.
    pub nodes: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct UpstreamRow {
    pub id: String,
    pub name: String,
    pub algorithm: String,
    pub tags: Vec<String>,
    pub targets: Vec<TargetRow>,
}

/// Kong's balancing algorithms, for the new-upstream form.
const ALGORITHMS: &[&str] = &[
    "round-robin",
    "consistent-hashing",
    "least-connections",
    "latency",
];

fn health_badge(health: &str) -> impl IntoView {
    let class = match health {
        "HEALTHY" => "badge badge-ok",
        "UNHEALTHY" | "DNS_ERROR" => "badge badge-bad",
        _ => "badge",
    };
    let text = match health {
        "HEALTHY" => "healthy",
        "UNHEALTHY" => "unhealthy",
        "DNS_ERROR" => "DNS error",
        "HEALTHCHECKS_OFF" => "checks off",
        _ => "unknown",
    };
    view! { <span class=class title=health.to_string()>{text}</span> }
}

/// The Upstreams tab: each upstream with its targets' health, and the new-upstream form.
#[allow(clippy::too_many_arguments)]
pub fn upstreams_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    rows: &[UpstreamRow],
    node_count: usize,
    list: &ListPage,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/upstreams", header.id);
    let body_rows = rows
        .iter()
        .map(|u| {
            let targets = u
                .targets
                .iter()
                .map(|t| view! { <li><code>{t.target.clone()}</code>" "{health_badge(&t.health)}</li> })
                .collect_view();
            view! {
                <tr>
                    <td><a href=format!("{base}/{}", u.id)>{u.name.clone()}</a></td>
                    <td>{u.algorithm.clone()}</td>
                    <td>
                        {u.targets.is_empty().then(|| view! { <span class="muted">"no targets"</span> })}
                        <ul class="plain">{targets}</ul>
                    </td>
                    <td>{u.tags.join(", ")}</td>
                </tr>
            }
        })
        .collect_view();
    let algorithms = ALGORITHMS
        .iter()
        .map(|a| (a.to_string(), a.to_string()))
        .collect();
    let create = viewer.can_write().then(|| {
        view! {
            <section class="panel">
                <h2>"New upstream"</h2>
                {error_summary(form, &["name", "algorithm", "tags"])}
                <form method="post" action=base.clone() novalidate>
                    {csrf_field(viewer)}
                    {text_field(form, "name", "Name", "text", "A host name; services reach the upstream with it as their host, e.g. orders.internal.")}
                    {select_field(form, "algorithm", "Algorithm", algorithms, "round-robin")}
                    {text_field(form, "tags", "Tags", "text", "Comma separated.")}
                    <button type="submit" class="btn">"Create upstream"</button>
                </form>
            </section>
        }
    });
    let body = view! {
        <p class="muted">{health_note(node_count)}</p>
        {filters(base.clone(), list)}
        <table class="list">
            <caption class="sr-only">"Upstreams"</caption>
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Algorithm"</th><th scope="col">"Targets"</th><th scope="col">"Tags"</th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {rows.is_empty().then(|| view! { <p class="muted">"No upstreams yet. An upstream balances a service over several targets: create one, add targets, then set a service's host to its name."</p> })}
        {pager(base.clone(), list)}
        {create}
    };
    page(viewer, header, Tab::Upstreams, flash, bundle, body)
}

fn health_note(node_count: usize) -> String {
    match node_count {
        0 => "Health: no edge node is online, so no target health is known.".into(),
        1 => "Health as the one online edge node sees it.".into(),
        n => format!(
            "Health across {n} online edge nodes: unhealthy if any node finds a target unhealthy."
        ),
    }
}

/// One upstream: its targets with per-node health, add and remove targets, delete.
pub fn upstream_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    upstream: &UpstreamRow,
    node_count: usize,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/upstreams/{}", header.id, upstream.id);
    let can_write = viewer.can_write();
    let body_rows = upstream
        .targets
        .iter()
        .map(|t| {
            let per_node = t
                .nodes
                .iter()
                .map(|(host, health)| view! { <li>{host.clone()}": "{health_badge(health)}</li> })
                .collect_view();
            let remove = can_write.then(|| {
                view! {
                    <form method="post" action=format!("{base}/targets/{}/delete", t.id)>
                        {csrf_field(viewer)}
                        <ConfirmSubmit label="Remove".to_string() question=format!("Remove target {} from {}?", t.target, upstream.name)/>
                    </form>
                }
            });
            view! {
                <tr>
                    <td><code>{t.target.clone()}</code></td>
                    <td class="num">{t.weight}</td>
                    <td>{health_badge(&t.health)}</td>
                    <td><ul class="plain">{per_node}</ul></td>
                    <td>{remove}</td>
                </tr>
            }
        })
        .collect_view();
    let manage = if can_write {
        let count = upstream.targets.len();
        let question = if count == 0 {
            format!("Delete upstream {}?", upstream.name)
        } else {
            format!(
                "Delete upstream {} and its {count} target(s)?",
                upstream.name
            )
        };
        view! {
            <section class="panel">
                <h3>"Add a target"</h3>
                {error_summary(form, &["target", "weight"])}
                <form method="post" action=format!("{base}/targets") class="grid-form" novalidate>
                    {csrf_field(viewer)}
                    {text_field(form, "target", "Target", "text", "host:port (the port defaults to 8000)")}
                    {text_field(form, "weight", "Weight", "number", "0 to 65535; 0 takes it out of rotation. Default 100.")}
                    <div class="actions"><button type="submit" class="btn">"Add target"</button></div>
                </form>
            </section>
            <form method="post" action=format!("{base}/delete") class="danger-zone">
                {csrf_field(viewer)}
                <ConfirmSubmit label="Delete upstream".to_string() question=question/>
            </form>
        }
        .into_any()
    } else {
        view! { <p class="muted">"Viewers cannot change upstreams."</p> }.into_any()
    };
    let body = view! {
        <h2>{format!("Upstream {}", upstream.name)}</h2>
        <p>"Algorithm: "{upstream.algorithm.clone()}". Services reach it with host "<code>{upstream.name.clone()}</code>"."</p>
        <p class="muted">{health_note(node_count)}</p>
        <table class="list">
            <caption class="sr-only">"Targets"</caption>
            <thead><tr><th scope="col">"Target"</th><th scope="col" class="num">"Weight"</th><th scope="col">"Health"</th><th scope="col">"Per node"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {upstream.targets.is_empty().then(|| view! { <p class="muted">"No targets yet."</p> })}
        {manage}
    };
    page(viewer, header, Tab::Upstreams, flash, bundle, body)
}
