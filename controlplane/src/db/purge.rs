//! `glint manage db purge`: removes what deleted images leave behind, as `glance-manage db
//! purge` does, older than a cut-off and at most `max_rows` rows per table per run.
//!
//! What goes: the properties, tags and members of images deleted before the cut-off, and
//! every location recorded `deleted` before it (the history of removed data). What stays:
//! the `images` rows themselves, deleted or not, so an image id is never free to be taken
//! again (Glance keeps them for the same reason unless `purge_images_table` is run), and any
//! location whose data is not gone yet (`pending_delete`: a job still has to remove it).

use super::row::to_micros;
use super::{Db, Error, text_required};
use chrono::{DateTime, Utc};

/// Rows removed by one [`purge`], per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// `image_properties`.
    pub properties: u64,
    /// `image_tags`.
    pub tags: u64,
    /// `image_members`.
    pub members: u64,
    /// `image_locations`.
    pub locations: u64,
}

/// Most rows deleted by one statement (keys are read first, then deleted by key: portable
/// across the three databases, whose limited deletes differ).
const BATCH: u64 = 500;

/// Purges rows of images deleted before `before` (and locations deleted before it), at most
/// `max_rows` per table (`None`: all).
pub async fn purge(db: &Db, before: DateTime<Utc>, max_rows: Option<u64>) -> Result<Purged, Error> {
    let cut = to_micros(before);
    let of_deleted =
        "image_id IN (SELECT id FROM images WHERE status = 'deleted' AND deleted_at < ?)";
    Ok(Purged {
        properties: purge_table(db, "image_properties", "name", of_deleted, cut, max_rows).await?,
        tags: purge_table(db, "image_tags", "value", of_deleted, cut, max_rows).await?,
        members: purge_table(db, "image_members", "member", of_deleted, cut, max_rows).await?,
        locations: purge_locations(db, cut, max_rows).await?,
    })
}

