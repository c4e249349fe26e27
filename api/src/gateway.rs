//! Gateway entities under `/api/v1/control-planes/{cp}/…`, with Kong Admin API conventions:
//! lookup by id or name, `PUT` as upsert, `?tags=`, the list envelope, nested paths
//! (`/services/{s}/routes`, `/upstreams/{u}/targets`, `/certificates/{c}/snis`). One generic
//! implementation serves every kind, sealing secret fields at rest and leaving them out of every
//! answer; the handlers are thin, typed doors for routing and the OpenAPI document.

pub mod certificates;
pub mod health;
pub mod upstreams;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::{json, Map, Value};
use tollgate_model::entity::{build, tags_match, Build, Entity};
use tollgate_model::secret::{is_sealed, MasterKey};
use tollgate_model::{Certificate, Route, Service, Sni, Target, Upstream, ValidationError};
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::{find_control_plane, ConfigWrite};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;
use crate::store::entities;

/// What deleting a referenced entity does to the entities that reference it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDelete {
    /// The delete is refused while any reference remains (Kong: routes keep their service).
    Refuse,
    /// They are deleted with it (Kong: an upstream's targets, a certificate's SNIs).
    Cascade,
}

/// `kind.field → target`: which field of which kind holds a reference to which kind.
struct Reference {
    kind: &'static str,
    field: &'static str,
    target: &'static str,
    /// The referenced entity is the parent: the child's `parent_id` and its nested path
    /// (`/upstreams/{u}/targets`).
    parent: bool,
    on_delete: OnDelete,
}

const REFERENCES: &[Reference] = &[
    Reference {
        kind: "routes",
        field: "service",
        target: "services",
        parent: true,
        on_delete: OnDelete::Refuse,
    },
    Reference {
        kind: "targets",
        field: "upstream",
        target: "upstreams",
        parent: true,
        on_delete: OnDelete::Cascade,
    },
    Reference {
        kind: "snis",
        field: "certificate",
        target: "certificates",
        parent: true,
        on_delete: OnDelete::Cascade,
    },
    Reference {
        kind: "services",
        field: "client_certificate",
        target: "certificates",
        parent: false,
        on_delete: OnDelete::Refuse,
    },
    Reference {
        kind: "upstreams",
        field: "client_certificate",
        target: "certificates",
        parent: false,
        on_delete: OnDelete::Refuse,
    },
];

/// What the API adds to a model entity: how a path segment addresses it, and checks that need
/// more than the model has (a certificate's key must belong to it).
pub(crate) trait Kind: Entity {
    /// The field a path segment may name instead of the id: `name`, or a target's `host:port`.
    /// `None`: by id only.
    const PATH_KEY: Option<&'static str> = Some("name");

    fn check_more(&self, _errors: &mut ValidationError) {}
}

impl Kind for Service {}
impl Kind for Route {}
impl Kind for Upstream {}
impl Kind for Sni {}

impl Kind for Target {
    const PATH_KEY: Option<&'static str> = Some("target");
}

impl Kind for Certificate {
    const PATH_KEY: Option<&'static str> = None;

    fn check_more(&self, errors: &mut ValidationError) {
        certificates::check_key_matches("cert", &self.cert, "key", &self.key, errors);
        if let (Some(cert), Some(key)) = (&self.cert_alt, &self.key_alt) {
            certificates::check_key_matches("cert_alt", cert, "key_alt", key, errors);
        }
    }
}

/// Secret fields per kind, for documents that hold several kinds (snapshots).
const SECRET_FIELDS: &[(&str, &[&str])] = &[(Certificate::KIND, Certificate::SECRET_FIELDS)];

/// An entity as the API shows it: without its secret fields.
pub struct Shown<E>(pub E);

impl<E: Entity> IntoResponse for Shown<E> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.0) {
            Ok(mut value) => {
                strip_secrets(E::SECRET_FIELDS, &mut value);
                Json(value).into_response()
            }
            Err(e) => ApiError::internal(e).into_response(),
        }
    }
}

fn strip_secrets(fields: &[&str], value: &mut Value) {
    if let Some(object) = value.as_object_mut() {
        for field in fields {
            object.remove(*field);
        }
    }
}

