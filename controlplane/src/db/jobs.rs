//! The `jobs` table: work the control plane asks of the data plane (`delete_data`,
//! `abort_upload`: removing what a failed upload left, and `prefetch`: filling one node's block
//! cache), persisted so that nothing is lost when either process dies.
//!
//! A job with a `node` (a `prefetch`, [`enqueue_prefetch`]) is claimed only by the control
//! plane of that node (its `worker_self_reference_url`), for its data plane; every other job by
//! any.
//!
//! Lifecycle of a row (every step a conditional statement, so several control planes on one
//! PostgreSQL or MariaDB never hand one job to two claimers at once):
//!
//! 1. `enqueue` inserts it `pending`, due at once, inside the caller's transaction (the one
//!    that moves its location to `pending_delete`). `dedup_key` (sha256 of kind and url) is
//!    unique, so enqueuing the same work twice is a no-op on all three databases.
//!    An upload's leftovers ([`record_leftover`]) are inserted `held` instead: not claimable
//!    while the upload runs. The commit of the upload deletes them ([`settle_commit`]); any
//!    other end of the upload lease makes them due at once ([`release`]; at start-up, when no
//!    lease survived, [`release_all_held`]).
//! 2. [`claim`] takes up to `max` due rows — `pending` with `not_before <= now`, or `claimed`
//!    whose lease ran out (`lease_until < now`: the data plane that held it died) — each by
//!    `UPDATE … WHERE id = ? AND attempts = <read> AND <due>`; only a row actually changed
//!    is handed out, with `lease_until = now + lease` and `attempts + 1`. An `abort_upload`
//!    of the object itself (no payload) is first checked against the image: while it is
//!    `saving` the job waits ([`BUSY_RETRY_SECONDS`]); when a location of the image has that
//!    URL (a later upload committed there) the job is dropped unrun.
//! 3. [`done`] deletes the row and, for `delete_data`, marks its location `deleted` (bumping
//!    the image's version, so image caches reload); a job already gone is fine.
//! 4. [`failed`] puts a claimed row back to `pending` with `not_before = now + backoff`
//!    ([`backoff_seconds`]) and keeps the error text.
//!
//! Deletes never race a commit: [`settle_commit`], in the commit's transaction, drops the
//! pending object aborts its data supersedes, and refuses the commit while a delete of that
//! URL is queued or running (the upload is answered 409 and may be sent again).

use super::row::{from_micros, to_micros};
use super::{Backend, Db, Error, int_required, text, text_required};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use shared::channel::{Job, Work};
use shared::image::ImageId;
use sqlx::AnyConnection;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `kind` of a `delete_data` job.
pub const DELETE_DATA: &str = Work::<String>::KINDS[0];
/// The `kind` of an `abort_upload` job.
pub const ABORT_UPLOAD: &str = Work::<String>::KINDS[1];
/// The `kind` of a `prefetch` job.
pub const PREFETCH: &str = Work::<String>::KINDS[2];
/// The `kind` of an `import` job (its `url` is the task id).
pub const IMPORT: &str = Work::<String>::KINDS[3];

/// Every job kind (metric labels).
pub const KINDS: [&str; 4] = [DELETE_DATA, ABORT_UPLOAD, PREFETCH, IMPORT];

/// How long an `abort_upload` of an object waits while its image is `saving` again.
pub const BUSY_RETRY_SECONDS: i64 = 30;

/// Longest `last_error` kept, in bytes.
const MAX_ERROR_BYTES: usize = 1024;

/// Longest wait before a failed job is retried.
pub const MAX_BACKOFF_SECONDS: u64 = 3600;

/// Jobs enqueued through one [`Db`] since start, by kind (published as a metric at scrape).
#[derive(Debug, Default)]
pub struct Enqueued {
    delete_data: AtomicU64,
    abort_upload: AtomicU64,
    prefetch: AtomicU64,
    import: AtomicU64,
}

