//! Queries on the metadata definitions catalog: `metadef_namespaces` and, per namespace,
//! `metadef_objects`, `metadef_properties`, `metadef_tags` and
//! `metadef_namespace_resource_types` (associations with the global `metadef_resource_types`).
//!
//! - Namespaces are found by name ([`get_namespace`]); their content by namespace id and
//!   name. Ids stay in this layer and the domain's `Namespace::id`.
//! - There is one write function per API operation (`create_*`, `update_*`, `delete_*`),
//!   the place notifications will hook into. A write that changes several rows runs in one
//!   transaction: a namespace with its content ([`create_namespace`]), a namespace deleted
//!   with its content ([`delete_namespace`]; the schema cascades too), tags replaced
//!   ([`create_tags`]), an association with the resource type it may create
//!   ([`create_association`]).
//! - A unique key violated (a namespace name, or a name within a namespace: object,
//!   property, tag, association) is [`Error::Duplicate`]; the API names what clashed.
//! - Lists with a sort order ([`list_namespaces`], [`list_tags`]) sort by the key, then
//!   `created_at` and `id`, all in one direction, and page by keyset after a marker row, as
//!   Glance's `paginate_query`; NULL sorts as the smallest value on every backend.
//! - Property definitions and an object's properties are stored as JSON text (Glance's
//!   `json_schema`), an object's `required` as comma-joined names (Glance's `required`).

mod load;
pub use load::{LoadOptions, LoadReport, STANDARD_RESOURCE_TYPES, Unloaded, load, to_file, unload};

use super::row::{from_micros, to_micros};
use super::{
    Backend, Db, Error, SortDir, Sql, SqlValue, int, int_required, is_unique_violation, text,
    text_required,
};
use crate::domain::metadef::{
    Association, AssociationFields, MetadefObject, Namespace, NamespaceDetail, NamespaceValues,
    NewNamespace, ObjectFields, Property, PropertyDef, ResourceType, Tag, join_required,
    split_required,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, HashMap};

fn duplicate(e: sqlx::Error) -> Error {
    if is_unique_violation(&e) {
        Error::Duplicate
    } else {
        Error::Sqlx(e)
    }
}

// === rows ===

fn namespace_from_row(row: &AnyRow) -> Result<Namespace, Error> {
    let visibility = text_required(row, "visibility")?;
    Ok(Namespace {
        id: int_required(row, "id")?,
        namespace: text_required(row, "namespace")?,
        display_name: text(row, "display_name")?,
        description: text(row, "description")?,
        visibility: visibility
            .parse()
            .map_err(|()| Error::Corrupt(format!("namespace visibility {visibility:?}")))?,
        protected: int_required(row, "protected")? != 0,
        owner: text(row, "owner")?,
        created_at: from_micros(int_required(row, "created_at")?)?,
        updated_at: from_micros(int_required(row, "updated_at")?)?,
    })
}

fn json_object(raw: &str, what: &str) -> Result<Map<String, Value>, Error> {
    match serde_json::from_str(raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Corrupt(format!("{what}: not a JSON object"))),
    }
}

fn defs_from_text(raw: &str) -> Result<BTreeMap<String, PropertyDef>, Error> {
    json_object(raw, "object json_schema")?
        .into_iter()
        .map(|(k, v)| match v {
            Value::Object(m) => Ok((k, PropertyDef::from_stored(m))),
            _ => Err(Error::Corrupt(format!("object property {k:?}"))),
        })
        .collect()
}

fn defs_to_text(defs: Option<&BTreeMap<String, PropertyDef>>) -> String {
    let m: Map<String, Value> = defs
        .into_iter()
        .flatten()
        .map(|(k, d)| (k.clone(), Value::Object(d.as_map().clone())))
        .collect();
    Value::Object(m).to_string()
}

fn object_from_row(row: &AnyRow) -> Result<MetadefObject, Error> {
    Ok(MetadefObject {
        name: text_required(row, "name")?,
        description: text(row, "description")?,
        required: Some(split_required(text(row, "required")?.as_deref())),
        properties: Some(defs_from_text(&text_required(row, "json_schema")?)?),
        created_at: from_micros(int_required(row, "created_at")?)?,
        updated_at: from_micros(int_required(row, "updated_at")?)?,
    })
}

fn property_from_row(row: &AnyRow) -> Result<Property, Error> {
    let name = text_required(row, "name")?;
    let def = json_object(&text_required(row, "json_schema")?, "property json_schema")?;
    Ok(Property {
        name,
        def: PropertyDef::from_stored(def),
    })
}