/// Leaves the secret fields out of a stored snapshot body before it is shown.
pub fn strip_snapshot_secrets(snapshot: &mut Value) {
    for (kind, fields) in SECRET_FIELDS {
        if let Some(items) = snapshot.get_mut(*kind).and_then(Value::as_array_mut) {
            for item in items {
                strip_secrets(fields, item);
            }
        }
    }
}

/// The master key, for kinds with secret fields; writing them without one is refused.
fn sealing_key<E: Entity>(state: &AppState) -> ApiResult<Option<&MasterKey>> {
    if E::SECRET_FIELDS.is_empty() {
        return Ok(None);
    }
    match &state.settings.master_key {
        Some(key) => Ok(Some(key)),
        None => Err(ApiError::Unavailable(format!(
            "{} cannot be written: this server has no master key to encrypt their {} with; \
             start it with TOLLGATE_MASTER_KEY set to 64 hex digits (`openssl rand -hex 32`)",
            E::KIND,
            E::SECRET_FIELDS.join(" and "),
        ))),
    }
}

/// Seals the secret fields of `data` for control plane `cp`. A secret equal to what `previous`
/// holds keeps its sealed text, so an unrelated change does not re-encrypt it.
fn seal_secrets<E: Entity>(
    key: Option<&MasterKey>,
    cp: Uuid,
    data: &mut Value,
    previous: Option<&Value>,
) -> ApiResult<()> {
    for field in E::SECRET_FIELDS {
        let Some(Value::String(plain)) = data.get(*field) else {
            continue;
        };
        let key =
            key.ok_or_else(|| ApiError::internal(format!("no master key to seal {field}")))?;
        let kept = previous
            .and_then(|p| p.get(*field))
            .and_then(Value::as_str)
            .filter(|sealed| key.open(cp, sealed).is_ok_and(|p| &p == plain));
        let sealed = match kept {
            Some(sealed) => sealed.to_string(),
            None => key.seal(cp, plain).map_err(ApiError::internal)?,
        };
        data[*field] = Value::String(sealed);
    }
    Ok(())
}

/// Opens the sealed secret fields of stored `data`, so a PATCH validates and keeps plaintext.
fn open_secrets<E: Entity>(key: Option<&MasterKey>, cp: Uuid, data: &mut Value) -> ApiResult<()> {
    for field in E::SECRET_FIELDS {
        let Some(Value::String(sealed)) = data.get(*field) else {
            continue;
        };
        if !is_sealed(sealed) {
            continue;
        }
        let key =
            key.ok_or_else(|| ApiError::internal(format!("no master key to open {field}")))?;
        let plain = key.open(cp, sealed).map_err(|e| {
            ApiError::internal(format!(
                "stored {} {field} of control plane {cp}: {e} (was TOLLGATE_MASTER_KEY changed?)",
                E::SINGULAR
            ))
        })?;
        data[*field] = Value::String(plain);
    }
    Ok(())
}

/// Every entity of one kind in a control plane, oldest first, secrets as stored (sealed).
pub(crate) async fn all_of<E: Entity>(db: &impl ConnectionTrait, cp: Uuid) -> ApiResult<Vec<E>> {
    let rows = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(E::KIND))
        .order_by_asc(entities::Column::Id)
        .all(db)
        .await?;
    rows.iter()
        .map(|row| decode(row.data.clone(), row))
        .collect()
}

fn decode<E: Entity>(data: Value, row: &entities::Model) -> ApiResult<E> {
    serde_json::from_value(data)
        .map_err(|e| ApiError::internal(format!("stored {} {}: {e}", row.kind, row.id)))
}

/// A row by id or name (the name column), of any kind: what a reference or a parent path names.
async fn find_row(
    db: &impl ConnectionTrait,
    cp: Uuid,
    kind: &str,
    id_or_name: &str,
) -> ApiResult<Option<entities::Model>> {
    let query = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(kind));
    let query = match Uuid::parse_str(id_or_name) {
        Ok(id) => query.filter(entities::Column::Id.eq(id)),
        Err(_) => query.filter(entities::Column::Name.eq(id_or_name)),
    };
    Ok(query.one(db).await?)
}