impl Enqueued {
    /// Jobs of `kind` enqueued so far.
    pub fn get(&self, kind: &str) -> u64 {
        match kind {
            DELETE_DATA => self.delete_data.load(Ordering::Relaxed),
            ABORT_UPLOAD => self.abort_upload.load(Ordering::Relaxed),
            PREFETCH => self.prefetch.load(Ordering::Relaxed),
            IMPORT => self.import.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    fn add(&self, kind: &str) {
        match kind {
            DELETE_DATA => self.delete_data.fetch_add(1, Ordering::Relaxed),
            ABORT_UPLOAD => self.abort_upload.fetch_add(1, Ordering::Relaxed),
            PREFETCH => self.prefetch.fetch_add(1, Ordering::Relaxed),
            IMPORT => self.import.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// The static name of a stored kind (metric labels).
fn known_kind(kind: &str) -> &'static str {
    match kind {
        DELETE_DATA => DELETE_DATA,
        ABORT_UPLOAD => ABORT_UPLOAD,
        PREFETCH => PREFETCH,
        IMPORT => IMPORT,
        _ => "other",
    }
}

fn dedup_key(kind: &str, url: &str) -> String {
    dedup_key_of(&[kind, url])
}

fn dedup_key_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0]);
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Seconds to wait before retrying a job whose `attempts`-th claim failed:
/// `min(5 · 2^(attempts-1), 3600)` (5 s, 10 s, 20 s, … one hour).
pub fn backoff_seconds(attempts: u32) -> u64 {
    let exp = attempts.saturating_sub(1).min(20);
    (5u64 << exp).min(MAX_BACKOFF_SECONDS)
}

/// Inserts `work` as a pending job due at `now`, on `conn` (inside the caller's transaction);
/// returns whether a row was added (`false`: the same work is already queued).
pub(crate) async fn enqueue(
    db: &Db,
    conn: &mut AnyConnection,
    work: &Work,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let kind = work.kind();
    let Work::DeleteData {
        image_id,
        store,
        url,
    } = work
    else {
        return Err(Error::Corrupt(
            "upload leftovers are recorded with record_leftover".into(),
        ));
    };
    let key = dedup_key(kind, url);
    let row = Pending {
        kind,
        key: &key,
        image: &image_id.to_string(),
        store,
        url,
        node: None,
    };
    insert_pending(db, conn, &row, now).await
}

/// A pending job row to insert.
struct Pending<'a> {
    kind: &'static str,
    key: &'a str,
    image: &'a str,
    store: &'a str,
    url: &'a str,
    node: Option<&'a str>,
}

/// Inserts `row` pending, due at `now`, unless a job with its dedup key exists; whether it
/// was added.
async fn insert_pending(
    db: &Db,
    conn: &mut AnyConnection,
    row: &Pending<'_>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let now = to_micros(now);
    if db.backend() == Backend::Mysql {
        // MySQL counts a row found by ON DUPLICATE KEY UPDATE as affected (sqlx asks for
        // found rows), so the answer comes from a look first; the upsert below still keeps
        // a concurrent enqueue from failing (it would only be counted twice).
        let found = db
            .sql("SELECT id FROM jobs WHERE dedup_key = ?")
            .arg(row.key)
            .query()
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_some() {
            return Ok(false);
        }
    }
    let mut sql = db.sql(
        "INSERT INTO jobs (kind, dedup_key, image_id, store_id, url, node, state, attempts, \
         not_before, lease_until, last_error, created_at, updated_at) VALUES (",
    );
    sql.bind(row.kind)
        .push(", ")
        .bind(row.key)
        .push(", ")
        .bind(row.image)
        .push(", ")
        .bind(row.store)
        .push(", ")
        .bind(row.url)
        .push(", ")
        .bind(row.node)
        .push(", 'pending', 0, ")
        .bind(now)
        .push(", NULL, NULL, ")
        .bind(now)
        .push(", ")
        .bind(now)
        .push(")");
    sql.push(match db.backend() {
        // a duplicate must not abort the caller's transaction (PostgreSQL would)
        Backend::Mysql => " ON DUPLICATE KEY UPDATE id = id",
        Backend::Sqlite | Backend::Postgres => " ON CONFLICT (dedup_key) DO NOTHING",
    });
    let n = sql.query().execute(&mut *conn).await?.rows_affected();
    if n == 1 {
        db.jobs_enqueued().add(row.kind);
    }
    Ok(n == 1)
}

/// Records what a running upload of `image_id` into `store` may leave at `url` (`upload`: a
/// multipart upload id or segment prefix; `None`: the object itself) as a `held` job; returns
/// its id, for [`release`] when the upload does not commit. With `node`, only that node's
/// data plane is handed the job (a stage's leftover is in that node's staging directory).
#[allow(clippy::too_many_arguments)]
pub async fn record_leftover(
    db: &Db,
    image_id: ImageId,
    store: &str,
    url: &str,
    upload: Option<&str>,
    node: Option<&str>,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let at = to_micros(now);
    // never deduplicated: each upload attempt has its own (an attempt's object abort may wait
    // beside an earlier attempt's)
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let key = dedup_key_of(&[ABORT_UPLOAD, url, upload.unwrap_or(""), &nonce]);
    let mut sql = db.sql(
        "INSERT INTO jobs (kind, dedup_key, image_id, store_id, url, payload, node, state, \
         attempts, not_before, lease_until, last_error, created_at, updated_at) VALUES (",
    );
    sql.bind(ABORT_UPLOAD)
        .push(", ")
        .bind(&key)
        .push(", ")
        .bind(image_id.to_string())
        .push(", ")
        .bind(store)
        .push(", ")
        .bind(url)
        .push(", ")
        .bind(upload)
        .push(", ")
        .bind(node)
        .push(", 'held', 0, ")
        .bind(at)
        .push(", NULL, NULL, ")
        .bind(at)
        .push(", ")
        .bind(at)
        .push(")");
    sql.query().execute(&mut *db.conn().await?).await?;
    let row = db
        .sql("SELECT id FROM jobs WHERE dedup_key = ?")
        .arg(&key)
        .query()
        .fetch_one(&mut *db.conn().await?)
        .await?;
    let id = int_required(&row, "id")?;
    db.jobs_enqueued().add(ABORT_UPLOAD);
    u64::try_from(id).map_err(|_| Error::Corrupt(format!("job id {id}")))
}

/// The upload that held jobs `ids` ended without committing: they are due at once.
/// Returns how many were still held.
pub async fn release(db: &Db, ids: &[u64], now: DateTime<Utc>) -> Result<u64, Error> {
    let at = to_micros(now);
    let mut released = 0;
    for &id in ids {
        let Ok(id) = i64::try_from(id) else { continue };
        released += db
            .sql(
                "UPDATE jobs SET state = 'pending', not_before = ?, updated_at = ? \
                 WHERE id = ? AND state = 'held'",
            )
            .arg(at)
            .arg(at)
            .arg(id)
            .query()
            .execute(&mut *db.conn().await?)
            .await?
            .rows_affected();
    }
    Ok(released)
}

/// At start-up no upload lease survives (as in [`super::images::reset_all_saving`]): every
/// held job is due at once. Returns how many.
pub async fn release_all_held(db: &Db, now: DateTime<Utc>) -> Result<u64, Error> {
    let at = to_micros(now);
    Ok(db
        .sql(
            "UPDATE jobs SET state = 'pending', not_before = ?, updated_at = ? \
             WHERE state = 'held'",
        )
        .arg(at)
        .arg(at)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected())
}

/// In the transaction that commits an upload of `image_id` to `url` (after the image row is
/// updated, so every writer locks images before jobs): drops the upload's held jobs and the
/// pending object aborts of `url` (the new data replaced that object), then fails with
/// [`Error::CleanupPending`] while a delete of `url` is queued (`delete_data`) or running
/// (a claimed object abort). The deletes come before the look, so a claim racing this commit
/// either is seen here or finds its row gone.
pub(crate) async fn settle_commit(
    db: &Db,
    conn: &mut AnyConnection,
    image_id: ImageId,
    url: &str,
) -> Result<(), Error> {
    let image = image_id.to_string();
    db.sql("DELETE FROM jobs WHERE image_id = ? AND state = 'held'")
        .arg(&image)
        .query()
        .execute(&mut *conn)
        .await?;
    db.sql(
        "DELETE FROM jobs WHERE image_id = ? AND url = ? AND kind = 'abort_upload' \
         AND payload IS NULL AND state = 'pending'",
    )
    .arg(&image)
    .arg(url)
    .query()
    .execute(&mut *conn)
    .await?;
    let row = db
        .sql(
            "SELECT COUNT(*) AS n FROM jobs WHERE image_id = ? AND url = ? AND \
             (kind = 'delete_data' OR (kind = 'abort_upload' AND payload IS NULL))",
        )
        .arg(&image)
        .arg(url)
        .query()
        .fetch_one(&mut *conn)
        .await?;
    if int_required(&row, "n")? > 0 {
        return Err(Error::CleanupPending);
    }
    Ok(())
}

/// The condition of a job that may be claimed at `?` (bound twice: now, now).
const DUE: &str =
    "((state = 'pending' AND not_before <= ?) OR (state = 'claimed' AND lease_until < ?))";

/// What [`claim`] does with an object abort, seen against its image.
enum ObjectAbort {
    /// Hand it out.
    Run,
    /// The image is `saving` (or `importing`) again: look later.
    Wait,
    /// A location of the image has this URL: the object is live data, the job is void.
    Drop,
}

async fn check_object_abort(db: &Db, image_id: &str, url: &str) -> Result<ObjectAbort, Error> {
    let saving = db
        .sql("SELECT status FROM images WHERE id = ?")
        .arg(image_id)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .map(|r| text_required(&r, "status"))
        .transpose()?
        // an import writes its copies while `importing` (and may be writing this URL again)
        .is_some_and(|s| s == "saving" || s == "importing");
    if saving {
        return Ok(ObjectAbort::Wait);
    }
    let live = db
        .sql(
            "SELECT id FROM image_locations WHERE image_id = ? AND url = ? AND status <> 'deleted'",
        )
        .arg(image_id)
        .arg(url)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?;
    Ok(if live.is_some() {
        ObjectAbort::Drop
    } else {
        ObjectAbort::Run
    })
}

/// Claims up to `max` due jobs for `lease_seconds` for the data plane of `node` (see the
/// module docs); each comes with the number of claims before this one. A `prefetch` is handed
/// out with its `size` 0 and no locations: the caller, which knows the stores, fills them in.
pub async fn claim(
    db: &Db,
    node: &str,
    max: u32,
    lease_seconds: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, Error> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let at = to_micros(now);
    let until = to_micros(now + chrono::Duration::seconds(i64::from(lease_seconds.max(1))));
    let rows = db
        .sql(&format!(
            "SELECT id, kind, image_id, store_id, url, payload, attempts FROM jobs WHERE {DUE} \
             AND (node IS NULL OR node = ?) ORDER BY not_before, id LIMIT ?"
        ))
        .arg(at)
        .arg(at)
        .arg(node)
        .arg(i64::from(max))
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id = int_required(&row, "id")?;
        let attempts = int_required(&row, "attempts")?;
        let kind = text_required(&row, "kind")?;
        let raw = text_required(&row, "image_id")?;
        let Ok(image_id) = raw.parse::<ImageId>() else {
            tracing::error!(job_id = id, %kind, image_id = %raw, "job row not understood; left alone");
            continue;
        };
        let store = text_required(&row, "store_id")?;
        let url = text_required(&row, "url")?;
        let payload = text(&row, "payload")?;
        let work = match kind.as_str() {
            DELETE_DATA => Work::DeleteData {
                image_id,
                store,
                url,
            },
            ABORT_UPLOAD => Work::AbortUpload {
                image_id,
                store,
                url,
                upload: payload,
            },
            PREFETCH => Work::Prefetch {
                image_id,
                size: 0,
                locations: String::new(),
            },
            IMPORT => Work::Import {
                task_id: url,
                image_id,
                method: String::new(),
                uri: None,
                size: 0,
                stores: String::new(),
                all_stores_must_succeed: true,
                decompress: false,
                convert_from: None,
                convert_to: None,
                auth_token: None,
                refused: None,
            },
            _ => {
                tracing::error!(job_id = id, %kind, "job kind not understood; left alone");
                continue;
            }
        };
        if let Work::AbortUpload {
            url, upload: None, ..
        } = &work
        {
            match check_object_abort(db, &raw, url).await? {
                ObjectAbort::Run => {}
                ObjectAbort::Wait => {
                    let later = to_micros(now + chrono::Duration::seconds(BUSY_RETRY_SECONDS));
                    db.sql(&format!(
                        "UPDATE jobs SET not_before = ?, updated_at = ? WHERE id = ? \
                         AND attempts = ? AND state = 'pending' AND {DUE}"
                    ))
                    .arg(later)
                    .arg(at)
                    .arg(id)
                    .arg(attempts)
                    .arg(at)
                    .arg(at)
                    .query()
                    .execute(&mut *db.conn().await?)
                    .await?;
                    continue;
                }
                ObjectAbort::Drop => {
                    db.sql(&format!(
                        "DELETE FROM jobs WHERE id = ? AND attempts = ? AND {DUE}"
                    ))
                    .arg(id)
                    .arg(attempts)
                    .arg(at)
                    .arg(at)
                    .query()
                    .execute(&mut *db.conn().await?)
                    .await?;
                    tracing::debug!(job_id = id, image_id = %raw, "object abort void: a location has its URL");
                    continue;
                }
            }
        }
        let n = db
            .sql(&format!(
                "UPDATE jobs SET state = 'claimed', lease_until = ?, attempts = attempts + 1, \
                 updated_at = ? WHERE id = ? AND attempts = ? AND {DUE}"
            ))
            .arg(until)
            .arg(at)
            .arg(id)
            .arg(attempts)
            .arg(at)
            .arg(at)
            .query()
            .execute(&mut *db.conn().await?)
            .await?
            .rows_affected();
        if n != 1 {
            // another claimer took it between the read and the update
            continue;
        }
        claimed.push(Job {
            id: u64::try_from(id).map_err(|_| Error::Corrupt(format!("job id {id}")))?,
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            work,
        });
    }
    Ok(claimed)
}

