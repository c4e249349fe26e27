//! API tokens, members and invitations, and the page that accepts an invitation.

use leptos::prelude::*;

use crate::forms::{error_summary, select_field, text_field, FormState};
use crate::islands::{ConfirmSubmit, CopyButton};
use crate::layout::{confirmation, csrf_field, frame, Crumb, Flash, Section, Viewer};
use crate::shell::{render_document, Document};

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: String,
}

/// A secret shown once, right after it was made.
#[derive(Debug, Clone)]
pub struct ShownOnce {
    pub label: String,
    pub secret: String,
}

fn shown_once(secret: Option<ShownOnce>) -> impl IntoView {
    secret.map(|s| {
        view! {
            <section class="token-once" role="status">
                <p><strong>{s.label}</strong>" — copy it now; it will not be shown again."</p>
                <p><code class="secret">{s.secret.clone()}</code>" "<CopyButton text=s.secret/></p>
            </section>
        }
    })
}

pub fn tokens_page(
    viewer: &Viewer,
    rows: &[TokenRow],
    created: Option<ShownOnce>,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let body_rows = rows
        .iter()
        .map(|t| {
            view! {
                <tr>
                    <td>{t.name.clone()}</td>
                    <td>{t.created_at.clone()}</td>
                    <td>{t.last_used_at.clone()}</td>
                    <td>
                        <form method="post" action=format!("/tokens/{}/revoke", t.id)>
                            {csrf_field(viewer)}
                            <ConfirmSubmit label="Revoke".to_string() question=format!("Revoke token {}? Scripts using it stop working.", t.name)/>
                        </form>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let content = view! {
        <h1>"API tokens"</h1>
        <p class="muted">"Personal access tokens act as you in this organization. Send them as "<code>"Authorization: Bearer <token>"</code>"."</p>
        {shown_once(created)}
        <table class="list">
            <caption class="sr-only">"Tokens"</caption>
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Created"</th><th scope="col">"Last used"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
            <tbody>{body_rows}</tbody>
        </table>
        {rows.is_empty().then(|| view! { <p class="muted">"No tokens yet."</p> })}
        <section class="panel">
            <h2>"New token"</h2>
            {error_summary(form, &["name"])}
            <form method="post" action="/tokens" class="inline-form" novalidate>
                {csrf_field(viewer)}
                {text_field(form, "name", "Name", "text", "What will use it, e.g. ci-deploy")}
                <button type="submit" class="btn">"Create token"</button>
            </form>
        </section>
    };
    render_document(
        &Document {
            title: "API tokens".into(),
            bundle,
        },
        frame(
            viewer,
            Section::Tokens,
            vec![Crumb::here("API tokens")],
            flash,
            content,
        ),
    )
}

#[derive(Debug, Clone)]
pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub joined_at: String,
}

#[derive(Debug, Clone)]
pub struct InvitationRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub expires_at: String,
}

fn role_options() -> Vec<(String, String)> {
    ["viewer", "member", "admin", "owner"]
        .iter()
        .map(|r| (r.to_string(), r.to_string()))
        .collect()
}

pub fn members_page(
    viewer: &Viewer,
    members: &[MemberRow],
    invitations: &[InvitationRow],
    invited: Option<ShownOnce>,
    form: &FormState,
    flash: Option<Flash>,
    bundle: bool,
) -> String {
    let admin = viewer.role == "admin" || viewer.role == "owner";
    let member_rows = members
        .iter()
        .map(|m| {
            let actions = admin.then(|| {
                let select_id = format!("role-{}", m.user_id);
                let options = role_options()
                    .into_iter()
                    .map(|(v, t)| {
                        let selected = v == m.role;
                        view! { <option value=v selected=selected>{t}</option> }
                    })
                    .collect_view();
                view! {
                    <form method="post" action=format!("/members/{}/role", m.user_id) class="inline-form">
                        {csrf_field(viewer)}
                        <label class="sr-only" for=select_id.clone()>{format!("Role of {}", m.email)}</label>
                        <select id=select_id name="role">{options}</select>
                        <button type="submit" class="btn btn-ghost btn-small">"Change role"</button>
                    </form>
                    <form method="post" action=format!("/members/{}/remove", m.user_id)>
                        {csrf_field(viewer)}
                        <ConfirmSubmit label="Remove".to_string() question=format!("Remove {} from the organization?", m.email)/>
                    </form>
                }
            });
            view! {
                <tr>
                    <td>{m.email.clone()}</td>
                    <td>{m.role.clone()}</td>
                    <td>{m.joined_at.clone()}</td>
                    <td class="actions-cell">{actions}</td>
                </tr>
            }
        })
        .collect_view();
    let invitation_rows = invitations
        .iter()
        .map(|i| {
            let revoke = admin.then(|| {
                view! {
                    <form method="post" action=format!("/invitations/{}/revoke", i.id)>
                        {csrf_field(viewer)}
                        <ConfirmSubmit label="Revoke".to_string() question=format!("Revoke the invitation of {}?", i.email)/>
                    </form>
                }
            });
            view! {
                <tr><td>{i.email.clone()}</td><td>{i.role.clone()}</td><td>{i.invited_by.clone()}</td><td>{i.expires_at.clone()}</td><td>{revoke}</td></tr>
            }
        })
        .collect_view();
    let invite = admin.then(|| {
        view! {
            <section class="panel">
                <h2>"Invite someone"</h2>
                {error_summary(form, &["email", "role"])}
                <form method="post" action="/invitations" class="inline-form" novalidate>
                    {csrf_field(viewer)}
                    {text_field(form, "email", "Email", "email", "")}
                    {select_field(form, "role", "Role", role_options(), "member")}
                    <button type="submit" class="btn">"Create invitation link"</button>
                </form>
                <p class="hint">"Viewers can look but not change anything; members change config; admins also manage members; owners can do everything."</p>
            </section>
        }
    });
    let content = view! {
        <h1>"Members"</h1>
        {shown_once(invited)}
        <table class="list">
            <caption class="sr-only">"Members"</caption>
            <thead><tr><th scope="col">"Email"</th><th scope="col">"Role"</th><th scope="col">"Joined"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
            <tbody>{member_rows}</tbody>
        </table>
        {(!invitations.is_empty()).then(|| view! {
            <h2 class="section-title">"Pending invitations"</h2>
            <table class="list">
                <thead><tr><th scope="col">"Email"</th><th scope="col">"Role"</th><th scope="col">"Invited by"</th><th scope="col">"Expires"</th><th scope="col"><span class="sr-only">"Actions"</span></th></tr></thead>
                <tbody>{invitation_rows}</tbody>
            </table>
        })}
        {invite}
    };
    render_document(
        &Document {
            title: "Members".into(),
            bundle,
        },
        frame(
            viewer,
            Section::Members,
            vec![Crumb::here("Members")],
            flash,
            content,
        ),
    )
}

/// Accepting an invitation: a new account sets its password, an existing one confirms it.
pub fn invite_page(token: &str, form: &FormState, bundle: bool) -> String {
    let body = view! {
        <main id="main" class="auth">
            <p class="brand">"Tollgate"</p>
            <section class="card">
                <h1>"Join your team"</h1>
                <p class="muted">"New to Tollgate? Choose a password (at least 10 characters). Already have an account? Enter its password."</p>
                {error_summary(form, &["password"])}
                <form method="post" action=format!("/invite/{token}") novalidate>
                    {text_field(form, "password", "Password", "password", "")}
                    <button type="submit" class="btn">"Accept invitation"</button>
                </form>
            </section>
        </main>
    };
    render_document(
        &Document {
            title: "Accept invitation".into(),
            bundle,
        },
        body,
    )
}

/// Asks before revoking a token or removing a member when the browser did not.
pub fn confirm_account_page(
    viewer: &Viewer,
    section: Section,
    question: &str,
    action: &str,
    confirm_label: &str,
    cancel: &str,
    bundle: bool,
) -> String {
    let title = match section {
        Section::Tokens => "API tokens",
        _ => "Members",
    };
    render_document(
        &Document {
            title: title.into(),
            bundle,
        },
        frame(
            viewer,
            section,
            vec![
                Crumb::link(title, cancel.to_string()),
                Crumb::here("Confirm"),
            ],
            None,
            confirmation(viewer, question, action, confirm_label, cancel),
        ),
    )
}
