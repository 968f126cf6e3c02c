//! The scrubber: with `delayed_delete`, a deleted image becomes `pending_delete` and keeps its
//! data (its locations stay `active`, unserved); every `scrub_wakeup_seconds` this task
//! finishes the delete of images pending for at least `scrub_time_seconds` (Glance's
//! `glance-scrubber`). It never touches image bytes: the data goes by the data plane's jobs.
//!
//! 1. Find `pending_delete` images with `deleted_at <= now - scrub_time` (oldest first).
//! 2. Execute the domain's `pending_delete → deleted` move ([`Move::finish_delete`]), which
//!    moves each active location to `pending_delete` with its `delete_data` job, in one
//!    transaction, conditional on the status and the version read: an image restored
//!    meanwhile (`POST …/actions/restore`) is left alone. The id is never reused.
//!
//! Each pass also purges the tasks whose `expires_at` has passed.

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
            let finish = Move::finish_delete();
            if db::images::apply_move_if(
                &app.db,
                image.id,
                &finish,
                Some(image.version),
                Utc::now(),
            )
            .await?
            {
                app.metrics.transition(finish.from, finish.to);
                tracing::info!(image_id = %image.id, from = %finish.from, to = %finish.to,
                    locations = image.active_locations().count(), "image scrubbed; data deletion queued");
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
        let pass = scrub_once(&app).await;
        app.metrics.scrubber_run(pass.is_ok());
        if let Err(e) = pass {
            tracing::warn!(error = %e, "scrubber pass failed");
        }
        // tasks past their `expires_at` (Glance soft-deletes them when tasks are read)
        match db::tasks::purge_expired(&app.db, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "expired tasks purged"),
            Err(e) => tracing::warn!(error = %e, "expired tasks could not be purged"),
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
    use crate::domain::{Location, LocationStatus};
    use crate::test_util::TestApp;
    use shared::image::ImageStatus;

    #[tokio::test]
    async fn scrubs_after_scrub_time_by_enqueuing_jobs() {
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
            img.locations = vec![Location {
                url: format!("file://{}", file.display()),
                store: "file".into(),
                status: LocationStatus::Active,
                position: 0,
            }];
            img.deleted_at = Some(Utc::now() - chrono::Duration::seconds(age_seconds));
            db::images::insert(&t.app.db, &img).await.unwrap();
            ids.push((img.id, file));
        }
        assert_eq!(scrub_once(&t.app).await.unwrap(), 1);
        let (old, old_file) = &ids[0];
        let (young, young_file) = &ids[1];
        let scrubbed = db::images::get(&t.app.db, *old).await.unwrap().unwrap();
        assert_eq!(scrubbed.status, ImageStatus::Deleted);
        assert_eq!(scrubbed.locations[0].status, LocationStatus::PendingDelete);
        // the control plane touches no bytes: the data plane gets a job
        assert!(old_file.exists() && young_file.exists());
        let jobs = db::jobs::all(&t.app.db).await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].image_id, old.to_string());
        assert_eq!(jobs[0].url, format!("file://{}", old_file.display()));
        assert_eq!(
            (jobs[0].kind.as_str(), jobs[0].state.as_str()),
            ("delete_data", "pending")
        );
        let young_img = db::images::get(&t.app.db, *young).await.unwrap().unwrap();
        assert_eq!(young_img.status, ImageStatus::PendingDelete);
        assert_eq!(young_img.locations[0].status, LocationStatus::Active);
        assert_eq!(scrub_once(&t.app).await.unwrap(), 0);
        assert_eq!(db::jobs::all(&t.app.db).await.unwrap().len(), 1);
        let text = t.app.metrics.render();
        assert!(
            text.contains(
                r#"glint_db_image_transitions_total{from="pending_delete",to="deleted"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_image_restored_after_the_read_is_left_alone() {
        let t = TestApp::with_config(|c| {
            c.controlplane.delayed_delete = true;
            c.controlplane.scrub_time_seconds = 0;
        })
        .await;
        let mut img = sample();
        img.status = ImageStatus::PendingDelete;
        img.locations = vec![Location {
            url: "file:///x".into(),
            store: "file".into(),
            status: LocationStatus::Active,
            position: 0,
        }];
        img.deleted_at = Some(Utc::now() - chrono::Duration::seconds(5));
        db::images::insert(&t.app.db, &img).await.unwrap();
        // a pass reads it; meanwhile it is restored and deleted again (pending once more)
        let read = db::images::pending_deletes(&t.app.db, Utc::now(), 10)
            .await
            .unwrap();
        let mut again = read[0].clone();
        again.restore().unwrap();
        assert!(db::images::update(&t.app.db, &again).await.unwrap());
        let mut again = (*db::images::get(&t.app.db, img.id).await.unwrap().unwrap()).clone();
        again.delete(Utc::now(), true).unwrap();
        assert!(db::images::update(&t.app.db, &again).await.unwrap());
        // the stale read does not move it (status alone would)
        let finish = Move::finish_delete();
        let stale = Some(read[0].version);
        assert!(
            !db::images::apply_move_if(&t.app.db, img.id, &finish, stale, Utc::now())
                .await
                .unwrap()
        );
        assert!(db::jobs::all(&t.app.db).await.unwrap().is_empty());
        let now = db::images::get(&t.app.db, img.id).await.unwrap().unwrap();
        assert_eq!(now.status, ImageStatus::PendingDelete);
        assert_eq!(now.locations[0].status, LocationStatus::Active);
        // a fresh pass does
        assert_eq!(scrub_once(&t.app).await.unwrap(), 1);
        assert_eq!(db::jobs::all(&t.app.db).await.unwrap().len(), 1);
    }
}