/// Queues a prefetch of `image_id` into the block cache of `node` (due at once); whether a job
/// was added (`false`: that node has it queued already).
pub async fn enqueue_prefetch(
    db: &Db,
    node: &str,
    image_id: ImageId,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let image = image_id.to_string();
    let key = dedup_key_of(&[PREFETCH, node, &image]);
    let row = Pending {
        kind: PREFETCH,
        key: &key,
        image: &image,
        store: "",
        url: "",
        node: Some(node),
    };
    insert_pending(db, &mut *db.conn().await?, &row, now).await
}

/// Queues the import of task `task_id` into `image_id`, to run on `node` (the one holding the
/// staged data), on `conn` (inside the caller's transaction). The job carries only the task:
/// the claim fills in the method, URI and stores left from the task and the image.
pub async fn enqueue_import(
    db: &Db,
    conn: &mut AnyConnection,
    image_id: ImageId,
    task_id: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let image = image_id.to_string();
    let key = dedup_key_of(&[IMPORT, task_id]);
    let row = Pending {
        kind: IMPORT,
        key: &key,
        image: &image,
        store: "",
        url: task_id,
        node: Some(node),
    };
    insert_pending(db, conn, &row, now).await
}

/// Queues the removal of the data staged for `image_id` on `node` (`url` names it for
/// operators; the data plane finds it by the image id in its own staging directory).
pub async fn enqueue_staged_delete(
    db: &Db,
    image_id: ImageId,
    url: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let image = image_id.to_string();
    let key = dedup_key_of(&[DELETE_DATA, shared::config::STAGING_STORE, node, &image]);
    let row = Pending {
        kind: DELETE_DATA,
        key: &key,
        image: &image,
        store: shared::config::STAGING_STORE,
        url,
        node: Some(node),
    };
    insert_pending(db, &mut *db.conn().await?, &row, now).await
}

