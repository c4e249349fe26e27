//! The Tollgate web console. Pages are rendered on the server with Leptos and work with
//! JavaScript off: forms are plain HTML that post and redirect. Islands (copy buttons,
//! confirmations, the theme switch) are hydrated by a small wasm bundle when it has been built
//! (`scripts/build-console`); without it the console serves the same pages, minus those niceties.

pub mod islands;

#[cfg(feature = "ssr")]
pub mod charts;
#[cfg(feature = "ssr")]
pub mod forms;
#[cfg(feature = "ssr")]
pub mod layout;
#[cfg(feature = "ssr")]
pub mod pages;
#[cfg(feature = "ssr")]
pub mod shell;

/// Entry point of the wasm bundle: hydrates the islands on the page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
    // The loader hydrates each island right after this returns, in the same task; the mark
    // tells tests (and curious people) that the page is interactive.
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = root.set_attribute("data-hydrated", "");
    }
}
