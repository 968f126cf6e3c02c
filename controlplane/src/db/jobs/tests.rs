//! The job queue on every backend: enqueue idempotency, claims and lease expiry, failure
//! backoff, done, and two control planes claiming at once.

use super::*;
use crate::db::images;
use crate::db::scratch::ScratchDb;
use crate::domain::image::tests::sample;
use crate::domain::{Location, LocationStatus, Move, UploadedData};
use chrono::Duration;
use shared::image::ImageStatus;

/// The node claiming in these tests.
const NODE: &str = "http://node-a:9292";

async fn db(backend: Backend) -> (ScratchDb, Db) {
    let scratch = ScratchDb::create(backend).await;
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    db.migrate().await.unwrap();
    (scratch, db)
}

/// An active image with one location per url.
async fn image_with(db: &Db, urls: &[String]) -> crate::domain::Image {
    let mut img = sample();
    img.id = ImageId::new_random();
    img.status = ImageStatus::Active;
    img.locations = urls
        .iter()
        .enumerate()
        .map(|(i, url)| Location {
            url: url.clone(),
            store: "file".into(),
            status: LocationStatus::Active,
            position: i as i64,
        })
        .collect();
    images::insert(db, &img).await.unwrap();
    (*images::get(db, img.id).await.unwrap().unwrap()).clone()
}

async fn enqueue_one(db: &Db, work: &Work, now: DateTime<Utc>) -> bool {
    let mut tx = db.begin().await.unwrap();
    let added = enqueue(db, &mut tx, work, now).await.unwrap();
    tx.commit().await.unwrap();
    added
}

#[test]
fn backoff_doubles_up_to_an_hour() {
    let got: Vec<u64> = [0, 1, 2, 3, 10, 11, 12, 64, u32::MAX]
        .into_iter()
        .map(backoff_seconds)
        .collect();
    assert_eq!(got, [5, 5, 10, 20, 2560, 3600, 3600, 3600, 3600]);
}

#[tokio::test]
async fn the_job_lifecycle_on_every_backend() {
    for backend in Backend::ALL {
        lifecycle(backend).await;
    }
}

