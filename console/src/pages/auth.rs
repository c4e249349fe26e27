//! Log in, sign up.

use leptos::prelude::*;

use crate::forms::{error_summary, text_field, FormState};
use crate::shell::{render_document, Document};

fn card(title: &'static str, body: impl IntoView + 'static) -> impl IntoView + 'static {
    view! {
        <main id="main" class="auth">
            <p class="brand">"Tollgate"</p>
            <section class="card">
                <h1>{title}</h1>
                {body}
            </section>
        </main>
    }
}

/// The log-in form; `next` is where to go afterwards.
pub fn login_page(form: &FormState, next: &str, bundle: bool) -> String {
    let action = if next.is_empty() || next == "/" {
        "/login".to_string()
    } else {
        format!("/login?next={}", encode(next))
    };
    let body = view! {
        {error_summary(form, &["email", "password"])}
        <form method="post" action=action novalidate>
            {text_field(form, "email", "Email", "email", "")}
            {text_field(form, "password", "Password", "password", "")}
            <button type="submit" class="btn">"Log in"</button>
        </form>
        <p class="muted">"New to Tollgate? "<a href="/signup">"Create an account"</a></p>
    };
    render_document(
        &Document {
            title: "Log in".into(),
            bundle,
        },
        card("Log in", body),
    )
}

/// The sign-up form: an account and a new organization.
pub fn signup_page(form: &FormState, bundle: bool) -> String {
    let body = view! {
        {error_summary(form, &["email", "password", "organization"])}
        <form method="post" action="/signup" novalidate>
            {text_field(form, "email", "Work email", "email", "")}
            {text_field(form, "password", "Password", "password", "At least 10 characters.")}
            {text_field(form, "organization", "Organization", "text", "Your company or team; you can invite others later.")}
            <button type="submit" class="btn">"Create account"</button>
        </form>
        <p class="muted">"Already have an account? "<a href="/login">"Log in"</a></p>
    };
    render_document(
        &Document {
            title: "Sign up".into(),
            bundle,
        },
        card("Create your account", body),
    )
}

/// A page that only says something: not found, forbidden.
pub fn notice_page(title: &str, message: &str, bundle: bool) -> String {
    let body = view! {
        <main id="main" class="auth">
            <p class="brand">"Tollgate"</p>
            <section class="card">
                <h1>{title.to_string()}</h1>
                <p>{message.to_string()}</p>
                <p><a href="/">"Back to the console"</a></p>
            </section>
        </main>
    };
    render_document(
        &Document {
            title: title.to_string(),
            bundle,
        },
        body,
    )
}

/// Percent-encodes a value for a query string.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