/// The images queued for prefetch into the cache of `node` (its `prefetch` jobs not done yet),
/// oldest first.
pub async fn queued_prefetches(db: &Db, node: &str) -> Result<Vec<ImageId>, Error> {
    let rows = db
        .sql("SELECT image_id FROM jobs WHERE kind = ? AND node = ? ORDER BY id")
        .arg(PREFETCH)
        .arg(node)
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Ok(id) = text_required(&row, "image_id")?.parse() {
            out.push(id);
        }
    }
    Ok(out)
}

/// Takes `image_id` (every image, with `None`) off the prefetch queue of `node`; how many
/// jobs were removed. A prefetch running is stopped by its data plane.
pub async fn cancel_prefetch(db: &Db, node: &str, image_id: Option<ImageId>) -> Result<u64, Error> {
    let mut sql = db.sql("DELETE FROM jobs WHERE kind = ");
    sql.bind(PREFETCH).push(" AND node = ").bind(node);
    if let Some(id) = image_id {
        sql.push(" AND image_id = ").bind(id.to_string());
    }
    Ok(sql
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected())
}

/// What [`done`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The job was known and is gone now; its kind.
    Finished(&'static str),
    /// No such job (done before, or never enqueued): nothing to do.
    Unknown,
}

/// Finishes job `id`: deletes it and, for `delete_data`, marks its location `deleted` (with
/// the image's version bumped). Idempotent.
pub async fn done(db: &Db, id: u64, now: DateTime<Utc>) -> Result<Done, Error> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(Done::Unknown);
    };
    let row = db
        .sql("SELECT kind, image_id, store_id, url FROM jobs WHERE id = ?")
        .arg(id)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?;
    let Some(row) = row else {
        return Ok(Done::Unknown);
    };
    let kind = text_required(&row, "kind")?;
    let raw = text_required(&row, "image_id")?;
    let image_id: Option<ImageId> = raw.parse().ok();
    let outcome = done_tx(db, id, &row, now).await;
    if let Some(image) = image_id {
        db.cache().invalidate(image);
    }
    outcome?;
    Ok(Done::Finished(known_kind(&kind)))
}

