//! `glint manage metadefs load / unload / export`: Glance's metadata definition files in
//! and out of the catalog, as `glance-manage db load_metadefs` does, but in **one
//! transaction** (Glance commits row by row and leaves half a load behind when a file is
//! bad): every file is parsed and checked first ([`crate::domain::metadef::parse_new_namespace`],
//! the same rules as `POST /v2/metadefs/namespaces`), and only then is anything written.
//!
//! Per namespace of a file (Glance's `_populate_metadata`):
//! - not in the database: created with everything the file holds (owner `admin` unless the
//!   file names one, as Glance; resource types it names are created, protected);
//! - there, with `overwrite`: deleted with its content, then created from the file;
//! - there, without `merge`: skipped (so loading the same files twice changes nothing);
//! - there, with `merge`: what the file has and the namespace lacks is added (associations,
//!   properties, objects, tags); with `prefer_new` as well, what both have takes the file's
//!   version (the namespace's fields too).

use super::{
    Db, Error, defs_to_text, ensure_resource_type, insert_association, insert_namespace,
    insert_object, insert_property, insert_tag, namespace_in,
};
use crate::db::row::to_micros;
use crate::domain::metadef::{NamespaceDetail, NewNamespace, join_required};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::AnyConnection;

/// The resource types every catalog has (seeded by the migration; kept by [`unload`]).
pub const STANDARD_RESOURCE_TYPES: [&str; 6] = [
    "OS::Glance::Image",
    "OS::Cinder::Volume",
    "OS::Nova::Flavor",
    "OS::Nova::Aggregate",
    "OS::Nova::Server",
    "OS::Trove::Instance",
];

/// How [`load`] treats a namespace that exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Add what the file has and the namespace lacks.
    pub merge: bool,
    /// With `merge`: what both have takes the file's version.
    pub prefer_new: bool,
    /// Replace the namespace with the file's.
    pub overwrite: bool,
}

/// What [`load`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Namespaces created (overwritten ones included).
    pub created: Vec<String>,
    /// Namespaces merged into.
    pub merged: Vec<String>,
    /// Namespaces left alone because they exist.
    pub skipped: Vec<String>,
    /// Rows written (inserted or updated), all tables.
    pub rows: u64,
}

/// Loads checked namespaces (see the module docs), all in one transaction.
pub async fn load(
    db: &Db,
    namespaces: &[NewNamespace],
    opts: LoadOptions,
    now: DateTime<Utc>,
) -> Result<LoadReport, Error> {
    let at = to_micros(now);
    let mut report = LoadReport::default();
    let mut tx = db.begin().await?;
    for new in namespaces {
        let name = &new.fields.namespace;
        let mut existing = find(db, &mut tx, name).await?;
        if existing.is_some() && opts.overwrite {
            db.sql("DELETE FROM metadef_namespaces WHERE namespace = ?")
                .arg(name)
                .query()
                .execute(&mut *tx)
                .await?;
            existing = None;
        }
        let Some(id) = existing else {
            let values = new.fields.for_create(Some("admin"));
            insert_namespace(db, &mut tx, &values, at).await?;
            let ns = namespace_in(db, &mut tx, name).await?;
            report.rows += 1 + add_content(db, &mut tx, ns.id, new, false, at).await?;
            report.created.push(name.clone());
            continue;
        };
        if !opts.merge {
            report.skipped.push(name.clone());
            continue;
        }
        if opts.prefer_new {
            let v = new.fields.for_create(Some("admin"));
            db.sql(
                "UPDATE metadef_namespaces SET display_name = ?, description = ?, \
                 visibility = ?, protected = ?, updated_at = ? WHERE id = ?",
            )
            .arg(&v.display_name)
            .arg(&v.description)
            .arg(v.visibility.as_str())
            .arg(i64::from(v.protected))
            .arg(at)
            .arg(id)
            .query()
            .execute(&mut *tx)
            .await?;
            report.rows += 1;
        }
        report.rows += add_content(db, &mut tx, id, new, opts.prefer_new, at).await?;
        report.merged.push(name.clone());
    }
    tx.commit().await?;
    Ok(report)
}

