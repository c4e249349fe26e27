//! How a gateway entity is built from JSON input: POST starts from the defaults, PATCH from the
//! stored entity, PUT from the defaults again (a replacement). Unknown fields, type errors and
//! semantic problems are all reported by field name.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ValidationError;

/// A reference to another entity, as Kong writes it: `{"id": "…"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForeignKey {
    pub id: Uuid,
}

/// What every gateway entity provides to [`build`].
pub trait Entity: Serialize + DeserializeOwned {
    /// The plural name used in paths and the declarative file: `services`, `routes`.
    const KIND: &'static str;
    /// The singular name used in messages: `service`, `route`.
    const SINGULAR: &'static str;
    /// Field names the input may carry.
    const FIELDS: &'static [&'static str];
    /// Fields sealed at rest and never returned by the API (a certificate's private key).
    const SECRET_FIELDS: &'static [&'static str] = &[];

    /// The defaults of a new entity, as a JSON object.
    fn defaults() -> Map<String, Value>;

    /// Rewrites shorthand input (a service's `url`) before it is merged.
    fn expand_input(_input: &mut Map<String, Value>, _errors: &mut ValidationError) {}

    /// Semantic checks on a fully typed entity.
    fn check(&self, errors: &mut ValidationError);

    fn id(&self) -> Uuid;
    fn name(&self) -> Option<&str>;
    fn tags(&self) -> &[String];
    /// The entity this one belongs to (a route's service), if any.
    fn parent(&self) -> Option<Uuid> {
        None
    }
}

/// The operation an input is applied with.
pub enum Build<'a, E> {
    /// POST and PUT-as-create: defaults, then the input.
    Create { id: Uuid },
    /// PUT on an existing entity: defaults, then the input, keeping id and `created_at`.
    Replace { existing: &'a E },
    /// PATCH: the stored entity, then the input.
    Update { existing: &'a E },
}

/// Applies JSON `input` as `op` and validates the result; `now` is unix seconds.
pub fn build<E: Entity>(op: Build<'_, E>, input: &Value, now: i64) -> Result<E, ValidationError> {
    let mut errors = ValidationError::new();
    let Some(input) = input.as_object() else {
        return Err(ValidationError::field("@body", "expected a JSON object"));
    };
    let mut input = input.clone();
    for key in input.keys() {
        if !E::FIELDS.contains(&key.as_str()) {
            errors.add(key.clone(), "unknown field");
        }
    }
    input.retain(|k, _| E::FIELDS.contains(&k.as_str()));
    E::expand_input(&mut input, &mut errors);

    let defaults = E::defaults();
    let (mut merged, id, created_at) = match op {
        Build::Create { id } => {
            let id = match input.get("id") {
                Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    Some(given) => given,
                    None => {
                        errors.add("id", "expected a valid UUID");
                        id
                    }
                },
                None => id,
            };
            (defaults.clone(), id, now)
        }
        Build::Replace { existing } => {
            let stored = to_object(existing);
            (defaults.clone(), id_of(&stored), created_of(&stored))
        }
        Build::Update { existing } => {
            let stored = to_object(existing);
            let (id, created) = (id_of(&stored), created_of(&stored));
            (stored, id, created)
        }
    };
    if let Some(given) = input.get("id") {
        if !matches!(given.as_str().map(Uuid::parse_str), Some(Ok(g)) if g == id) {
            errors.add("id", "cannot be changed");
        }
    }
    for (key, value) in input {
        if key == "id" || key == "created_at" || key == "updated_at" {
            continue;
        }
        let value = if value.is_null() {
            defaults.get(&key).cloned().unwrap_or(Value::Null)
        } else {
            value
        };
        merged.insert(key, value);
    }
    merged.insert("id".into(), Value::String(id.to_string()));
    merged.insert("created_at".into(), Value::from(created_at));
    merged.insert("updated_at".into(), Value::from(now));

    let entity: Option<E> = match serde_path_to_error::deserialize(Value::Object(merged)) {
        Ok(entity) => Some(entity),
        Err(e) => {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            if let Some(missing) = missing_field(&message) {
                errors.add(missing, "required field missing");
            } else {
                errors.add(path, message);
            }
            None
        }
    };
    match entity {
        Some(entity) => {
            entity.check(&mut errors);
            errors.into_result().map(|_| entity)
        }
        None => Err(errors),
    }
}

fn to_object<E: Serialize>(entity: &E) -> Map<String, Value> {
    match serde_json::to_value(entity) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn id_of(stored: &Map<String, Value>) -> Uuid {
    stored
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(Uuid::now_v7)
}

fn created_of(stored: &Map<String, Value>) -> i64 {
    stored
        .get("created_at")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Kong's rule for entity names: letters, digits, `.`, `-`, `_` and `~`, and not a UUID (names
/// share the URL segment with ids).
pub fn check_name(name: Option<&str>, errors: &mut ValidationError) {
    let Some(name) = name else { return };
    if name.is_empty() || name.len() > 128 {
        errors.add("name", "length must be between 1 and 128");
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~'))
    {
        errors.add(
            "name",
            "invalid value: may only contain letters, digits, '.', '-', '_' and '~'",
        );
    } else if Uuid::parse_str(name).is_ok() {
        errors.add("name", "must not be a UUID");
    }
}

/// Tags are printable ASCII without `,` or `/` (they are the separators of `?tags=`).
pub fn check_tags(tags: &[String], errors: &mut ValidationError) {
    for (i, tag) in tags.iter().enumerate() {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'/');
        if !ok {
            errors.add(
                format!("tags[{i}]"),
                "invalid tag: printable ASCII without ',' or '/', 1 to 128 characters",
            );
        }
    }
}

/// Checks that an integer lies within Kong's bounds for the field.
pub fn check_range(field: &str, value: i64, min: i64, max: i64, errors: &mut ValidationError) {
    if value < min || value > max {
        errors.add(field, format!("value should be between {min} and {max}"));
    }
}

/// Whether an entity's tags satisfy a Kong `?tags=` filter: `a,b` needs all, `a/b` needs any.
pub fn tags_match(tags: &[String], filter: &str) -> bool {
    if filter.contains('/') {
        filter.split('/').any(|t| tags.iter().any(|x| x == t))
    } else {
        filter.split(',').all(|t| tags.iter().any(|x| x == t))
    }
}
