//! Queries on images, their custom properties and tags.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction (SQLite takes the write lock up front, so
//! two writers queue instead of failing on lock upgrade) and is guarded either by the version
//! the caller read ([`update`]) or by the status it expects ([`begin_saving`], …). A guard that
//! does not match changes nothing and reports `false`; the caller decides what that means.

use super::row::{ImageRow, to_i64, to_micros};
use super::{Db, Error, ListQuery};
use crate::domain::Image;
use chrono::{DateTime, Utc};
use shared::image::{ImageId, ImageStatus};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Data recorded when an upload commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedData {
    /// Bytes stored.
    pub size: u64,
    /// md5 hex digest.
    pub checksum: String,
    /// Algorithm name of `os_hash_value`.
    pub os_hash_algo: String,
    /// Hex digest.
    pub os_hash_value: String,
    /// Store URL.
    pub location: String,
}

fn map_insert_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Duplicate,
        _ => Error::Sqlx(e),
    }
}

/// Inserts a new image with its properties and tags. An id that exists — even as a deleted
/// row — gives [`Error::Duplicate`].
pub async fn insert(db: &Db, image: &Image) -> Result<(), Error> {
    let mut tx = db.pool().begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO images (id, name, status, visibility, protected, os_hidden, owner, size, virtual_size, \
         checksum, os_hash_algo, os_hash_value, min_disk, min_ram, container_format, disk_format, location, \
         created_at, updated_at, deleted_at, version) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
    )
    .bind(image.id.to_string())
    .bind(&image.name)
    .bind(image.status.as_str())
    .bind(image.visibility.as_str())
    .bind(image.protected)
    .bind(image.os_hidden)
    .bind(&image.owner)
    .bind(to_i64(image.size, "size")?)
    .bind(to_i64(image.virtual_size, "virtual_size")?)
    .bind(&image.checksum)
    .bind(&image.os_hash_algo)
    .bind(&image.os_hash_value)
    .bind(image.min_disk)
    .bind(image.min_ram)
    .bind(&image.container_format)
    .bind(&image.disk_format)
    .bind(&image.location)
    .bind(to_micros(image.created_at))
    .bind(to_micros(image.updated_at))
    .bind(image.deleted_at.map(to_micros))
    .execute(&mut *tx)
    .await
    .map_err(map_insert_error)?;
    write_children(&mut tx, image).await?;
    tx.commit().await?;
    Ok(())
}

