//! The `tasks` table (Glance's tasks: one per import), read by `/v2/tasks` and
//! `GET /v2/images/{id}/tasks`.
//!
//! A task's status only moves forward (`pending → processing → success | failure`), each step
//! a statement conditional on the status it leaves, so a job run twice (a lease that ran out)
//! never finishes a task twice. Finished tasks get `expires_at` and are purged after it
//! ([`purge_expired`]).

use super::row::{from_micros, to_micros};
use super::{Db, Error, int, text, text_required};
use crate::domain::task::{Task, TaskStatus};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::image::ImageId;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, type, status, owner, image_id, request_id, user_id, input, result, \
                       message, expires_at, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Task, Error> {
    let json = |col: &str| -> Result<Option<Value>, Error> {
        text(row, col)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| Error::Corrupt(format!("task {col}: {e}")))
            })
            .transpose()
    };
    let status = text_required(row, "status")?;
    Ok(Task {
        id: text_required(row, "id")?,
        kind: text_required(row, "type")?,
        status: status
            .parse()
            .map_err(|_| Error::Corrupt(format!("task status {status:?}")))?,
        owner: text(row, "owner")?,
        image_id: text(row, "image_id")?.and_then(|i| i.parse().ok()),
        request_id: text(row, "request_id")?,
        user_id: text(row, "user_id")?,
        input: json("input")?.unwrap_or(Value::Null),
        result: json("result")?,
        message: text(row, "message")?.unwrap_or_default(),
        expires_at: int(row, "expires_at")?.map(from_micros).transpose()?,
        created_at: from_micros(super::int_required(row, "created_at")?)?,
        updated_at: from_micros(super::int_required(row, "updated_at")?)?,
    })
}

/// Records a new task.
pub async fn insert(db: &Db, task: &Task) -> Result<(), Error> {
    insert_on(db, &mut *db.conn().await?, task).await
}

/// [`insert`] on `conn` (inside the caller's transaction).
pub(crate) async fn insert_on(db: &Db, conn: &mut AnyConnection, task: &Task) -> Result<(), Error> {
    let mut sql = db.sql(&format!("INSERT INTO tasks ({COLUMNS}) VALUES ("));
    sql.bind(task.id.as_str())
        .push(", ")
        .bind(task.kind.as_str())
        .push(", ")
        .bind(task.status.as_str())
        .push(", ")
        .bind(&task.owner)
        .push(", ")
        .bind(task.image_id.map(|i| i.to_string()))
        .push(", ")
        .bind(&task.request_id)
        .push(", ")
        .bind(&task.user_id)
        .push(", ")
        .bind(task.input.to_string())
        .push(", ")
        .bind(task.result.as_ref().map(|r| r.to_string()))
        .push(", ")
        .bind(task.message.as_str())
        .push(", ")
        .bind(task.expires_at.map(to_micros))
        .push(", ")
        .bind(to_micros(task.created_at))
        .push(", ")
        .bind(to_micros(task.updated_at))
        .push(")");
    sql.query().execute(&mut *conn).await?;
    Ok(())
}

