//! A control plane's page and its tabs: Services, Routes, Upstreams, Certificates, Nodes, Config
//! history.

pub mod certificates;
pub mod upstreams;

use leptos::prelude::*;

use crate::forms::{
    checkbox_field, error_summary, select_field, text_field, textarea_field, FormState,
};
use crate::islands::{ConfirmSubmit, CopyButton};
use crate::layout::{confirmation, csrf_field, frame, Crumb, Flash, Section, Viewer};
use crate::shell::{render_document_refreshing, Document};

#[derive(Debug, Clone)]
pub struct PlaneHeader {
    pub id: String,
    pub name: String,
    pub proxy_url: String,
    pub hostnames: Vec<String>,
    pub config_version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Services,
    Routes,
    Upstreams,
    Certificates,
    Nodes,
    History,
    Traffic,
}

impl Tab {
    fn label(self) -> &'static str {
        match self {
            Tab::Services => "Services",
            Tab::Routes => "Routes",
            Tab::Upstreams => "Upstreams",
            Tab::Certificates => "Certificates",
            Tab::Nodes => "Nodes",
            Tab::History => "Config history",
            Tab::Traffic => "Traffic",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Tab::Services => "services",
            Tab::Routes => "routes",
            Tab::Upstreams => "upstreams",
            Tab::Certificates => "certificates",
            Tab::Nodes => "nodes",
            Tab::History => "history",
            Tab::Traffic => "traffic",
        }
    }
}

/// Filter and page position of a list.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub name: String,
    pub tag: String,
    pub offset: usize,
    pub total: usize,
    pub size: usize,
}

impl ListPage {
    fn link(&self, base: &str, offset: usize) -> String {
        let mut link = format!("{base}?offset={offset}");
        if !self.name.is_empty() {
            link.push_str(&format!("&name={}", super::auth::encode(&self.name)));
        }
        if !self.tag.is_empty() {
            link.push_str(&format!("&tag={}", super::auth::encode(&self.tag)));
        }
        link
    }
}

fn page(
    viewer: &Viewer,
    header: &PlaneHeader,
    tab: Tab,
    flash: Option<Flash>,
    bundle: bool,
    body: impl IntoView + 'static,
) -> String {
    refreshing_page(viewer, header, tab, flash, bundle, None, body)
}

/// A control plane tab's document (header, tabs, then `body`), reloaded by the browser every
/// `refresh_seconds` when given.
pub(crate) fn refreshing_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    tab: Tab,
    flash: Option<Flash>,
    bundle: bool,
    refresh_seconds: Option<u32>,
    body: impl IntoView + 'static,
) -> String {
    let base = format!("/control-planes/{}", header.id);
    let tabs = [
        Tab::Services,
        Tab::Routes,
        Tab::Upstreams,
        Tab::Certificates,
        Tab::Traffic,
        Tab::Nodes,
        Tab::History,
    ]
        .into_iter()
        .map(|t| {
            let current = (t == tab).then_some("page");
            view! { <li><a href=format!("{base}/{}", t.path()) aria-current=current>{t.label()}</a></li> }
        })
        .collect_view();
    let hostnames = header.hostnames.join(", ");
    let content = view! {
        <header class="plane-head">
            <h1>{header.name.clone()}</h1>
            <dl class="facts">
                <div><dt>"Proxy URL"</dt><dd><code>{header.proxy_url.clone()}</code>" "<CopyButton text=header.proxy_url.clone()/></dd></div>
                <div><dt>"Host names"</dt><dd>{hostnames}</dd></div>
                <div><dt>"Config version"</dt><dd>{header.config_version}</dd></div>
            </dl>
        </header>
        <nav aria-label="Control plane"><ul class="tabs">{tabs}</ul></nav>
        <section class="tab-body">{body}</section>
    };
    render_document_refreshing(
        &Document {
            title: format!("{} · {}", tab.label(), header.name),
            bundle,
        },
        refresh_seconds,
        frame(
            viewer,
            Section::ControlPlanes,
            vec![
                Crumb::link("Control planes", "/"),
                Crumb::link(header.name.clone(), format!("{base}/services")),
                Crumb::here(tab.label()),
            ],
            flash,
            content,
        ),
    )
}