async fn done_tx(
    db: &Db,
    id: i64,
    row: &sqlx::any::AnyRow,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let at = to_micros(now);
    let kind = text_required(row, "kind")?;
    let image_id = text_required(row, "image_id")?;
    let mut tx = db.begin().await?;
    if kind == DELETE_DATA {
        let store = text_required(row, "store_id")?;
        let url = text_required(row, "url")?;
        // the image row first (every writer locks images, then image_locations, then jobs)
        let bumped = db
            .sql(
                "UPDATE images SET version = version + 1 WHERE id = ? AND EXISTS (SELECT 1 \
                 FROM image_locations WHERE image_id = ? AND url = ? AND store_id = ? AND \
                 status = 'pending_delete')",
            )
            .arg(&image_id)
            .arg(&image_id)
            .arg(&url)
            .arg(&store)
            .query()
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if bumped == 1 {
            db.sql(
                "UPDATE image_locations SET status = 'deleted', updated_at = ?, deleted_at = ? \
                 WHERE image_id = ? AND url = ? AND store_id = ? AND status = 'pending_delete'",
            )
            .arg(at)
            .arg(at)
            .arg(&image_id)
            .arg(&url)
            .arg(&store)
            .query()
            .execute(&mut *tx)
            .await?;
        }
    }
    db.sql("DELETE FROM jobs WHERE id = ?")
        .arg(id)
        .query()
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Job `id` failed this time: back to `pending`, due after [`backoff_seconds`], with `error`
/// kept. Returns the kind when the job was claimed (a job not claimed, or gone, is left
/// alone: `None`).
pub async fn failed(
    db: &Db,
    id: u64,
    error: &str,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, Error> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(None);
    };
    let Some(row) = db
        .sql("SELECT kind, attempts FROM jobs WHERE id = ? AND state = 'claimed'")
        .arg(id)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
    else {
        return Ok(None);
    };
    let attempts = int_required(&row, "attempts")?;
    let kind = text_required(&row, "kind")?;
    let wait = backoff_seconds(u32::try_from(attempts).unwrap_or(u32::MAX));
    let due = now + chrono::Duration::seconds(wait as i64);
    let mut end = error.len().min(MAX_ERROR_BYTES);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    let n = db
        .sql(
            "UPDATE jobs SET state = 'pending', not_before = ?, lease_until = NULL, \
             last_error = ?, updated_at = ? WHERE id = ? AND state = 'claimed' AND attempts = ?",
        )
        .arg(to_micros(due))
        .arg(&error[..end])
        .arg(to_micros(now))
        .arg(id)
        .arg(attempts)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected();
    Ok((n == 1).then_some(known_kind(&kind)))
}

