//! The Upstreams tab: upstreams with their targets and the health the online edges report, and
//! one upstream's page to change its settings and add and remove targets.

use std::collections::BTreeMap;

use leptos::prelude::*;

use super::{filters, page, pager, ListPage, PlaneHeader, Tab};
use crate::forms::{code_field, error_summary, select_field, text_field, FormState};
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
    /// The settings form's fields as they are now ([`SETTINGS_FIELDS`]; `healthchecks` as JSON).
    pub settings: BTreeMap<String, String>,
}

/// The fields of an upstream's settings form, as the API names them.
pub const SETTINGS_FIELDS: &[&str] = &[
    "algorithm",
    "hash_on",
    "hash_on_header",
    "hash_on_cookie",
    "hash_on_cookie_path",
    "hash_on_query_arg",
    "hash_on_uri_capture",
    "hash_fallback",
    "hash_fallback_header",
    "hash_fallback_query_arg",
    "hash_fallback_uri_capture",
    "slots",
    "host_header",
    "healthchecks",
    "tags",
];

/// Kong's `hash_on` choices; `hash_fallback` takes the same but `cookie`. Like [`ALGORITHMS`], a
/// copy of the model's list: this crate takes no model types (it also builds for the browser),
/// and the server checks what is sent against the model's, naming the field when they differ.
const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];

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

fn options(values: &[&str]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (v.to_string(), v.to_string()))
        .collect()
}

/// The settings form: balancing, consistent hashing, the `Host` sent to targets, health checks
/// (as JSON, Kong's defaults filled in) and tags. `form` holds what was sent when the server
/// refused it, and is empty otherwise (the current settings are shown).
fn settings_form(
    viewer: &Viewer,
    action: String,
    upstream: &UpstreamRow,
    form: &FormState,
) -> impl IntoView {
    let form = if form.values.is_empty() {
        FormState {
            values: upstream.settings.clone(),
            ..form.clone()
        }
    } else {
        form.clone()
    };
    let fallbacks: Vec<&str> = HASH_ON.iter().copied().filter(|h| *h != "cookie").collect();
    view! {
        <section class="panel">
            <h3>"Settings"</h3>
            {error_summary(&form, SETTINGS_FIELDS)}
            <form method="post" action=action class="grid-form" novalidate>
                {csrf_field(viewer)}
                {select_field(&form, "algorithm", "Algorithm", options(ALGORITHMS), "round-robin")}
                {text_field(&form, "slots", "Ring slots", "number", "Consistent hashing's ring size, 10 to 65536.")}
                {select_field(&form, "hash_on", "Hash on", options(HASH_ON), "none")}
                {text_field(&form, "hash_on_header", "Hash on header", "text", "When hashing on a header: its name.")}
                {text_field(&form, "hash_on_cookie", "Hash on cookie", "text", "When hashing on a cookie: its name (set for clients that lack it).")}
                {text_field(&form, "hash_on_cookie_path", "Cookie path", "text", "The path of the cookie the edge sets.")}
                {text_field(&form, "hash_on_query_arg", "Hash on query argument", "text", "")}
                {text_field(&form, "hash_on_uri_capture", "Hash on URI capture", "text", "A named capture of the route's regex path.")}
                {select_field(&form, "hash_fallback", "Fallback", options(&fallbacks), "none")}
                {text_field(&form, "hash_fallback_header", "Fallback header", "text", "")}
                {text_field(&form, "hash_fallback_query_arg", "Fallback query argument", "text", "")}
                {text_field(&form, "hash_fallback_uri_capture", "Fallback URI capture", "text", "")}
                {text_field(&form, "host_header", "Host header", "text", "Sent to targets instead of the upstream's name; empty for the name.")}
                {code_field(&form, "healthchecks", "Health checks", "JSON, as the API takes it: active probes, passive circuit breaking, threshold. Kong's defaults fill what is left out.", 14)}
                {text_field(&form, "tags", "Tags", "text", "Comma separated.")}
                <div class="actions"><button type="submit" class="btn">"Save settings"</button></div>
            </form>
        </section>
    }
}

/// One upstream: its settings, its targets with per-node health, add and remove targets, delete.
/// `form` is the add-target form's state, `settings` the settings form's.
#[allow(clippy::too_many_arguments)]
pub fn upstream_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    upstream: &UpstreamRow,
    node_count: usize,
    form: &FormState,
    settings: &FormState,
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
            {settings_form(viewer, format!("{base}/settings"), upstream, settings)}
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
