//! Runs an `import` job ([`Work::Import`], `POST /v2/images/{id}/import`): the staged data
//! into each target store, through the same pipeline as an upload. For `web-download` the
//! source is first fetched into staging ([`super::web`]), with its SSRF checks; for
//! `glance-download` the other region's image, its metadata first (taken by the image
//! through the control plane), then its data, with the caller's token ([`glance_download`]).
//!
//! For each store the job still has to write (the control plane lists them when it hands the
//! job out, so a job claimed again after a crash writes only what is left):
//!
//! 1. `ImportBegin` takes an upload lease for that store on a channel connection and gives the
//!    upload's terms (hash algorithm, size cap, whether to inspect);
//! 2. the staged file is read (off the worker thread, one buffer at a time) into the hashing
//!    pipeline and the store's upload, each leftover recorded (`UploadLeftover`) before the
//!    store can hold it, exactly as for `PUT …/file` (for `glance-direct` data no plugin
//!    rewrote, the stage's record of its hashes serves instead, only the blocks checked equal:
//!    [`super::staged`]); `ImportProgress` reports every
//!    [`PROGRESS_EVERY`] bytes and may stop the import (`ImportOver`: the image was deleted,
//!    another import took over);
//! 3. the content is judged like an upload's (hostile or mismatched → the store fails), the
//!    store commits, and `UploadComplete` records the location (the control plane makes the
//!    image `active` when Glance's `set_active` says so).
//!
//! A store that fails fails the import when `all_stores_must_succeed` (the default), else it is
//! listed as failed and the next one is written. At the end the staged data is removed and
//! `ImportFinished` reports the outcome (the control plane finishes the task, and on failure
//! retires what the import wrote and puts the image back to `queued`). An import cut short by
//! a crash of either plane, or while the control plane is unreachable, settles nothing: the
//! staged data and the job stay, and when the job's lease runs out its node claims it again
//! and writes the stores still left (a job is claimed again while it runs too, each time its
//! lease runs out: that renews the lease, and the running import is not started twice).

use super::upload::{Failure, Grant, Stored, judge, record_leftovers, store_failed};
use super::worker::Worker;
use crate::hash::pipeline::{HashFailed, PipelinedHasher};
use shared::channel::{Job, Request, Response, Work};
use shared::error::{ErrorCode, Reason};
use shared::image::ImageId;
use std::sync::Arc;

/// Bytes between two `ImportProgress` reports.
pub const PROGRESS_EVERY: u64 = 64 << 20;

/// Buffers one store's copy may have in flight (as an upload).
const DEPTH: usize = 8;