/// `key` as the model stores it: a target's default port added, an SNI lowercased.
fn normalized_key<E: Entity>(field: &str, key: &str) -> String {
    let mut input = Map::from_iter([(field.to_string(), Value::String(key.to_string()))]);
    E::expand_input(&mut input, &mut ValidationError::new());
    match input.get(field) {
        Some(Value::String(normalized)) => normalized.clone(),
        _ => key.to_string(),
    }
}

/// The row a path segment names: its id, or its [`Kind::PATH_KEY`]; within `parent` when the
/// path is nested.
async fn find_item<E: Kind>(
    db: &impl ConnectionTrait,
    cp: Uuid,
    parent: Option<Uuid>,
    key: &str,
) -> ApiResult<Option<entities::Model>> {
    let mut query = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(E::KIND));
    if let Some(parent) = parent {
        query = query.filter(entities::Column::ParentId.eq(parent));
    }
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(query.filter(entities::Column::Id.eq(id)).one(db).await?);
    }
    match E::PATH_KEY {
        None => Ok(None),
        Some("name") => {
            let name = normalized_key::<E>("name", key);
            Ok(query
                .filter(entities::Column::Name.eq(name))
                .one(db)
                .await?)
        }
        Some(field) => {
            let wanted = normalized_key::<E>(field, key);
            let rows = query.order_by_asc(entities::Column::Id).all(db).await?;
            Ok(rows
                .into_iter()
                .find(|row| row.data.get(field).and_then(Value::as_str) == Some(wanted.as_str())))
        }
    }
}

/// The reference from `kind` to its parent.
fn parent_reference(kind: &str) -> ApiResult<&'static Reference> {
    REFERENCES
        .iter()
        .find(|r| r.kind == kind && r.parent)
        .ok_or_else(|| ApiError::internal(format!("{kind} have no parent kind")))
}

/// The parent a nested path names (`/upstreams/{u}/targets`): 404 when it is not there.
async fn find_parent(
    db: &impl ConnectionTrait,
    cp: Uuid,
    kind: &str,
    parent: Option<&str>,
) -> ApiResult<Option<(&'static Reference, Uuid)>> {
    let Some(parent) = parent else {
        return Ok(None);
    };
    let reference = parent_reference(kind)?;
    let row = find_row(db, cp, reference.target, parent)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Some((reference, row.id)))
}

