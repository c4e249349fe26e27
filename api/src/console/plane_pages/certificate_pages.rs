//! The Certificates tab and one certificate's page: add certificates (the key is never shown
//! again, not even back in a refused form), read subject, names and expiry from the leaf, add and
//! remove SNIs.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tollgate_console::forms::FormState;
use tollgate_console::layout::Flash;
use tollgate_console::pages::control_plane::certificates::{
    certificate_page, certificates_page, CertificateRow,
};
use tollgate_console::pages::control_plane::Tab;
use tollgate_model::{Certificate, Sni};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use super::{delete_after_asking, filter_page, header, split_list, Deletion, QueryMap};
use crate::console::{done, flash, or_page, refused, CheckedForm, ConsoleUser};
use crate::error::{ApiError, ApiResult};
use crate::gateway::{all_of, create_entity};
use crate::state::AppState;

/// Subject, DNS names and expiry of the leaf, for showing; a certificate the API accepted parses,
/// but the page says so rather than failing if one does not.
fn certificate_row(cert: &Certificate, snis: &[Sni]) -> CertificateRow {
    let mut row = CertificateRow {
        id: cert.id.to_string(),
        subject: "(unreadable certificate)".into(),
        dns_names: Vec::new(),
        not_after: String::new(),
        days_left: None,
        snis: snis
            .iter()
            .filter(|s| s.certificate.id == cert.id)
            .map(|s| (s.id.to_string(), s.name.clone()))
            .collect(),
        tags: cert.tags.clone(),
    };
    let leaf = Certificate::chain(&cert.cert)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .and_then(|der| x509_cert::Certificate::from_der(der.as_ref()).ok());
    let Some(leaf) = leaf else { return row };
    let tbs = &leaf.tbs_certificate;
    if let Ok(Some((_, names))) = tbs.get::<SubjectAltName>() {
        row.dns_names = names
            .0
            .iter()
            .filter_map(|name| match name {
                GeneralName::DnsName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect();
    }
    let subject = tbs.subject.to_string();
    row.subject = if !subject.is_empty() {
        subject
    } else {
        row.dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| "(no subject)".into())
    };
    let expires = i64::try_from(tbs.validity.not_after.to_unix_duration().as_secs())
        .ok()
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0));
    if let Some(expires) = expires {
        row.not_after = expires.format("%Y-%m-%d").to_string();
        row.days_left = Some((expires - Utc::now()).num_days());
    }
    row
}

async fn render_certificates(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    query: &BTreeMap<String, String>,
    form: &FormState,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let certificates: Vec<Certificate> = all_of(&state.db, model.id).await?;
    let snis: Vec<Sni> = all_of(&state.db, model.id).await?;
    let (shown, list) = filter_page(certificates, query);
    let rows: Vec<CertificateRow> = shown.iter().map(|c| certificate_row(c, &snis)).collect();
    Ok(certificates_page(
        &user.viewer,
        &header,
        &rows,
        &list,
        form,
        flash(query),
        user.bundle,
    ))
}

pub async fn certificates(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(
                Html(render_certificates(&state, &user, &cp, &query, &FormState::default()).await?)
                    .into_response(),
            )
        }
        .await,
    )
}

pub async fn create_certificate(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(cp): Path<String>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let pem = |name: &str| {
        fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut input = Map::new();
    input.insert("cert".into(), json!(pem("cert")));
    input.insert("key".into(), json!(pem("key")));
    input.insert("tags".into(), json!(split_list(&pem("tags"), &[','])));
    or_page(
        &state,
        async {
            match create_entity::<Certificate>(&state, &user.auth, &cp, None, Value::Object(input))
                .await
            {
                Ok((_, created)) => Ok(done(
                    &format!("/control-planes/{cp}/certificates/{}", created.0.id),
                    "Certificate added. Add the SNIs (server names) it should answer for.",
                )),
                Err(e) => {
                    let mut form = refused(&fields, e)?;
                    // A private key is not sent back to the browser, not even to correct it.
                    form.values.remove("key");
                    let html =
                        render_certificates(&state, &user, &cp, &BTreeMap::new(), &form).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

async fn render_certificate(
    state: &AppState,
    user: &ConsoleUser,
    cp: &str,
    id: &str,
    form: &FormState,
    flash: Option<Flash>,
) -> ApiResult<String> {
    let (model, header) = header(state, user, cp).await?;
    let certificates: Vec<Certificate> = all_of(&state.db, model.id).await?;
    let cert = certificates
        .iter()
        .find(|c| c.id.to_string() == id)
        .ok_or(ApiError::NotFound)?;
    let snis: Vec<Sni> = all_of(&state.db, model.id).await?;
    let row = certificate_row(cert, &snis);
    Ok(certificate_page(
        &user.viewer,
        &header,
        &row,
        form,
        flash,
        user.bundle,
    ))
}

pub async fn certificate(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    Query(query): QueryMap,
) -> Response {
    or_page(
        &state,
        async {
            Ok(Html(
                render_certificate(
                    &state,
                    &user,
                    &cp,
                    &id,
                    &FormState::default(),
                    flash(&query),
                )
                .await?,
            )
            .into_response())
        }
        .await,
    )
}

pub async fn add_sni(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let name = fields
        .get("name")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    or_page(
        &state,
        async {
            let page = format!("/control-planes/{cp}/certificates/{id}");
            match create_entity::<Sni>(&state, &user.auth, &cp, Some(&id), json!({ "name": name }))
                .await
            {
                Ok((_, created)) => Ok(done(&page, &format!("SNI {} added.", created.0.name))),
                Err(e) => {
                    let form = refused(&fields, e)?;
                    let html = render_certificate(&state, &user, &cp, &id, &form, None).await?;
                    Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
                }
            }
        }
        .await,
    )
}

pub async fn delete_sni(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id, sni)): Path<(String, String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let page = format!("/control-planes/{cp}/certificates/{id}");
    let deletion = Deletion {
        tab: Tab::Certificates,
        question: "Remove this SNI?",
        confirm_label: "Yes, remove",
        action: format!("{page}/snis/{sni}/delete"),
        after: page.clone(),
        message: "SNI removed.",
        page,
    };
    or_page(
        &state,
        delete_after_asking::<Sni>(
            &state,
            &user,
            &cp,
            &fields,
            Some(id.as_str()),
            &sni,
            deletion,
        )
        .await,
    )
}

pub async fn delete_certificate(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((cp, id)): Path<(String, String)>,
    CheckedForm(fields): CheckedForm,
) -> Response {
    let page = format!("/control-planes/{cp}/certificates/{id}");
    let deletion = Deletion {
        tab: Tab::Certificates,
        question: "Delete this certificate and its SNIs?",
        confirm_label: "Yes, delete",
        action: format!("{page}/delete"),
        after: format!("/control-planes/{cp}/certificates"),
        message: "Certificate deleted with its SNIs.",
        page,
    };
    or_page(
        &state,
        delete_after_asking::<Certificate>(&state, &user, &cp, &fields, None, &id, deletion).await,
    )
}