/// Runs the import job to its end and reports it (`ImportFinished`).
pub async fn run(w: &Worker, job: &Job) {
    let Work::Import {
        task_id,
        image_id,
        method,
        uri,
        size,
        stores,
        all_stores_must_succeed,
        decompress,
        convert_from,
        convert_to,
        auth_token,
        refused,
    } = &job.work
    else {
        return;
    };
    let stores: Vec<&str> = stores.split(',').filter(|s| !s.is_empty()).collect();
    let mut failed: Vec<&str> = Vec::new();
    let error = if let Some(why) = refused {
        Some(why.clone())
    } else if !shared::config::IMPORT_METHODS.contains(&method.as_str()) {
        Some(format!("Import method {method:?} is not supported here"))
    } else {
        let mut error = None;
        // the format the data is in (glance-download: the remote image's, taken by the image)
        let mut disk_format = convert_from.clone();
        // copy-image: the image's data into staging first (not again once every store is done)
        if method == "copy-image" && !stores.is_empty() {
            let locations = uri.as_deref().unwrap_or("");
            if let Err(e) = stage_from_locations(w, image_id, locations, *size).await {
                tracing::warn!(%image_id, task_id = %task_id, error = %e, "copy-image could not read the image");
                error = Some(e);
            }
        }
        // web-download: the source into staging first (not again once every store is done)
        if method == "web-download" && !stores.is_empty() {
            match uri {
                Some(uri) => {
                    let who = super::web::Fetcher::WebDownload;
                    if let Err(e) = super::web::fetch(w, image_id, uri, &[], who).await {
                        tracing::warn!(%image_id, task_id = %task_id, error = %e, "web-download failed");
                        error = Some(e);
                    }
                }
                None => error = Some("web-download needs a uri".into()),
            }
        }
        // glance-download: the remote image's metadata, then its data into staging; a
        // `compressed` remote container is kept as it is (the image takes it)
        let mut decompress = *decompress;
        if method == "glance-download" && !stores.is_empty() {
            let token = auth_token.as_deref();
            match glance_download(w, task_id, image_id, uri.as_deref(), token).await {
                Ok((format, compressed)) => {
                    disk_format = disk_format.map(|_| format);
                    decompress &= !compressed;
                }
                Err(e) => {
                    tracing::warn!(%image_id, task_id = %task_id, error = %e, "glance-download failed");
                    error = Some(e);
                }
            }
        }
        // the image_decompression plugin
        if decompress
            && !stores.is_empty()
            && error.is_none()
            && let Err(e) = decompress_staged(w, image_id).await
        {
            tracing::warn!(%image_id, task_id = %task_id, error = %e, "decompression failed");
            error = Some(e);
        }
        // the image_conversion plugin: inspected first, then converted
        let mut converted = None;
        if let (Some(from), Some(to)) = (&disk_format, convert_to)
            && !stores.is_empty()
            && error.is_none()
        {
            match convert_staged(w, image_id, from, to).await {
                Ok(c) => converted = c,
                Err(e) => {
                    tracing::warn!(%image_id, task_id = %task_id, error = %e, "conversion failed");
                    error = Some(e);
                }
            }
        }
        // the data as `PUT …/stage` hashed it: the stage's record serves (super::staged)
        let as_staged = method == "glance-direct" && !decompress && converted.is_none();
        let staged = as_staged
            .then(|| w.stores.staging())
            .flatten()
            .and_then(|staging| super::staged::load(&staging, image_id));
        let todo = if error.is_none() { stores.len() } else { 0 };
        for store in stores.iter().take(todo) {
            tracing::info!(%image_id, task_id = %task_id, store, "importing staged data into a store");
            match copy(
                w,
                task_id,
                image_id,
                store,
                converted.as_deref(),
                staged.as_ref(),
            )
            .await
            {
                Ok(size) => {
                    tracing::info!(%image_id, task_id = %task_id, store, size, "import copy stored")
                }
                Err(Stop::Over) => {
                    error = Some("The import was stopped".to_owned());
                    break;
                }
                Err(Stop::Unreachable(m)) => {
                    // nothing is settled without the control plane: leave the staged data and
                    // the job as they are; its lease runs out and the job resumes from here
                    tracing::warn!(%image_id, task_id = %task_id, store, error = %m,
                        "import interrupted: the control plane is unreachable; it resumes when the job is claimed again");
                    return;
                }
                Err(Stop::Failed(m)) => {
                    tracing::warn!(%image_id, task_id = %task_id, store, error = %m, "import into a store failed");
                    if *all_stores_must_succeed {
                        error = Some(m);
                        break;
                    }
                    failed.push(store);
                }
            }
        }
        error
    };
    // the staged data has served its purpose, whatever the outcome (a failed import is staged
    // again, as with Glance)
    if let Some(staging) = w.stores.staging() {
        let url = staging.location_for(image_id);
        if let Err(e) = staging.delete(&url) {
            tracing::warn!(%image_id, error = %e, "cannot remove staged data");
        }
    }
    let failed = failed.join(",");
    let finished = Request::ImportFinished {
        job: job.id,
        task_id: task_id.as_str(),
        image_id: *image_id,
        error: error.as_deref(),
        failed_stores: failed.as_str(),
    };
    w.metrics.job(job.work.kind(), error.is_none());
    match w.link.call_keep(&finished).await {
        Ok((chan, _)) => w.link.give_back(chan),
        // the job's lease runs out and it is claimed again: with no store left it only reports
        Err(e) => tracing::warn!(%image_id, error = %e, "cannot report the end of an import"),
    }
}

/// The most bytes of a remote image's metadata (`GET /v2/images/{id}`).
const MAX_METADATA: usize = 1 << 20;