/// Deletes rows of `table` (keyed by `image_id` and `key`) matching `cond` (one `?`: the cut).
async fn purge_table(
    db: &Db,
    table: &str,
    key: &str,
    cond: &str,
    cut: i64,
    max_rows: Option<u64>,
) -> Result<u64, Error> {
    let mut done = 0;
    loop {
        let want = max_rows.map_or(BATCH, |m| (m - done).min(BATCH));
        if want == 0 {
            return Ok(done);
        }
        let rows = db
            .sql(&format!(
                "SELECT image_id, {key} AS k FROM {table} WHERE {cond} ORDER BY image_id, {key} LIMIT ?"
            ))
            .arg(cut)
            .arg(want as i64)
            .query()
            .fetch_all(&mut *db.conn().await?)
            .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut tx = db.begin().await?;
        for row in &rows {
            done += db
                .sql(&format!(
                    "DELETE FROM {table} WHERE image_id = ? AND {key} = ?"
                ))
                .arg(text_required(row, "image_id")?)
                .arg(text_required(row, "k")?)
                .query()
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        if (rows.len() as u64) < want {
            return Ok(done);
        }
    }
}

async fn purge_locations(db: &Db, cut: i64, max_rows: Option<u64>) -> Result<u64, Error> {
    let mut done = 0;
    loop {
        let want = max_rows.map_or(BATCH, |m| (m - done).min(BATCH));
        if want == 0 {
            return Ok(done);
        }
        let ids: Vec<i64> = db
            .sql(
                "SELECT id FROM image_locations WHERE status = 'deleted' AND deleted_at < ? \
                 ORDER BY id LIMIT ?",
            )
            .arg(cut)
            .arg(want as i64)
            .query()
            .fetch_all(&mut *db.conn().await?)
            .await?
            .iter()
            .map(|r| super::int_required(r, "id"))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(done);
        }
        let mut tx = db.begin().await?;
        for id in &ids {
            done += db
                .sql("DELETE FROM image_locations WHERE id = ? AND status = 'deleted'")
                .arg(*id)
                .query()
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        if (ids.len() as u64) < want {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::images;
    use crate::db::scratch::ScratchDb;
    use crate::db::{Backend, members};
    use crate::domain::image::tests::sample;
    use crate::domain::{Location, LocationStatus, Member, MemberStatus};
    use chrono::Duration;
    use shared::image::{ImageId, ImageStatus};

    #[tokio::test]
    async fn purge_on_every_backend() {
        for backend in Backend::ALL {
            purge_rows(backend).await;
        }
    }

    /// An image deleted long ago loses its properties, tags, members and deleted locations
    /// but keeps its row (its id stays taken); a recent deletion and a live image keep
    /// everything; `max_rows` bounds each table.
    async fn purge_rows(backend: Backend) {
        let scratch = ScratchDb::create(backend).await;
        let db = Db::connect(scratch.url(), 2).await.unwrap();
        db.migrate().await.unwrap();
        let now = Utc::now();
        let mut ids = Vec::new();
        for deleted_days_ago in [Some(40), Some(2), None] {
            let mut img = sample();
            img.id = ImageId::new_random();
            img.status = ImageStatus::Active;
            img.properties.insert("a".into(), "1".into());
            img.properties.insert("b".into(), "2".into());
            img.tags.insert("t".into());
            img.locations = vec![Location {
                url: format!("file:///d/{}", img.id),
                store: "file".into(),
                status: LocationStatus::Active,
                position: 0,
            }];
            images::insert(&db, &img).await.unwrap();
            members::insert(
                &db,
                &Member {
                    image_id: img.id,
                    member: "other".into(),
                    status: MemberStatus::Pending,
                    created_at: now,
                    updated_at: now,
                },
            )
            .await
            .unwrap();
            if let Some(days) = deleted_days_ago {
                let at = now - Duration::days(days);
                db.sql("UPDATE images SET status = 'deleted', deleted_at = ? WHERE id = ?")
                    .arg(to_micros(at))
                    .arg(img.id.to_string())
                    .query()
                    .execute(&mut *db.conn().await.unwrap())
                    .await
                    .unwrap();
                db.sql(
                    "UPDATE image_locations SET status = 'deleted', deleted_at = ? WHERE image_id = ?",
                )
                .arg(to_micros(at))
                .arg(img.id.to_string())
                .query()
                .execute(&mut *db.conn().await.unwrap())
                .await
                .unwrap();
            }
            ids.push(img.id);
        }
        let cut = now - Duration::days(30);
        let first = purge(&db, cut, Some(1)).await.unwrap();
        assert_eq!(
            first,
            Purged {
                properties: 1,
                tags: 1,
                members: 1,
                locations: 1
            },
            "{backend:?}: max_rows per table"
        );
        let rest = purge(&db, cut, None).await.unwrap();
        assert_eq!(rest.properties, 1, "{backend:?}");
        assert_eq!(purge(&db, cut, None).await.unwrap(), Purged::default());
        let count = |table: &'static str, id: ImageId| {
            let db = db.clone();
            async move {
                let row = db
                    .sql(&format!(
                        "SELECT COUNT(*) AS n FROM {table} WHERE image_id = ?"
                    ))
                    .arg(id.to_string())
                    .query()
                    .fetch_one(&mut *db.conn().await.unwrap())
                    .await
                    .unwrap();
                crate::db::int_required(&row, "n").unwrap()
            }
        };
        for table in [
            "image_properties",
            "image_tags",
            "image_members",
            "image_locations",
        ] {
            assert_eq!(
                count(table, ids[0]).await,
                0,
                "{backend:?} {table}: old deletion purged"
            );
            assert!(
                count(table, ids[1]).await > 0,
                "{backend:?} {table}: recent deletion kept"
            );
            assert!(
                count(table, ids[2]).await > 0,
                "{backend:?} {table}: live image kept"
            );
        }
        assert_eq!(
            images::status(&db, ids[0]).await.unwrap(),
            Some(ImageStatus::Deleted),
            "{backend:?}: the image row stays: its id is never free again"
        );
    }
}