fn tag_from_row(row: &AnyRow) -> Result<Tag, Error> {
    Ok(Tag {
        name: text_required(row, "name")?,
        created_at: from_micros(int_required(row, "created_at")?)?,
        updated_at: from_micros(int_required(row, "updated_at")?)?,
    })
}

fn resource_type_from_row(row: &AnyRow) -> Result<ResourceType, Error> {
    Ok(ResourceType {
        name: text_required(row, "name")?,
        protected: int_required(row, "protected")? != 0,
        created_at: from_micros(int_required(row, "created_at")?)?,
        updated_at: int(row, "updated_at")?.map(from_micros).transpose()?,
    })
}

fn association_from_row(row: &AnyRow) -> Result<Association, Error> {
    Ok(Association {
        name: text_required(row, "name")?,
        prefix: text(row, "prefix")?,
        properties_target: text(row, "properties_target")?,
        created_at: from_micros(int_required(row, "created_at")?)?,
        updated_at: from_micros(int_required(row, "updated_at")?)?,
    })
}

// === keyset pagination ===

/// One sort column: its name, whether it may be NULL, and the marker row's value.
struct SortColumn {
    column: &'static str,
    nullable: bool,
    marker: SqlValue,
}

fn push_value(q: &mut Sql, v: &SqlValue) {
    match v {
        SqlValue::Null => {
            q.push("NULL");
        }
        SqlValue::Int(i) => {
            q.bind(*i);
        }
        SqlValue::Text(s) => {
            q.bind(s);
        }
    }
}

/// `AND ((k1 after m1) OR (k1 = m1 AND k2 after m2) OR …)`, NULL the smallest value.
fn push_after_marker(q: &mut Sql, keys: &[SortColumn], dir: SortDir) {
    q.push(" AND (");
    for i in 0..keys.len() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push("(");
        for k in &keys[..i] {
            match &k.marker {
                SqlValue::Null => {
                    q.push(k.column).push(" IS NULL AND ");
                }
                v => {
                    q.push(k.column).push(" = ");
                    push_value(q, v);
                    q.push(" AND ");
                }
            }
        }
        let k = &keys[i];
        match (dir, &k.marker) {
            (SortDir::Asc, SqlValue::Null) => {
                q.push(k.column).push(" IS NOT NULL");
            }
            (SortDir::Asc, v) => {
                q.push(k.column).push(" > ");
                push_value(q, v);
            }
            (SortDir::Desc, SqlValue::Null) => {
                q.push("1 = 0");
            }
            (SortDir::Desc, v) => {
                q.push("(").push(k.column).push(" < ");
                push_value(q, v);
                if k.nullable {
                    q.push(" OR ").push(k.column).push(" IS NULL");
                }
                q.push(")");
            }
        }
        q.push(")");
    }
    q.push(")");
}

fn push_order(q: &mut Sql, backend: Backend, keys: &[(&'static str, bool)], dir: SortDir) {
    q.push(" ORDER BY ");
    for (i, (column, nullable)) in keys.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(column).push(match dir {
            SortDir::Asc => " ASC",
            SortDir::Desc => " DESC",
        });
        if backend == Backend::Postgres && *nullable {
            q.push(match dir {
                SortDir::Asc => " NULLS FIRST",
                SortDir::Desc => " NULLS LAST",
            });
        }
    }
}

fn text_value(v: &Option<String>) -> SqlValue {
    v.clone().map(SqlValue::Text).unwrap_or(SqlValue::Null)
}

// === namespaces ===

/// A namespace by name, whoever may see it.
pub async fn get_namespace(db: &Db, name: &str) -> Result<Option<Namespace>, Error> {
    db.sql("SELECT * FROM metadef_namespaces WHERE namespace = ?")
        .arg(name)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .as_ref()
        .map(namespace_from_row)
        .transpose()
}

async fn namespace_in(db: &Db, conn: &mut AnyConnection, name: &str) -> Result<Namespace, Error> {
    let row = db
        .sql("SELECT * FROM metadef_namespaces WHERE namespace = ?")
        .arg(name)
        .query()
        .fetch_one(&mut *conn)
        .await?;
    namespace_from_row(&row)
}

/// The columns namespaces sort by (any of Glance's model columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceSort {
    /// `id` (which Glance sorts as `created_at`, `id`).
    Id,
    /// `namespace`.
    Namespace,
    /// `display_name`.
    DisplayName,
    /// `description`.
    Description,
    /// `visibility`.
    Visibility,
    /// `protected`.
    Protected,
    /// `owner`.
    Owner,
    /// `created_at` (the default).
    CreatedAt,
    /// `updated_at`.
    UpdatedAt,
}

