//! The Tollgate web console (Leptos, server-side rendered). Until the console issue lands it is
//! one page that says where things are; the API and CLI are fully usable meanwhile.

use leptos::prelude::*;

#[component]
fn Placeholder() -> impl IntoView {
    view! {
        <main class="placeholder">
            <h1>"Tollgate"</h1>
            <p>"The web console is being built. Meanwhile everything works through the API:"</p>
            <ul>
                <li><a href="/api/v1/openapi.json">"OpenAPI document"</a>" — every endpoint"</li>
                <li>"Sign up: "<code>"POST /api/v1/signup"</code></li>
                <li>"Control planes: "<code>"/api/v1/control-planes"</code></li>
            </ul>
        </main>
    }
}

/// The HTML of the placeholder page.
pub fn placeholder_page() -> String {
    let body = Placeholder().to_html();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Tollgate</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:0;background:#f7f8fa;color:#1d2330}\
.placeholder{max-width:40rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;\
box-shadow:0 1px 3px rgba(0,0,0,.1)}code{background:#eef0f4;padding:0 .3em;border-radius:3px}\
@media (prefers-color-scheme: dark){body{background:#14171d;color:#e4e7ee}\
.placeholder{background:#1d2129}code{background:#2a2f3a}a{color:#8fb4ff}}";

#[cfg(test)]
mod tests {
    #[test]
    fn placeholder_renders_a_full_page() {
        let html = super::placeholder_page();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<h1>Tollgate</h1>"), "{html}");
    }
}