async fn lifecycle(backend: Backend) {
    let (_scratch, db) = db(backend).await;
    let url = format!("file:///data/{}", ImageId::new_random());
    let img = image_with(&db, std::slice::from_ref(&url)).await;
    let t0 = Utc::now();

    // a delete stores the move and enqueues the job in one transaction
    let mut deleted = img.clone();
    deleted.delete(t0, false).unwrap();
    assert!(images::update(&db, &deleted).await.unwrap());
    let jobs = all(&db).await.unwrap();
    assert_eq!(jobs.len(), 1, "{backend:?}");
    assert_eq!(
        (
            jobs[0].state.as_str(),
            jobs[0].attempts,
            jobs[0].url.as_str()
        ),
        ("pending", 0, url.as_str())
    );
    assert_eq!(db.jobs_enqueued().get(DELETE_DATA), 1);
    // the same work again is a no-op (inside a transaction that goes on: PostgreSQL too)
    let work = Work::DeleteData {
        image_id: img.id,
        store: "file".into(),
        url: url.clone(),
    };
    assert!(!enqueue_one(&db, &work, t0).await);
    assert_eq!(all(&db).await.unwrap().len(), 1);
    assert_eq!(open_count(&db).await.unwrap(), 1);

    // claimed once, with a lease; nothing more is due meanwhile
    let claimed = claim(&db, NODE, 10, 30, t0).await.unwrap();
    assert_eq!(claimed.len(), 1, "{backend:?}");
    assert_eq!(claimed[0].attempt, 0);
    assert_eq!(claimed[0].work, work);
    let id = claimed[0].id;
    assert!(
        claim(&db, NODE, 10, 30, t0 + Duration::seconds(29))
            .await
            .unwrap()
            .is_empty()
    );
    // the claimer died: after the lease another claim takes it again
    let t1 = t0 + Duration::seconds(31);
    let again = claim(&db, NODE, 10, 30, t1).await.unwrap();
    assert_eq!((again.len(), again[0].id, again[0].attempt), (1, id, 1));

    // a failure: pending again after the backoff of its second attempt (10 s), error kept
    assert_eq!(
        failed(&db, id, "store down", t1).await.unwrap(),
        Some(DELETE_DATA)
    );
    let row = &all(&db).await.unwrap()[0];
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 2));
    assert_eq!(row.last_error.as_deref(), Some("store down"));
    assert_eq!(row.lease_until, None);
    assert!(
        claim(&db, NODE, 10, 30, t1 + Duration::seconds(9))
            .await
            .unwrap()
            .is_empty()
    );
    // a failure report for a job not claimed changes nothing
    assert_eq!(failed(&db, id, "late", t1).await.unwrap(), None);
    let third = claim(&db, NODE, 10, 30, t1 + Duration::seconds(11))
        .await
        .unwrap();
    assert_eq!((third[0].id, third[0].attempt), (id, 2));

    // done: the row goes, the location is deleted, the image's version moves (cache reloads)
    let before = images::get(&db, img.id).await.unwrap().unwrap();
    assert_eq!(before.locations[0].status, LocationStatus::PendingDelete);
    assert_eq!(
        done(&db, id, t1).await.unwrap(),
        Done::Finished(DELETE_DATA)
    );
    let after = images::get(&db, img.id).await.unwrap().unwrap();
    assert_eq!(after.locations[0].status, LocationStatus::Deleted);
    assert_eq!(after.version, before.version + 1);
    assert!(all(&db).await.unwrap().is_empty());
    assert_eq!(open_count(&db).await.unwrap(), 0);
    // idempotent
    assert_eq!(done(&db, id, t1).await.unwrap(), Done::Unknown);
    assert_eq!(done(&db, u64::MAX, t1).await.unwrap(), Done::Unknown);
    assert_eq!(failed(&db, id, "x", t1).await.unwrap(), None);
    assert_eq!(
        images::get(&db, img.id).await.unwrap().unwrap().version,
        after.version
    );
    // a long error is cut on a character boundary
    let work2 = Work::DeleteData {
        image_id: img.id,
        store: "file".into(),
        url: format!("{url}-2"),
    };
    assert!(enqueue_one(&db, &work2, t1).await);
    let j = claim(&db, NODE, 1, 30, t1).await.unwrap();
    let long = "é".repeat(2000);
    failed(&db, j[0].id, &long, t1).await.unwrap();
    let kept = all(&db).await.unwrap()[0].last_error.clone().unwrap();
    assert!(kept.len() <= MAX_ERROR_BYTES && kept.chars().all(|c| c == 'é'));
    db.close().await;
}

#[tokio::test]
async fn two_control_planes_never_claim_one_job_twice() {
    for backend in Backend::ALL {
        concurrent_claims(backend).await;
    }
}

async fn concurrent_claims(backend: Backend) {
    let (scratch, a) = db(backend).await;
    let b = Db::connect(scratch.url(), 4).await.unwrap();
    let urls: Vec<String> = (0..24).map(|i| format!("file:///d/{i}")).collect();
    let mut img = image_with(&a, &urls).await;
    img.delete(Utc::now(), false).unwrap();
    assert!(images::update(&a, &img).await.unwrap());
    assert_eq!(open_count(&a).await.unwrap(), 24);
    let now = Utc::now();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        let (x, y) = tokio::join!(claim(&a, NODE, 4, 60, now), claim(&b, NODE, 4, 60, now));
        for job in x.unwrap().into_iter().chain(y.unwrap()) {
            assert!(
                seen.insert(job.id),
                "{backend:?}: job {} handed out twice",
                job.id
            );
        }
    }
    assert_eq!(seen.len(), 24, "{backend:?}: every job handed out");
    assert!(claim(&a, NODE, 100, 60, now).await.unwrap().is_empty());
    b.close().await;
    a.close().await;
}

/// A queued image (formats set), moved to `saving` as an upload grant does.
async fn saving_image(db: &Db) -> ImageId {
    let mut img = sample();
    img.id = ImageId::new_random();
    img.status = ImageStatus::Queued;
    img.locations.clear();
    images::insert(db, &img).await.unwrap();
    let begin = Move::between(ImageStatus::Queued, ImageStatus::Saving).unwrap();
    assert!(
        images::apply_move(db, img.id, &begin, Utc::now())
            .await
            .unwrap()
    );
    img.id
}

fn uploaded(url: &str) -> Move {
    Move::commit_upload(UploadedData {
        size: 3,
        checksum: "c".into(),
        os_hash_algo: "sha512".into(),
        os_hash_value: "h".into(),
        location: url.to_owned(),
        store: "s3".into(),
        virtual_size: None,
        block_size: 0,
        block_hashes: String::new(),
    })
}