impl NamespaceSort {
    /// Parses a `sort_key`.
    pub fn from_name(name: &str) -> Option<NamespaceSort> {
        Some(match name {
            "id" => NamespaceSort::Id,
            "namespace" => NamespaceSort::Namespace,
            "display_name" => NamespaceSort::DisplayName,
            "description" => NamespaceSort::Description,
            "visibility" => NamespaceSort::Visibility,
            "protected" => NamespaceSort::Protected,
            "owner" => NamespaceSort::Owner,
            "created_at" => NamespaceSort::CreatedAt,
            "updated_at" => NamespaceSort::UpdatedAt,
            _ => return None,
        })
    }

    fn column(self) -> (&'static str, bool) {
        match self {
            NamespaceSort::Id => ("id", false),
            NamespaceSort::Namespace => ("namespace", false),
            NamespaceSort::DisplayName => ("display_name", true),
            NamespaceSort::Description => ("description", true),
            NamespaceSort::Visibility => ("visibility", false),
            NamespaceSort::Protected => ("protected", false),
            NamespaceSort::Owner => ("owner", true),
            NamespaceSort::CreatedAt => ("created_at", false),
            NamespaceSort::UpdatedAt => ("updated_at", false),
        }
    }

    fn value_of(self, ns: &Namespace) -> SqlValue {
        match self {
            NamespaceSort::Id => SqlValue::Int(ns.id),
            NamespaceSort::Namespace => SqlValue::Text(ns.namespace.clone()),
            NamespaceSort::DisplayName => text_value(&ns.display_name),
            NamespaceSort::Description => text_value(&ns.description),
            NamespaceSort::Visibility => SqlValue::Text(ns.visibility.as_str().to_owned()),
            NamespaceSort::Protected => SqlValue::Int(i64::from(ns.protected)),
            NamespaceSort::Owner => text_value(&ns.owner),
            NamespaceSort::CreatedAt => SqlValue::Int(to_micros(ns.created_at)),
            NamespaceSort::UpdatedAt => SqlValue::Int(to_micros(ns.updated_at)),
        }
    }

    /// Glance's sort keys: the key, then `created_at` and `id` (just those two when the key
    /// is one of them).
    fn keys(self) -> Vec<NamespaceSort> {
        match self {
            NamespaceSort::CreatedAt | NamespaceSort::Id => {
                vec![NamespaceSort::CreatedAt, NamespaceSort::Id]
            }
            k => vec![k, NamespaceSort::CreatedAt, NamespaceSort::Id],
        }
    }
}

/// A namespace list request.
#[derive(Debug, Clone)]
pub struct NamespaceQuery<'a> {
    /// Administrators see every namespace.
    pub admin: bool,
    /// Others see public namespaces and their project's.
    pub project: Option<&'a str>,
    /// `visibility=` (matched exactly).
    pub visibility: Option<&'a str>,
    /// `resource_types=`: only namespaces associated with one of these.
    pub resource_types: Option<&'a [String]>,
    /// Sort key.
    pub sort_key: NamespaceSort,
    /// Sort direction (of every key).
    pub sort_dir: SortDir,
    /// Page size.
    pub limit: u32,
    /// Start after this namespace.
    pub marker: Option<&'a Namespace>,
}

/// One page of the namespaces `q` selects.
pub async fn list_namespaces(db: &Db, q: &NamespaceQuery<'_>) -> Result<Vec<Namespace>, Error> {
    let mut sql = db.sql("SELECT * FROM metadef_namespaces WHERE 1 = 1");
    if !q.admin {
        match q.project {
            Some(p) => {
                sql.push(" AND (visibility = 'public' OR owner = ")
                    .bind(p)
                    .push(")");
            }
            None => {
                sql.push(" AND visibility = 'public'");
            }
        }
    }
    if let Some(v) = q.visibility {
        sql.push(" AND visibility = ").bind(v);
    }
    if let Some(names) = q.resource_types {
        sql.push(
            " AND id IN (SELECT a.namespace_id FROM metadef_namespace_resource_types a \
             JOIN metadef_resource_types r ON r.id = a.resource_type_id WHERE r.name IN (",
        );
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(n);
        }
        if names.is_empty() {
            sql.push("NULL");
        }
        sql.push("))");
    }
    let keys = q.sort_key.keys();
    if let Some(m) = q.marker {
        let cols: Vec<SortColumn> = keys
            .iter()
            .map(|k| {
                let (column, nullable) = k.column();
                SortColumn {
                    column,
                    nullable,
                    marker: k.value_of(m),
                }
            })
            .collect();
        push_after_marker(&mut sql, &cols, q.sort_dir);
    }
    let cols: Vec<(&'static str, bool)> = keys.iter().map(|k| k.column()).collect();
    push_order(&mut sql, db.backend(), &cols, q.sort_dir);
    sql.push(" LIMIT ").bind(i64::from(q.limit));
    sql.query()
        .fetch_all(&mut *db.conn().await?)
        .await?
        .iter()
        .map(namespace_from_row)
        .collect()
}

