//! The block cache in front of remote stores (issue "The block cache"), being built in steps.
//!
//! What is here: [`blocks`], the cache's blocks on disk with their index and their budget
//! (verified on admission against the block hashes every upload records, written crash-safe,
//! the index rebuilt from disk at start, least-recently-used images evicted at admission,
//! images being served pinned). What comes next: the single-flight fill of blocks from the
//! stores shared by the workers, serving present blocks with `sendfile`, ranges, the
//! configuration (`image_cache_dir`, `image_cache_max_size`, `image_cache_stall_time`), the
//! auditor, Glance's cache API and the metrics.

pub mod blocks;
