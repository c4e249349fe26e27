//! The Certificates tab: certificates with subject, expiry and SNIs, and one certificate's page to
//! add and remove SNIs. Private keys are write-only: the pages never show one.

use leptos::prelude::*;

use super::{page, pager, ListPage, PlaneHeader, Tab};
use crate::forms::{error_summary, text_field, textarea_field, FormState};
use crate::islands::ConfirmSubmit;
use crate::layout::{csrf_field, Flash, Viewer};

#[derive(Debug, Clone)]
pub struct CertificateRow {
    pub id: String,
    /// The leaf's subject, or why it could not be read.
    pub subject: String,
    /// The DNS names the leaf is valid for.
    pub dns_names: Vec<String>,
    /// `YYYY-MM-DD`.
    pub not_after: String,
    /// Whole days until expiry; negative once expired.
    pub days_left: Option<i64>,
    /// `(id, name)`.
    pub snis: Vec<(String, String)>,
    pub tags: Vec<String>,
}

fn expiry(row: &CertificateRow) -> impl IntoView {
    let (class, text) = match row.days_left {
        None => ("badge", "unknown".to_string()),
        Some(d) if d < 0 => ("badge badge-bad", "expired".to_string()),
        Some(d) if d < 30 => ("badge badge-warn", format!("{d} days left")),
        Some(d) => ("badge badge-ok", format!("{d} days left")),
    };
    view! { {row.not_after.clone()}" "<span class=class>{text}</span> }
}

/// The Certificates tab: list and the new-certificate form.
pub fn certificates_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    rows: &[CertificateRow],
    list: &ListPage,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/certificates", header.id);
    let body_rows = rows
        .iter()
        .map(|c| {
            let snis: Vec<String> = c.snis.iter().map(|(_, name)| name.clone()).collect();
            view! {
                <tr>
                    <td><a href=format!("{base}/{}", c.id)>{c.subject.clone()}</a></td>
                    <td>{c.dns_names.join(", ")}</td>
                    <td>{expiry(c)}</td>
                    <td>{if snis.is_empty() { "—".to_string() } else { snis.join(", ") }}</td>
                    <td>{c.tags.join(", ")}</td>
                </tr>
            }
        })
        .collect_view();
    let create = viewer.can_write().then(|| {
        view! {
            <section class="panel">
                <h2>"New certificate"</h2>
                {error_summary(form, &["cert", "key", "tags"])}
                <form method="post" action=base.clone() novalidate>
                    {csrf_field(viewer)}
                    {textarea_field(form, "cert", "Certificate (PEM)", "The leaf first, then intermediates.")}
                    {textarea_field(form, "key", "Private key (PEM)", "Stored encrypted and never shown again.")}
                    {text_field(form, "tags", "Tags", "text", "Comma separated.")}
                    <button type="submit" class="btn">"Add certificate"</button>
                </form>
            </section>
        }
    });
    let body = view! {
        <table class="list">
            <caption class="sr-only">"Certificates"</caption>
            <thead><tr><th scope="col">"Subject"</th><th scope="col">"Names"</th><th scope="col">"Expires"</th><th scope="col">"SNIs"</th><th scope="col">"Tags"</th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {rows.is_empty().then(|| view! { <p class="muted">"No certificates yet. Add one, then the SNIs (server names) it should answer TLS handshakes for."</p> })}
        {pager(base.clone(), list)}
        {create}
    };
    page(viewer, header, Tab::Certificates, flash, bundle, body)
}

/// One certificate: its facts, its SNIs (add, remove) and delete.
pub fn certificate_page(
    viewer: &Viewer,
    header: &PlaneHeader,
    cert: &CertificateRow,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let base = format!("/control-planes/{}/certificates/{}", header.id, cert.id);
    let can_write = viewer.can_write();
    let sni_rows = cert
        .snis
        .iter()
        .map(|(id, name)| {
            let remove = can_write.then(|| {
                view! {
                    <form method="post" action=format!("{base}/snis/{id}/delete")>
                        {csrf_field(viewer)}
                        <ConfirmSubmit label="Remove".to_string() question=format!("Remove SNI {name}?")/>
                    </form>
                }
            });
            view! { <tr><td><code>{name.clone()}</code></td><td>{remove}</td></tr> }
        })
        .collect_view();
    let manage = if can_write {
        let question = if cert.snis.is_empty() {
            "Delete this certificate?".to_string()
        } else {
            format!(
                "Delete this certificate and its {} SNI(s)?",
                cert.snis.len()
            )
        };
        view! {
            <section class="panel">
                <h3>"Add an SNI"</h3>
                {error_summary(form, &["name"])}
                <form method="post" action=format!("{base}/snis") novalidate>
                    {csrf_field(viewer)}
                    {text_field(form, "name", "Server name", "text", "e.g. api.example.com or *.example.com")}
                    <button type="submit" class="btn">"Add SNI"</button>
                </form>
            </section>
            <form method="post" action=format!("{base}/delete") class="danger-zone">
                {csrf_field(viewer)}
                <ConfirmSubmit label="Delete certificate".to_string() question=question/>
            </form>
        }
        .into_any()
    } else {
        view! { <p class="muted">"Viewers cannot change certificates."</p> }.into_any()
    };
    let body = view! {
        <h2>{format!("Certificate {}", cert.subject)}</h2>
        <dl class="facts facts-row">
            <div><dt>"Names in the certificate"</dt><dd>{cert.dns_names.join(", ")}</dd></div>
            <div><dt>"Expires"</dt><dd>{expiry(cert)}</dd></div>
            <div><dt>"Tags"</dt><dd>{cert.tags.join(", ")}</dd></div>
            <div><dt>"Private key"</dt><dd>"stored encrypted; not shown"</dd></div>
        </dl>
        <h3>"SNIs: the server names that select this certificate"</h3>
        <table class="list">
            <caption class="sr-only">"SNIs"</caption>
            <thead><tr><th scope="col">"Name"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
            <tbody>{sni_rows}</tbody>
        </table>
        {cert.snis.is_empty().then(|| view! { <p class="muted">"No SNIs yet: the edge will not select this certificate until one is added."</p> })}
        {manage}
    };
    page(viewer, header, Tab::Certificates, flash, bundle, body)
}