/// Turns `{"service": {"name": "x"}}` into `{"service": {"id": "…"}}` and checks the target exists
/// in the same control plane.
async fn resolve_references(
    db: &impl ConnectionTrait,
    cp: Uuid,
    kind: &str,
    input: &mut Value,
) -> ApiResult<()> {
    let Some(object) = input.as_object_mut() else {
        return Ok(());
    };
    for reference in REFERENCES.iter().filter(|r| r.kind == kind) {
        let (field, target) = (reference.field, reference.target);
        let Some(given) = object.get(field) else {
            continue;
        };
        if given.is_null() {
            continue;
        }
        let key = match given {
            Value::Object(map) if map.len() == 1 => map
                .get("id")
                .or_else(|| map.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let Some(key) = key else {
            return Err(ApiError::field(
                field,
                format!("expected {{\"id\": \"…\"}} or {{\"name\": \"…\"}} of a {target} entity"),
            ));
        };
        let row = find_row(db, cp, target, &key).await?.ok_or_else(|| {
            ApiError::foreign_key(
                field,
                format!("does not reference an existing '{target}' entity: '{key}'"),
            )
        })?;
        object.insert(field.to_string(), json!({ "id": row.id }));
    }
    Ok(())
}

/// Pins a nested create or update to its parent: `/upstreams/{u}/targets` sets `upstream`.
fn pin_parent(input: &mut Value, nest: Option<(&Reference, Uuid)>) -> ApiResult<()> {
    let (Some(object), Some((reference, parent))) = (input.as_object_mut(), nest) else {
        return Ok(());
    };
    let field = reference.field;
    match object.get(field) {
        None | Some(Value::Null) => {
            object.insert(field.into(), json!({ "id": parent }));
            Ok(())
        }
        Some(given) if given == &json!({ "id": parent }) => Ok(()),
        Some(_) => Err(ApiError::field(
            field,
            format!("conflicts with the {field} in the path"),
        )),
    }
}

/// The model's validation, then the API's own checks.
fn validate<E: Kind>(built: Result<E, ValidationError>) -> ApiResult<E> {
    let entity = built?;
    let mut errors = ValidationError::new();
    entity.check_more(&mut errors);
    if let Ok(Value::Object(data)) = serde_json::to_value(&entity) {
        for field in E::SECRET_FIELDS {
            // The model skips checking sealed text (it was checked when written), so sealed text
            // from a client would bypass validation.
            if data
                .get(*field)
                .and_then(Value::as_str)
                .is_some_and(is_sealed)
            {
                errors.add(*field, "expected PEM text; sealed values cannot be written");
            }
        }
    }
    errors.into_result()?;
    Ok(entity)
}

/// Writes `entity` as new (no `previous` row) or over `previous`, refusing a name or key another
/// entity holds.
async fn save<E: Kind>(
    write: &ConfigWrite,
    key: Option<&MasterKey>,
    entity: &E,
    previous: Option<&entities::Model>,
) -> ApiResult<()> {
    let cp = &write.control_plane;
    if let Some(name) = entity.name() {
        let holder = find_row(&write.txn, cp.id, E::KIND, name).await?;
        if holder.is_some_and(|h| h.id != entity.id()) {
            return Err(ApiError::unique(
                "name",
                format!("a {} named '{name}' already exists", E::SINGULAR),
            ));
        }
    }
    let mut data = serde_json::to_value(entity).map_err(ApiError::internal)?;
    if let (Some(field), Some(parent)) = (E::PATH_KEY.filter(|f| *f != "name"), entity.parent()) {
        // A key other than the name is unique within the parent (a target per upstream).
        if let Some(value) = data.get(field).and_then(Value::as_str) {
            let holder = find_item::<E>(&write.txn, cp.id, Some(parent), value).await?;
            if holder.is_some_and(|h| h.id != entity.id()) {
                let owner = parent_reference(E::KIND)?.field;
                return Err(ApiError::conflict(
                    field,
                    format!("this {owner} already has a {} '{value}'", E::SINGULAR),
                ));
            }
        }
    }
    if previous.is_none() {
        // An id in use by another control plane (ids can be given on create) is refused plainly.
        if entities::Entity::find_by_id(entity.id())
            .one(&write.txn)
            .await?
            .is_some()
        {
            return Err(ApiError::unique(
                "id",
                "an entity with this id already exists",
            ));
        }
    }
    seal_secrets::<E>(key, cp.id, &mut data, previous.map(|p| &p.data))?;
    let row = entities::ActiveModel {
        id: Set(entity.id()),
        organization_id: Set(cp.organization_id),
        control_plane_id: Set(cp.id),
        kind: Set(E::KIND.to_string()),
        name: Set(entity.name().map(str::to_string)),
        parent_id: Set(entity.parent()),
        data: Set(data),
    };
    if previous.is_none() {
        row.insert(&write.txn).await?;
    } else {
        row.update(&write.txn).await?;
    }
    Ok(())
}

fn label<E: Kind>(entity: &E) -> String {
    let key = E::PATH_KEY.filter(|f| *f != "name").and_then(|field| {
        serde_json::to_value(entity)
            .ok()?
            .get(field)?
            .as_str()
            .map(String::from)
    });
    match entity.name().map(str::to_string).or(key) {
        Some(name) => format!("{} {name}", E::SINGULAR),
        None => format!("{} {}", E::SINGULAR, entity.id()),
    }
}

async fn list_entities<E: Kind>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    parent: Option<&str>,
    page: PageQuery,
) -> ApiResult<Page<Value>> {
    let cp = find_control_plane(&state.db, auth.organization_id, cp).await?;
    let mut query = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp.id))
        .filter(entities::Column::Kind.eq(E::KIND));
    let mut path = format!("/api/v1/control-planes/{}/{}", cp.id, E::KIND);
    if let Some((reference, parent)) = find_parent(&state.db, cp.id, E::KIND, parent).await? {
        query = query.filter(entities::Column::ParentId.eq(parent));
        path = format!(
            "/api/v1/control-planes/{}/{}/{parent}/{}",
            cp.id,
            reference.target,
            E::KIND
        );
    }
    let rows = query
        .order_by_asc(entities::Column::Id)
        .all(&state.db)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let entity: E = decode(row.data.clone(), &row)?;
        if page
            .tags
            .as_deref()
            .is_none_or(|filter| tags_match(entity.tags(), filter))
        {
            let mut shown = row.data;
            strip_secrets(E::SECRET_FIELDS, &mut shown);
            items.push(shown);
        }
    }
    page.paginate(items, &path)
}