async fn write_children(conn: &mut SqliteConnection, image: &Image) -> Result<(), Error> {
    let id = image.id.to_string();
    sqlx::query("DELETE FROM image_properties WHERE image_id = ?")
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM image_tags WHERE image_id = ?")
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    if !image.properties.is_empty() {
        let mut qb: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("INSERT INTO image_properties (image_id, name, value) ");
        qb.push_values(&image.properties, |mut b, (k, v)| {
            b.push_bind(id.clone())
                .push_bind(k.clone())
                .push_bind(v.clone());
        });
        qb.build().execute(&mut *conn).await?;
    }
    if !image.tags.is_empty() {
        let mut qb: QueryBuilder<'_, Sqlite> =
            QueryBuilder::new("INSERT INTO image_tags (image_id, value) ");
        qb.push_values(&image.tags, |mut b, t| {
            b.push_bind(id.clone()).push_bind(t.clone());
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The image with this id, deleted or not.
pub async fn get(db: &Db, id: ImageId) -> Result<Option<Image>, Error> {
    let Some(row) = sqlx::query_as::<_, ImageRow>("SELECT * FROM images WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let mut images = attach_children(db, vec![row]).await?;
    Ok(images.pop())
}

/// Loads tags and properties for `rows` (two queries for the whole page).
async fn attach_children(db: &Db, rows: Vec<ImageRow>) -> Result<Vec<Image>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut tags: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut props: HashMap<String, BTreeMap<String, String>> = HashMap::new();

    let mut qb: QueryBuilder<'_, Sqlite> =
        QueryBuilder::new("SELECT image_id, value FROM image_tags WHERE image_id IN (");
    let mut sep = qb.separated(", ");
    for r in &rows {
        sep.push_bind(r.id.clone());
    }
    qb.push(")");
    for (image_id, value) in qb
        .build_query_as::<(String, String)>()
        .fetch_all(db.pool())
        .await?
    {
        tags.entry(image_id).or_default().insert(value);
    }

    let mut qb: QueryBuilder<'_, Sqlite> =
        QueryBuilder::new("SELECT image_id, name, value FROM image_properties WHERE image_id IN (");
    let mut sep = qb.separated(", ");
    for r in &rows {
        sep.push_bind(r.id.clone());
    }
    qb.push(")");
    for (image_id, name, value) in qb
        .build_query_as::<(String, String, String)>()
        .fetch_all(db.pool())
        .await?
    {
        props.entry(image_id).or_default().insert(name, value);
    }

    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            let p = props.remove(&r.id).unwrap_or_default();
            r.into_image(t, p)
        })
        .collect()
}

/// One page of images and whether another page follows.
pub async fn list(db: &Db, query: &ListQuery) -> Result<(Vec<Image>, bool), Error> {
    let mut qb = query.build();
    let mut rows = qb.build_query_as::<ImageRow>().fetch_all(db.pool()).await?;
    let more = rows.len() > query.limit as usize;
    rows.truncate(query.limit as usize);
    Ok((attach_children(db, rows).await?, more))
}

/// Writes every field of `image` (and replaces its properties and tags) if the stored version
/// is still `image.version`. Returns `false`, changing nothing, when someone else wrote first.
pub async fn update(db: &Db, image: &Image) -> Result<bool, Error> {
    let mut tx = db.pool().begin_with("BEGIN IMMEDIATE").await?;
    let done = sqlx::query(
        "UPDATE images SET name = ?, status = ?, visibility = ?, protected = ?, os_hidden = ?, owner = ?, \
         size = ?, virtual_size = ?, checksum = ?, os_hash_algo = ?, os_hash_value = ?, min_disk = ?, \
         min_ram = ?, container_format = ?, disk_format = ?, location = ?, updated_at = ?, deleted_at = ?, \
         version = version + 1 \
         WHERE id = ? AND version = ?",
    )
    .bind(&image.name)
    .bind(image.status.as_str())
    .bind(image.visibility.as_str())
    .bind(image.protected)
    .bind(image.os_hidden)
    .bind(&image.owner)
    .bind(to_i64(image.size, "size")?)
    .bind(to_i64(image.virtual_size, "virtual_size")?)
    .bind(&image.checksum)
    .bind(&image.os_hash_algo)
    .bind(&image.os_hash_value)
    .bind(image.min_disk)
    .bind(image.min_ram)
    .bind(&image.container_format)
    .bind(&image.disk_format)
    .bind(&image.location)
    .bind(to_micros(image.updated_at))
    .bind(image.deleted_at.map(to_micros))
    .bind(image.id.to_string())
    .bind(image.version)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    write_children(&mut tx, image).await?;
    tx.commit().await?;
    Ok(true)
}

/// `queued → saving`, only if the image is still `queued`. Returns whether it moved.
pub async fn begin_saving(db: &Db, id: ImageId, now: DateTime<Utc>) -> Result<bool, Error> {
    let n = sqlx::query(
        "UPDATE images SET status = 'saving', updated_at = ?, version = version + 1 \
         WHERE id = ? AND status = 'queued'",
    )
    .bind(to_micros(now))
    .bind(id.to_string())
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// `saving → active` with the uploaded data, only if the image is still `saving`.
pub async fn commit_upload(
    db: &Db,
    id: ImageId,
    data: &UploadedData,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let size = i64::try_from(data.size).map_err(|_| Error::OutOfRange("size"))?;
    let n = sqlx::query(
        "UPDATE images SET status = 'active', size = ?, checksum = ?, os_hash_algo = ?, os_hash_value = ?, \
         location = ?, updated_at = ?, version = version + 1 \
         WHERE id = ? AND status = 'saving'",
    )
    .bind(size)
    .bind(&data.checksum)
    .bind(&data.os_hash_algo)
    .bind(&data.os_hash_value)
    .bind(&data.location)
    .bind(to_micros(now))
    .bind(id.to_string())
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

const CLEAR_DATA: &str = "status = 'queued', size = NULL, virtual_size = NULL, checksum = NULL, \
     os_hash_algo = NULL, os_hash_value = NULL, location = NULL, version = version + 1";

/// `saving → queued` (clearing the data fields), only if the image is still `saving`.
pub async fn revert_saving(db: &Db, id: ImageId, now: DateTime<Utc>) -> Result<bool, Error> {
    let n = sqlx::query(&format!(
        "UPDATE images SET {CLEAR_DATA}, updated_at = ? WHERE id = ? AND status = 'saving'"
    ))
    .bind(to_micros(now))
    .bind(id.to_string())
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// At start-up no upload can be in flight: every `saving` image goes back to `queued`.
/// Returns the ids that moved.
pub async fn reset_all_saving(db: &Db, now: DateTime<Utc>) -> Result<Vec<ImageId>, Error> {
    let ids: Vec<String> = sqlx::query_scalar(&format!(
        "UPDATE images SET {CLEAR_DATA}, updated_at = ? WHERE status = 'saving' RETURNING id"
    ))
    .bind(to_micros(now))
    .fetch_all(db.pool())
    .await?;
    ids.into_iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Error::Corrupt(format!("image id {s:?}")))
        })
        .collect()
}

/// Current status of an image, if it exists.
pub async fn status(db: &Db, id: ImageId) -> Result<Option<ImageStatus>, Error> {
    let s: Option<String> = sqlx::query_scalar("SELECT status FROM images WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    s.map(|s| {
        s.parse()
            .map_err(|_| Error::Corrupt(format!("status {s:?}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Scope, SortDir, SortKey, VisibilityFilter};
    use crate::domain::image::tests::sample;
    use chrono::Duration;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url, 4).await.unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn insert_get_update_round_trip() {
        let (_dir, db) = db().await;
        let mut img = sample();
        img.tags.insert("t1".into());
        img.properties.insert("os_distro".into(), "cirros".into());
        insert(&db, &img).await.unwrap();
        assert!(matches!(insert(&db, &img).await, Err(Error::Duplicate)));
        let got = get(&db, img.id).await.unwrap().unwrap();
        assert_eq!(got, img);

        let mut changed = got.clone();
        changed.name = Some("renamed".into());
        changed.properties.clear();
        assert!(update(&db, &changed).await.unwrap());
        // stale version: refused, nothing written
        let mut stale = got.clone();
        stale.name = Some("lost".into());
        assert!(!update(&db, &stale).await.unwrap());
        let now = get(&db, img.id).await.unwrap().unwrap();
        assert_eq!(now.name.as_deref(), Some("renamed"));
        assert!(now.properties.is_empty());
        assert_eq!(now.version, 1);
    }

    #[tokio::test]
    async fn upload_transitions_are_conditional() {
        let (_dir, db) = db().await;
        let img = sample();
        insert(&db, &img).await.unwrap();
        let now = Utc::now();
        let data = UploadedData {
            size: 3,
            checksum: "c".into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: "h".into(),
            location: "file:///x".into(),
        };
        assert!(!commit_upload(&db, img.id, &data, now).await.unwrap());
        assert!(begin_saving(&db, img.id, now).await.unwrap());
        assert!(!begin_saving(&db, img.id, now).await.unwrap());
        assert_eq!(reset_all_saving(&db, now).await.unwrap(), vec![img.id]);
        assert!(begin_saving(&db, img.id, now).await.unwrap());
        assert!(commit_upload(&db, img.id, &data, now).await.unwrap());
        let got = get(&db, img.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.size, got.location.as_deref()),
            (ImageStatus::Active, Some(3), Some("file:///x"))
        );
        assert!(!revert_saving(&db, img.id, now).await.unwrap());
    }

    #[tokio::test]
    async fn keyset_pages_cover_everything_once() {
        let (_dir, db) = db().await;
        let base = sample();
        let mut ids = Vec::new();
        for i in 0..7 {
            let mut img = sample();
            img.id = ImageId::new_random();
            // pairs share a timestamp so the id tie-break matters
            img.created_at = base.created_at + Duration::seconds(i / 2);
            img.name = if i % 3 == 0 {
                None
            } else {
                Some(format!("n{}", i % 2))
            };
            insert(&db, &img).await.unwrap();
            ids.push(img.id);
        }
        for sort in [
            vec![],
            vec![(SortKey::Name, SortDir::Asc)],
            vec![(SortKey::Name, SortDir::Desc)],
            vec![
                (SortKey::Size, SortDir::Asc),
                (SortKey::Name, SortDir::Desc),
            ],
        ] {
            let mut seen = Vec::new();
            let mut marker = None;
            loop {
                let q = ListQuery {
                    scope: Scope::All,
                    visibility: VisibilityFilter::All,
                    filters: vec![],
                    sort: sort.clone(),
                    tie_break_dir: SortDir::Desc,
                    limit: 3,
                    marker: marker.clone(),
                };
                let (page, more) = list(&db, &q).await.unwrap();
                seen.extend(page.iter().map(|i| i.id));
                if !more {
                    break;
                }
                marker = page.last().cloned();
            }
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 7, "{sort:?}: {seen:?}");
        }
    }
}
