//! Queries on images, their custom properties, tags and locations.
//!
//! Every multi-statement write runs in a transaction (on SQLite `BEGIN IMMEDIATE`) and is
//! guarded either by the version the caller read ([`update`]) or by the status it expects
//! ([`apply_move`], which executes a status move the domain decided, see
//! [`crate::domain::status`]). A guard that does not match changes nothing and reports
//! `false`; the caller decides what that means. Insert and update write the same columns from
//! one list (`columns`).
//!
//! Locations (`image_locations`) are written only together with the image row, in its
//! transaction and after it (which orders the locks: `images`, then `image_locations`, then
//! `jobs`), and every location change bumps the image's `version`, so caches stay right:
//! an upload commit adds one ([`apply_move`] with [`DataChange::Record`]); a location the
//! domain moved to `pending_delete` ([`update`], [`DataChange::RetireLocations`]) gets its
//! `delete_data` job in the same transaction (`jobs::enqueue`); the data plane's
//! `JobDone` marks it `deleted` ([`super::jobs::done`]).
//!
//! Reads go through the image cache ([`super::cache`]): [`get`] and [`list`] return shared
//! [`Arc<Image>`]s, and every write here invalidates the image it touched once its transaction
//! has ended, committed or not.

use super::cache::Coherence;
use super::row::{ImageRow, to_i64, to_micros};
use super::{Arg, Backend, Db, Error, ListQuery, Sql, is_unique_violation};
use crate::domain::{DataChange, Image, Location, LocationStatus, Move};
use chrono::{DateTime, Utc};
use shared::image::{ImageId, ImageStatus};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Invalidates `id` in the image cache after a write to it ended, and passes its outcome on.
fn written<T>(db: &Db, id: ImageId, outcome: Result<T, Error>) -> Result<T, Error> {
    db.cache().invalidate(id);
    outcome
}