fn filters(action: String, list: &ListPage) -> impl IntoView {
    view! {
        <form method="get" action=action class="filters" role="search">
            <label for="filter-name">"Name"</label>
            <input id="filter-name" name="name" type="search" value=list.name.clone()/>
            <label for="filter-tag">"Tag"</label>
            <input id="filter-tag" name="tag" type="search" value=list.tag.clone()/>
            <button type="submit" class="btn btn-ghost">"Filter"</button>
        </form>
    }
}

fn pager(base: String, list: &ListPage) -> impl IntoView {
    let shown_to = (list.offset + list.size).min(list.total);
    let prev = (list.offset > 0).then(|| {
        let href = list.link(&base, list.offset.saturating_sub(list.size));
        view! { <a class="btn btn-ghost btn-small" href=href rel="prev">"Previous"</a> }
    });
    let next = (shown_to < list.total).then(|| {
        let href = list.link(&base, shown_to);
        view! { <a class="btn btn-ghost btn-small" href=href rel="next">"Next"</a> }
    });
    let from = if list.total == 0 { 0 } else { list.offset + 1 };
    view! {
        <nav class="pager" aria-label="Pages">
            <span class="muted">{format!("{from}–{shown_to} of {}", list.total)}</span>
            {prev}{next}
        </nav>
    }
}

// ---- Services -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub id: String,
    pub name: String,
    pub url: String,
    pub tags: Vec<String>,
    pub enabled: bool,
}

/// The Services tab: list with filter and pages, and the new-service form.
pub fn services_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    rows: &[ServiceRow],
    list: &ListPage,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/services", header.id);
    let body_rows = rows
        .iter()
        .map(|s| {
            view! {
                <tr>
                    <td><a href=format!("{base}/{}", s.id)>{s.name.clone()}</a></td>
                    <td><code>{s.url.clone()}</code></td>
                    <td>{s.tags.join(", ")}</td>
                    <td>{if s.enabled { "enabled" } else { "disabled" }}</td>
                </tr>
            }
        })
        .collect_view();
    let create = viewer.can_write().then(|| {
        view! {
            <section class="panel">
                <h2>"New service"</h2>
                {error_summary(form, &["name", "url", "tags"])}
                <form method="post" action=base.clone() novalidate>
                    {csrf_field(viewer)}
                    {text_field(form, "name", "Name", "text", "Letters, digits, '.', '-', '_' and '~'.")}
                    {text_field(form, "url", "Upstream URL", "text", "e.g. http://orders.internal:8080/v1")}
                    {text_field(form, "tags", "Tags", "text", "Comma separated.")}
                    <button type="submit" class="btn">"Create service"</button>
                </form>
            </section>
        }
    });
    let body = view! {
        {filters(base.clone(), list)}
        <table class="list">
            <caption class="sr-only">"Services"</caption>
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Upstream"</th><th scope="col">"Tags"</th><th scope="col">"State"</th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {rows.is_empty().then(|| view! { <p class="muted">"No services yet."</p> })}
        {pager(base.clone(), list)}
        {create}
    };
    page(viewer, header, Tab::Services, flash, bundle, body)
}