/// glance-download's first steps (Glance's `_ImportMetadata` and `_DownloadGlanceImage`):
/// the remote image's metadata (`url`, with the caller's `token`) to the control plane, which
/// checks it and has the image take its formats and properties, then its data (`url/file`)
/// into staging, which must be the remote size. The format the data is in, and whether its
/// container is `compressed`.
async fn glance_download(
    w: &Worker,
    task_id: &str,
    image_id: &ImageId,
    url: Option<&str>,
    token: Option<&str>,
) -> Result<(String, bool), String> {
    use super::web::{Fetcher, fetch, get};
    let url = url.ok_or("glance-download needs the remote image's URL")?;
    let headers: Vec<(&str, &str)> = token.map(|t| ("X-Auth-Token", t)).into_iter().collect();
    let metadata = get(w, url, &headers, Fetcher::GlanceDownload, MAX_METADATA).await?;
    let metadata = String::from_utf8(metadata)
        .map_err(|_| format!("The metadata at {url} is not UTF-8 text"))?;
    // (the control plane checks the metadata; only this is read here)
    let compressed = serde_json::from_str::<serde_json::Value>(&metadata)
        .is_ok_and(|v| v["container_format"] == "compressed");
    let ask = Request::ImportMetadata {
        task_id,
        image_id: *image_id,
        image: metadata.as_str(),
    };
    let (size, disk_format) = match w.link.call_keep(&ask).await {
        Ok((chan, answer)) => {
            w.link.give_back(chan);
            match answer {
                Response::ImportSource { size, disk_format } => (size, disk_format),
                Response::ImportRefused(why) => return Err(why),
                Response::Denied(Reason::ImportOver) => {
                    return Err("The import was stopped".into());
                }
                other => return Err(format!("The remote image was refused: {other:?}")),
            }
        }
        Err(e) => return Err(format!("Cannot reach the control plane: {e}")),
    };
    tracing::info!(%image_id, task_id, url, size, "downloading the remote image");
    let data = format!("{url}/file");
    let got = fetch(w, image_id, &data, &headers, Fetcher::GlanceDownload).await?;
    if got != size {
        // the staged data goes when the job ends, as after any failure
        return Err(format!(
            "Task {task_id} failed because downloaded data size {got} is different from expected {size}"
        ));
    }
    Ok((disk_format, compressed))
}

/// copy-image's first step: the image's data, from the first of its `locations` (best
/// first) that reads whole, into the staging store.
async fn stage_from_locations(
    w: &Worker,
    image_id: &ImageId,
    locations: &str,
    size: u64,
) -> Result<(), String> {
    let staging = w
        .stores
        .staging()
        .ok_or_else(|| "This node has no staging store".to_owned())?;
    let mut last = "The image has no location to copy from".to_owned();
    for (store, url) in shared::location::entries(locations) {
        match stage_from(w, &staging, image_id, store, url, size).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(%image_id, store, error = %e, "copy-image: location unreadable; trying the next");
                last = e;
            }
        }
    }
    Err(last)
}

/// The data at `url` (store `store`) into a staging temp file, renamed when whole.
async fn stage_from(
    w: &Worker,
    staging: &crate::store::fs::FsStore,
    image_id: &ImageId,
    store: &str,
    url: &str,
    size: u64,
) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("Cannot read the image from {store}: {e}");
    let upload = staging
        .create_upload(image_id)
        .await
        .map_err(|e| format!("Cannot stage the data: {e}"))?;
    let direct = upload.direct();
    let local = w.stores.open_local(store, url);
    let mut remote = match &local {
        Some(_) => None,
        None => {
            let s = w.stores.resolve(store, url).await.map_err(|e| failed(&e))?;
            Some(s.read(url, 0, size).await.map_err(|e| failed(&e))?)
        }
    };
    let file = match local {
        Some(opened) => Some(Arc::new(opened.map_err(|e| failed(&e))?.0)),
        None => None,
    };
    let mut offset = 0u64;
    while offset < size {
        let mut buf = w.buffers.take();
        let n = (buf.capacity() as u64).min(size - offset) as usize;
        let data = match (&file, remote.as_mut()) {
            (Some(f), _) => {
                let f = f.clone();
                compio::runtime::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt;
                    let mut data = vec![0u8; n];
                    f.read_exact_at(&mut data, offset)?;
                    Ok(data)
                })
                .await
                .map_err(|_| failed(&"read failed"))?
                .map_err(|e| failed(&e))?
            }
            (None, Some(reader)) => {
                let mut data = Vec::with_capacity(n);
                while data.len() < n {
                    let spare = Vec::with_capacity(n - data.len());
                    let (got, part) = reader.read(spare).await;
                    match got {
                        Ok(0) => return Err(failed(&"the data ended early")),
                        Ok(_) => data.extend_from_slice(&part),
                        Err(e) => return Err(failed(&e)),
                    }
                }
                data
            }
            (None, None) => return Err(failed(&"no reader")),
        };
        buf.push_slice(&data);
        if direct && !n.is_multiple_of(crate::io::ALIGN) {
            buf.pad_to_alignment();
        }
        upload
            .write_at(buf, offset)
            .await
            .map_err(|e| format!("Cannot stage the data: {e}"))?;
        offset += n as u64;
    }
    staging
        .commit(upload, size)
        .await
        .map_err(|e| format!("Cannot stage the data: {e}"))?;
    Ok(())
}

