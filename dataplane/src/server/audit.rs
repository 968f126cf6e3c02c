//! The block cache's auditor: a task on one worker that reads every cached block back against
//! the hash its image's upload recorded, at `image_cache_audit_bytes_per_second`, pass after
//! pass. A block that no longer matches (the disk returned other bytes, someone wrote into
//! the cache directory) is quarantined the only safe way for a cache: it is discarded, so it
//! is never served again and is filled from the store when next read; the failure is counted
//! (`glint_dp_cache_verify_failures_total{source="disk"}`) and logged. Progress is counted in
//! `glint_dp_cache_audited_bytes_total` and `glint_dp_cache_audit_passes_total`.
//!
//! Reads run off the worker thread (`spawn_blocking`), one block at a time, and the task
//! sleeps so that a block of `n` bytes takes at least `n / rate` seconds: the audit never
//! competes with downloads for more than that.

use super::cached;
use super::worker::Worker;
use crate::metrics::Corrupt;
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
        if !blocks.is_empty() {
            cache.metrics.cache_audit_pass();
            tracing::debug!(blocks = blocks.len(), "cache audit pass done");
        }
        compio::time::sleep(BETWEEN_PASSES).await;
    }
}