/// The task `id`, if it exists (expired or not).
pub async fn get(db: &Db, id: &str) -> Result<Option<Task>, Error> {
    let row = db
        .sql(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?"))
        .arg(id)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every task not expired at `now` (of `owner`, when given), newest first.
pub async fn list(db: &Db, owner: Option<&str>, now: DateTime<Utc>) -> Result<Vec<Task>, Error> {
    let mut sql = db.sql(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE (expires_at IS NULL OR expires_at >= "
    ));
    sql.bind(to_micros(now)).push(")");
    if let Some(o) = owner {
        sql.push(" AND owner = ").bind(o);
    }
    sql.push(" ORDER BY created_at DESC, id DESC");
    let rows = sql.query().fetch_all(&mut *db.conn().await?).await?;
    rows.iter().map(from_row).collect()
}

/// The tasks of image `id` not expired at `now`, oldest first.
pub async fn of_image(db: &Db, id: ImageId, now: DateTime<Utc>) -> Result<Vec<Task>, Error> {
    let rows = db
        .sql(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE image_id = ? AND (expires_at IS NULL OR \
             expires_at >= ?) ORDER BY created_at, id"
        ))
        .arg(id.to_string())
        .arg(to_micros(now))
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Runs one write statement; the rows it changed.
async fn write(db: &Db, sql: super::Sql) -> Result<u64, Error> {
    let done = sql.query().execute(&mut *db.conn().await?).await?;
    Ok(done.rows_affected())
}

/// `pending → processing`; whether it moved.
pub async fn start(db: &Db, id: &str, now: DateTime<Utc>) -> Result<bool, Error> {
    let sql = db
        .sql("UPDATE tasks SET status = 'processing', updated_at = ? WHERE id = ? AND status = 'pending'")
        .arg(to_micros(now))
        .arg(id);
    Ok(write(db, sql).await? == 1)
}

/// Sets the message of a running task (`Copied N MiB`).
pub async fn progress(db: &Db, id: &str, message: &str, now: DateTime<Utc>) -> Result<(), Error> {
    let sql = db
        .sql(
            "UPDATE tasks SET message = ?, updated_at = ? WHERE id = ? \
             AND status IN ('pending', 'processing')",
        )
        .arg(message)
        .arg(to_micros(now))
        .arg(id);
    write(db, sql).await?;
    Ok(())
}

/// Ends a task that has not ended yet: `status` (success or failure), its result and message,
/// expiring `ttl` after `now`. Whether it ended here.
pub async fn finish(
    db: &Db,
    id: &str,
    status: TaskStatus,
    result: Option<&Value>,
    message: &str,
    ttl: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let sql = db
        .sql(
            "UPDATE tasks SET status = ?, result = ?, message = ?, expires_at = ?, \
             updated_at = ? WHERE id = ? AND status IN ('pending', 'processing')",
        )
        .arg(status.as_str())
        .arg(result.map(|r| r.to_string()))
        .arg(message)
        .arg(to_micros(now + ttl))
        .arg(to_micros(now))
        .arg(id);
    Ok(write(db, sql).await? == 1)
}

/// Starts an import in one transaction: `image` (with the lock and progress properties the
/// domain set, [`crate::domain::import::begin`]) is written if its stored version is still
/// `image.version`, `task` is recorded, and its `import` job is queued for `node`. Returns
/// `false`, changing nothing, when someone else wrote the image first.
pub async fn begin_import(
    db: &Db,
    image: &crate::domain::Image,
    task: &Task,
    node: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    if !super::images::update_on(db, &mut tx, image).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    insert_on(db, &mut tx, task).await?;
    super::jobs::enqueue_import(db, &mut tx, image.id, &task.id, node, now).await?;
    tx.commit().await?;
    super::images::invalidate(db, image.id);
    Ok(true)
}

/// Removes the tasks that expired before `now`; how many.
pub async fn purge_expired(db: &Db, now: DateTime<Utc>) -> Result<u64, Error> {
    let sql = db
        .sql("DELETE FROM tasks WHERE expires_at IS NOT NULL AND expires_at < ?")
        .arg(to_micros(now));
    write(db, sql).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Backend;
    use crate::db::scratch::ScratchDb;
    use serde_json::json;

    fn task(owner: &str, image: Option<ImageId>, at: DateTime<Utc>) -> Task {
        crate::domain::task::tests::task_at(owner, image, TaskStatus::Pending, at)
    }

    #[tokio::test]
    async fn a_task_moves_forward_only_on_every_backend() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::create(backend).await;
            let db = Db::connect(scratch.url(), 4).await.unwrap();
            db.migrate().await.unwrap();
            let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
            let image = ImageId::new_random();
            let t = task("p1", Some(image), now);
            insert(&db, &t).await.unwrap();
            insert(&db, &task("p2", None, now + chrono::Duration::seconds(1)))
                .await
                .unwrap();
            assert_eq!(
                get(&db, &t.id).await.unwrap().as_ref(),
                Some(&t),
                "{backend:?}"
            );
            assert!(start(&db, &t.id, now).await.unwrap());
            assert!(!start(&db, &t.id, now).await.unwrap(), "{backend:?}");
            progress(&db, &t.id, "Copied 3 MiB", now).await.unwrap();
            let result = json!({"image_id": image.to_string()});
            let ttl = chrono::Duration::hours(48);
            assert!(
                finish(&db, &t.id, TaskStatus::Success, Some(&result), "", ttl, now)
                    .await
                    .unwrap()
            );
            // ended once: neither a second end nor progress changes it
            assert!(
                !finish(&db, &t.id, TaskStatus::Failure, None, "late", ttl, now)
                    .await
                    .unwrap()
            );
            progress(&db, &t.id, "Copied 9 MiB", now).await.unwrap();
            let got = get(&db, &t.id).await.unwrap().unwrap();
            assert_eq!(got.status, TaskStatus::Success, "{backend:?}");
            assert_eq!(got.result, Some(result));
            assert_eq!(got.expires_at, Some(now + ttl));
            assert_eq!(list(&db, None, now).await.unwrap().len(), 2);
            assert_eq!(list(&db, Some("p2"), now).await.unwrap().len(), 1);
            assert_eq!(of_image(&db, image, now).await.unwrap().len(), 1);
            let after = now + ttl + chrono::Duration::seconds(1);
            assert!(of_image(&db, image, after).await.unwrap().is_empty());
            assert_eq!(purge_expired(&db, after).await.unwrap(), 1, "{backend:?}");
            assert!(get(&db, &t.id).await.unwrap().is_none());
            db.close().await;
            drop(scratch);
        }
    }
}
