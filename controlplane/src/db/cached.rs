//! Which node's block cache holds which image (table `cached_images`), for
//! `GET /v2/cache/nodes/{id}`: each data plane reports what its cache holds through its own
//! control plane, which records it under the node's `worker_self_reference_url`.

use super::{Db, Error};
use shared::image::ImageId;

/// Records that `node` holds `bytes` of image `id` (0: none any more, the row goes).
pub async fn record(db: &Db, node: &str, id: ImageId, bytes: u64) -> Result<(), Error> {
    let bytes = i64::try_from(bytes).map_err(|_| Error::OutOfRange("bytes"))?;
    let mut tx = db.begin().await?;
    db.sql("DELETE FROM cached_images WHERE node = ? AND image_id = ?")
        .arg(node.to_owned())
        .arg(id.to_string())
        .query()
        .execute(&mut *tx)
        .await?;
    if bytes > 0 {
        db.sql("INSERT INTO cached_images (node, image_id, bytes) VALUES (?, ?, ?)")
            .arg(node.to_owned())
            .arg(id.to_string())
            .arg(bytes)
            .query()
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The nodes whose caches hold some of image `id`, in name order.
pub async fn nodes(db: &Db, id: ImageId) -> Result<Vec<String>, Error> {
    let rows = db
        .sql("SELECT node FROM cached_images WHERE image_id = ? ORDER BY node")
        .arg(id.to_string())
        .query()
        .fetch_all(&mut *db.conn().await?)
        .await?;
    rows.iter()
        .map(|r| super::text_required(r, "node"))
        .collect()
}