/// One service: edit form and delete (refused while routes use it).
#[allow(clippy::too_many_arguments)]
pub fn service_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    service_id: &str,
    service_name: &str,
    routes_using: usize,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/services/{service_id}", header.id);
    let edit = if viewer.can_write() {
        let delete = if routes_using == 0 {
            view! {
                <form method="post" action=format!("{base}/delete") class="danger-zone">
                    {csrf_field(viewer)}
                    <ConfirmSubmit label="Delete service".to_string() question=format!("Delete service {service_name}?")/>
                </form>
            }
            .into_any()
        } else {
            view! { <p class="muted danger-zone">{format!("{routes_using} route(s) use this service; delete or move them before deleting it.")}</p> }.into_any()
        };
        view! {
            {error_summary(form, &["name", "url", "tags", "retries", "connect_timeout", "write_timeout", "read_timeout", "enabled"])}
            <form method="post" action=base.clone() class="grid-form" novalidate>
                {csrf_field(viewer)}
                {text_field(form, "name", "Name", "text", "")}
                {text_field(form, "url", "Upstream URL", "text", "protocol://host:port/path")}
                {text_field(form, "tags", "Tags", "text", "Comma separated.")}
                {text_field(form, "retries", "Retries", "number", "")}
                {text_field(form, "connect_timeout", "Connect timeout (ms)", "number", "")}
                {text_field(form, "write_timeout", "Write timeout (ms)", "number", "")}
                {text_field(form, "read_timeout", "Read timeout (ms)", "number", "")}
                {checkbox_field(form, "enabled", "Enabled", true)}
                <div class="actions"><button type="submit" class="btn">"Save service"</button></div>
            </form>
            {delete}
        }
        .into_any()
    } else {
        view! { <p class="muted">"Viewers cannot edit services."</p> }.into_any()
    };
    let body = view! {
        <h2>{format!("Service {service_name}")}</h2>
        {edit}
    };
    page(viewer, header, Tab::Services, flash, bundle, body)
}

// ---- Routes -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RouteRow {
    pub id: String,
    pub name: String,
    pub service: String,
    pub protocols: String,
    pub methods: String,
    pub hosts: String,
    pub paths: String,
    pub tags: Vec<String>,
    /// A ready-to-paste request through the proxy.
    pub curl: String,
}

/// The Routes tab: list with curl examples, and the new-route form.
#[allow(clippy::too_many_arguments)]
pub fn routes_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    rows: &[RouteRow],
    list: &ListPage,
    services: &[(String, String)],
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/routes", header.id);
    let body_rows = rows
        .iter()
        .map(|r| {
            let edit = format!("{base}/{}", r.id);
            view! {
                <tr>
                    <td><a href=edit>{r.name.clone()}</a></td>
                    <td>{r.service.clone()}</td>
                    <td>{r.methods.clone()}</td>
                    <td>{r.hosts.clone()}</td>
                    <td>{r.paths.clone()}</td>
                    <td class="curl"><code>{r.curl.clone()}</code>" "<CopyButton text=r.curl.clone()/></td>
                </tr>
            }
        })
        .collect_view();
    let create = viewer.can_write().then(|| {
        view! {
            <section class="panel">
                <h2>"New route"</h2>
                {route_form(viewer, &base, services, form, "Create route")}
            </section>
        }
    });
    let body = view! {
        {filters(base.clone(), list)}
        <table class="list">
            <caption class="sr-only">"Routes"</caption>
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Service"</th><th scope="col">"Methods"</th><th scope="col">"Hosts"</th><th scope="col">"Paths"</th><th scope="col">"Try it"</th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {rows.is_empty().then(|| view! { <p class="muted">"No routes yet."</p> })}
        {pager(base.clone(), list)}
        {create}
    };
    page(viewer, header, Tab::Routes, flash, bundle, body)
}