async fn find(db: &Db, conn: &mut AnyConnection, name: &str) -> Result<Option<i64>, Error> {
    let row = db
        .sql("SELECT id FROM metadef_namespaces WHERE namespace = ?")
        .arg(name)
        .query()
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| super::int_required(&r, "id")).transpose()
}

/// Whether `sql` (one `?` per arg, in order) finds a row.
async fn exists(
    db: &Db,
    conn: &mut AnyConnection,
    sql: &str,
    id: i64,
    name: &str,
) -> Result<bool, Error> {
    Ok(db
        .sql(sql)
        .arg(id)
        .arg(name)
        .query()
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// Adds the file's associations, properties, objects and tags to namespace `id`: those it
/// lacks, and with `replace` the others updated to the file's. Returns the rows written.
async fn add_content(
    db: &Db,
    conn: &mut AnyConnection,
    id: i64,
    new: &NewNamespace,
    replace: bool,
    at: i64,
) -> Result<u64, Error> {
    let mut rows = 0;
    for a in new.associations.iter().flatten() {
        let known = db
            .sql("SELECT id FROM metadef_resource_types WHERE name = ?")
            .arg(&a.name)
            .query()
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        let rt = ensure_resource_type(db, conn, &a.name, at).await?;
        if !known {
            // the types definition files bring are system types (Glance's loader marks them)
            db.sql("UPDATE metadef_resource_types SET protected = 1 WHERE id = ?")
                .arg(rt)
                .query()
                .execute(&mut *conn)
                .await?;
        }
        let associated = db
            .sql(
                "SELECT namespace_id FROM metadef_namespace_resource_types \
                 WHERE namespace_id = ? AND resource_type_id = ?",
            )
            .arg(id)
            .arg(rt)
            .query()
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if !associated {
            insert_association(db, conn, id, a, at).await?;
            rows += 1;
        } else if replace {
            db.sql(
                "UPDATE metadef_namespace_resource_types SET prefix = ?, properties_target = ?, \
                 updated_at = ? WHERE namespace_id = ? AND resource_type_id = ?",
            )
            .arg(&a.prefix)
            .arg(&a.properties_target)
            .arg(at)
            .arg(id)
            .arg(rt)
            .query()
            .execute(&mut *conn)
            .await?;
            rows += 1;
        }
    }
    for (name, def) in new.properties.iter().flatten() {
        let have = exists(
            db,
            conn,
            "SELECT id FROM metadef_properties WHERE namespace_id = ? AND name = ?",
            id,
            name,
        )
        .await?;
        if !have {
            insert_property(db, conn, id, name, def, at).await?;
            rows += 1;
        } else if replace {
            db.sql(
                "UPDATE metadef_properties SET json_schema = ?, updated_at = ? \
                 WHERE namespace_id = ? AND name = ?",
            )
            .arg(Value::Object(def.as_map().clone()).to_string())
            .arg(at)
            .arg(id)
            .arg(name)
            .query()
            .execute(&mut *conn)
            .await?;
            rows += 1;
        }
    }
    for o in new.objects.iter().flatten() {
        let have = exists(
            db,
            conn,
            "SELECT id FROM metadef_objects WHERE namespace_id = ? AND name = ?",
            id,
            &o.name,
        )
        .await?;
        if !have {
            insert_object(db, conn, id, o, at).await?;
            rows += 1;
        } else if replace {
            db.sql(
                "UPDATE metadef_objects SET description = ?, required = ?, json_schema = ?, \
                 updated_at = ? WHERE namespace_id = ? AND name = ?",
            )
            .arg(&o.description)
            .arg(join_required(o.required.as_deref()))
            .arg(defs_to_text(o.properties.as_ref()))
            .arg(at)
            .arg(id)
            .arg(&o.name)
            .query()
            .execute(&mut *conn)
            .await?;
            rows += 1;
        }
    }
    for t in new.tags.iter().flatten() {
        let have = exists(
            db,
            conn,
            "SELECT id FROM metadef_tags WHERE namespace_id = ? AND name = ?",
            id,
            t,
        )
        .await?;
        if !have {
            insert_tag(db, conn, id, t, at).await?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// What [`unload`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unloaded {
    /// Namespaces (their objects, properties, tags and associations went with them).
    pub namespaces: u64,
    /// Resource types other than the standard ones.
    pub resource_types: u64,
}

/// Empties the catalog (Glance's `unload_metadefs`), in one transaction: every namespace
/// with its content, and every resource type but the [`STANDARD_RESOURCE_TYPES`], which
/// the schema brings.
pub async fn unload(db: &Db) -> Result<Unloaded, Error> {
    let mut tx = db.begin().await?;
    // children first: MySQL applies the cascade too, but explicit deletes keep the order
    // the same on every backend
    for table in [
        "metadef_properties",
        "metadef_objects",
        "metadef_tags",
        "metadef_namespace_resource_types",
    ] {
        db.sql(&format!("DELETE FROM {table}"))
            .query()
            .execute(&mut *tx)
            .await?;
    }
    let namespaces = db
        .sql("DELETE FROM metadef_namespaces")
        .query()
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let mut sql = db.sql("DELETE FROM metadef_resource_types WHERE name NOT IN (");
    for (i, name) in STANDARD_RESOURCE_TYPES.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(*name);
    }
    sql.push(")");
    let resource_types = sql.query().execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(Unloaded {
        namespaces,
        resource_types,
    })
}

/// A namespace as Glance's definition files have it (what `export` writes, `load` reads).
pub fn to_file(d: &NamespaceDetail) -> Value {
    let ns = &d.namespace;
    let mut m = Map::new();
    m.insert("namespace".into(), json!(ns.namespace));
    if let Some(v) = &ns.display_name {
        m.insert("display_name".into(), json!(v));
    }
    if let Some(v) = &ns.description {
        m.insert("description".into(), json!(v));
    }
    m.insert("visibility".into(), json!(ns.visibility.as_str()));
    m.insert("protected".into(), json!(ns.protected));
    if let Some(owner) = ns.owner.as_deref().filter(|o| *o != "admin") {
        m.insert("owner".into(), json!(owner));
    }
    let associations: Vec<Value> = d
        .associations
        .iter()
        .map(|a| {
            let mut e = Map::new();
            e.insert("name".into(), json!(a.name));
            if let Some(p) = &a.prefix {
                e.insert("prefix".into(), json!(p));
            }
            if let Some(t) = &a.properties_target {
                e.insert("properties_target".into(), json!(t));
            }
            Value::Object(e)
        })
        .collect();
    m.insert(
        "resource_type_associations".into(),
        Value::Array(associations),
    );
    let properties: Map<String, Value> = d
        .properties
        .iter()
        .map(|p| (p.name.clone(), Value::Object(p.def.as_map().clone())))
        .collect();
    m.insert("properties".into(), Value::Object(properties));
    let objects: Vec<Value> = d
        .objects
        .iter()
        .map(|o| {
            let mut e = Map::new();
            e.insert("name".into(), json!(o.name));
            if let Some(desc) = &o.description {
                e.insert("description".into(), json!(desc));
            }
            if let Some(r) = o.required.as_ref().filter(|r| !r.is_empty()) {
                e.insert("required".into(), json!(r));
            }
            let props: Map<String, Value> = o
                .properties
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::Object(v.as_map().clone())))
                .collect();
            e.insert("properties".into(), Value::Object(props));
            Value::Object(e)
        })
        .collect();
    m.insert("objects".into(), Value::Array(objects));
    let mut tags: Vec<&str> = d.tags.iter().map(|t| t.name.as_str()).collect();
    tags.sort_unstable();
    let tags: Vec<Value> = tags.into_iter().map(|t| json!({ "name": t })).collect();
    m.insert("tags".into(), Value::Array(tags));
    Value::Object(m)
}