/// Every column of `images` that insert and update both write (all but `id`, `created_at`
/// and `version`), with the image's value for it.
fn columns(image: &Image) -> Result<[(&'static str, Arg); 17], Error> {
    Ok([
        ("name", (&image.name).into()),
        ("status", image.status.as_str().into()),
        ("visibility", image.visibility.as_str().into()),
        ("protected", image.protected.into()),
        ("os_hidden", image.os_hidden.into()),
        ("owner", (&image.owner).into()),
        ("size", to_i64(image.size, "size")?.into()),
        (
            "virtual_size",
            to_i64(image.virtual_size, "virtual_size")?.into(),
        ),
        ("checksum", (&image.checksum).into()),
        ("os_hash_algo", (&image.os_hash_algo).into()),
        ("os_hash_value", (&image.os_hash_value).into()),
        ("min_disk", image.min_disk.into()),
        ("min_ram", image.min_ram.into()),
        ("container_format", (&image.container_format).into()),
        ("disk_format", (&image.disk_format).into()),
        ("updated_at", to_micros(image.updated_at).into()),
        ("deleted_at", image.deleted_at.map(to_micros).into()),
    ])
}

fn map_insert_error(e: sqlx::Error) -> Error {
    if is_unique_violation(&e) {
        Error::Duplicate
    } else {
        Error::Sqlx(e)
    }
}

/// Inserts a new image with its properties, tags and locations. An id that exists — even as
/// a deleted row — gives [`Error::Duplicate`].
pub async fn insert(db: &Db, image: &Image) -> Result<(), Error> {
    written(db, image.id, insert_tx(db, image).await)
}

async fn insert_tx(db: &Db, image: &Image) -> Result<(), Error> {
    let mut tx = db.begin().await?;
    let values = columns(image)?;
    let mut sql = db.sql("INSERT INTO images (id, created_at, version");
    for (column, _) in &values {
        sql.push(", ").push(column);
    }
    sql.push(") VALUES (")
        .bind(image.id.to_string())
        .push(", ")
        .bind(to_micros(image.created_at))
        .push(", 0");
    for (_, value) in values {
        sql.push(", ").bind(value);
    }
    sql.push(")");
    sql.query()
        .execute(&mut *tx)
        .await
        .map_err(map_insert_error)?;
    write_children(db, &mut tx, image).await?;
    for l in &image.locations {
        insert_location(db, &mut tx, image.id, l, image.updated_at).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_location(
    db: &Db,
    conn: &mut AnyConnection,
    id: ImageId,
    l: &Location,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    crate::domain::location::check_url(&l.url)
        .map_err(|e| Error::Corrupt(format!("location of {id}: {e}")))?;
    let now = to_micros(now);
    let deleted_at = (l.status == LocationStatus::Deleted).then_some(now);
    db.sql(
        "INSERT INTO image_locations (image_id, url, store_id, status, position, created_at, \
         updated_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .arg(id.to_string())
    .arg(&l.url)
    .arg(&l.store)
    .arg(l.status.as_str())
    .arg(l.position)
    .arg(now)
    .arg(now)
    .arg(deleted_at)
    .query()
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends an active location in `store` at `url` to image `id` (bumping its version).
/// Returns whether the image exists. A URL [`crate::domain::location::check_url`] refuses is
/// [`Error::Corrupt`]: callers check first.
pub async fn add_location(
    db: &Db,
    id: ImageId,
    store: &str,
    url: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    written(db, id, add_location_tx(db, id, store, url, now).await)
}

async fn add_location_tx(
    db: &Db,
    id: ImageId,
    store: &str,
    url: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    let n = db
        .sql("UPDATE images SET version = version + 1, updated_at = ? WHERE id = ?")
        .arg(to_micros(now))
        .arg(id.to_string())
        .query()
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    append_location(db, &mut tx, id, store, url, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// Writes `image` (its size, hashes and status set by the caller) if its stored version is
/// still `image.version`, and appends an active location in `store` at `url`, in one
/// transaction (an added location checked: `POST /v2/images/{id}/locations`). Whether it was
/// written.
pub async fn update_adding_location(
    db: &Db,
    image: &Image,
    store: &str,
    url: &str,
) -> Result<bool, Error> {
    let outcome = async {
        let mut tx = db.begin().await?;
        if !update_on(db, &mut tx, image).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        append_location(db, &mut tx, image.id, store, url, image.updated_at).await?;
        tx.commit().await?;
        Ok(true)
    }
    .await;
    written(db, image.id, outcome)
}

/// Inserts an active location after the image's last one (call after locking the image row).
async fn append_location(
    db: &Db,
    conn: &mut AnyConnection,
    id: ImageId,
    store: &str,
    url: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let row = db
        .sql("SELECT COALESCE(MAX(position), -1) + 1 AS next FROM image_locations WHERE image_id = ?")
        .arg(id.to_string())
        .query()
        .fetch_one(&mut *conn)
        .await?;
    let position = super::int_required(&row, "next")?;
    let location = Location {
        url: url.to_owned(),
        store: store.to_owned(),
        status: LocationStatus::Active,
        position,
    };
    insert_location(db, conn, id, &location, now).await
}

/// Moves the image's active locations (those at `positions`, or all) to `pending_delete`,
/// each with its `delete_data` job, on `conn` (after the image row was locked in the same
/// transaction). Returns how many moved.
async fn retire_locations(
    db: &Db,
    conn: &mut AnyConnection,
    id: ImageId,
    positions: Option<&[i64]>,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    if positions.is_some_and(<[i64]>::is_empty) {
        return Ok(0);
    }
    let mut sql = db.sql(
        "SELECT url, store_id, position FROM image_locations WHERE image_id = ? AND \
         status IN ('active', 'quarantined')",
    );
    sql = sql.arg(id.to_string());
    if let Some(positions) = positions {
        sql.push(" AND position IN (");
        for (i, p) in positions.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(*p);
        }
        sql.push(")");
    }
    sql.push(" ORDER BY position");
    let rows = sql.query().fetch_all(&mut *conn).await?;
    let mut moved = 0;
    for row in rows {
        let position = super::int_required(&row, "position")?;
        let n = db
            .sql(
                "UPDATE image_locations SET status = 'pending_delete', updated_at = ? WHERE \
                 image_id = ? AND position = ? AND status IN ('active', 'quarantined')",
            )
            .arg(to_micros(now))
            .arg(id.to_string())
            .arg(position)
            .query()
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if n != 1 {
            continue;
        }
        let work = shared::channel::Work::DeleteData {
            image_id: id,
            store: super::text_required(&row, "store_id")?,
            url: super::text_required(&row, "url")?,
        };
        super::jobs::enqueue(db, conn, &work, now).await?;
        moved += 1;
    }
    Ok(moved)
}

async fn write_children(db: &Db, conn: &mut AnyConnection, image: &Image) -> Result<(), Error> {
    let id = image.id.to_string();
    for table in ["image_properties", "image_tags"] {
        db.sql(&format!("DELETE FROM {table} WHERE image_id = ?"))
            .arg(&id)
            .query()
            .execute(&mut *conn)
            .await?;
    }
    if !image.properties.is_empty() {
        let mut sql = db.sql("INSERT INTO image_properties (image_id, name, value) VALUES ");
        for (i, (k, v)) in image.properties.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind(&id)
                .push(", ")
                .bind(k)
                .push(", ")
                .bind(v)
                .push(")");
        }
        sql.query().execute(&mut *conn).await?;
    }
    if !image.tags.is_empty() {
        let mut sql = db.sql("INSERT INTO image_tags (image_id, value) VALUES ");
        for (i, t) in image.tags.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind(&id).push(", ").bind(t).push(")");
        }
        sql.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The image with this id, deleted or not.
///
/// With an exclusive cache a cached image is the answer; with a shared one the row is read and
/// the cached image is the answer if its version is the row's; otherwise the image is loaded
/// (four queries: the row, tags, properties, locations) and cached.
pub async fn get(db: &Db, id: ImageId) -> Result<Option<Arc<Image>>, Error> {
    let cache = db.cache();
    let cached = cache.get(id);
    if cached.is_some() && cache.coherence() == Coherence::Exclusive {
        cache.hit();
        return Ok(cached);
    }
    let ticket = cache.ticket(id);
    let Some(row) = db
        .sql("SELECT * FROM images WHERE id = ?")
        .arg(id.to_string())
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
    else {
        return Ok(None);
    };
    let row = ImageRow::from_row(&row)?;
    if let Some(image) = cached
        && image.version == row.version
    {
        cache.hit();
        return Ok(Some(image));
    }
    cache.miss();
    let Some(image) = attach_children(db, vec![row]).await?.pop() else {
        return Ok(None);
    };
    let image = Arc::new(image);
    cache.fill(ticket, &image);
    Ok(Some(image))
}

/// The images of `SELECT *` rows of `images`, with their tags and properties.
async fn load(db: &Db, rows: &[AnyRow]) -> Result<Vec<Image>, Error> {
    let rows = rows
        .iter()
        .map(ImageRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    attach_children(db, rows).await
}

/// Loads tags, properties and locations for `rows` (three queries for the whole page, on one
/// connection).
async fn attach_children(db: &Db, rows: Vec<ImageRow>) -> Result<Vec<Image>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = db.conn().await?;
    let mut tags: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut props: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut locations: HashMap<String, Vec<Location>> = HashMap::new();
    let in_list = |sql: &mut Sql| {
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(&r.id);
        }
        sql.push(")");
    };

    let mut sql = db.sql("SELECT image_id, value FROM image_tags WHERE image_id IN (");
    in_list(&mut sql);
    let found = sql.query().fetch_all(&mut *conn).await?;
    for row in found {
        tags.entry(super::text_required(&row, "image_id")?)
            .or_default()
            .insert(super::text_required(&row, "value")?);
    }

    let mut sql = db.sql("SELECT image_id, name, value FROM image_properties WHERE image_id IN (");
    in_list(&mut sql);
    let found = sql.query().fetch_all(&mut *conn).await?;
    for row in found {
        props
            .entry(super::text_required(&row, "image_id")?)
            .or_default()
            .insert(
                super::text_required(&row, "name")?,
                super::text_required(&row, "value")?,
            );
    }

    let mut sql = db.sql(
        "SELECT image_id, url, store_id, status, position FROM image_locations WHERE image_id IN (",
    );
    in_list(&mut sql);
    sql.push(" ORDER BY image_id, position");
    let found = sql.query().fetch_all(&mut *conn).await?;
    for row in found {
        let status = super::text_required(&row, "status")?;
        locations
            .entry(super::text_required(&row, "image_id")?)
            .or_default()
            .push(Location {
                url: super::text_required(&row, "url")?,
                store: super::text_required(&row, "store_id")?,
                status: status
                    .parse()
                    .map_err(|_| Error::Corrupt(format!("location status {status:?}")))?,
                position: super::int_required(&row, "position")?,
            });
    }

    rows.into_iter()
        .map(|r| {
            let t = tags.remove(&r.id).unwrap_or_default();
            let p = props.remove(&r.id).unwrap_or_default();
            let l = locations.remove(&r.id).unwrap_or_default();
            r.into_image(t, p, l)
        })
        .collect()
}

/// Records the block hashes of newly committed data, replacing those of earlier data.
async fn record_blocks(
    db: &Db,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: ImageId,
    data: &crate::domain::status::UploadedData,
) -> Result<(), Error> {
    delete_blocks(db, tx, id).await?;
    if data.block_hashes.is_empty() {
        return Ok(());
    }
    let block_size = i64::try_from(data.block_size).map_err(|_| Error::OutOfRange("block_size"))?;
    db.sql("INSERT INTO image_blocks (image_id, block_size, hashes) VALUES (?, ?, ?)")
        .arg(id.to_string())
        .arg(block_size)
        .arg(data.block_hashes.clone())
        .query()
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Forgets the block hashes of an image's data (replaced, or the data gone).
async fn delete_blocks(
    db: &Db,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: ImageId,
) -> Result<(), Error> {
    db.sql("DELETE FROM image_blocks WHERE image_id = ?")
        .arg(id.to_string())
        .query()
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The auditor's next batch: the active locations of up to `max` active images that have
/// block hashes, with ids after `after`, in id order.
pub async fn audit_targets(
    db: &Db,
    after: Option<ImageId>,
    max: u32,
) -> Result<Vec<shared::channel::messages::AuditTarget>, Error> {
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    let ids = db
        .sql(
            "SELECT i.id FROM images i JOIN image_blocks b ON b.image_id = i.id \
             WHERE i.status = 'active' AND i.id > ? ORDER BY i.id LIMIT ?",
        )
        .arg(after.as_str())
        .arg(i64::from(max))
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    let mut out = Vec::new();
    for row in ids {
        let raw = super::text_required(&row, "id")?;
        let Ok(id) = raw.parse::<ImageId>() else {
            continue;
        };
        let (Some(image), Some((block_size, hashes))) =
            (get(db, id).await?, block_hashes(db, id).await?)
        else {
            continue;
        };
        let size = image.size.unwrap_or(0);
        for l in image.active_locations() {
            out.push(shared::channel::messages::AuditTarget {
                image_id: id,
                store: l.store.clone(),
                url: l.url.clone(),
                size,
                block_size,
                hashes: hashes.clone(),
            });
        }
    }
    Ok(out)
}

/// Quarantines the active location `url` of image `id` (its data failed verification): it
/// is never served again. Whether it was active.
pub async fn quarantine(
    db: &Db,
    id: ImageId,
    url: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    // the image row first (every writer locks images, then image_locations)
    db.sql("UPDATE images SET version = version + 1 WHERE id = ?")
        .arg(id.to_string())
        .query()
        .execute(&mut *tx)
        .await?;
    let n = db
        .sql(
            "UPDATE image_locations SET status = 'quarantined', updated_at = ? \
             WHERE image_id = ? AND url = ? AND status = 'active'",
        )
        .arg(to_micros(now))
        .arg(id.to_string())
        .arg(url)
        .query()
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    db.cache().invalidate(id);
    Ok(true)
}

/// Records block hashes for an image's data when none are (computed by a data plane that
/// read and verified the data); whether they were added.
pub async fn add_block_hashes(
    db: &Db,
    id: ImageId,
    block_size: u64,
    hashes: &str,
) -> Result<bool, Error> {
    let block_size = i64::try_from(block_size).map_err(|_| Error::OutOfRange("block_size"))?;
    let mut sql = db.sql(match db.backend() {
        Backend::Mysql => "INSERT IGNORE INTO image_blocks (image_id, block_size, hashes) VALUES (",
        Backend::Sqlite | Backend::Postgres => {
            "INSERT INTO image_blocks (image_id, block_size, hashes) VALUES ("
        }
    });
    sql.bind(id.to_string())
        .push(", ")
        .bind(block_size)
        .push(", ")
        .bind(hashes)
        .push(")");
    if db.backend() != Backend::Mysql {
        sql.push(" ON CONFLICT (image_id) DO NOTHING");
    }
    let n = sql
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// The block size and block hashes recorded with an image's data, if any.
pub async fn block_hashes(db: &Db, id: ImageId) -> Result<Option<(u64, String)>, Error> {
    let row = db
        .sql("SELECT block_size, hashes FROM image_blocks WHERE image_id = ?")
        .arg(id.to_string())
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let size = super::int_required(&row, "block_size")?;
    let size = u64::try_from(size).map_err(|_| Error::Corrupt(format!("block_size {size}")))?;
    Ok(Some((size, super::text_required(&row, "hashes")?)))
}

/// One page of images and whether another page follows.
///
/// With the image cache on, the page query selects only ids and versions; images whose cached
/// version matches come from the cache, the others are loaded together (four queries) and
/// cached.
pub async fn list(db: &Db, query: &ListQuery) -> Result<(Vec<Arc<Image>>, bool), Error> {
    let limit = query.limit as usize;
    let cache = db.cache();
    if cache.coherence() == Coherence::Off {
        let sql = query.build(db.backend());
        let mut rows = sql.query().fetch_all(&mut *db.conn().await?).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let images = load(db, &rows).await?;
        return Ok((images.into_iter().map(Arc::new).collect(), more));
    }
    let snapshot = cache.snapshot();
    let sql = query.build_selecting(db.backend(), "id, version");
    let rows = sql.query().fetch_all(&mut *db.conn().await?).await?;
    let more = rows.len() > limit;
    let mut page: Vec<(ImageId, Option<Arc<Image>>)> = Vec::with_capacity(limit.min(rows.len()));
    let mut missing = Vec::new();
    for row in rows.iter().take(limit) {
        let raw = super::text_required(row, "id")?;
        let id: ImageId = raw
            .parse()
            .map_err(|_| Error::Corrupt(format!("image id {raw:?}")))?;
        let version = super::int_required(row, "version")?;
        match cache.get(id).filter(|i| i.version == version) {
            Some(image) => {
                cache.hit();
                page.push((id, Some(image)));
            }
            None => {
                cache.miss();
                missing.push(id);
                page.push((id, None));
            }
        }
    }
    if !missing.is_empty() {
        let mut sql = db.sql("SELECT * FROM images WHERE id IN (");
        for (i, id) in missing.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.to_string());
        }
        sql.push(")");
        let rows = sql.query().fetch_all(&mut *db.conn().await?).await?;
        let mut loaded: HashMap<ImageId, Arc<Image>> = load(db, &rows)
            .await?
            .into_iter()
            .map(|i| {
                let i = Arc::new(i);
                cache.fill_after(&snapshot, &i);
                (i.id, i)
            })
            .collect();
        for (id, slot) in page.iter_mut() {
            if slot.is_none() {
                *slot = loaded.remove(id);
            }
        }
    }
    // Rows are never deleted, so every id of the page was found.
    Ok((page.into_iter().filter_map(|(_, i)| i).collect(), more))
}

/// The SQL text of a list query on this backend (for plan inspection).
pub fn list_sql(db: &Db, query: &ListQuery) -> String {
    query.build(db.backend()).text().to_owned()
}

/// Writes every field of `image` (and replaces its properties and tags) if the stored version
/// is still `image.version`. Returns `false`, changing nothing, when someone else wrote first.
///
/// Of its locations only one change is written: each one the domain moved from `active` to
/// `pending_delete` ([`Image::retire_locations`], [`Image::remove_from_store`]) is moved so,
/// with its `delete_data` job. (The version guard makes the stored locations the ones `image`
/// was read with; locations are added by [`apply_move`] and [`add_location`] only.)
pub async fn update(db: &Db, image: &Image) -> Result<bool, Error> {
    written(db, image.id, update_tx(db, image).await)
}

async fn update_tx(db: &Db, image: &Image) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    if !update_on(db, &mut tx, image).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// [`update`] on `conn`, inside the caller's transaction (which it leaves to the caller to
/// commit, or to roll back on `false`); the caller invalidates the image cache
/// ([`invalidate`]) after committing.
pub(crate) async fn update_on(
    db: &Db,
    conn: &mut AnyConnection,
    image: &Image,
) -> Result<bool, Error> {
    let mut sql = db.sql("UPDATE images SET version = version + 1");
    for (column, value) in columns(image)? {
        sql.push(", ").push(column).push(" = ").bind(value);
    }
    sql.push(" WHERE id = ")
        .bind(image.id.to_string())
        .push(" AND version = ")
        .bind(image.version);
    let done = sql.query().execute(&mut *conn).await?.rows_affected();
    if done != 1 {
        return Ok(false);
    }
    write_children(db, conn, image).await?;
    let retired: Vec<i64> = image
        .locations
        .iter()
        .filter(|l| l.status == LocationStatus::PendingDelete)
        .map(|l| l.position)
        .collect();
    retire_locations(db, conn, image.id, Some(&retired), image.updated_at).await?;
    Ok(true)
}

/// Commits a stage: `image` (its size and `os_glance_stage_host` set by the caller, still
/// `uploading`) is written if its stored version is still `image.version`, and the stage's
/// held leftover jobs are dropped in the same transaction ([`super::jobs::settle_commit`]:
/// [`Error::CleanupPending`] while a delete of the staged data at `url` is still queued).
pub async fn commit_stage(db: &Db, image: &Image, url: &str) -> Result<bool, Error> {
    let outcome = async {
        let mut tx = db.begin().await?;
        if !update_on(db, &mut tx, image).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        super::jobs::settle_commit(db, &mut tx, image.id, url).await?;
        tx.commit().await?;
        Ok(true)
    }
    .await;
    written(db, image.id, outcome)
}

/// Drops image `id` from the image cache (after a write made with [`update_on`]).
pub(crate) fn invalidate(db: &Db, id: ImageId) {
    db.cache().invalidate(id);
}

/// Executes the status move `m` on image `id`, only if the image is still in `m.from`:
/// `UPDATE images SET status = <to>, <m's data fields>, updated_at = ?, version = version + 1
/// WHERE id = ? AND status = <from>`. Returns whether it moved. Which move, and what it does to
/// the fields, the domain decides ([`Move`]); a move that records an upload adds its location,
/// one that retires the locations moves them to `pending_delete` with their jobs, in the same
/// transaction.
pub async fn apply_move(db: &Db, id: ImageId, m: &Move, now: DateTime<Utc>) -> Result<bool, Error> {
    apply_move_if(db, id, m, None, now).await
}

/// [`apply_move`], also only if the stored version is still `version` (when given).
pub async fn apply_move_if(
    db: &Db,
    id: ImageId,
    m: &Move,
    version: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    written(db, id, apply_move_tx(db, id, m, version, now).await)
}

async fn apply_move_tx(
    db: &Db,
    id: ImageId,
    m: &Move,
    version: Option<i64>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut sql = db.sql("UPDATE images SET status = ");
    sql.bind(m.to.as_str());
    match &m.data {
        DataChange::Keep | DataChange::RetireLocations => {}
        DataChange::Record(data) => {
            let size = i64::try_from(data.size).map_err(|_| Error::OutOfRange("size"))?;
            let virtual_size = data
                .virtual_size
                .map(i64::try_from)
                .transpose()
                .map_err(|_| Error::OutOfRange("virtual_size"))?;
            sql.push(", size = ")
                .bind(size)
                .push(", virtual_size = ")
                .bind(virtual_size)
                .push(", checksum = ")
                .bind(&data.checksum)
                .push(", os_hash_algo = ")
                .bind(&data.os_hash_algo)
                .push(", os_hash_value = ")
                .bind(&data.os_hash_value);
        }
        DataChange::Clear => {
            sql.push(
                ", size = NULL, virtual_size = NULL, checksum = NULL, os_hash_algo = NULL, \
                 os_hash_value = NULL",
            );
        }
    }
    sql.push(", updated_at = ")
        .bind(to_micros(now))
        .push(", version = version + 1 WHERE id = ")
        .bind(id.to_string())
        .push(" AND status = ")
        .bind(m.from.as_str());
    if let Some(v) = version {
        sql.push(" AND version = ").bind(v);
    }
    if matches!(m.data, DataChange::Keep | DataChange::Clear) {
        let n = sql
            .query()
            .execute(&mut *db.conn().await?)
            .await?
            .rows_affected();
        return Ok(n == 1);
    }
    let mut tx = db.begin().await?;
    if sql.query().execute(&mut *tx).await?.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    match &m.data {
        DataChange::Record(data) => {
            // a delete of this URL queued or running would take the new data with it
            super::jobs::settle_commit(db, &mut tx, id, &data.location).await?;
            append_location(db, &mut tx, id, &data.store, &data.location, now).await?;
            record_blocks(db, &mut tx, id, data).await?;
        }
        DataChange::RetireLocations => {
            retire_locations(db, &mut tx, id, None, now).await?;
            // the data goes, and with it what described its blocks
            delete_blocks(db, &mut tx, id).await?;
        }
        DataChange::Keep | DataChange::Clear => {}
    }
    tx.commit().await?;
    Ok(true)
}

/// How many images have each status (one `GROUP BY` over the status index; the metrics
/// task reads it every few seconds).
pub async fn status_counts(db: &Db) -> Result<Vec<(ImageStatus, i64)>, Error> {
    let rows = db
        .sql("SELECT status, COUNT(*) AS n FROM images GROUP BY status")
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let raw = super::text_required(&row, "status")?;
        let status: ImageStatus = raw
            .parse()
            .map_err(|_| Error::Corrupt(format!("image status {raw:?}")))?;
        out.push((status, super::int_required(&row, "n")?));
    }
    Ok(out)
}

/// Image data at rest per store: the sizes of the images behind each store's active
/// locations, summed (one `GROUP BY`; the metrics task reads it every few seconds).
pub async fn bytes_by_store(db: &Db) -> Result<Vec<(String, i64)>, Error> {
    // SUM of a BIGINT is NUMERIC on PostgreSQL and DECIMAL on MySQL: cast it back
    let int = match db.backend() {
        super::Backend::Mysql => "SIGNED",
        super::Backend::Postgres => "BIGINT",
        super::Backend::Sqlite => "INTEGER",
    };
    let rows = db
        .sql(&format!(
            "SELECT l.store_id AS store, CAST(COALESCE(SUM(i.size), 0) AS {int}) AS bytes \
             FROM image_locations l JOIN images i ON i.id = l.image_id \
             WHERE l.status = 'active' GROUP BY l.store_id"
        ))
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                super::text_required(r, "store")?,
                super::int_required(r, "bytes")?,
            ))
        })
        .collect()
}

/// At start-up no upload can be in flight: every `saving` image goes back to `queued`, and so
/// does every `uploading` one whose stage never committed (no `os_glance_stage_host`; a
/// staged image waits for its import). Returns the ids that moved, with the status each left.
pub async fn reset_all_saving(
    db: &Db,
    now: DateTime<Utc>,
) -> Result<Vec<(ImageId, ImageStatus)>, Error> {
    let rows = db
        .sql("SELECT id, status FROM images WHERE status IN ('saving', 'uploading')")
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    let mut moved = Vec::new();
    for row in rows {
        let raw = super::text_required(&row, "id")?;
        let id: ImageId = raw
            .parse()
            .map_err(|_| Error::Corrupt(format!("image id {raw:?}")))?;
        let step = if super::text_required(&row, "status")? == "saving" {
            Move::revert_upload()
        } else {
            let staged = get(db, id)
                .await?
                .is_some_and(|i| i.properties.contains_key(crate::domain::import::STAGE_HOST));
            if staged {
                continue;
            }
            Move::revert_stage()
        };
        if apply_move(db, id, &step, now).await? {
            moved.push((id, step.from));
        }
    }
    Ok(moved)
}

/// Locations recorded before multi-store name the legacy store `file`
/// ([`shared::config::LEGACY_STORE_ID`]). Once `enabled_backends` is set, each such location
/// that `owner` gives another store (the filesystem store whose directory holds it) moves to
/// that store, with its image's version bumped. Returns how many moved.
pub async fn adopt_legacy_locations(
    db: &Db,
    owner: impl Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let legacy = shared::config::LEGACY_STORE_ID;
    let rows = db
        .sql("SELECT id, image_id, url FROM image_locations WHERE store_id = ? AND status <> 'deleted'")
        .arg(legacy)
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    let mut moved = 0;
    for row in rows {
        let url = super::text_required(&row, "url")?;
        let Some(store) = owner(&url).filter(|s| s != legacy) else {
            continue;
        };
        let loc = super::int_required(&row, "id")?;
        let image = super::text_required(&row, "image_id")?;
        let mut tx = db.begin().await?;
        db.sql("UPDATE images SET version = version + 1 WHERE id = ?")
            .arg(&image)
            .query()
            .execute(&mut *tx)
            .await?;
        let n = db
            .sql("UPDATE image_locations SET store_id = ?, updated_at = ? WHERE id = ? AND store_id = ?")
            .arg(&store)
            .arg(to_micros(now))
            .arg(loc)
            .arg(legacy)
            .query()
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if let Ok(id) = image.parse::<ImageId>() {
            db.cache().invalidate(id);
        }
        moved += n;
    }
    Ok(moved)
}

/// `pending_delete` images deleted at or before `before`, oldest first (at most `limit`).
pub async fn pending_deletes(
    db: &Db,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Image>, Error> {
    let rows = db
        .sql(
            "SELECT * FROM images WHERE status = 'pending_delete' AND deleted_at <= ? \
             ORDER BY deleted_at LIMIT ?",
        )
        .arg(to_micros(before))
        .arg(limit)
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    load(db, &rows).await
}

/// Current status of an image, if it exists.
pub async fn status(db: &Db, id: ImageId) -> Result<Option<ImageStatus>, Error> {
    let row = db
        .sql("SELECT status FROM images WHERE id = ?")
        .arg(id.to_string())
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?;
    row.map(|r| {
        let s = super::text_required(&r, "status")?;
        s.parse()
            .map_err(|_| Error::Corrupt(format!("status {s:?}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::scratch::ScratchDb;
    use crate::db::{Backend, MemberStatusFilter, Scope, SortDir, SortKey, VisibilityFilter};
    use crate::domain::UploadedData;
    use crate::domain::image::tests::sample;
    use chrono::Duration;

    async fn db(backend: Backend) -> (ScratchDb, Db) {
        let scratch = ScratchDb::create(backend).await;
        let db = Db::connect(scratch.url(), 4).await.unwrap();
        db.migrate().await.unwrap();
        (scratch, db)
    }

    fn query(sort: Vec<(SortKey, SortDir)>, marker: Option<Arc<Image>>, limit: u32) -> ListQuery {
        ListQuery {
            scope: Scope::All,
            visibility: VisibilityFilter::All,
            member_status: MemberStatusFilter::default(),
            filters: vec![],
            sort,
            tie_break_dir: SortDir::Desc,
            limit,
            marker,
        }
    }

    #[tokio::test]
    async fn counts_by_status_and_bytes_by_store_on_every_backend() {
        for backend in Backend::ALL {
            let (_scratch, db) = db(backend).await;
            for (store, size) in [("a", 100i64), ("a", 50), ("b", 7)] {
                let mut img = sample();
                img.id = ImageId::new_random();
                img.status = ImageStatus::Active;
                img.size = Some(size as u64);
                img.locations = vec![crate::domain::Location {
                    url: format!("file:///d/{}", img.id),
                    store: store.into(),
                    status: crate::domain::LocationStatus::Active,
                    position: 0,
                }];
                insert(&db, &img).await.unwrap();
            }
            let mut bytes = bytes_by_store(&db).await.unwrap();
            bytes.sort();
            assert_eq!(
                bytes,
                [("a".to_owned(), 150), ("b".to_owned(), 7)],
                "{backend:?}"
            );
            let counts = status_counts(&db).await.unwrap();
            assert_eq!(counts, [(ImageStatus::Active, 3)], "{backend:?}");
        }
    }

    #[tokio::test]
    async fn derived_block_hashes_audit_targets_and_quarantine_on_every_backend() {
        use crate::domain::{Location, LocationStatus};
        for backend in Backend::ALL {
            let (_scratch, db) = db(backend).await;
            let mut img = sample();
            img.id = ImageId::new_random();
            img.status = ImageStatus::Active;
            img.size = Some(3);
            img.locations = ["file:///d/a", "s3://b/a"]
                .iter()
                .enumerate()
                .map(|(i, url)| Location {
                    url: (*url).into(),
                    store: "file".into(),
                    status: LocationStatus::Active,
                    position: i as i64,
                })
                .collect();
            insert(&db, &img).await.unwrap();
            // no hashes yet: nothing to audit
            assert!(audit_targets(&db, None, 10).await.unwrap().is_empty());
            let hashes = "0123456789abcdef0123456789abcdef";
            assert!(add_block_hashes(&db, img.id, 2, hashes).await.unwrap());
            assert!(
                !add_block_hashes(&db, img.id, 2, "ffffffffffffffffffffffffffffffff")
                    .await
                    .unwrap(),
                "{backend:?}: replaced recorded hashes"
            );
            assert_eq!(
                block_hashes(&db, img.id).await.unwrap(),
                Some((2, hashes.to_owned()))
            );
            let targets = audit_targets(&db, None, 10).await.unwrap();
            assert_eq!(targets.len(), 2, "{backend:?}");
            assert!(
                audit_targets(&db, Some(img.id), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // a quarantined copy is not served, nor audited, but is still the image's data
            assert!(
                quarantine(&db, img.id, "file:///d/a", Utc::now())
                    .await
                    .unwrap()
            );
            assert!(
                !quarantine(&db, img.id, "file:///d/a", Utc::now())
                    .await
                    .unwrap()
            );
            let now = get(&db, img.id).await.unwrap().unwrap();
            assert_eq!(now.locations[0].status, LocationStatus::Quarantined);
            assert_eq!(now.active_locations().count(), 1);
            assert!(now.has_data());
            assert_eq!(now.version, img.version + 1, "{backend:?}");
            assert_eq!(audit_targets(&db, None, 10).await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn insert_get_update_round_trip() {
        for backend in Backend::ALL {
            insert_get_update(backend).await;
        }
    }

    async fn insert_get_update(backend: Backend) {
        let (_scratch, db) = db(backend).await;
        let mut img = sample();
        img.tags.insert("t1".into());
        img.properties.insert("os_distro".into(), "cirros".into());
        img.properties.insert("long".into(), "é".repeat(20_000));
        img.properties.insert("empty.dotted".into(), String::new());
        insert(&db, &img).await.unwrap();
        assert!(matches!(insert(&db, &img).await, Err(Error::Duplicate)));
        let got = get(&db, img.id).await.unwrap().unwrap();
        assert_eq!(*got, img);

        let mut changed = (*got).clone();
        changed.name = Some("renamed".into());
        changed.properties.clear();
        assert!(update(&db, &changed).await.unwrap());
        // stale version: refused, nothing written
        let mut stale = (*got).clone();
        stale.name = Some("lost".into());
        assert!(!update(&db, &stale).await.unwrap());
        let now = get(&db, img.id).await.unwrap().unwrap();
        assert_eq!(now.name.as_deref(), Some("renamed"));
        assert!(now.properties.is_empty());
        assert_eq!(now.version, 1);
        db.close().await;
    }

    #[tokio::test]
    async fn the_cache_never_serves_a_stale_image() {
        for backend in Backend::ALL {
            cache_coherence(backend).await;
        }
    }

    /// Two pools on one database stand for two glint nodes: node `b` writes behind the back of
    /// node `a`'s shared cache, which must notice from the row's version; writes through `a`
    /// itself are seen at once in every mode.
    async fn cache_coherence(backend: Backend) {
        use shared::config::ImageCacheMode;
        let (scratch, a) = db(backend).await;
        let b = Db::connect_with(scratch.url(), 2, ImageCacheMode::Shared, 1 << 20)
            .await
            .unwrap();
        let a_shared = Db::connect_with(scratch.url(), 2, ImageCacheMode::Shared, 1 << 20)
            .await
            .unwrap();
        let mut img = sample();
        img.tags.insert("t".into());
        insert(&a, &img).await.unwrap();
        // cached on both nodes
        assert_eq!(*get(&a, img.id).await.unwrap().unwrap(), img);
        assert_eq!(*get(&a_shared, img.id).await.unwrap().unwrap(), img);
        let hits = a_shared.cache().stats().hits;
        assert_eq!(*get(&a_shared, img.id).await.unwrap().unwrap(), img);
        assert_eq!(a_shared.cache().stats().hits, hits + 1);

        // b changes tags and a property: a shared cache sees the new version at once
        let mut changed = img.clone();
        changed.tags.insert("u".into());
        changed
            .properties
            .insert("os_distro".into(), "debian".into());
        assert!(update(&b, &changed).await.unwrap());
        let seen = get(&a_shared, img.id).await.unwrap().unwrap();
        assert_eq!(seen.tags.len(), 2);
        assert_eq!(seen.properties["os_distro"], "debian");
        assert_eq!(seen.version, 1);
        // and in lists
        let (page, _) = list(&a_shared, &query(vec![], None, 10)).await.unwrap();
        assert_eq!(page[0].version, 1);

        // writes through a node invalidate its own cache, exclusive or not
        let now = Utc::now();
        let begin = Move::between(ImageStatus::Queued, ImageStatus::Saving).unwrap();
        assert!(apply_move(&a, img.id, &begin, now).await.unwrap());
        assert_eq!(
            get(&a, img.id).await.unwrap().unwrap().status,
            ImageStatus::Saving
        );
        assert!(
            apply_move(&a, img.id, &Move::revert_upload(), now)
                .await
                .unwrap()
        );
        assert_eq!(
            get(&a, img.id).await.unwrap().unwrap().status,
            ImageStatus::Queued
        );
        let mut renamed = (*get(&a_shared, img.id).await.unwrap().unwrap()).clone();
        renamed.name = Some("renamed".into());
        assert!(update(&a_shared, &renamed).await.unwrap());
        assert_eq!(
            get(&a_shared, img.id)
                .await
                .unwrap()
                .unwrap()
                .name
                .as_deref(),
            Some("renamed")
        );
        let (page, _) = list(&a_shared, &query(vec![], None, 10)).await.unwrap();
        assert_eq!(page[0].name.as_deref(), Some("renamed"));
        for d in [a, b, a_shared] {
            d.close().await;
        }
    }

    #[tokio::test]
    async fn status_moves_are_conditional() {
        for backend in Backend::ALL {
            status_moves(backend).await;
        }
    }

    /// Executes `m` in the database and, when it moved, on `mirror` too (with
    /// [`Move::apply`]); either way the stored image must then equal `mirror`: a refused move
    /// changes nothing (not even the version), an executed one exactly what the domain says.
    /// Read back through the image cache, so a stale cache entry fails too.
    async fn step(db: &Db, mirror: &mut Image, m: &Move) -> bool {
        let now = Utc::now();
        let moved = apply_move(db, mirror.id, m, now).await.unwrap();
        let stored = get(db, mirror.id).await.unwrap().unwrap();
        if moved {
            m.apply(mirror);
            mirror.version += 1;
            mirror.updated_at = super::super::row::from_micros(to_micros(now)).unwrap();
        }
        assert_eq!(*stored, *mirror, "{m:?} (moved: {moved})");
        moved
    }

    async fn status_moves(backend: Backend) {
        let (_scratch, db) = db(backend).await;
        let mut img = sample();
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        insert(&db, &img).await.unwrap();
        let data = UploadedData {
            size: 3,
            checksum: "c".into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: "h".into(),
            location: "file:///x".into(),
            store: "file".into(),
            virtual_size: Some(1 << 40),
            block_size: 8 << 20,
            block_hashes: "00000000000000ff".repeat(20_000),
        };
        let commit = Move::commit_upload(data);
        let begin = img.begin_upload().unwrap();
        assert!(!step(&db, &mut img, &commit).await, "not saving yet");
        assert!(step(&db, &mut img, &begin).await);
        assert!(!step(&db, &mut img, &begin).await, "someone else began");
        assert_eq!(
            reset_all_saving(&db, Utc::now()).await.unwrap(),
            vec![(img.id, ImageStatus::Saving)]
        );
        Move::revert_upload().apply(&mut img);
        img.version += 1;
        img.updated_at = get(&db, img.id).await.unwrap().unwrap().updated_at;
        assert!(step(&db, &mut img, &begin).await);
        assert!(step(&db, &mut img, &commit).await);
        assert_eq!((img.status, img.size), (ImageStatus::Active, Some(3)));
        let stored = get(&db, img.id).await.unwrap().unwrap();
        assert_eq!(stored.virtual_size, Some(1 << 40));
        // the block hashes (a 156 GiB image's worth: more than a TEXT column of MySQL holds)
        let (size, hashes) = block_hashes(&db, img.id).await.unwrap().unwrap();
        assert_eq!((size, hashes.len()), (8 << 20, 320_000));
        assert_eq!(
            img.locations,
            [Location {
                url: "file:///x".into(),
                store: "file".into(),
                status: LocationStatus::Active,
                position: 0
            }]
        );
        assert!(!step(&db, &mut img, &Move::revert_upload()).await);

        // delayed delete: pending_delete → deleted by the scrubber, once
        let now = Utc::now();
        let mut pending = (*get(&db, img.id).await.unwrap().unwrap()).clone();
        pending.status = ImageStatus::PendingDelete;
        pending.deleted_at = Some(now - Duration::seconds(10));
        assert!(update(&db, &pending).await.unwrap());
        assert!(
            pending_deletes(&db, now - Duration::seconds(20), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let due = pending_deletes(&db, now, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        let mut img = (*get(&db, img.id).await.unwrap().unwrap()).clone();
        assert!(step(&db, &mut img, &Move::finish_delete()).await);
        assert!(!step(&db, &mut img, &Move::finish_delete()).await);
        assert_eq!(img.status, ImageStatus::Deleted);
        assert_eq!(img.locations[0].status, LocationStatus::PendingDelete);
        assert_eq!(block_hashes(&db, img.id).await.unwrap(), None);
        // the data goes by a job, enqueued with the move
        let jobs = crate::db::jobs::all(&db).await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(
            (
                jobs[0].kind.as_str(),
                jobs[0].url.as_str(),
                jobs[0].store_id.as_str()
            ),
            ("delete_data", "file:///x", "file")
        );
        db.close().await;
    }

    #[tokio::test]
    async fn keyset_pages_cover_everything_once() {
        for backend in Backend::ALL {
            keyset_pages(backend).await;
        }
    }

    async fn keyset_pages(backend: Backend) {
        let (_scratch, db) = db(backend).await;
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
            img.size = (i % 2 == 0).then_some(i as u64);
            insert(&db, &img).await.unwrap();
            ids.push(img.id);
        }
        let keys = [
            SortKey::Name,
            SortKey::Status,
            SortKey::ContainerFormat,
            SortKey::DiskFormat,
            SortKey::Size,
            SortKey::Id,
            SortKey::CreatedAt,
            SortKey::UpdatedAt,
        ];
        let mut sorts = vec![
            vec![],
            vec![
                (SortKey::Size, SortDir::Asc),
                (SortKey::Name, SortDir::Desc),
            ],
            vec![
                (SortKey::Name, SortDir::Desc),
                (SortKey::Size, SortDir::Desc),
            ],
        ];
        for key in keys {
            sorts.push(vec![(key, SortDir::Asc)]);
            sorts.push(vec![(key, SortDir::Desc)]);
        }
        // one page with everything: the reference order
        for sort in sorts {
            let (all, _) = list(&db, &query(sort.clone(), None, 100)).await.unwrap();
            let all: Vec<ImageId> = all.iter().map(|i| i.id).collect();
            let mut seen = Vec::new();
            let mut marker = None;
            loop {
                let q = query(sort.clone(), marker.clone(), 3);
                let (page, more) = list(&db, &q).await.unwrap();
                seen.extend(page.iter().map(|i| i.id));
                if !more {
                    break;
                }
                marker = page.last().cloned();
            }
            assert_eq!(all.len(), 7, "{backend:?} {sort:?}");
            assert_eq!(
                seen, all,
                "{backend:?} {sort:?}: pages differ from one big page"
            );
        }
        db.close().await;
    }

    #[tokio::test]
    async fn a_late_page_seeks_the_index_like_the_first() {
        // SQLite's plan for the default order, first page and a page after a marker: both
        // walk the (created_at, id) index (no temp b-tree sort, no OFFSET).
        let (_scratch, db) = db(Backend::Sqlite).await;
        let marker = Arc::new(sample());
        for sort in [
            vec![],
            vec![(SortKey::Name, SortDir::Asc)],
            vec![(SortKey::Size, SortDir::Desc)],
            vec![(SortKey::UpdatedAt, SortDir::Asc)],
        ] {
            for m in [None, Some(marker.clone())] {
                let mut q = query(sort.clone(), m.clone(), 25);
                // as `sort_key=name&sort_dir=asc` gives: one direction for every key
                q.tie_break_dir = sort.first().map_or(SortDir::Desc, |s| s.1);
                let sql = q.build(Backend::Sqlite);
                assert!(!sql.text().contains("OFFSET"));
                let mut explain = crate::db::Sql::new(Backend::Sqlite);
                explain.push("EXPLAIN QUERY PLAN ").push(sql.text());
                for a in sql.args() {
                    explain = explain.arg(a.clone());
                }
                let rows = explain
                    .query()
                    .fetch_all(&mut *db.conn().await.unwrap())
                    .await
                    .unwrap();
                let plan: Vec<String> = rows
                    .iter()
                    .map(|r| crate::db::text_required(r, "detail").unwrap())
                    .collect();
                let plan = plan.join("\n");
                assert!(plan.contains("USING INDEX"), "{sort:?} {m:?}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{sort:?}: {plan}");
                if m.is_some() {
                    // the marker bound is an index range, not a filter over a full scan
                    assert!(plan.contains("SEARCH images"), "{sort:?}: {plan}");
                }
            }
        }
        db.close().await;
    }
}