pub(crate) async fn create_entity<E: Kind>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    parent: Option<&str>,
    mut input: Value,
) -> ApiResult<(StatusCode, Shown<E>)> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let key = sealing_key::<E>(state)?;
    let cp_id = write.control_plane.id;
    let nest = find_parent(&write.txn, cp_id, E::KIND, parent).await?;
    pin_parent(&mut input, nest)?;
    resolve_references(&write.txn, cp_id, E::KIND, &mut input).await?;
    let entity: E = validate(build(
        Build::Create { id: Uuid::now_v7() },
        &input,
        Utc::now().timestamp(),
    ))?;
    save(&write, key, &entity, None).await?;
    write
        .commit(state, &auth.actor(), &format!("create {}", label(&entity)))
        .await?;
    Ok((StatusCode::CREATED, Shown(entity)))
}

pub(crate) async fn get_entity<E: Kind>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    parent: Option<&str>,
    key: &str,
) -> ApiResult<Shown<E>> {
    let cp = find_control_plane(&state.db, auth.organization_id, cp).await?;
    let nest = find_parent(&state.db, cp.id, E::KIND, parent).await?;
    let row = find_item::<E>(&state.db, cp.id, nest.map(|(_, id)| id), key)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Shown(decode(row.data.clone(), &row)?))
}

/// The stored row a write replaces, decoded with its secrets opened.
async fn find_for_write<E: Kind>(
    write: &ConfigWrite,
    key: Option<&MasterKey>,
    parent: Option<Uuid>,
    path_key: &str,
) -> ApiResult<Option<(entities::Model, E)>> {
    let cp = write.control_plane.id;
    let Some(row) = find_item::<E>(&write.txn, cp, parent, path_key).await? else {
        return Ok(None);
    };
    let mut data = row.data.clone();
    open_secrets::<E>(key, cp, &mut data)?;
    let entity = decode(data, &row)?;
    Ok(Some((row, entity)))
}

pub(crate) async fn update_entity<E: Kind>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    parent: Option<&str>,
    path_key: &str,
    mut input: Value,
) -> ApiResult<Shown<E>> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let key = sealing_key::<E>(state)?;
    let cp_id = write.control_plane.id;
    let nest = find_parent(&write.txn, cp_id, E::KIND, parent).await?;
    let (row, existing) = find_for_write::<E>(&write, key, nest.map(|(_, id)| id), path_key)
        .await?
        .ok_or(ApiError::NotFound)?;
    pin_parent(&mut input, nest)?;
    resolve_references(&write.txn, cp_id, E::KIND, &mut input).await?;
    let entity: E = validate(build(
        Build::Update {
            existing: &existing,
        },
        &input,
        Utc::now().timestamp(),
    ))?;
    save(&write, key, &entity, Some(&row)).await?;
    write
        .commit(state, &auth.actor(), &format!("update {}", label(&entity)))
        .await?;
    Ok(Shown(entity))
}