/// The `image_decompression` plugin (Glance's): a staged image that starts as a gzip
/// stream or a zip archive (of exactly one file) is replaced by what it holds, at most
/// `image_size_cap_bytes` of it; anything else is left as it is. Off the worker thread; the
/// result is written to a temp file of the staging store and renamed over the staged data.
async fn decompress_staged(w: &Worker, image_id: &ImageId) -> Result<(), String> {
    let staging = w
        .stores
        .staging()
        .ok_or_else(|| "This node has no staging store".to_owned())?;
    let src = staging.path_for(image_id);
    let tmp = staging
        .root()
        .join(format!(".{image_id}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let cap = w.settings.image_size_cap;
    let id = *image_id;
    compio::runtime::spawn_blocking(move || decompress_file(&src, &tmp, cap, id))
        .await
        .map_err(|_| "Decompression failed".to_owned())?
}

/// What [`decompress_staged`] runs: detect, decompress into `tmp`, rename over `src`.
fn decompress_file(
    src: &std::path::Path,
    tmp: &std::path::Path,
    cap: u64,
    image_id: ImageId,
) -> Result<(), String> {
    use std::io::Read;
    let failed = |e: &dyn std::fmt::Display| format!("Error decompressing image {image_id}: {e}");
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(src).map_err(|e| failed(&e))?;
    let n = f.read(&mut head).map_err(|e| failed(&e))?;
    let head = &head[..n];
    let gzip = head.starts_with(&[0x1f, 0x8b, 0x08]);
    let zip = head.starts_with(b"PK\x03\x04");
    if !gzip && !zip {
        return Ok(());
    }
    let copy = |reader: &mut dyn Read| -> Result<u64, String> {
        let mut out = std::fs::File::create_new(tmp).map_err(|e| failed(&e))?;
        let n = std::io::copy(&mut reader.take(cap + 1), &mut out).map_err(|e| failed(&e))?;
        if n > cap {
            return Err(shared::error::TOO_LARGE.into());
        }
        out.sync_all().map_err(|e| failed(&e))?;
        Ok(n)
    };
    let f = std::fs::File::open(src).map_err(|e| failed(&e))?;
    let written = if gzip {
        copy(&mut flate2::read::GzDecoder::new(std::io::BufReader::new(
            f,
        )))
    } else {
        let mut archive = zip::ZipArchive::new(f).map_err(|e| failed(&e))?;
        if archive.len() != 1 {
            Err(failed(&"Archive contains more than one file."))
        } else {
            let mut entry = archive.by_index(0).map_err(|e| failed(&e))?;
            copy(&mut entry)
        }
    };
    let size = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
    };
    std::fs::rename(tmp, src).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        failed(&e)
    })?;
    tracing::info!(%image_id, size, format = if gzip { "gzip" } else { "zip" }, "staged image decompressed");
    Ok(())
}