#[tokio::test]
async fn upload_leftovers_on_every_backend() {
    for backend in Backend::ALL {
        leftovers(backend).await;
    }
}

/// Held while the upload runs, due when it ends uncommitted, dropped by its commit; an
/// object abort waits while its image is `saving` and is void once a location has its URL;
/// a commit is refused while a delete of its URL is queued or running.
async fn leftovers(backend: Backend) {
    let (_scratch, db) = db(backend).await;
    let t0 = Utc::now();

    // held jobs are not claimable; the commit drops them
    let id = saving_image(&db).await;
    let url = format!("s3://host/bucket/{id}");
    let object = record_leftover(&db, id, "s3", &url, None, None, t0)
        .await
        .unwrap();
    let parts = record_leftover(&db, id, "s3", &url, Some("up-1"), None, t0)
        .await
        .unwrap();
    assert_ne!(object, parts);
    let rows = all(&db).await.unwrap();
    assert_eq!(rows.len(), 2, "{backend:?}");
    assert!(
        rows.iter()
            .all(|r| r.state == "held" && r.kind == ABORT_UPLOAD)
    );
    assert_eq!(rows[1].payload.as_deref(), Some("up-1"));
    assert!(
        claim(&db, NODE, 10, 60, t0 + Duration::hours(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        images::apply_move(&db, id, &uploaded(&url), t0)
            .await
            .unwrap()
    );
    assert!(
        all(&db).await.unwrap().is_empty(),
        "{backend:?}: the commit drops them"
    );

    // an upload that ends otherwise: released, its image back to queued, then claimed
    let id = saving_image(&db).await;
    let url = format!("s3://host/bucket/{id}");
    let object = record_leftover(&db, id, "s3", &url, None, None, t0)
        .await
        .unwrap();
    let parts = record_leftover(&db, id, "s3", &url, Some("up-2"), None, t0)
        .await
        .unwrap();
    assert!(
        images::apply_move(&db, id, &Move::revert_upload(), t0)
            .await
            .unwrap()
    );
    assert_eq!(release(&db, &[object, parts], t0).await.unwrap(), 2);
    assert_eq!(release(&db, &[object, parts], t0).await.unwrap(), 0, "once");
    let mut got = claim(&db, NODE, 10, 60, t0).await.unwrap();
    got.sort_by_key(|j| j.id);
    assert_eq!(
        got.iter().map(|j| j.work.clone()).collect::<Vec<_>>(),
        vec![
            Work::AbortUpload {
                image_id: id,
                store: "s3".into(),
                url: url.clone(),
                upload: None
            },
            Work::AbortUpload {
                image_id: id,
                store: "s3".into(),
                url: url.clone(),
                upload: Some("up-2".into())
            },
        ],
        "{backend:?}"
    );
    // while the object abort runs, a new upload of the image cannot commit to that URL
    let begin = Move::between(ImageStatus::Queued, ImageStatus::Saving).unwrap();
    assert!(images::apply_move(&db, id, &begin, t0).await.unwrap());
    let again = record_leftover(&db, id, "s3", &url, None, None, t0)
        .await
        .unwrap();
    assert!(matches!(
        images::apply_move(&db, id, &uploaded(&url), t0).await,
        Err(Error::CleanupPending)
    ));
    assert_eq!(
        images::status(&db, id).await.unwrap(),
        Some(ImageStatus::Saving),
        "{backend:?}: a refused commit changes nothing"
    );
    assert!(
        all(&db)
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == again && r.state == "held")
    );
    for j in &got {
        assert_eq!(
            done(&db, j.id, t0).await.unwrap(),
            Done::Finished(ABORT_UPLOAD)
        );
    }
    // once it is done, the commit goes through (and supersedes a pending object abort
    // of an earlier attempt, since the new data replaced that object)
    let earlier = record_leftover(&db, id, "s3", &url, None, None, t0)
        .await
        .unwrap();
    release(&db, &[earlier], t0).await.unwrap();
    assert!(
        images::apply_move(&db, id, &uploaded(&url), t0)
            .await
            .unwrap()
    );
    assert!(all(&db).await.unwrap().is_empty(), "{backend:?}");

    // an object abort waits while its image is saving, and is void once a location of
    // the image has its URL (a later upload committed there)
    let id = saving_image(&db).await;
    let url = format!("s3://host/bucket/{id}");
    let object = record_leftover(&db, id, "s3", &url, None, None, t0)
        .await
        .unwrap();
    release(&db, &[object], t0).await.unwrap();
    assert!(
        claim(&db, NODE, 10, 60, t0).await.unwrap().is_empty(),
        "{backend:?}: saving"
    );
    let row = all(&db).await.unwrap().remove(0);
    assert_eq!(row.state, "pending");
    assert!(row.not_before >= t0 + Duration::seconds(BUSY_RETRY_SECONDS - 1));
    // (a multipart abort of the same upload would not wait: it names its own upload)
    assert!(
        images::apply_move(&db, id, &Move::revert_upload(), t0)
            .await
            .unwrap()
    );
    images::add_location(&db, id, "s3", &url, t0).await.unwrap();
    let later = t0 + Duration::seconds(BUSY_RETRY_SECONDS + 1);
    assert!(claim(&db, NODE, 10, 60, later).await.unwrap().is_empty());
    assert!(
        all(&db).await.unwrap().is_empty(),
        "{backend:?}: void, dropped"
    );

    // a queued delete of the URL refuses the commit too
    let id = saving_image(&db).await;
    let url = format!("s3://host/bucket/{id}");
    let work = Work::DeleteData {
        image_id: id,
        store: "s3".into(),
        url: url.clone(),
    };
    assert!(enqueue_one(&db, &work, t0).await);
    assert!(matches!(
        images::apply_move(&db, id, &uploaded(&url), t0).await,
        Err(Error::CleanupPending)
    ));

    // at start-up every held job is due
    let id = saving_image(&db).await;
    let url = format!("s3://host/bucket/{id}");
    record_leftover(&db, id, "s3", &url, Some("up-3"), None, t0)
        .await
        .unwrap();
    assert_eq!(release_all_held(&db, t0).await.unwrap(), 1, "{backend:?}");
    assert!(all(&db).await.unwrap().iter().all(|r| r.state == "pending"));
}

#[tokio::test]
async fn prefetch_jobs_belong_to_their_node_on_every_backend() {
    for backend in Backend::ALL {
        prefetch_jobs(backend).await;
    }
}

async fn prefetch_jobs(backend: Backend) {
    let (_scratch, db) = db(backend).await;
    let t0 = Utc::now();
    let a = image_with(&db, &["file:///a".into()]).await;
    let b = image_with(&db, &["file:///b".into()]).await;
    assert!(enqueue_prefetch(&db, NODE, a.id, t0).await.unwrap());
    assert!(
        !enqueue_prefetch(&db, NODE, a.id, t0).await.unwrap(),
        "{backend:?}: queued twice on one node"
    );
    assert!(
        enqueue_prefetch(&db, "http://node-b:9292", a.id, t0)
            .await
            .unwrap()
    );
    assert!(enqueue_prefetch(&db, NODE, b.id, t0).await.unwrap());
    assert_eq!(queued_prefetches(&db, NODE).await.unwrap(), [a.id, b.id]);

    // node b's control plane is handed only its own prefetch
    let other = claim(&db, "http://node-b:9292", 10, 60, t0).await.unwrap();
    assert_eq!(other.len(), 1, "{backend:?}");
    assert!(matches!(other[0].work, Work::Prefetch { image_id, .. } if image_id == a.id));
    let mine = claim(&db, NODE, 10, 60, t0).await.unwrap();
    assert_eq!(mine.len(), 2, "{backend:?}");

    // a cancel takes the job off the queue (and out of the lease)
    assert_eq!(cancel_prefetch(&db, NODE, Some(a.id)).await.unwrap(), 1);
    assert_eq!(queued_prefetches(&db, NODE).await.unwrap(), [b.id]);
    let b_job = mine
        .iter()
        .find(|j| matches!(j.work, Work::Prefetch { image_id, .. } if image_id == b.id))
        .unwrap();
    assert_eq!(
        done(&db, b_job.id, t0).await.unwrap(),
        Done::Finished(PREFETCH)
    );
    assert!(queued_prefetches(&db, NODE).await.unwrap().is_empty());
    assert_eq!(
        cancel_prefetch(&db, "http://node-b:9292", None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(open_count(&db).await.unwrap(), 0, "{backend:?}");
}