pub(crate) async fn upsert_entity<E: Kind>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    parent: Option<&str>,
    path_key: &str,
    mut input: Value,
) -> ApiResult<Shown<E>> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let key = sealing_key::<E>(state)?;
    let cp_id = write.control_plane.id;
    let nest = find_parent(&write.txn, cp_id, E::KIND, parent).await?;
    let existing = find_for_write::<E>(&write, key, nest.map(|(_, id)| id), path_key).await?;
    let path_id = Uuid::parse_str(path_key).ok();
    if path_id.is_none() {
        // `PUT /upstreams/{name}` names the upstream it creates or replaces.
        let field = E::PATH_KEY.ok_or(ApiError::NotFound)?;
        let wanted = normalized_key::<E>(field, path_key);
        if let Some(object) = input.as_object_mut() {
            match object.get(field) {
                None | Some(Value::Null) => {
                    object.insert(field.into(), Value::String(path_key.to_string()));
                }
                Some(Value::String(given)) if normalized_key::<E>(field, given) == wanted => {}
                Some(_) => {
                    return Err(ApiError::field(
                        field,
                        format!("conflicts with the {field} in the path"),
                    ))
                }
            }
        }
    }
    pin_parent(&mut input, nest)?;
    resolve_references(&write.txn, cp_id, E::KIND, &mut input).await?;
    let now = Utc::now().timestamp();
    let entity: E = match &existing {
        Some((_, existing)) => validate(build(Build::Replace { existing }, &input, now))?,
        None => {
            let id = path_id.unwrap_or_else(Uuid::now_v7);
            if let (Some(path_id), Some(given)) = (path_id, input.get("id")) {
                if given.as_str() != Some(path_id.to_string().as_str()) {
                    return Err(ApiError::field("id", "conflicts with the id in the path"));
                }
            }
            validate(build(Build::Create { id }, &input, now))?
        }
    };
    save(&write, key, &entity, existing.as_ref().map(|(row, _)| row)).await?;
    let verb = if existing.is_none() {
        "create"
    } else {
        "replace"
    };
    write
        .commit(state, &auth.actor(), &format!("{verb} {}", label(&entity)))
        .await?;
    Ok(Shown(entity))
}

/// The rows of `reference.kind` that reference entity `id`.
async fn referrers(
    db: &impl ConnectionTrait,
    cp: Uuid,
    reference: &Reference,
    id: Uuid,
) -> ApiResult<Vec<entities::Model>> {
    let mut query = entities::Entity::find()
        .filter(entities::Column::ControlPlaneId.eq(cp))
        .filter(entities::Column::Kind.eq(reference.kind));
    if reference.parent {
        query = query.filter(entities::Column::ParentId.eq(id));
    }
    let rows = query.all(db).await?;
    let id = id.to_string();
    Ok(rows
        .into_iter()
        .filter(|row| {
            row.data
                .get(reference.field)
                .and_then(|r| r.get("id"))
                .and_then(Value::as_str)
                == Some(id.as_str())
        })
        .collect())
}

/// Deletes an entity: refused while a `Refuse` reference to it remains, and taking its
/// `Cascade` children with it.
pub(crate) async fn delete_entity<E: Kind>(
    state: &AppState,
    auth: &Auth,
    cp: &str,
    parent: Option<&str>,
    path_key: &str,
) -> ApiResult<StatusCode> {
    let write = ConfigWrite::begin(state, auth, cp).await?;
    let cp_id = write.control_plane.id;
    let nest = find_parent(&write.txn, cp_id, E::KIND, parent).await?;
    let row = find_item::<E>(&write.txn, cp_id, nest.map(|(_, id)| id), path_key)
        .await?
        .ok_or(ApiError::NotFound)?;
    let entity: E = decode(row.data.clone(), &row)?;
    let mut cascaded = Vec::new();
    for reference in REFERENCES.iter().filter(|r| r.target == E::KIND) {
        let children = referrers(&write.txn, cp_id, reference, entity.id()).await?;
        if children.is_empty() {
            continue;
        }
        let (child_kind, count) = (reference.kind, children.len());
        match reference.on_delete {
            OnDelete::Refuse => {
                return Err(ApiError::field(
                    "@entity",
                    format!(
                        "an existing '{child_kind}' entity references this '{}' entity; delete or move its {count} {child_kind} first",
                        E::KIND
                    ),
                ))
            }
            OnDelete::Cascade => {
                cascaded.push(format!("{count} {child_kind}"));
                entities::Entity::delete_many()
                    .filter(entities::Column::Id.is_in(children.iter().map(|c| c.id)))
                    .exec(&write.txn)
                    .await?;
            }
        }
    }
    entities::Entity::delete_by_id(entity.id())
        .exec(&write.txn)
        .await?;
    let mut summary = format!("delete {}", label(&entity));
    if !cascaded.is_empty() {
        summary.push_str(&format!(" with its {}", cascaded.join(" and ")));
    }
    write.commit(state, &auth.actor(), &summary).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- typed handlers -------------------------------------------------------------------------

type CpPath = Path<String>;
type CpItemPath = Path<(String, String)>;

/// List services.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/services", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Service], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_services(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Service>(&s, &auth, &cp, None, q).await?,
    ))
}