/// The `image_conversion` plugin (Glance's): the staged data is inspected first (the format
/// it claims, `from`, must be what it is, and it must pass the safety checks: `qemu-img`
/// never reads a hostile image), then `qemu-img convert -f <from> -O <to>` runs under
/// `prlimit` (`[image_conversion] max_cpu_seconds`, `max_memory_bytes`), its output is
/// inspected as `to` and renamed over the staged data. The new format, or `None` when nothing
/// was converted (already `to`, or an ISO).
async fn convert_staged(
    w: &Worker,
    image_id: &ImageId,
    from: &str,
    to: &str,
) -> Result<Option<String>, String> {
    let staging = w
        .stores
        .staging()
        .ok_or_else(|| "This node has no staging store".to_owned())?;
    let src = staging.path_for(image_id);
    let verdict = inspect_file(&src).await?;
    let nonfatal = &w.settings.gpt_safety_checks_nonfatal;
    if let Some(r) = &verdict.refusal {
        let gpt = matches!(verdict.format, inspect::Format::Gpt | inspect::Format::Mbr);
        if !(gpt
            && r.check_name()
                .is_some_and(|n| nonfatal.iter().any(|m| m == n)))
        {
            return Err(format!("Image has disallowed configuration: {r}"));
        }
    }
    let detected = match verdict.format {
        inspect::Format::Gpt | inspect::Format::Mbr => "raw",
        f => f.inspector_name(),
    };
    if detected == "iso" && from == "iso" {
        return Ok(None);
    }
    if detected != from {
        return Err(format!(
            "Image format mismatch: claimed {from}, inspection found {detected}"
        ));
    }
    if from == to {
        return Ok(None);
    }
    let tmp = staging
        .root()
        .join(format!(".{image_id}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let limits = &w.settings.conversion;
    let args = vec![
        format!("--cpu={}", limits.max_cpu_seconds),
        format!("--as={}", limits.max_memory_bytes),
        "qemu-img".to_owned(),
        "convert".to_owned(),
        "-f".to_owned(),
        from.to_owned(),
        "-O".to_owned(),
        to.to_owned(),
        src.display().to_string(),
        tmp.display().to_string(),
    ];
    let ran = compio::runtime::spawn_blocking(move || {
        std::process::Command::new("prlimit").args(&args).output()
    })
    .await
    .map_err(|_| "qemu-img convert failed".to_owned())?;
    let failed = |why: String| {
        let _ = std::fs::remove_file(&tmp);
        why
    };
    match ran {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(failed(format!(
                "qemu-img convert failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Err(e) => return Err(failed(format!("Cannot run qemu-img under prlimit: {e}"))),
    }
    let out = inspect_file(&tmp).await.map_err(&failed)?;
    let made = match out.format {
        inspect::Format::Gpt | inspect::Format::Mbr => "raw",
        f => f.inspector_name(),
    };
    if made != to || out.refusal.is_some() {
        return Err(failed(format!(
            "Converted image in unexpected format {made}"
        )));
    }
    std::fs::rename(&tmp, &src)
        .map_err(|e| failed(format!("Cannot stage the converted image: {e}")))?;
    tracing::info!(%image_id, from, to, size = out.size, "staged image converted");
    Ok(Some(to.to_owned()))
}

/// The inspector's verdict on a whole file (read off the worker thread).
async fn inspect_file(path: &std::path::Path) -> Result<inspect::Verdict, String> {
    let path = path.to_owned();
    compio::runtime::spawn_blocking(move || -> std::io::Result<inspect::Verdict> {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut inspector = inspect::Inspector::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            inspector.feed(&buf[..n]);
        }
        Ok(inspector.finish())
    })
    .await
    .map_err(|_| "Cannot inspect the staged image".to_owned())?
    .map_err(|e| format!("Cannot inspect the staged image: {e}"))
}

/// Why one store's copy ended without a commit.
#[derive(Debug)]
enum Stop {
    /// The control plane said the import is over.
    Over,
    /// The control plane could not be asked (the import is left to a later claim).
    Unreachable(String),
    /// This store failed (the message goes into the task).
    Failed(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        if f.side == crate::metrics::Side::Control {
            Stop::Unreachable(f.message)
        } else {
            Stop::Failed(f.message)
        }
    }
}

/// Copies the staged data of `image_id` into `store` under an import lease; the size stored.
/// `staged`: the record of the stage that hashed this data, when no plugin rewrote it.
async fn copy(
    w: &Worker,
    task_id: &str,
    image_id: &ImageId,
    store: &str,
    disk_format: Option<&str>,
    staged: Option<&super::staged::Staged>,
) -> Result<u64, Stop> {
    let staging = w
        .stores
        .staging()
        .ok_or_else(|| Stop::Failed("This node has no staging store".into()))?;
    let file = std::fs::File::open(staging.path_for(image_id))
        .map_err(|e| Stop::Failed(format!("No staged data for image {image_id}: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Stop::Failed(format!("Cannot read the staged data: {e}")))?
        .len();
    let file = crate::io::into_compio(file);
    let begin = Request::ImportBegin {
        task_id,
        image_id: *image_id,
        store,
        disk_format,
    };
    let mut grant = match w.link.call_keep(&begin).await {
        Ok((
            lease,
            Response::UploadGranted {
                hash_algo,
                max_size_bytes,
                store,
                inspect_as,
            },
        )) => Grant {
            lease,
            hash_algo,
            max_size: max_size_bytes,
            store,
            inspect_as,
            request_id: task_id.to_owned(),
        },
        Ok((chan, Response::Denied(Reason::ImportOver))) => {
            w.link.give_back(chan);
            return Err(Stop::Over);
        }
        Ok((chan, other)) => {
            w.link.give_back(chan);
            return Err(Stop::Failed(format!("The import was refused: {other:?}")));
        }
        Err(e) => return Err(Stop::Unreachable(e.to_string())),
    };
    if size > grant.max_size {
        abort(w, grant, image_id, ErrorCode::PayloadTooLarge).await;
        return Err(Stop::Failed(shared::error::TOO_LARGE.into()));
    }
    let stored = write(w, &mut grant, image_id, &file, size, staged).await;
    let stored = match stored {
        Ok(s) => s,
        Err(stop) => {
            let code = match &stop {
                Stop::Over => ErrorCode::Conflict,
                Stop::Failed(_) | Stop::Unreachable(_) => ErrorCode::ServiceUnavailable,
            };
            abort(w, grant, image_id, code).await;
            return Err(stop);
        }
    };
    let block_hashes = shared::blocks::to_hex(&stored.blocks.hashes);
    let complete = stored.complete(task_id, *image_id, &grant.store, &block_hashes);
    let mut lease = grant.lease;
    match lease.call(&complete).await {
        Ok(Response::UploadCommitted) => {
            w.link.give_back(lease);
            Ok(stored.digests.size)
        }
        Ok(Response::Denied(Reason::ImportOver)) => {
            w.link.give_back(lease);
            Err(Stop::Over)
        }
        Ok(other) => {
            w.link.give_back(lease);
            Err(Stop::Failed(format!(
                "The copy was not recorded: {other:?}"
            )))
        }
        Err(e) => Err(Stop::Unreachable(e.to_string())),
    }
}

/// The staged file into the store's upload through the hashing pipeline; the location, the
/// digests, the inspected virtual size and the block hashes. With the stage's record
/// (`staged`) fitting the grant, its digests and virtual size serve, the blocks checked equal.
async fn write(
    w: &Worker,
    grant: &mut Grant,
    image_id: &ImageId,
    file: &compio::fs::File,
    size: u64,
    staged: Option<&super::staged::Staged>,
) -> Result<Stored, Stop> {
    let store = match w.stores.get(&grant.store).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(store_failed(e).into()),
        None => {
            return Err(Stop::Failed(shared::error::unknown_store(&grant.store)));
        }
    };
    let mut upload = store
        .create_upload(image_id, Some(size))
        .await
        .map_err(store_failed)?;
    if let Err(f) = record_leftovers(&mut upload, grant, *image_id).await {
        upload.abort().await;
        return Err(f.into());
    }
    let block_size = w.settings.block_size;
    let (algo, inspect_as) = (grant.hash_algo, grant.inspect_as.as_deref());
    let staged = staged.filter(|s| s.fits(size, algo, inspect_as, block_size));
    let mut hasher = match staged {
        Some(s) => {
            tracing::debug!(%image_id, "the stage's hashes serve; only the blocks are checked");
            PipelinedHasher::verify(s.known.clone(), w.buffers.clone(), DEPTH)
        }
        None => {
            let pool = w.buffers.clone();
            PipelinedHasher::start(algo, pool, DEPTH, inspect_as.is_some(), block_size)
        }
    };
    let copied = fill(w, grant, image_id, file, size, &mut upload, &mut hasher).await;
    if let Err(stop) = copied {
        upload.abort().await;
        return Err(stop);
    }
    let finished = match hasher.finish().await {
        Ok(f) => f,
        Err(e) => {
            upload.abort().await;
            if matches!(e, HashFailed::Changed) {
                tracing::error!(%image_id, "the staged data changed after it was staged");
                return Err(Stop::Failed(format!(
                    "The staged data of image {image_id} changed after it was staged"
                )));
            }
            return Err(Stop::Failed(e.to_string()));
        }
    };
    let virtual_size = match (staged, &grant.inspect_as, finished.verdict) {
        // judged at the stage
        (Some(s), ..) => s.virtual_size,
        (None, Some(disk_format), Some(verdict)) => {
            match judge(verdict, disk_format, image_id, w) {
                Ok(v) => v,
                Err(f) => {
                    upload.abort().await;
                    return Err(f.into());
                }
            }
        }
        _ => None,
    };
    let location = upload
        .commit(finished.digests.size)
        .await
        .map_err(store_failed)?;
    Ok(Stored {
        location,
        digests: finished.digests,
        virtual_size,
        blocks: finished.blocks,
    })
}

/// Reads the staged file, buffer by buffer, into the hasher and the upload.
async fn fill(
    w: &Worker,
    grant: &mut Grant,
    image_id: &ImageId,
    file: &compio::fs::File,
    size: u64,
    upload: &mut crate::store::Upload,
    hasher: &mut PipelinedHasher,
) -> Result<(), Stop> {
    let direct = upload.direct();
    let slot = w.stores.metric_slot(&grant.store);
    let mut offset = 0u64;
    let mut reported = 0u64;
    while offset < size {
        use compio::buf::{IntoInner, IoBuf};
        use compio::io::AsyncReadAtExt;
        let buf = hasher.buffer().await;
        let n = (buf.capacity() as u64).min(size - offset) as usize;
        // straight into the pooled buffer (io_uring), no copy
        let compio::BufResult(read, slice) = file.read_exact_at(buf.slice(..n), offset).await;
        let buf = slice.into_inner();
        if let Err(e) = read {
            hasher.give_back(Some(buf));
            return Err(Stop::Failed(format!("Cannot read the staged data: {e}")));
        }
        debug_assert_eq!(buf.len(), n);
        offset += n as u64;
        w.metrics.bytes_in(slot, n as u64);
        let pad = direct && !n.is_multiple_of(crate::io::ALIGN);
        let chunk = hasher.submit(buf, pad);
        upload.push(chunk, n).await.map_err(store_failed)?;
        record_leftovers(upload, grant, *image_id).await?;
        if offset - reported >= PROGRESS_EVERY {
            reported = offset;
            let progress = Request::ImportProgress {
                task_id: grant.request_id.as_str(),
                image_id: *image_id,
                copied: offset,
            };
            match grant.lease.call(&progress).await {
                Ok(Response::Ack) => {}
                Ok(Response::Denied(Reason::ImportOver)) => return Err(Stop::Over),
                Ok(_) => {}
                Err(e) => return Err(Stop::Unreachable(e.to_string())),
            }
        }
    }
    Ok(())
}

/// Ends the lease of a copy that did not commit (`UploadAborted`: its leftovers are removed).
async fn abort(w: &Worker, grant: Grant, image_id: &ImageId, code: ErrorCode) {
    let mut lease = grant.lease;
    let abort = Request::UploadAborted {
        request_id: grant.request_id.as_str(),
        image_id: *image_id,
        code,
    };
    match lease.call(&abort).await {
        Ok(_) => w.link.give_back(lease),
        Err(e) => tracing::warn!(%image_id, error = %e, "could not report an aborted import copy"),
    }
}
