//! Form controls that show the API's field errors beside the field they name.

use std::collections::BTreeMap;

use leptos::prelude::*;

/// Values typed into a form and the errors the server found, keyed by field name.
#[derive(Debug, Clone, Default)]
pub struct FormState {
    pub values: BTreeMap<String, String>,
    /// API field paths (`paths[0]`, `@entity`) → message.
    pub errors: BTreeMap<String, String>,
    pub message: Option<String>,
}

impl FormState {
    pub fn value(&self, name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// Every error whose path starts at `field` (`paths` collects `paths[2]` too).
    pub fn error(&self, field: &str) -> Option<String> {
        let found: Vec<String> = self
            .errors
            .iter()
            .filter(|(k, _)| {
                k.as_str() == field
                    || k.strip_prefix(field)
                        .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
            })
            .map(|(k, v)| {
                let rest = &k[field.len()..];
                // `paths[2]` is the third line of a one-per-line field.
                match rest
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) => format!("line {}: {v}", n + 1),
                    None if rest.is_empty() => v.clone(),
                    None => format!("{}: {v}", rest.trim_start_matches('.')),
                }
            })
            .collect();
        (!found.is_empty()).then(|| found.join("; "))
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.message.is_some()
    }

    /// Errors for fields the form does not show (like `@entity`), shown above it.
    pub fn general_errors(&self, shown: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = self.message.iter().cloned().collect();
        for (k, v) in &self.errors {
            let base = k.split(['[', '.']).next().unwrap_or(k);
            if !shown.contains(&base) {
                out.push(if k.starts_with('@') {
                    v.clone()
                } else {
                    format!("{k}: {v}")
                });
            }
        }
        out
    }
}

/// The error summary at the top of a form.
pub fn error_summary(form: &FormState, shown: &[&str]) -> impl IntoView {
    let errors = form.general_errors(shown);
    let any = form.has_errors();
    any.then(|| {
        view! {
            <div class="form-errors" role="alert">
                <p>"Please correct the highlighted fields."</p>
                <ul>{errors.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}</ul>
            </div>
        }
    })
}

fn described(name: &str) -> String {
    format!("{name}-error")
}

fn error_line(form: &FormState, name: &str) -> impl IntoView {
    form.error(name)
        .map(|e| view! { <p class="field-error" id=described(name)>{e}</p> })
}

/// A labelled one-line input.
pub fn text_field(
    form: &FormState,
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    hint: &'static str,
) -> impl IntoView {
    let invalid = form.error(name).is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=name>{label}</label>
            <input id=name name=name type=kind value=form.value(name)
                aria-invalid=invalid.then_some("true")
                aria-describedby=invalid.then(|| described(name))/>
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            {error_line(form, name)}
        </div>
    }
}

/// A labelled multi-line input (lists: one item per line).
pub fn textarea_field(
    form: &FormState,
    name: &'static str,
    label: &'static str,
    hint: &'static str,
) -> impl IntoView {
    let invalid = form.error(name).is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=name>{label}</label>
            <textarea id=name name=name rows="3"
                aria-invalid=invalid.then_some("true")
                aria-describedby=invalid.then(|| described(name))>{form.value(name)}</textarea>
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            {error_line(form, name)}
        </div>
    }
}

/// A labelled multi-line input for JSON (or other code), in a monospace font.
pub fn code_field(
    form: &FormState,
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    rows: u32,
) -> impl IntoView {
    let invalid = form.error(name).is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=name>{label}</label>
            <textarea id=name name=name rows=rows.to_string() class="code" spellcheck="false"
                aria-invalid=invalid.then_some("true")
                aria-describedby=invalid.then(|| described(name))>{form.value(name)}</textarea>
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            {error_line(form, name)}
        </div>
    }
}

/// A labelled checkbox; `checked_by_default` applies when the form is fresh.
pub fn checkbox_field(
    form: &FormState,
    name: &'static str,
    label: &'static str,
    checked_by_default: bool,
) -> impl IntoView {
    let checked = match form.values.get(name) {
        Some(v) => v == "on" || v == "true",
        None => checked_by_default && form.values.is_empty(),
    };
    view! {
        <div class="field field-check">
            <input id=name name=name type="checkbox" checked=checked/>
            <label for=name>{label}</label>
            {error_line(form, name)}
        </div>
    }
}

/// A labelled select of `(value, label)` options.
pub fn select_field(
    form: &FormState,
    name: &'static str,
    label: &'static str,
    options: Vec<(String, String)>,
    default: &str,
) -> impl IntoView {
    let current = form
        .values
        .get(name)
        .cloned()
        .unwrap_or_else(|| default.to_string());
    let invalid = form.error(name).is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=name>{label}</label>
            <select id=name name=name aria-invalid=invalid.then_some("true")>
                {options.into_iter().map(|(value, text)| {
                    let selected = value == current;
                    view! { <option value=value selected=selected>{text}</option> }
                }).collect_view()}
            </select>
            {error_line(form, name)}
        </div>
    }
}