async fn insert_namespace(
    db: &Db,
    conn: &mut AnyConnection,
    v: &NamespaceValues,
    now: i64,
) -> Result<(), Error> {
    db.sql(
        "INSERT INTO metadef_namespaces (namespace, display_name, description, visibility, \
         protected, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .arg(&v.namespace)
    .arg(&v.display_name)
    .arg(&v.description)
    .arg(v.visibility.as_str())
    .arg(v.protected)
    .arg(&v.owner)
    .arg(now)
    .arg(now)
    .query()
    .execute(&mut *conn)
    .await
    .map_err(duplicate)?;
    Ok(())
}

/// Creates a namespace with `v` and everything `new` embeds (associations, creating unknown
/// resource types; objects; tags; properties), in one transaction. A namespace of that name,
/// or two items of one kind with the same name, give [`Error::Duplicate`].
pub async fn create_namespace(
    db: &Db,
    v: &NamespaceValues,
    new: &NewNamespace,
    now: DateTime<Utc>,
) -> Result<Namespace, Error> {
    let now = to_micros(now);
    let mut tx = db.begin().await?;
    insert_namespace(db, &mut tx, v, now).await?;
    let ns = namespace_in(db, &mut tx, &v.namespace).await?;
    for a in new.associations.iter().flatten() {
        insert_association(db, &mut tx, ns.id, a, now).await?;
    }
    for o in new.objects.iter().flatten() {
        insert_object(db, &mut tx, ns.id, o, now).await?;
    }
    for t in new.tags.iter().flatten() {
        insert_tag(db, &mut tx, ns.id, t, now).await?;
    }
    for (name, def) in new.properties.iter().flatten() {
        insert_property(db, &mut tx, ns.id, name, def, now).await?;
    }
    tx.commit().await?;
    Ok(ns)
}

/// Replaces a namespace's fields (a new `namespace` renames it; one that exists gives
/// [`Error::Duplicate`]). `None` when it is gone.
pub async fn update_namespace(
    db: &Db,
    id: i64,
    v: &NamespaceValues,
    now: DateTime<Utc>,
) -> Result<Option<Namespace>, Error> {
    let n = db
        .sql(
            "UPDATE metadef_namespaces SET namespace = ?, display_name = ?, description = ?, \
             visibility = ?, protected = ?, owner = ?, updated_at = ? WHERE id = ?",
        )
        .arg(&v.namespace)
        .arg(&v.display_name)
        .arg(&v.description)
        .arg(v.visibility.as_str())
        .arg(v.protected)
        .arg(&v.owner)
        .arg(to_micros(now))
        .arg(id)
        .query()
        .execute(&mut *db.conn().await?)
        .await
        .map_err(duplicate)?
        .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    get_namespace(db, &v.namespace).await
}

const CONTENT_TABLES: [&str; 4] = [
    "metadef_tags",
    "metadef_objects",
    "metadef_properties",
    "metadef_namespace_resource_types",
];

/// Deletes a namespace and its content (objects, properties, tags, associations) in one
/// transaction; whether it existed.
pub async fn delete_namespace(db: &Db, id: i64) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    for table in CONTENT_TABLES {
        db.sql(&format!("DELETE FROM {table} WHERE namespace_id = ?"))
            .arg(id)
            .query()
            .execute(&mut *tx)
            .await?;
    }
    let n = db
        .sql("DELETE FROM metadef_namespaces WHERE id = ?")
        .arg(id)
        .query()
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(n == 1)
}

/// Everything a namespace show renders: its objects and properties (in creation order), its
/// tags (newest first, Glance's default order) and associations.
pub async fn namespace_detail(db: &Db, ns: &Namespace) -> Result<NamespaceDetail, Error> {
    Ok(NamespaceDetail {
        objects: list_objects(db, ns.id).await?,
        properties: list_properties(db, ns.id).await?,
        tags: list_tags(db, ns.id, &TagQuery::default()).await?,
        associations: list_associations(db, ns.id).await?,
        namespace: ns.clone(),
    })
}

// === objects ===

/// A namespace's objects, in creation order.
pub async fn list_objects(db: &Db, namespace_id: i64) -> Result<Vec<MetadefObject>, Error> {
    db.sql("SELECT * FROM metadef_objects WHERE namespace_id = ? ORDER BY id")
        .arg(namespace_id)
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?
        .iter()
        .map(object_from_row)
        .collect()
}

