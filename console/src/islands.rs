//! The interactive bits of the console. Each renders useful HTML on the server and gains its
//! behaviour when the wasm bundle hydrates it.

use leptos::prelude::*;

/// A button that copies `text` to the clipboard. Without JavaScript the text stays selectable
/// beside it.
#[island]
pub fn CopyButton(text: String, #[prop(optional)] label: Option<String>) -> impl IntoView {
    let copied = RwSignal::new(false);
    let label = label.unwrap_or_else(|| "Copy".to_string());
    let on_click = move |_| {
        #[cfg(feature = "hydrate")]
        {
            if let Some(window) = web_sys::window() {
                let _ = window.navigator().clipboard().write_text(&text);
                copied.set(true);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
    };
    view! {
        <button type="button" class="btn btn-small copy" data-copy=true on:click=on_click>
            {move || if copied.get() { "Copied".to_string() } else { label.clone() }}
        </button>
    }
}

/// A submit button that asks first. Without JavaScript it posts without `confirmed=yes` and the
/// server answers with a confirmation page, so nothing destructive happens in one click either
/// way; with JavaScript the browser asks and the button then carries `confirmed=yes`.
#[island]
pub fn ConfirmSubmit(label: String, question: String) -> impl IntoView {
    let on_click = move |ev: leptos::ev::MouseEvent| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            let confirmed = web_sys::window()
                .and_then(|w| w.confirm_with_message(&question).ok())
                .unwrap_or(false);
            if !confirmed {
                ev.prevent_default();
                return;
            }
            // The submitter's name and value are read when the form is submitted, after this.
            if let Some(button) = ev
                .current_target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            {
                let _ = button.set_attribute("name", "confirmed");
                let _ = button.set_attribute("value", "yes");
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&ev, &question);
    };
    view! {
        <button type="submit" class="btn btn-danger" on:click=on_click>
            {label}
        </button>
    }
}

/// Switches between light and dark; the choice is kept in local storage. Without JavaScript the
/// console follows the system setting.
#[island]
pub fn ThemeToggle() -> impl IntoView {
    let on_click = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let Some(window) = web_sys::window() else {
                return;
            };
            let Some(root) = window.document().and_then(|d| d.document_element()) else {
                return;
            };
            let dark = root.get_attribute("data-theme").as_deref() == Some("dark")
                || (root.get_attribute("data-theme").is_none()
                    && window
                        .match_media("(prefers-color-scheme: dark)")
                        .ok()
                        .flatten()
                        .is_some_and(|m| m.matches()));
            let next = if dark { "light" } else { "dark" };
            let _ = root.set_attribute("data-theme", next);
            if let Ok(Some(storage)) = window.local_storage() {
                let _ = storage.set_item("tollgate-theme", next);
            }
        }
    };
    view! {
        <button type="button" class="btn btn-ghost theme-toggle" aria-label="Switch light or dark theme" on:click=on_click>
            "◐"
        </button>
    }
}