/// Jobs not done yet (pending or claimed).
pub async fn open_count(db: &Db) -> Result<i64, Error> {
    let row = db
        .sql("SELECT COUNT(*) AS n FROM jobs")
        .query()
        .fetch_one(&mut *db.conn().await?)
        .await?;
    int_required(&row, "n")
}

/// One `jobs` row as stored (for tests and operators' tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Id.
    pub id: u64,
    /// `delete_data` or `abort_upload`.
    pub kind: String,
    /// The image.
    pub image_id: String,
    /// The store id.
    pub store_id: String,
    /// The location URL.
    pub url: String,
    /// `abort_upload`: the multipart upload id or segment prefix (`None`: the object).
    pub payload: Option<String>,
    /// `held`, `pending` or `claimed`.
    pub state: String,
    /// Claims so far.
    pub attempts: i64,
    /// Not claimable before.
    pub not_before: DateTime<Utc>,
    /// End of the current claim's lease.
    pub lease_until: Option<DateTime<Utc>>,
    /// The last failure's text.
    pub last_error: Option<String>,
}

/// Every job, oldest first.
pub async fn all(db: &Db) -> Result<Vec<JobRow>, Error> {
    let rows = db
        .sql("SELECT * FROM jobs ORDER BY id")
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    rows.iter()
        .map(|r| {
            let id = int_required(r, "id")?;
            Ok(JobRow {
                id: u64::try_from(id).map_err(|_| Error::Corrupt(format!("job id {id}")))?,
                kind: text_required(r, "kind")?,
                image_id: text_required(r, "image_id")?,
                store_id: text_required(r, "store_id")?,
                url: text_required(r, "url")?,
                payload: text(r, "payload")?,
                state: text_required(r, "state")?,
                attempts: int_required(r, "attempts")?,
                not_before: from_micros(int_required(r, "not_before")?)?,
                lease_until: super::int(r, "lease_until")?.map(from_micros).transpose()?,
                last_error: text(r, "last_error")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
