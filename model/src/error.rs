//! Validation errors that name the offending field, e.g. `routes[2].paths[0]`.

use std::collections::BTreeMap;

/// Every problem found in one input, keyed by the field's path.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("schema violation ({})", self.summary())]
pub struct ValidationError {
    pub fields: BTreeMap<String, String>,
}

impl ValidationError {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(name: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(name, message);
        e
    }

    /// Records a problem; the first message for a field wins.
    pub fn add(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.fields
            .entry(name.into())
            .or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    pub fn summary(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
