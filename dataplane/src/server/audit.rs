//! The block cache's auditor: a task on one worker that reads every cached block back against
//! the hash its image's upload recorded, at `image_cache_audit_bytes_per_second`, pass after
//! pass. A block that no longer matches (the disk returned other bytes, someone wrote into
//! the cache directory) is quarantined the only safe way for a cache: it is discarded, so it
//! is never served again and is filled from the store when next read; the failure is counted
//! (`glint_dp_cache_verify_failures_total{source="disk"}`) and logged. Progress is counted in
//! `glint_dp_cache_audited_bytes_total` and `glint_dp_cache_audit_passes_total`.
//!
//! Each pass also re-verifies the images in this node's filesystem stores: the control plane
//! hands out the active locations of active images with block hashes (`AuditTargets`, in
//! batches), and each location this data plane's filesystem stores serve is read block by block
//! against the hashes its upload recorded. A file that no longer matches (or has another size)
//! is quarantined (`Quarantine`: the location is never served again; the image's other copies
//! are, and with none left its downloads are 503, never wrong bytes), counted
//! (`glint_dp_cache_verify_failures_total{source="local_store"}`) and logged.
//!
//! Reads run off the worker thread (`spawn_blocking`), one block at a time, and the task
//! sleeps so that a block of `n` bytes takes at least `n / rate` seconds: the audit never
//! competes with downloads for more than that.

use super::cached;
use super::worker::Worker;
use crate::metrics::Corrupt;
use shared::channel::messages::AuditTarget;
use shared::channel::{Request, Response};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Pause between passes (and while the cache is empty).
const BETWEEN_PASSES: Duration = Duration::from_secs(10);

/// Runs the auditor until the process ends (returns at once without a cache or a rate).
pub(super) async fn run(w: Rc<Worker>) {
    let Some(cache) = w.cache.clone() else {
        return;
    };
    let rate = cache.settings.audit_rate;
    if rate == 0 {
        return;
    }
    loop {
        let blocks = cache.blocks.all_blocks();
        for (image, index, len) in &blocks {
            let started = Instant::now();
            let Some(map) = cached::hashes(&w, &cache, *image).await else {
                continue;
            };
            let Some(&want) = map.hashes.get(*index as usize) else {
                continue;
            };
            // evicted or discarded since the pass began: nothing to check
            let Some((file, _)) = cache.blocks.open_block(*image, *index, *len) else {
                continue;
            };
            match cached::read_back(&file, want).await {
                Ok(true) => cache.blocks.mark_verified(*image, *index),
                Ok(false) => {
                    tracing::error!(%image, block = index, "audit: cached block does not match its hash; discarded (filled again when next read)");
                    cache.metrics.cache_corrupt(Corrupt::Disk);
                    cache.blocks.discard(*image, *index);
                    cache.publish();
                }
                Err(e) => {
                    tracing::warn!(%image, block = index, error = %e, "audit: cannot read a cached block")
                }
            }
            cache.metrics.cache_audited(*len);
            let pace = Duration::from_secs_f64(*len as f64 / rate as f64);
            if let Some(rest) = pace.checked_sub(started.elapsed()) {
                compio::time::sleep(rest).await;
            }
        }
        let files = audit_stores(&w, &cache, rate).await;
        if !blocks.is_empty() || files > 0 {
            cache.metrics.cache_audit_pass();
            tracing::debug!(blocks = blocks.len(), files, "audit pass done");
        }
        compio::time::sleep(BETWEEN_PASSES).await;
    }
}

/// Images asked of the control plane at once.
const BATCH: u32 = 64;

/// One pass over the images in this node's filesystem stores; how many files were read.
async fn audit_stores(w: &Worker, cache: &crate::cache::Cache, rate: u64) -> usize {
    let mut after = None;
    let mut files = 0;
    loop {
        let ask = Request::<&str>::AuditTargets { after, max: BATCH };
        let batch = match w.link.call_keep(&ask).await {
            Ok((chan, Response::AuditTargets(batch))) => {
                w.link.give_back(chan);
                batch
            }
            Ok((chan, other)) => {
                w.link.give_back(chan);
                tracing::warn!(answer = ?other, "unexpected answer to AuditTargets");
                return files;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask what to audit now");
                return files;
            }
        };
        let Some(last) = batch.last() else {
            return files;
        };
        after = Some(last.image_id);
        for t in &batch {
            // a location of a remote store, or one gone meanwhile: not this auditor's
            let Some(Ok((file, len))) = w.stores.open_local(&t.store, &t.url) else {
                continue;
            };
            files += 1;
            if let Some(reason) = audit_file(cache, rate, &file, len, t).await {
                cache.metrics.cache_corrupt(Corrupt::LocalStore);
                tracing::error!(image = %t.image_id, location = %t.url, %reason, "audit: image data in a filesystem store does not match its block hashes; quarantining the location");
                let msg = Request::Quarantine {
                    image_id: t.image_id,
                    url: t.url.as_str(),
                    reason: reason.as_str(),
                };
                match w.link.exchange(&msg).await {
                    Ok(chan) => w.link.give_back(chan),
                    Err(e) => {
                        tracing::warn!(image = %t.image_id, error = %e, "cannot quarantine now; the next pass tries again")
                    }
                }
            }
        }
        // fewer images than asked for (an image gives a row per location): the last batch
        let images: std::collections::HashSet<_> = batch.iter().map(|t| t.image_id).collect();
        if (images.len() as u32) < BATCH {
            return files;
        }
    }
}

/// Reads one file of `len` bytes back against `t`'s block hashes, paced at `rate`; what is
/// wrong with it, if anything (an I/O error is logged and left for the next pass).
async fn audit_file(
    cache: &crate::cache::Cache,
    rate: u64,
    file: &std::fs::File,
    len: u64,
    t: &AuditTarget,
) -> Option<String> {
    if len != t.size {
        return Some(format!("the file holds {len} bytes, the image {}", t.size));
    }
    let hashes = shared::blocks::from_hex(&t.hashes)?;
    if t.block_size == 0 || hashes.len() as u64 != shared::blocks::count(t.size, t.block_size) {
        return None;
    }
    for (index, want) in hashes.into_iter().enumerate() {
        let started = Instant::now();
        let offset = index as u64 * t.block_size;
        let n = (t.size - offset).min(t.block_size);
        let Ok(f) = file.try_clone() else {
            return None;
        };
        let read = compio::runtime::spawn_blocking(move || -> std::io::Result<bool> {
            use std::os::unix::fs::FileExt;
            let mut data = vec![0u8; n as usize];
            f.read_exact_at(&mut data, offset)?;
            Ok(crate::hash::blocks::hash_block(&data) == want)
        })
        .await;
        match read {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Some(format!("block {index} does not match its hash")),
            Ok(Err(e)) => {
                tracing::warn!(image = %t.image_id, location = %t.url, error = %e, "audit: cannot read image data");
                return None;
            }
            Err(_) => return None,
        }
        cache.metrics.cache_audited(n);
        let pace = Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(rest) = pace.checked_sub(started.elapsed()) {
            compio::time::sleep(rest).await;
        }
    }
    None
}
