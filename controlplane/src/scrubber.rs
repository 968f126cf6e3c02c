//! The scrubber: with `delayed_delete`, a deleted image becomes `pending_delete` and keeps its
//! data; every `scrub_wakeup_seconds` this task removes the data of images pending for at
//! least `scrub_time_seconds` and marks them `deleted` (Glance's `glance-scrubber`).
//!
//! 1. Find `pending_delete` images with `deleted_at <= now - scrub_time` (oldest first).
//! 2. Delete each one's data file from the store (only inside the store directory, see
//!    [`crate::store_gc`]).
//! 3. Execute the domain's `pending_delete → deleted` move ([`Move::finish_delete`], which
//!    forgets the location) as a conditional update, so an image restored meanwhile
//!    (`POST …/actions/restore`) is left alone. The id is never reused.

use crate::app::App;
use crate::db;
use crate::domain::Move;
use chrono::Utc;
use std::time::Duration;
use tokio::sync::watch;

/// Images handled per database query.
const BATCH: i64 = 100;

/// Runs one pass; returns how many images were scrubbed.
pub async fn scrub_once(app: &App) -> Result<usize, db::Error> {
    let scrub_time = i64::try_from(app.config.controlplane.scrub_time_seconds).unwrap_or(i64::MAX);
    let mut done = 0;
    loop {
        let due = Utc::now() - chrono::Duration::seconds(scrub_time);
        let images = db::images::pending_deletes(&app.db, due, BATCH).await?;
        if images.is_empty() {
            return Ok(done);
        }
        let mut progressed = false;
        for image in images {
            if let Some(location) = &image.location {
                match app.store.delete(location).await {
                    Ok(outcome) => {
                        tracing::debug!(image_id = %image.id, ?outcome, "scrubbed image data")
                    }
                    Err(e) => {
                        tracing::warn!(image_id = %image.id, error = %e, "could not scrub image data; will retry");
                        continue;
                    }
                }
            }
            let finish = Move::finish_delete();
            if db::images::apply_move(&app.db, image.id, &finish, Utc::now()).await? {
                app.metrics.transition(finish.from, finish.to);
                tracing::info!(image_id = %image.id, from = %finish.from, to = %finish.to, "image scrubbed");
                done += 1;
                progressed = true;
            }
        }
        if !progressed {
            return Ok(done);
        }
    }
}

/// Scrubs every `scrub_wakeup_seconds` until `shutdown` turns true.
pub async fn run(app: App, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(app.config.controlplane.scrub_wakeup_seconds.max(1));
    loop {
        if let Err(e) = scrub_once(&app).await {
            tracing::warn!(error = %e, "scrubber pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::sample;
    use crate::test_util::TestApp;
    use shared::image::ImageStatus;

    #[tokio::test]
    async fn scrubs_after_scrub_time_and_keeps_restored_images() {
        let t = TestApp::with_config(|c| {
            c.controlplane.delayed_delete = true;
            c.controlplane.scrub_time_seconds = 3600;
        })
        .await;
        let store = t.app.config.store_dir();
        let mut ids = Vec::new();
        for age_seconds in [7200, 60] {
            let mut img = sample();
            img.id = shared::image::ImageId::new_random();
            let file = store.join(img.id.to_string());
            std::fs::write(&file, b"data").unwrap();
            img.status = ImageStatus::PendingDelete;
            img.location = Some(format!("file://{}", file.display()));
            img.deleted_at = Some(Utc::now() - chrono::Duration::seconds(age_seconds));
            db::images::insert(&t.app.db, &img).await.unwrap();
            ids.push((img.id, file));
        }
        assert_eq!(scrub_once(&t.app).await.unwrap(), 1);
        let (old, old_file) = &ids[0];
        let (young, young_file) = &ids[1];
        assert_eq!(
            db::images::status(&t.app.db, *old).await.unwrap(),
            Some(ImageStatus::Deleted)
        );
        assert!(!old_file.exists());
        assert_eq!(
            db::images::status(&t.app.db, *young).await.unwrap(),
            Some(ImageStatus::PendingDelete)
        );
        assert!(young_file.exists());
        assert_eq!(scrub_once(&t.app).await.unwrap(), 0);
    }
}
