//! The frame around signed-in pages: left navigation, breadcrumbs, the signed-in user and the
//! log-out form, and flash messages.

use leptos::prelude::*;

use crate::islands::ThemeToggle;

/// Who is signed in, for the frame.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub email: String,
    pub organization: String,
    pub role: String,
    /// The form token every POST form carries.
    pub csrf: String,
}

impl Viewer {
    pub fn can_write(&self) -> bool {
        self.role != "viewer"
    }
}

/// Which top-level section is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    ControlPlanes,
    Traffic,
    Usage,
    Tokens,
    Members,
}

#[derive(Debug, Clone)]
pub struct Crumb {
    pub label: String,
    pub href: Option<String>,
}

impl Crumb {
    pub fn link(label: impl Into<String>, href: impl Into<String>) -> Crumb {
        Crumb {
            label: label.into(),
            href: Some(href.into()),
        }
    }
    pub fn here(label: impl Into<String>) -> Crumb {
        Crumb {
            label: label.into(),
            href: None,
        }
    }
}

/// A one-line notice at the top of the page (after a redirect).
#[derive(Debug, Clone)]
pub struct Flash {
    pub ok: bool,
    pub message: String,
}

/// The hidden CSRF field of a POST form.
pub fn csrf_field(viewer: &Viewer) -> impl IntoView {
    view! { <input type="hidden" name="csrf" value=viewer.csrf.clone()/> }
}

/// Wraps a signed-in page's content.
pub fn frame(
    viewer: &Viewer,
    section: Section,
    crumbs: Vec<Crumb>,
    flash: Option<Flash>,
    content: impl IntoView + 'static,
) -> impl IntoView + 'static {
    let item = move |target: Section, href: &'static str, label: &'static str| {
        let current = (target == section).then_some("page");
        view! { <li><a href=href aria-current=current>{label}</a></li> }
    };
    let last = crumbs.len().saturating_sub(1);
    let crumbs = crumbs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let current = (i == last).then_some("page");
            match c.href {
                Some(href) => {
                    view! { <li><a href=href aria-current=current>{c.label}</a></li> }.into_any()
                }
                None => view! { <li aria-current=current>{c.label}</li> }.into_any(),
            }
        })
        .collect_view();
    let flash = flash.map(|f| {
        let class = if f.ok {
            "flash flash-ok"
        } else {
            "flash flash-error"
        };
        view! { <p class=class role="status">{f.message}</p> }
    });
    let read_only = (!viewer.can_write()).then(|| {
        view! { <p class="flash">"You have read-only access (viewer). Ask an admin for member access to make changes."</p> }
    });
    view! {
        <a class="skip" href="#main">"Skip to content"</a>
        <div class="app">
            <nav class="sidebar" aria-label="Main">
                <a class="brand" href="/">"Tollgate"</a>
                <p class="org">{viewer.organization.clone()}</p>
                <ul>
                    {item(Section::ControlPlanes, "/", "Control planes")}
                    {item(Section::Traffic, "/traffic", "Traffic")}
                    {item(Section::Usage, "/usage", "Usage")}
                    {item(Section::Tokens, "/tokens", "API tokens")}
                    {item(Section::Members, "/members", "Members")}
                </ul>
                <div class="sidebar-foot">
                    <p class="who">{viewer.email.clone()}<br/><span class="muted">{viewer.role.clone()}</span></p>
                    <form method="post" action="/logout">
                        {csrf_field(viewer)}
                        <button type="submit" class="btn btn-ghost btn-small">"Log out"</button>
                    </form>
                    <ThemeToggle/>
                </div>
            </nav>
            <div class="content">
                <nav aria-label="Breadcrumb"><ol class="crumbs">{crumbs}</ol></nav>
                {flash}
                {read_only}
                <main id="main">{content}</main>
            </div>
        </div>
    }
}

/// Asks before a destructive action when the browser did not (JavaScript off): a form that posts
/// the same action again with `confirmed=yes`.
pub fn confirmation(
    viewer: &Viewer,
    question: &str,
    action: &str,
    confirm_label: &str,
    cancel: &str,
) -> impl IntoView + 'static {
    view! {
        <section class="panel">
            <h2>{question.to_string()}</h2>
            <form method="post" action=action.to_string()>
                {csrf_field(viewer)}
                <input type="hidden" name="confirmed" value="yes"/>
                <button type="submit" class="btn btn-danger">{confirm_label.to_string()}</button>
                " "<a class="btn btn-ghost" href=cancel.to_string()>"Cancel"</a>
            </form>
        </section>
    }
}
