//! Work the control plane asks of the data plane (deleting an image's data, removing what a
//! failed upload left, filling the block cache with a queued image, importing staged data;
//! copy-image and location hashing later), run by one task per data plane.
//!
//! A prefetch or an import runs as a task of its own (it may take minutes), so deletes behind it are not
//! held up; while it runs, the claims that hand it out again (its lease ran out) are skipped,
//! which keeps it leased to this data plane.
//!
//! The jobs live in the control plane's database. This task claims due ones over the channel
//! (`ClaimJobs`, each leased to this data plane for `[dataplane] job_lease_seconds`), runs them, and reports each
//! `JobDone` or `JobFailed` (the control plane retries it later with backoff). A data plane
//! that dies holding a job simply lets its lease run out: the next claim takes the job again.
//! So every job is idempotent: deleting data that is already gone, or aborting a multipart
//! upload that no longer exists, is done.

use crate::server::worker::Worker;
use shared::channel::{Job, Request, Response, Work};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

/// Jobs claimed at once.
const BATCH: u32 = 16;
/// Wait between claims when none was due (or the control plane was away).
const IDLE: Duration = Duration::from_secs(1);

/// Claims and runs jobs until the runtime stops.
pub async fn run(w: Rc<Worker>) {
    let running: Rc<RefCell<HashSet<u64>>> = Rc::default();
    loop {
        let claimed = claim(&w).await;
        let full = claimed.len() as u32 == BATCH;
        for job in claimed {
            if let Work::Prefetch { .. } | Work::Import { .. } | Work::LocationImport { .. } =
                job.work
            {
                if running.borrow_mut().insert(job.id) {
                    let task = long(w.clone(), job, running.clone());
                    compio::runtime::spawn(task).detach();
                }
                continue;
            }
            let outcome = execute(&w, &job).await;
            w.metrics.job(job.work.kind(), outcome.is_ok());
            report(&w, &job, outcome).await;
        }
        if !full {
            match &w.cache {
                Some(cache) => {
                    let _ = compio::time::timeout(IDLE, cache.nudged()).await;
                }
                None => compio::time::sleep(IDLE).await,
            }
        }
    }
}

/// Runs a prefetch or an import job to its end, then reports it.
async fn long(w: Rc<Worker>, job: Job, running: Rc<RefCell<HashSet<u64>>>) {
    if let Work::Import { .. } = &job.work {
        // reports its end itself (`ImportFinished`)
        crate::server::import::run(&w, &job).await;
        running.borrow_mut().remove(&job.id);
        return;
    }
    if let Work::LocationImport { .. } = &job.work {
        // reports its end itself (`LocationChecked`)
        crate::server::locate::run(&w, &job).await;
        running.borrow_mut().remove(&job.id);
        return;
    }
    let Work::Prefetch {
        image_id,
        size,
        locations,
    } = &job.work
    else {
        return;
    };
    let outcome = match &w.cache {
        Some(cache) => {
            crate::server::cached::prefetch(&w, cache, *image_id, *size, locations).await
        }
        // queued on a node whose configuration turned the cache off since
        None => Ok(()),
    };
    w.metrics.job(job.work.kind(), outcome.is_ok());
    report(&w, &job, outcome).await;
    running.borrow_mut().remove(&job.id);
}

async fn claim(w: &Worker) -> Vec<Job> {
    let ask: Request<&str> = Request::ClaimJobs {
        max: BATCH,
        lease_seconds: u32::try_from(w.settings.job_lease.as_secs()).unwrap_or(u32::MAX),
    };
    match w.link.call_keep(&ask).await {
        Ok((chan, Response::Jobs(jobs))) => {
            w.link.give_back(chan);
            jobs
        }
        Ok((chan, other)) => {
            w.link.give_back(chan);
            tracing::warn!(answer = ?other, "unexpected answer to ClaimJobs");
            Vec::new()
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot claim jobs now");
            Vec::new()
        }
    }
}

/// The configured store that serves `url` (named `store` when it was recorded).
async fn target(w: &Worker, store: &str, url: &str) -> Result<crate::store::Store, String> {
    if store == shared::config::STAGING_STORE {
        return w
            .stores
            .staging()
            .map(crate::store::Store::File)
            .ok_or_else(|| "this node has no staging store".to_owned());
    }
    w.stores
        .resolve(store, url)
        .await
        .map_err(|e| format!("no configured store serves this location (store {store:?}): {e}"))
}

/// Runs one job.
async fn execute(w: &Worker, job: &Job) -> Result<(), String> {
    match &job.work {
        Work::DeleteData {
            image_id,
            store,
            url,
        } => {
            let target = target(w, store, url).await?;
            let url = &staged_url(&target, store, image_id, url);
            target.delete(url).await.map_err(|e| e.to_string())?;
            if let Some(cache) = &w.cache {
                cache.forget(*image_id);
            }
            tracing::info!(%image_id, store = %store, location = %url, attempt = job.attempt, "image data deleted");
            Ok(())
        }
        Work::AbortUpload {
            image_id,
            store,
            url,
            upload,
        } => {
            let target = target(w, store, url).await?;
            let url = &staged_url(&target, store, image_id, url);
            target
                .abort_leftover(url, upload.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            let what = match upload {
                None => "object",
                Some(_) if target.is_local() => "nothing",
                Some(_) => "multipart upload or segments",
            };
            tracing::info!(%image_id, store = %store, location = %url, removed = what, attempt = job.attempt, "failed upload's leftover removed");
            Ok(())
        }
        // run as tasks of their own (`long`)
        Work::Prefetch { .. } | Work::Import { .. } | Work::LocationImport { .. } => Ok(()),
    }
}

/// The location a job names, or for the staging store the data staged for the image in this
/// node's staging directory (the control plane names it from its configuration, which may
/// spell the directory differently).
fn staged_url(
    target: &crate::store::Store,
    store: &str,
    image_id: &shared::image::ImageId,
    url: &str,
) -> String {
    match target {
        crate::store::Store::File(f) if store == shared::config::STAGING_STORE => {
            f.location_for(image_id)
        }
        _ => url.to_owned(),
    }
}

async fn report(w: &Worker, job: &Job, outcome: Result<(), String>) {
    let msg = match &outcome {
        Ok(()) => Request::JobDone { id: job.id },
        Err(e) => {
            tracing::warn!(job = job.id, attempt = job.attempt, error = %e, "job failed; the control plane retries it later");
            Request::JobFailed {
                id: job.id,
                error: e.as_str(),
            }
        }
    };
    match w.link.call_keep(&msg).await {
        Ok((chan, _)) => w.link.give_back(chan),
        // the lease runs out and the job is claimed again: it is idempotent
        Err(e) => tracing::warn!(job = job.id, error = %e, "cannot report a job's outcome"),
    }
}
