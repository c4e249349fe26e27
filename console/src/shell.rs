//! The HTML document every console page is wrapped in: head, stylesheet, theme, and the
//! hydration script when the islands bundle exists.

use leptos::config::LeptosOptions;
use leptos::hydration::HydrationScripts;
use leptos::prelude::*;

/// The console's own stylesheet, served at `/pkg/console.css` (nothing is fetched from elsewhere).
pub const STYLESHEET: &str = include_str!("style.css");

/// Output name of the wasm bundle: `/pkg/console.js` and `/pkg/console_bg.wasm`.
pub const BUNDLE_NAME: &str = "console";

/// What a page's document needs besides its body.
pub struct Document {
    pub title: String,
    /// Whether the islands bundle is being served (`/pkg/console.js`).
    pub bundle: bool,
}

// Applies a theme chosen earlier before the first paint, so a dark page never flashes light.
const THEME_SCRIPT: &str = "try{var t=localStorage.getItem('tollgate-theme');if(t)document.documentElement.setAttribute('data-theme',t)}catch(e){}";

fn leptos_options() -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(BUNDLE_NAME)
        .site_pkg_dir("pkg")
        .build()
}

/// Renders a whole HTML document around `body`.
pub fn render_document(document: &Document, body: impl IntoView + 'static) -> String {
    render_document_refreshing(document, None, body)
}

/// [`render_document`] that the browser reloads every `refresh_seconds` (a `<meta
/// http-equiv="refresh">`, so it works with JavaScript off too).
pub fn render_document_refreshing(
    document: &Document,
    refresh_seconds: Option<u32>,
    body: impl IntoView + 'static,
) -> String {
    let refresh =
        refresh_seconds.map(|s| view! { <meta http-equiv="refresh" content=s.to_string()/> });
    let title = format!("{} · Tollgate", document.title);
    let scripts = document
        .bundle
        .then(|| view! { <HydrationScripts options=leptos_options() islands=true/> });
    let html = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>{title}</title>
                {refresh}
                <script>{THEME_SCRIPT}</script>
                <link rel="stylesheet" href="/pkg/console.css"/>
                {scripts}
            </head>
            <body>{body}</body>
        </html>
    }
    .to_html();
    format!("<!DOCTYPE html>{html}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_link_the_stylesheet_and_the_bundle_only_when_served() {
        let page = |bundle| {
            render_document(
                &Document {
                    title: "Test".into(),
                    bundle,
                },
                view! { <h1>"Hello"</h1> },
            )
        };
        let without = page(false);
        assert!(without.starts_with("<!DOCTYPE html>"), "{without}");
        assert!(
            without.contains("<title>Test · Tollgate</title>"),
            "{without}"
        );
        assert!(without.contains("/pkg/console.css") && without.contains("<h1>Hello</h1>"));
        assert!(
            !without.contains("console.js"),
            "no bundle, no script: {without}"
        );
        let with = page(true);
        assert!(
            with.contains("/pkg/console.js") && with.contains("/pkg/console.css"),
            "{with}"
        );
    }
}
