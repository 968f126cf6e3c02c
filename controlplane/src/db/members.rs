//! Queries on image members (the `image_members` table).

use super::row::{from_micros, to_micros};
use super::{Db, Error, is_unique_violation, text_required};
use crate::domain::{Member, MemberStatus};
use shared::image::ImageId;
use sqlx::any::AnyRow;

fn member_from_row(row: &AnyRow) -> Result<Member, Error> {
    let raw_id = text_required(row, "image_id")?;
    let status = text_required(row, "status")?;
    Ok(Member {
        image_id: raw_id
            .parse()
            .map_err(|_| Error::Corrupt(format!("image id {raw_id:?}")))?,
        member: text_required(row, "member")?,
        status: status
            .parse()
            .map_err(|_| Error::Corrupt(format!("member status {status:?}")))?,
        created_at: from_micros(super::int_required(row, "created_at")?)?,
        updated_at: from_micros(super::int_required(row, "updated_at")?)?,
    })
}

/// Adds a membership; an existing one gives [`Error::Duplicate`].
pub async fn insert(db: &Db, m: &Member) -> Result<(), Error> {
    db.sql(
        "INSERT INTO image_members (image_id, member, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .arg(m.image_id.to_string())
    .arg(&m.member)
    .arg(m.status.as_str())
    .arg(to_micros(m.created_at))
    .arg(to_micros(m.updated_at))
    .query()
    .execute(&mut *db.conn().await?)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Duplicate
        } else {
            Error::Sqlx(e)
        }
    })?;
    Ok(())
}

/// One membership.
pub async fn get(db: &Db, image_id: ImageId, member: &str) -> Result<Option<Member>, Error> {
    db.sql("SELECT * FROM image_members WHERE image_id = ? AND member = ?")
        .arg(image_id.to_string())
        .arg(member)
        .query()
        .fetch_optional(&mut *db.conn().await?)
        .await?
        .as_ref()
        .map(member_from_row)
        .transpose()
}

/// Every membership of an image, oldest first.
pub async fn list(db: &Db, image_id: ImageId) -> Result<Vec<Member>, Error> {
    db.sql("SELECT * FROM image_members WHERE image_id = ? ORDER BY created_at, member")
        .arg(image_id.to_string())
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?
        .iter()
        .map(member_from_row)
        .collect()
}

/// How many members an image has.
pub async fn count(db: &Db, image_id: ImageId) -> Result<usize, Error> {
    let row = db
        .sql("SELECT COUNT(*) AS n FROM image_members WHERE image_id = ?")
        .arg(image_id.to_string())
        .query()
        .fetch_one(&mut *db.conn().await?)
        .await?;
    Ok(super::int_required(&row, "n")? as usize)
}

/// Sets a membership's status; whether it existed.
pub async fn set_status(
    db: &Db,
    image_id: ImageId,
    member: &str,
    status: MemberStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    let n = db
        .sql(
            "UPDATE image_members SET status = ?, updated_at = ? WHERE image_id = ? AND member = ?",
        )
        .arg(status.as_str())
        .arg(to_micros(now))
        .arg(image_id.to_string())
        .arg(member)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Removes a membership; whether it existed.
pub async fn delete(db: &Db, image_id: ImageId, member: &str) -> Result<bool, Error> {
    let n = db
        .sql("DELETE FROM image_members WHERE image_id = ? AND member = ?")
        .arg(image_id.to_string())
        .arg(member)
        .query()
        .execute(&mut *db.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Backend, images, scratch::ScratchDb};
    use crate::domain::image::tests::sample;
    use chrono::Utc;

    #[tokio::test]
    async fn membership_crud_on_every_backend() {
        for backend in Backend::ALL {
            let scratch = ScratchDb::create(backend).await;
            let db = Db::connect(scratch.url(), 2).await.unwrap();
            db.migrate().await.unwrap();
            let img = sample();
            images::insert(&db, &img).await.unwrap();
            let now = Utc::now();
            let m = Member {
                image_id: img.id,
                member: "p2".into(),
                status: MemberStatus::Pending,
                created_at: now,
                updated_at: now,
            };
            insert(&db, &m).await.unwrap();
            assert!(
                matches!(insert(&db, &m).await, Err(Error::Duplicate)),
                "{backend:?}"
            );
            // case matters: P2 is another project
            insert(
                &db,
                &Member {
                    member: "P2".into(),
                    ..m.clone()
                },
            )
            .await
            .unwrap();
            assert_eq!(count(&db, img.id).await.unwrap(), 2);
            assert!(
                set_status(&db, img.id, "p2", MemberStatus::Accepted, now)
                    .await
                    .unwrap()
            );
            assert!(
                !set_status(&db, img.id, "p3", MemberStatus::Accepted, now)
                    .await
                    .unwrap()
            );
            let got = get(&db, img.id, "p2").await.unwrap().unwrap();
            assert_eq!(got.status, MemberStatus::Accepted);
            assert_eq!(list(&db, img.id).await.unwrap().len(), 2);
            assert!(delete(&db, img.id, "p2").await.unwrap());
            assert!(!delete(&db, img.id, "p2").await.unwrap());
            assert!(get(&db, img.id, "p2").await.unwrap().is_none());
            db.close().await;
        }
    }
}