/// One object by name.
pub async fn get_object(
    db: &Db,
    namespace_id: i64,
    name: &str,
) -> Result<Option<MetadefObject>, Error> {
    db.sql("SELECT * FROM metadef_objects WHERE namespace_id = ? AND name = ?")
        .arg(namespace_id)
        .arg(name)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .as_ref()
        .map(object_from_row)
        .transpose()
}

async fn insert_object(
    db: &Db,
    conn: &mut AnyConnection,
    namespace_id: i64,
    o: &ObjectFields,
    now: i64,
) -> Result<(), Error> {
    db.sql(
        "INSERT INTO metadef_objects (namespace_id, name, description, required, json_schema, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .arg(namespace_id)
    .arg(&o.name)
    .arg(&o.description)
    .arg(join_required(o.required.as_deref()))
    .arg(defs_to_text(o.properties.as_ref()))
    .arg(now)
    .arg(now)
    .query()
    .execute(&mut *conn)
    .await
    .map_err(duplicate)?;
    Ok(())
}

/// Creates an object ([`Error::Duplicate`] when the namespace has one of that name).
pub async fn create_object(
    db: &Db,
    namespace_id: i64,
    o: &ObjectFields,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut conn = db.conn().await?;
    insert_object(db, &mut conn, namespace_id, o, to_micros(now)).await
}

/// Replaces object `name` with `o` (renaming it to `o.name`; a clash is
/// [`Error::Duplicate`]); whether it existed.
pub async fn update_object(
    db: &Db,
    namespace_id: i64,
    name: &str,
    o: &ObjectFields,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let n = db
        .sql(
            "UPDATE metadef_objects SET name = ?, description = ?, required = ?, \
             json_schema = ?, updated_at = ? WHERE namespace_id = ? AND name = ?",
        )
        .arg(&o.name)
        .arg(&o.description)
        .arg(join_required(o.required.as_deref()))
        .arg(defs_to_text(o.properties.as_ref()))
        .arg(to_micros(now))
        .arg(namespace_id)
        .arg(name)
        .query()
        .execute(&mut *db.conn().await?)
        .await
        .map_err(duplicate)?
        .rows_affected();
    Ok(n == 1)
}

/// Deletes one object; whether it existed.
pub async fn delete_object(db: &Db, namespace_id: i64, name: &str) -> Result<bool, Error> {
    delete_named(db, "metadef_objects", namespace_id, name).await
}

/// Deletes every object of a namespace; how many there were.
pub async fn delete_objects(db: &Db, namespace_id: i64) -> Result<u64, Error> {
    delete_content(db, "metadef_objects", namespace_id).await
}

/// Deletes the row of `table` named `name` in a namespace; whether it existed.
async fn delete_named(db: &Db, table: &str, namespace_id: i64, name: &str) -> Result<bool, Error> {
    let n = db
        .sql(&format!(
            "DELETE FROM {table} WHERE namespace_id = ? AND name = ?"
        ))
        .arg(namespace_id)
        .arg(name)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}

async fn delete_content(db: &Db, table: &str, namespace_id: i64) -> Result<u64, Error> {
    Ok(db
        .sql(&format!("DELETE FROM {table} WHERE namespace_id = ?"))
        .arg(namespace_id)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected())
}

// === properties ===

/// A namespace's properties, in creation order.
pub async fn list_properties(db: &Db, namespace_id: i64) -> Result<Vec<Property>, Error> {
    db.sql("SELECT * FROM metadef_properties WHERE namespace_id = ? ORDER BY id")
        .arg(namespace_id)
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?
        .iter()
        .map(property_from_row)
        .collect()
}

/// One property by name.
pub async fn get_property(
    db: &Db,
    namespace_id: i64,
    name: &str,
) -> Result<Option<Property>, Error> {
    db.sql("SELECT * FROM metadef_properties WHERE namespace_id = ? AND name = ?")
        .arg(namespace_id)
        .arg(name)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .as_ref()
        .map(property_from_row)
        .transpose()
}

async fn insert_property(
    db: &Db,
    conn: &mut AnyConnection,
    namespace_id: i64,
    name: &str,
    def: &PropertyDef,
    now: i64,
) -> Result<(), Error> {
    db.sql(
        "INSERT INTO metadef_properties (namespace_id, name, json_schema, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?)",
    )
    .arg(namespace_id)
    .arg(name)
    .arg(Value::Object(def.as_map().clone()).to_string())
    .arg(now)
    .arg(now)
    .query()
    .execute(&mut *conn)
    .await
    .map_err(duplicate)?;
    Ok(())
}

/// Creates a property ([`Error::Duplicate`] when the namespace has one of that name).
pub async fn create_property(
    db: &Db,
    namespace_id: i64,
    name: &str,
    def: &PropertyDef,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut conn = db.conn().await?;
    insert_property(db, &mut conn, namespace_id, name, def, to_micros(now)).await
}

/// Replaces property `name` with `new_name` and `def` (a clash is [`Error::Duplicate`]);
/// whether it existed.
pub async fn update_property(
    db: &Db,
    namespace_id: i64,
    name: &str,
    new_name: &str,
    def: &PropertyDef,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let n = db
        .sql(
            "UPDATE metadef_properties SET name = ?, json_schema = ?, updated_at = ? \
             WHERE namespace_id = ? AND name = ?",
        )
        .arg(new_name)
        .arg(Value::Object(def.as_map().clone()).to_string())
        .arg(to_micros(now))
        .arg(namespace_id)
        .arg(name)
        .query()
        .execute(&mut *db.conn().await?)
        .await
        .map_err(duplicate)?
        .rows_affected();
    Ok(n == 1)
}

/// Deletes one property; whether it existed.
pub async fn delete_property(db: &Db, namespace_id: i64, name: &str) -> Result<bool, Error> {
    delete_named(db, "metadef_properties", namespace_id, name).await
}

/// Deletes every property of a namespace; how many there were.
pub async fn delete_properties(db: &Db, namespace_id: i64) -> Result<u64, Error> {
    delete_content(db, "metadef_properties", namespace_id).await
}

// === tags ===

/// The columns tags sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagSort {
    /// `id` (sorted as `created_at`, `id`, as Glance).
    Id,
    /// `name`.
    Name,
    /// `created_at` (the default).
    #[default]
    CreatedAt,
    /// `updated_at`.
    UpdatedAt,
}