/// Create a service. `url` is shorthand for protocol, host, port and path.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/services", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Service,
    responses((status = 201, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_service(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Service>(&s, &auth, &cp, None, input).await
}

/// One service, by id or name.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    responses((status = 200, body = Service), (status = 404, body = ErrorBody)))]
pub async fn get_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Shown<Service>> {
    get_entity(&s, &auth, &cp, None, &id).await
}

/// Change some fields of a service.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    request_body = Service,
    responses((status = 200, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Service>> {
    update_entity(&s, &auth, &cp, None, &id, input).await
}

/// Create or replace a service by id or name.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    request_body = Service,
    responses((status = 200, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Service>> {
    upsert_entity(&s, &auth, &cp, None, &id, input).await
}

/// Delete a service that no route uses.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/services/{service}", tag = "services",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody, description = "Routes still use it"), (status = 404, body = ErrorBody)))]
pub async fn delete_service(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Service>(&s, &auth, &cp, None, &id).await
}

/// List routes.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), PageQuery),
    responses((status = 200, description = "`{data: [Route], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_routes(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(list_entities::<Route>(&s, &auth, &cp, None, q).await?))
}

/// Create a route; `service` is `{"id": …}` or `{"name": …}`.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug")),
    request_body = Route,
    responses((status = 201, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_route(
    State(s): State<AppState>,
    auth: Auth,
    Path(cp): CpPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Route>(&s, &auth, &cp, None, input).await
}

/// One route, by id or name.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    responses((status = 200, body = Route), (status = 404, body = ErrorBody)))]
pub async fn get_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<Shown<Route>> {
    get_entity(&s, &auth, &cp, None, &id).await
}

/// Change some fields of a route.
#[utoipa::path(patch, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    request_body = Route,
    responses((status = 200, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Route>> {
    update_entity(&s, &auth, &cp, None, &id, input).await
}

/// Create or replace a route by id or name.
#[utoipa::path(put, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    request_body = Route,
    responses((status = 200, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn upsert_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<Shown<Route>> {
    upsert_entity(&s, &auth, &cp, None, &id, input).await
}

/// Delete a route.
#[utoipa::path(delete, path = "/api/v1/control-planes/{cp}/routes/{route}", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("route" = String, Path, description = "Route id or name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, id)): CpItemPath,
) -> ApiResult<StatusCode> {
    delete_entity::<Route>(&s, &auth, &cp, None, &id).await
}

/// List the routes of one service.
#[utoipa::path(get, path = "/api/v1/control-planes/{cp}/services/{service}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name"), PageQuery),
    responses((status = 200, description = "`{data: [Route], next, offset}`"), (status = 404, body = ErrorBody)))]
pub async fn list_service_routes(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, service)): CpItemPath,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<Value>>> {
    Ok(Json(
        list_entities::<Route>(&s, &auth, &cp, Some(&service), q).await?,
    ))
}

/// Create a route of this service.
#[utoipa::path(post, path = "/api/v1/control-planes/{cp}/services/{service}/routes", tag = "routes",
    params(("cp" = String, Path, description = "Control plane id or slug"), ("service" = String, Path, description = "Service id or name")),
    request_body = Route,
    responses((status = 201, body = Route), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_service_route(
    State(s): State<AppState>,
    auth: Auth,
    Path((cp, service)): CpItemPath,
    JsonBody(input): JsonBody<Value>,
) -> ApiResult<impl IntoResponse> {
    create_entity::<Route>(&s, &auth, &cp, Some(&service), input).await
}