/// Every Kong route field, plainly: lists one item per line. A fresh form starts at Kong's
/// defaults.
fn route_form(
    viewer: &Viewer,
    action: &str,
    services: &[(String, String)],
    form: &FormState,
    submit: &'static str,
) -> impl IntoView {
    let mut service_options = vec![(String::new(), "(none)".to_string())];
    service_options.extend(services.iter().cloned());
    let redirect_codes = ["426", "301", "302", "307", "308"]
        .iter()
        .map(|c| (c.to_string(), c.to_string()))
        .collect();
    let handling = vec![
        ("v0".to_string(), "v0".to_string()),
        ("v1".to_string(), "v1".to_string()),
    ];
    let mut form = form.clone();
    if form.values.is_empty() {
        form.values.insert("protocols".into(), "http, https".into());
        form.values.insert("regex_priority".into(), "0".into());
        for flag in ["strip_path", "request_buffering", "response_buffering"] {
            form.values.insert(flag.into(), "on".into());
        }
    }
    let form = &form;
    view! {
        {error_summary(form, &["name", "service", "protocols", "methods", "hosts", "paths", "headers", "snis", "https_redirect_status_code", "regex_priority", "path_handling", "strip_path", "preserve_host", "request_buffering", "response_buffering", "tags"])}
        <form method="post" action=action.to_string() class="grid-form" novalidate>
            {csrf_field(viewer)}
            {text_field(form, "name", "Name", "text", "")}
            {select_field(form, "service", "Service", service_options, "")}
            {text_field(form, "protocols", "Protocols", "text", "http, https")}
            {text_field(form, "methods", "Methods", "text", "e.g. GET, POST — empty matches any")}
            {textarea_field(form, "paths", "Paths", "One per line; start with / (prefix) or ~ (regex).")}
            {textarea_field(form, "hosts", "Hosts", "One per line; wildcards like *.example.com allowed.")}
            {textarea_field(form, "headers", "Headers", "One per line: Name: value1, value2")}
            {textarea_field(form, "snis", "SNIs", "One per line.")}
            {select_field(form, "https_redirect_status_code", "HTTPS redirect status code", redirect_codes, "426")}
            {text_field(form, "regex_priority", "Regex priority", "number", "")}
            {select_field(form, "path_handling", "Path handling", handling, "v0")}
            {text_field(form, "tags", "Tags", "text", "Comma separated.")}
            {checkbox_field(form, "strip_path", "Strip the matched path", true)}
            {checkbox_field(form, "preserve_host", "Preserve the client's Host header", false)}
            {checkbox_field(form, "request_buffering", "Request buffering", true)}
            {checkbox_field(form, "response_buffering", "Response buffering", true)}
            <input type="hidden" name="form" value="route"/>
            <div class="actions"><button type="submit" class="btn">{submit}</button></div>
        </form>
    }
}

/// One route: edit form, curl example and delete.
#[allow(clippy::too_many_arguments)]
pub fn route_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    route_id: &str,
    route_name: &str,
    curl: &str,
    services: &[(String, String)],
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/routes/{route_id}", header.id);
    let edit = if viewer.can_write() {
        view! {
            {route_form(viewer, &base, services, form, "Save route")}
            <form method="post" action=format!("{base}/delete") class="danger-zone">
                {csrf_field(viewer)}
                <ConfirmSubmit label="Delete route".to_string() question=format!("Delete route {route_name}?")/>
            </form>
        }
        .into_any()
    } else {
        view! { <p class="muted">"Viewers cannot edit routes."</p> }.into_any()
    };
    let body = view! {
        <h2>{format!("Route {route_name}")}</h2>
        <p>"Try it: "<code>{curl.to_string()}</code>" "<CopyButton text=curl.to_string()/></p>
        {edit}
    };
    page(viewer, header, Tab::Routes, flash, bundle, body)
}

/// Asks before a destructive action on this control plane when the browser did not.
#[allow(clippy::too_many_arguments)]
pub fn confirm_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    tab: Tab,
    question: &str,
    action: &str,
    confirm_label: &str,
    cancel: &str,
    bundle: bool,
) -> String {
    let body = confirmation(viewer, question, action, confirm_label, cancel);
    page(viewer, header, tab, None, bundle, body)
}

// ---- Nodes --------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub binary_version: String,
    pub config_version: i64,
    pub config_hash: String,
    pub last_seen: String,
    pub status: String,
}

pub fn nodes_page(viewer: &Viewer, header: &PlaneHeader, rows: &[NodeRow], bundle: bool) -> String {
    let body_rows = rows
        .iter()
        .map(|n| {
            let class = match n.status.as_str() {
                "up to date" => "badge badge-ok",
                "out of date" => "badge badge-warn",
                _ => "badge badge-bad",
            };
            let short_hash: String = n.config_hash.chars().take(19).collect();
            view! {
                <tr>
                    <td><code>{n.id.clone()}</code></td>
                    <td>{n.hostname.clone()}</td>
                    <td>{n.binary_version.clone()}</td>
                    <td class="num">{n.config_version}</td>
                    <td><code title=n.config_hash.clone()>{short_hash}</code></td>
                    <td>{n.last_seen.clone()}</td>
                    <td><span class=class>{n.status.clone()}</span></td>
                </tr>
            }
        })
        .collect_view();
    let body = view! {
        <table class="list">
            <caption class="sr-only">"Nodes"</caption>
            <thead><tr><th scope="col">"Node"</th><th scope="col">"Hostname"</th><th scope="col">"Version"</th><th scope="col" class="num">"Config"</th><th scope="col">"Hash"</th><th scope="col">"Last seen"</th><th scope="col">"Status"</th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {rows.is_empty().then(|| view! { <p class="muted">"No edge has reported yet. Start one with "<code>"tollgate edge --nats-url …"</code>"; in "<code>"tollgate dev"</code>" the built-in edge reports within seconds."</p> })}
    };
    page(viewer, header, Tab::Nodes, None, bundle, body)
}