impl TagSort {
    /// Parses a `sort_key`.
    pub fn from_name(name: &str) -> Option<TagSort> {
        Some(match name {
            "id" => TagSort::Id,
            "name" => TagSort::Name,
            "created_at" => TagSort::CreatedAt,
            "updated_at" => TagSort::UpdatedAt,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            TagSort::Id => "id",
            TagSort::Name => "name",
            TagSort::CreatedAt => "created_at",
            TagSort::UpdatedAt => "updated_at",
        }
    }

    fn keys(self) -> Vec<TagSort> {
        match self {
            TagSort::CreatedAt | TagSort::Id => vec![TagSort::CreatedAt, TagSort::Id],
            k => vec![k, TagSort::CreatedAt, TagSort::Id],
        }
    }

    fn value_of(self, m: &TagMarker) -> SqlValue {
        match self {
            TagSort::Id => SqlValue::Int(m.id),
            TagSort::Name => SqlValue::Text(m.tag.name.clone()),
            TagSort::CreatedAt => SqlValue::Int(to_micros(m.tag.created_at)),
            TagSort::UpdatedAt => SqlValue::Int(to_micros(m.tag.updated_at)),
        }
    }
}

/// A tag to list after (see [`tag_marker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMarker {
    id: i64,
    /// The tag.
    pub tag: Tag,
}

/// A tag list request (Glance's default: every tag, newest first).
#[derive(Debug, Clone)]
pub struct TagQuery<'a> {
    /// Sort key.
    pub sort_key: TagSort,
    /// Sort direction.
    pub sort_dir: SortDir,
    /// Page size (`None`: all).
    pub limit: Option<u32>,
    /// Start after this tag.
    pub marker: Option<&'a TagMarker>,
}

impl Default for TagQuery<'_> {
    fn default() -> Self {
        TagQuery {
            sort_key: TagSort::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: None,
            marker: None,
        }
    }
}

/// The tag named `name`, as a list marker.
pub async fn tag_marker(
    db: &Db,
    namespace_id: i64,
    name: &str,
) -> Result<Option<TagMarker>, Error> {
    db.sql("SELECT * FROM metadef_tags WHERE namespace_id = ? AND name = ?")
        .arg(namespace_id)
        .arg(name)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .map(|row| {
            Ok(TagMarker {
                id: int_required(&row, "id")?,
                tag: tag_from_row(&row)?,
            })
        })
        .transpose()
}

