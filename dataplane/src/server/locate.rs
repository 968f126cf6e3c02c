//! The check of a location added by `POST /v2/images/{id}/locations` ([`Work::LocationImport`]):
//! the location's size from its store (an RBD image's, an HTTP resource's), and when the
//! control plane asks (`do_secure_hash`) its md5 and secure hash, read whole through the
//! store and hashed off the worker thread, a failed read tried again `retries` times
//! (`http_retries`). An HTTP URL a user (not a service) added must first pass
//! `[import_filtering_opts]` and web-download's checks of every resolved address (no
//! loopback, link-local, metadata or private addresses unless allowed): Glance reads any
//! such URL, which lets a user make the image service fetch internal URLs. Reported
//! `LocationChecked`; the control plane compares the hash with the
//! request's `validation_data`, adds the location and makes the image `active`. A report the
//! control plane never got leaves the job leased: it runs again when the lease ends.

use super::worker::Worker;
use crate::hash::MultiHasher;
use shared::channel::{Job, Request, Response, Work};
use shared::image::{HashAlgo, ImageId};

/// Runs the check and reports it.
pub async fn run(w: &Worker, job: &Job) {
    let Work::LocationImport {
        task_id,
        image_id,
        store,
        url,
        hash_algo,
        retries,
        filtered,
    } = &job.work
    else {
        return;
    };
    let outcome = async {
        if *filtered && (url.starts_with("http://") || url.starts_with("https://")) {
            let parsed =
                url::Url::parse(url).map_err(|e| format!("Invalid location {url}: {e}"))?;
            super::web::check(w, &parsed, super::web::Fetcher::Location).await?;
        }
        check(w, image_id, store, url, hash_algo.as_deref(), *retries).await
    }
    .await;
    let (size, hashes, error) = match outcome {
        Ok((size, hashes)) => (size, hashes, None),
        Err(e) => {
            tracing::warn!(%image_id, task_id = %task_id, error = %e, "added location refused");
            (0, None, Some(e))
        }
    };
    w.metrics.job(job.work.kind(), error.is_none());
    let report = Request::LocationChecked {
        job: job.id,
        task_id: task_id.as_str(),
        image_id: *image_id,
        size,
        checksum: hashes.as_ref().map(|h| h.0.as_str()),
        os_hash_value: hashes.as_ref().map(|h| h.1.as_str()),
        error: error.as_deref(),
    };
    match w.link.call_keep(&report).await {
        Ok((chan, Response::Ack)) => w.link.give_back(chan),
        Ok((chan, other)) => {
            w.link.give_back(chan);
            tracing::warn!(answer = ?other, "unexpected answer to LocationChecked");
        }
        Err(e) => {
            tracing::warn!(%image_id, error = %e, "cannot report a location check; it runs again after its lease")
        }
    }
}

/// The size and, with `hash_algo`, the (md5, secure hash) hex of the data at `url`.
async fn check(
    w: &Worker,
    image_id: &ImageId,
    store: &str,
    url: &str,
    hash_algo: Option<&str>,
    retries: u32,
) -> Result<(u64, Option<(String, String)>), String> {
    let s = w
        .stores
        .resolve(store, url)
        .await
        .map_err(|e| format!("Invalid location: {e}"))?;
    let size = s
        .size(url)
        .await
        .map_err(|e| format!("Invalid location {url}: {e}"))?;
    let Some(algo) = hash_algo else {
        return Ok((size, None));
    };
    let algo: HashAlgo = algo.parse()?;
    for attempt in 0..=retries {
        match hash_all(&s, url, size, algo).await {
            Ok(h) => return Ok((size, Some(h))),
            Err(e) => {
                tracing::debug!(%image_id, attempt, retries, error = %e, "hash calculation failed")
            }
        }
    }
    Err(format!("Hash calculation failed for image {image_id} data"))
}

/// Reads `size` bytes of `url` and hashes them (each buffer hashed on the blocking pool).
async fn hash_all(
    s: &crate::store::Store,
    url: &str,
    size: u64,
    algo: HashAlgo,
) -> Result<(String, String), String> {
    let mut reader = s.read(url, 0, size).await.map_err(|e| e.to_string())?;
    let mut hasher = MultiHasher::new(algo);
    let mut buf = Vec::with_capacity(1 << 20);
    while reader.remaining() > 0 {
        buf.clear();
        let (res, b) = reader.read(buf).await;
        buf = b;
        if res.map_err(|e| e.to_string())? == 0 {
            return Err("the location ended early".into());
        }
        let (h, b) = compio::runtime::spawn_blocking(move || {
            hasher.update(&buf);
            (hasher, buf)
        })
        .await
        .map_err(|_| "hashing failed".to_owned())?;
        hasher = h;
        buf = b;
    }
    let d = hasher.finish();
    if d.size != size {
        return Err(format!("read {} of {size} bytes", d.size));
    }
    Ok((d.md5_hex, d.secure_hex))
}