// ---- Config history -----------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct VersionRow {
    pub version: i64,
    pub hash: String,
    pub actor: String,
    pub summary: String,
    pub created_at: String,
}

/// A line of a diff between two versions' snapshots.
#[derive(Debug, Clone)]
pub enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
}

#[derive(Debug, Clone)]
pub struct DiffView {
    pub from: i64,
    pub to: i64,
    pub lines: Vec<DiffLine>,
}

pub fn history_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    rows: &[VersionRow],
    diff: Option<DiffView>,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/history", header.id);
    let latest = rows.first().map(|r| r.version).unwrap_or_default();
    let body_rows = rows
        .iter()
        .map(|v| {
            let short_hash: String = v.hash.chars().take(19).collect();
            let restore = (viewer.can_write() && v.version != latest).then(|| {
                view! {
                    <form method="post" action=format!("{base}/{}/restore", v.version)>
                        {csrf_field(viewer)}
                        <ConfirmSubmit label="Restore".to_string() question=format!("Make a new version equal to version {}?", v.version)/>
                    </form>
                }
            });
            view! {
                <tr>
                    <td class="num">{v.version}</td>
                    <td>{v.summary.clone()}</td>
                    <td>{v.actor.clone()}</td>
                    <td>{v.created_at.clone()}</td>
                    <td><code title=v.hash.clone()>{short_hash}</code></td>
                    <td>{restore}</td>
                </tr>
            }
        })
        .collect_view();
    let options: Vec<_> = rows.iter().map(|r| r.version).collect();
    let (from, to) = diff
        .as_ref()
        .map(|d| (d.from, d.to))
        .unwrap_or((latest.saturating_sub(1).max(1), latest));
    let select = move |name: &'static str, label: &'static str, chosen: i64| {
        let opts = options
            .iter()
            .map(|v| {
                let selected = *v == chosen;
                view! { <option value=v.to_string() selected=selected>{format!("version {v}")}</option> }
            })
            .collect_view();
        view! { <label for=name>{label}</label><select id=name name=name>{opts}</select> }
    };
    let diff_view = diff.map(|d| {
        let lines = d
            .lines
            .into_iter()
            .map(|l| match l {
                DiffLine::Same(t) => {
                    view! { <span class="d-same">{format!("  {t}\n")}</span> }.into_any()
                }
                DiffLine::Added(t) => {
                    view! { <ins class="d-add">{format!("+ {t}\n")}</ins> }.into_any()
                }
                DiffLine::Removed(t) => {
                    view! { <del class="d-del">{format!("- {t}\n")}</del> }.into_any()
                }
            })
            .collect_view();
        view! {
            <h3>{format!("Changes from version {} to {}", d.from, d.to)}</h3>
            <pre class="diff">{lines}</pre>
        }
    });
    let body = view! {
        <form method="get" action=base.clone() class="filters">
            {select("from", "Compare", from)}
            {select("to", "with", to)}
            <button type="submit" class="btn btn-ghost">"Show diff"</button>
        </form>
        {diff_view}
        <table class="list">
            <caption class="sr-only">"Config versions"</caption>
            <thead><tr><th scope="col" class="num">"Version"</th><th scope="col">"Change"</th><th scope="col">"Who"</th><th scope="col">"When"</th><th scope="col">"Hash"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
    };
    page(viewer, header, Tab::History, flash, bundle, body)
}