/// A namespace's tags as `q` asks.
pub async fn list_tags(db: &Db, namespace_id: i64, q: &TagQuery<'_>) -> Result<Vec<Tag>, Error> {
    let mut sql = db
        .sql("SELECT * FROM metadef_tags WHERE namespace_id = ?")
        .arg(namespace_id);
    let keys = q.sort_key.keys();
    if let Some(m) = q.marker {
        let cols: Vec<SortColumn> = keys
            .iter()
            .map(|k| SortColumn {
                column: k.column(),
                nullable: false,
                marker: k.value_of(m),
            })
            .collect();
        push_after_marker(&mut sql, &cols, q.sort_dir);
    }
    let cols: Vec<(&'static str, bool)> = keys.iter().map(|k| (k.column(), false)).collect();
    push_order(&mut sql, db.backend(), &cols, q.sort_dir);
    if let Some(limit) = q.limit {
        sql.push(" LIMIT ").bind(i64::from(limit));
    }
    sql.query()
        .fetch_all(&mut *db.conn().await?)
        .await?
        .iter()
        .map(tag_from_row)
        .collect()
}

/// One tag by name.
pub async fn get_tag(db: &Db, namespace_id: i64, name: &str) -> Result<Option<Tag>, Error> {
    Ok(tag_marker(db, namespace_id, name).await?.map(|m| m.tag))
}

async fn insert_tag(
    db: &Db,
    conn: &mut AnyConnection,
    namespace_id: i64,
    name: &str,
    now: i64,
) -> Result<(), Error> {
    db.sql(
        "INSERT INTO metadef_tags (namespace_id, name, created_at, updated_at) \
         VALUES (?, ?, ?, ?)",
    )
    .arg(namespace_id)
    .arg(name)
    .arg(now)
    .arg(now)
    .query()
    .execute(&mut *conn)
    .await
    .map_err(duplicate)?;
    Ok(())
}

/// Creates one tag ([`Error::Duplicate`] when the namespace has it).
pub async fn create_tag(
    db: &Db,
    namespace_id: i64,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Tag, Error> {
    let mut conn = db.conn().await?;
    insert_tag(db, &mut conn, namespace_id, name, to_micros(now)).await?;
    Ok(Tag {
        name: name.to_owned(),
        created_at: now,
        updated_at: now,
    })
}

/// Creates `names` in one transaction, after deleting the namespace's tags unless
/// `append`. A name given twice, or (appending) one the namespace has, gives
/// [`Error::Duplicate`] and changes nothing.
pub async fn create_tags(
    db: &Db,
    namespace_id: i64,
    names: &[String],
    append: bool,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let micros = to_micros(now);
    let mut tx = db.begin().await?;
    if !append {
        db.sql("DELETE FROM metadef_tags WHERE namespace_id = ?")
            .arg(namespace_id)
            .query()
            .execute(&mut *tx)
            .await?;
    }
    for name in names {
        insert_tag(db, &mut tx, namespace_id, name, micros).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Renames tag `name` to `new_name` (a clash is [`Error::Duplicate`]); the renamed tag, or
/// `None` when there is no such tag.
pub async fn update_tag(
    db: &Db,
    namespace_id: i64,
    name: &str,
    new_name: &str,
    now: DateTime<Utc>,
) -> Result<Option<Tag>, Error> {
    let n = db
        .sql("UPDATE metadef_tags SET name = ?, updated_at = ? WHERE namespace_id = ? AND name = ?")
        .arg(new_name)
        .arg(to_micros(now))
        .arg(namespace_id)
        .arg(name)
        .query()
        .execute(&mut *db.conn().await?)
        .await
        .map_err(duplicate)?
        .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    get_tag(db, namespace_id, new_name).await
}

/// Deletes one tag; whether it existed.
pub async fn delete_tag(db: &Db, namespace_id: i64, name: &str) -> Result<bool, Error> {
    delete_named(db, "metadef_tags", namespace_id, name).await
}

/// Deletes every tag of a namespace; how many there were.
pub async fn delete_tags(db: &Db, namespace_id: i64) -> Result<u64, Error> {
    delete_content(db, "metadef_tags", namespace_id).await
}

// === resource types and associations ===

/// Every resource type, in creation order.
pub async fn list_resource_types(db: &Db) -> Result<Vec<ResourceType>, Error> {
    db.sql("SELECT * FROM metadef_resource_types ORDER BY id")
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?
        .iter()
        .map(resource_type_from_row)
        .collect()
}

/// One resource type by name.
pub async fn get_resource_type(db: &Db, name: &str) -> Result<Option<ResourceType>, Error> {
    db.sql("SELECT * FROM metadef_resource_types WHERE name = ?")
        .arg(name)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .as_ref()
        .map(resource_type_from_row)
        .transpose()
}

const ASSOCIATION_COLUMNS: &str = "SELECT a.namespace_id AS namespace_id, r.name AS name, \
     a.prefix AS prefix, a.properties_target AS properties_target, \
     a.created_at AS created_at, a.updated_at AS updated_at \
     FROM metadef_namespace_resource_types a \
     JOIN metadef_resource_types r ON r.id = a.resource_type_id";

/// A namespace's associations, by resource type age.
pub async fn list_associations(db: &Db, namespace_id: i64) -> Result<Vec<Association>, Error> {
    db.sql(&format!(
        "{ASSOCIATION_COLUMNS} WHERE a.namespace_id = ? ORDER BY a.resource_type_id"
    ))
    .arg(namespace_id)
    .query()
    .fetch_all(&mut *db.conn().await?)
    .await?
    .iter()
    .map(association_from_row)
    .collect()
}

/// The associations of several namespaces, by namespace id.
pub async fn associations_of(
    db: &Db,
    namespace_ids: &[i64],
) -> Result<HashMap<i64, Vec<Association>>, Error> {
    let mut out: HashMap<i64, Vec<Association>> = HashMap::new();
    if namespace_ids.is_empty() {
        return Ok(out);
    }
    let mut sql = db.sql(&format!("{ASSOCIATION_COLUMNS} WHERE a.namespace_id IN ("));
    for (i, id) in namespace_ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(*id);
    }
    sql.push(") ORDER BY a.namespace_id, a.resource_type_id");
    let found = sql.query().fetch_all(&mut *db.conn().await?).await?;
    for row in found {
        out.entry(int_required(&row, "namespace_id")?)
            .or_default()
            .push(association_from_row(&row)?);
    }
    Ok(out)
}

/// A namespace's association with the resource type `name`.
pub async fn get_association(
    db: &Db,
    namespace_id: i64,
    name: &str,
) -> Result<Option<Association>, Error> {
    db.sql(&format!(
        "{ASSOCIATION_COLUMNS} WHERE a.namespace_id = ? AND r.name = ?"
    ))
    .arg(namespace_id)
    .arg(name)
    .query()
    .fetch_optional(&mut *db.conn().await?)
    .await?
    .as_ref()
    .map(association_from_row)
    .transpose()
}

/// The id of resource type `name`, created (unprotected) if it does not exist yet.
async fn ensure_resource_type(
    db: &Db,
    conn: &mut AnyConnection,
    name: &str,
    now: i64,
) -> Result<i64, Error> {
    let mut sql = db.sql(
        "INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) \
         VALUES (?, 0, ?, ?)",
    );
    sql = sql.arg(name).arg(now).arg(now);
    sql.push(match db.backend() {
        // a concurrent create of the same type must not fail (or abort PostgreSQL's
        // transaction)
        Backend::Mysql => " ON DUPLICATE KEY UPDATE id = id",
        Backend::Sqlite | Backend::Postgres => " ON CONFLICT (name) DO NOTHING",
    });
    sql.query().execute(&mut *conn).await?;
    let row = db
        .sql("SELECT id FROM metadef_resource_types WHERE name = ?")
        .arg(name)
        .query()
        .fetch_one(&mut *conn)
        .await?;
    int_required(&row, "id")
}

async fn insert_association(
    db: &Db,
    conn: &mut AnyConnection,
    namespace_id: i64,
    a: &AssociationFields,
    now: i64,
) -> Result<(), Error> {
    let rt = ensure_resource_type(db, conn, &a.name, now).await?;
    db.sql(
        "INSERT INTO metadef_namespace_resource_types (resource_type_id, namespace_id, \
         properties_target, prefix, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .arg(rt)
    .arg(namespace_id)
    .arg(&a.properties_target)
    .arg(&a.prefix)
    .arg(now)
    .arg(now)
    .query()
    .execute(&mut *conn)
    .await
    .map_err(duplicate)?;
    Ok(())
}

/// Associates a namespace with resource type `a.name` (created when unknown), in one
/// transaction ([`Error::Duplicate`] when already associated).
pub async fn create_association(
    db: &Db,
    namespace_id: i64,
    a: &AssociationFields,
    now: DateTime<Utc>,
) -> Result<Association, Error> {
    let mut tx = db.begin().await?;
    insert_association(db, &mut tx, namespace_id, a, to_micros(now)).await?;
    tx.commit().await?;
    Ok(Association {
        name: a.name.clone(),
        prefix: a.prefix.clone(),
        properties_target: a.properties_target.clone(),
        created_at: now,
        updated_at: now,
    })
}

/// Removes a namespace's association with resource type `name`; whether it existed.
pub async fn delete_association(db: &Db, namespace_id: i64, name: &str) -> Result<bool, Error> {
    let n = db
        .sql(
            "DELETE FROM metadef_namespace_resource_types WHERE namespace_id = ? AND \
             resource_type_id IN (SELECT id FROM metadef_resource_types WHERE name = ?)",
        )
        .arg(namespace_id)
        .arg(name)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
mod tests;
