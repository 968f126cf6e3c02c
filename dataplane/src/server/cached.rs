//! Downloads of images in remote stores through the block cache ([`crate::cache`]).
//!
//! A download walks the blocks its range covers ([`Blocks::next`]), each one a [`Piece`]:
//! - present on disk: sent from the block's file with `sendfile`, as a filesystem store's
//!   image is (a block found on disk at start is first read back against its hash: a
//!   corrupted block is discarded, counted and filled again, never served);
//! - being filled by another download: the download waits for it and sends the verified
//!   bytes from memory the moment the fill completes (single flight: each block is read from
//!   the store once however many downloads want it), a buffer at a time, switching to the
//!   block's file as soon as it is written (so a slow reader does not hold the block's memory);
//! - neither: the download starts the fill, a task of its own ([`fill`]) that reads the
//!   block with a ranged GET from the best location, verifies it against the block hash the
//!   upload recorded (a mismatch is counted, the location marked suspect, the next location
//!   tried), hands it to every waiter, then writes it to disk within the budget. The next
//!   blocks are filled ahead ([`Blocks::next`] asks for `image_cache_readahead_blocks`) while
//!   this one is sent.
//!
//! An image whose upload recorded no block hashes (data from before they were) is filled
//! whole instead, by one [`Sequential`] fill ([`sequential_fill`]): one GET in order, each
//! block written as it lands, the whole verified against the image's `checksum` and
//! `os_hash_value` before its last block lands; downloads of the whole image follow it block
//! by block ([`Blocks::follow`]), so a bad image is never completed nor kept. The block hashes
//! it computed are then recorded with the image, which is filled block by block from then on.
//!
//! A download that waits longer than `image_cache_wait_ms` for a fill, or finds
//! `image_cache_max_fills` fills under way, reads that block's bytes from the store itself
//! (counted); it never hangs. The first piece is found before the answer's head goes out, so a
//! store that cannot give it is a 503; a later piece that cannot be had (every location
//! failed) cuts the connection: the client sees fewer bytes than `Content-Length`, never a
//! clean short answer.

use super::worker::Worker;
use crate::cache::{BlockMap, Cache, Found, Outcome, Sequential, Whole};
use crate::metrics::{Corrupt, Lookup, Uncached};
use shared::image::ImageId;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// The block hashes of `image` (remembered, else asked of the control plane); `None` when the
/// control plane cannot be asked.
pub(super) async fn hashes(w: &Worker, cache: &Cache, image: ImageId) -> Option<Arc<BlockMap>> {
    Some(match cache.map(image) {
        Some(m) => m,
        None => {
            let ask = shared::channel::Request::<&str>::BlockHashes { image_id: image };
            let chan = match w.link.exchange(&ask).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%image, error = %e, "cannot ask for block hashes; streaming from the store");
                    return None;
                }
            };
            let map = match chan.response() {
                Ok(shared::channel::Response::BlockHashes {
                    block_size,
                    hashes,
                    checksum,
                    os_hash_algo,
                    os_hash_value,
                }) => BlockMap {
                    block_size,
                    hashes: shared::blocks::from_hex(hashes).unwrap_or_default(),
                    whole: Whole {
                        checksum: checksum.map(str::to_owned),
                        secure: os_hash_algo
                            .and_then(|a| a.parse().ok())
                            .zip(os_hash_value.map(str::to_owned)),
                    },
                },
                _ => BlockMap {
                    block_size: 0,
                    hashes: Vec::new(),
                    whole: Whole::default(),
                },
            };
            w.link.give_back(chan);
            cache.remember(image, map)
        }
    })
}

/// A block, in a buffer the kernel may read in place while other downloads share it.
#[derive(Debug)]
pub(super) struct Shared {
    block: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Shared {
    /// Bytes left to send.
    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Where the bytes left start, in the block.
    pub(super) fn start(&self) -> usize {
        self.start
    }

    /// The next `n` bytes (as a buffer of their own, sharing the block), taken off the front.
    pub(super) fn split_front(&mut self, n: usize) -> Shared {
        let n = n.min(self.len());
        let front = Shared {
            block: self.block.clone(),
            start: self.start,
            end: self.start + n,
        };
        self.start += n;
        front
    }
}

impl compio::buf::IoBuf for Shared {
    fn as_init(&self) -> &[u8] {
        &self.block[self.start..self.end]
    }
}

/// What one step of a download sends.
#[derive(Debug)]
pub(super) enum Piece {
    /// `len` bytes of a cached block's file from `start`.
    File {
        /// The block's file.
        file: std::fs::File,
        /// First byte, in the block.
        start: u64,
        /// Bytes.
        len: u64,
    },
    /// Part of a block just filled and verified, in memory: block `index` of `block_len`
    /// bytes (sent from its file instead once it is written).
    Memory {
        /// The bytes to send.
        part: Shared,
        /// The block.
        index: u64,
        /// Its length.
        block_len: u64,
    },
    /// Read from the store directly (the cache could not take it).
    Direct(crate::store::Reader, u64),
}

/// Why a download could not get a block.
#[derive(Debug, thiserror::Error)]
#[error("block {index} of image {image}: no location gave its bytes")]
pub(super) struct Unavailable {
    image: ImageId,
    index: u64,
}

/// How a download of bytes `offset..offset + len` of `image` (`size` bytes at `locations`)
/// goes through the cache: block by block against the block hashes recorded with the image, or
/// following the sequential fill of an image that has none ([`Sequential`], started here when
/// none is under way). `None`: it is streamed from the store (counted as `unhashed`): the
/// control plane cannot be asked, or the image has no hashes to verify against, or the
/// download is a part without the image's end, whose bytes could not be verified before the
/// answer ends.
pub(super) async fn blocks<'a>(
    w: &'a Rc<Worker>,
    cache: &'a Arc<Cache>,
    image: ImageId,
    locations: Rc<[(String, String)]>,
    (size, offset, len): (u64, u64, u64),
) -> Option<Blocks<'a>> {
    let map = hashes(w, cache, image).await?;
    if map.covers(size) {
        return Some(Blocks::new(
            w,
            cache,
            image,
            map,
            locations,
            (size, offset, len),
        ));
    }
    if map.block_size != 0 || map.whole.checksum.is_none() || offset + len != size {
        cache.metrics.cache_uncached(Uncached::Unhashed);
        return None;
    }
    let (seq, start) = cache.sequential(image);
    if start {
        let task = sequential_fill(
            w.clone(),
            cache.clone(),
            image,
            size,
            map.whole.clone(),
            locations.clone(),
            seq.clone(),
        );
        compio::runtime::spawn(task).detach();
    } else {
        cache.metrics.cache_coalesced();
    }
    let plain = Arc::new(BlockMap {
        block_size: seq.block_size,
        hashes: Vec::new(),
        whole: Whole::default(),
    });
    let mut blocks = Blocks::new(w, cache, image, plain, locations, (size, offset, len));
    blocks.seq = Some(seq);
    Some(blocks)
}

/// The blocks a download covers, in order.
pub(super) struct Blocks<'a> {
    w: &'a Rc<Worker>,
    cache: &'a Arc<Cache>,
    image: ImageId,
    map: Arc<BlockMap>,
    locations: Rc<[(String, String)]>,
    size: u64,
    pos: u64,
    end: u64,
    /// The sequential fill followed (an image without block hashes).
    seq: Option<Arc<Sequential>>,
}

impl<'a> Blocks<'a> {
    /// The blocks of bytes `offset..offset + len` of `image` (`size` bytes in all); counts the
    /// lookup as a hit, miss or partial.
    pub(super) fn new(
        w: &'a Rc<Worker>,
        cache: &'a Arc<Cache>,
        image: ImageId,
        map: Arc<BlockMap>,
        locations: Rc<[(String, String)]>,
        (size, offset, len): (u64, u64, u64),
    ) -> Blocks<'a> {
        let bs = map.block_size;
        let (first, last) = (offset / bs, (offset + len - 1) / bs);
        let present = cache.blocks.count_present(image, first..=last);
        cache.metrics.cache_lookup(match present {
            0 => Lookup::Miss,
            n if n == last - first + 1 => Lookup::Hit,
            _ => Lookup::Partial,
        });
        Blocks {
            w,
            cache,
            image,
            map,
            locations,
            size,
            pos: offset,
            end: offset + len,
            seq: None,
        }
    }

    /// The next piece to send; `None` at the end.
    pub(super) async fn next(&mut self) -> Option<Result<Piece, Unavailable>> {
        if self.pos >= self.end {
            return None;
        }
        let bs = self.map.block_size;
        let index = self.pos / bs;
        let block_len = self.map.block_len(index, self.size);
        let start = self.pos - index * bs;
        let take = (self.end - self.pos).min(block_len - start);
        let piece = match &self.seq {
            Some(seq) => self.follow(seq, index, block_len, start, take).await,
            None => {
                self.read_ahead(index);
                self.block(index, block_len, start, take).await
            }
        };
        self.pos += take;
        Some(piece)
    }

    /// The file of block `index` (`len` bytes), once it is on disk.
    pub(super) fn on_disk(&self, index: u64, len: u64) -> Option<std::fs::File> {
        self.cache
            .blocks
            .open_block(self.image, index, len)
            .map(|(file, _)| file)
    }

    /// Starts fills of the blocks after `index` that are neither present nor being filled.
    fn read_ahead(&self, index: u64) {
        let blocks = self.map.hashes.len() as u64;
        let until = (index + self.cache.settings.readahead).min(blocks.saturating_sub(1));
        for next in index + 1..=until {
            let len = self.map.block_len(next, self.size);
            if let Some(f) = self.cache.prefetch(self.image, next, len) {
                self.spawn_fill(next, len, f);
            }
        }
    }

    fn spawn_fill(&self, index: u64, len: u64, f: Arc<crate::cache::Fill>) {
        let task = fill(
            self.w.clone(),
            self.cache.clone(),
            self.image,
            (
                index,
                len,
                self.map.hashes[index as usize],
                self.map.block_size,
            ),
            self.locations.clone(),
            f,
        );
        compio::runtime::spawn(task).detach();
    }

    async fn block(
        &self,
        index: u64,
        block_len: u64,
        start: u64,
        take: u64,
    ) -> Result<Piece, Unavailable> {
        let cache = self.cache;
        // a block read back wrong is filled again, once
        for _ in 0..2 {
            // a download waits for its own fill as long as the fill may take; for another's,
            // `image_cache_wait_ms`
            let (fill, limit) = match cache.find(self.image, index, block_len) {
                Found::Present(file, verified) => {
                    if !verified {
                        match self.read_back(index, &file).await {
                            Ok(true) => cache.blocks.mark_verified(self.image, index),
                            Ok(false) => {
                                tracing::error!(image = %self.image, block = index, "cached block does not match its hash; discarded, filling it again");
                                cache.metrics.cache_corrupt(Corrupt::Disk);
                                cache.blocks.discard(self.image, index);
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(image = %self.image, block = index, error = %e, "cannot read a cached block back; filling it again");
                                cache.blocks.discard(self.image, index);
                                continue;
                            }
                        }
                    }
                    cache.metrics.cache_served(take);
                    return Ok(Piece::File {
                        file,
                        start,
                        len: take,
                    });
                }
                Found::Joined(f) => {
                    cache.metrics.cache_coalesced();
                    (f, cache.settings.wait)
                }
                Found::Started(f) => {
                    self.spawn_fill(index, block_len, f.clone());
                    (f, cache.settings.stall)
                }
                Found::Busy => {
                    cache.metrics.cache_uncached(Uncached::Busy);
                    return self.direct(index, start, take).await;
                }
            };
            let waited = Instant::now();
            let outcome = fill.wait(limit).await;
            cache.metrics.cache_wait_took(waited.elapsed());
            return match outcome {
                Outcome::Ready(block) => {
                    cache.metrics.cache_served(take);
                    Ok(Piece::Memory {
                        part: Shared {
                            block,
                            start: start as usize,
                            end: (start + take) as usize,
                        },
                        index,
                        block_len,
                    })
                }
                Outcome::Failed => Err(Unavailable {
                    image: self.image,
                    index,
                }),
                Outcome::Running => {
                    tracing::info!(image = %self.image, block = index, waited = ?waited.elapsed(), "block fill too slow; reading the store directly");
                    cache.metrics.cache_uncached(Uncached::Stalled);
                    self.direct(index, start, take).await
                }
            };
        }
        self.direct(index, start, take).await
    }

    /// Block `index` of an image being filled sequentially: from its file once it landed
    /// (the store when it was not kept, or when the fill is slower than `image_cache_wait_ms`);
    /// the last block only once the fill verified the image (waiting as long as the fill may
    /// take), and nothing once the fill failed: the download is cut.
    async fn follow(
        &self,
        seq: &Sequential,
        index: u64,
        block_len: u64,
        start: u64,
        take: u64,
    ) -> Result<Piece, Unavailable> {
        let cache = self.cache;
        let last = index + 1 == shared::blocks::count(self.size, seq.block_size);
        let limit = if last {
            cache.settings.stall
        } else {
            cache.settings.wait
        };
        let waited = Instant::now();
        let now = seq.wait_for(index, limit).await;
        cache.metrics.cache_wait_took(waited.elapsed());
        let unavailable = Unavailable {
            image: self.image,
            index,
        };
        if now.ended == Some(false) {
            return Err(unavailable);
        }
        if now.landed > index {
            if let Some((file, _)) = cache.blocks.open_block(self.image, index, block_len) {
                cache.metrics.cache_served(take);
                return Ok(Piece::File {
                    file,
                    start,
                    len: take,
                });
            }
            // not kept (everything else in the budget is being read)
            return self.direct(index, start, take).await;
        }
        if last {
            return Err(unavailable);
        }
        tracing::info!(image = %self.image, block = index, waited = ?waited.elapsed(), "sequential fill too slow; reading the store directly");
        cache.metrics.cache_uncached(Uncached::Stalled);
        self.direct(index, start, take).await
    }

    /// Reads a block found on disk at start back against its hash, off the worker thread.
    async fn read_back(&self, index: u64, file: &std::fs::File) -> std::io::Result<bool> {
        read_back(file, self.map.hashes[index as usize]).await
    }

    /// `take` bytes of block `index` from `start`, read from the store (best location first).
    async fn direct(&self, index: u64, start: u64, take: u64) -> Result<Piece, Unavailable> {
        let at = index * self.map.block_size + start;
        match super::download::open_remote(&self.locations, at, take, self.w).await {
            Some((reader, _)) => Ok(Piece::Direct(reader, take)),
            None => Err(Unavailable {
                image: self.image,
                index,
            }),
        }
    }
}

/// Whether a cached block's file holds bytes that hash to `want`, read off the worker thread.
pub(super) async fn read_back(file: &std::fs::File, want: u64) -> std::io::Result<bool> {
    let file = file.try_clone()?;
    compio::runtime::spawn_blocking(move || {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut data)?;
        Ok(crate::hash::blocks::hash_block(&data) == want)
    })
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other("read-back task failed")))
}

/// Fills block `index` (`len` bytes, recorded hash `hash`) of `image`: reads it from the
/// locations (suspect ones last) until one gives bytes that match, hands them to the waiters,
/// writes the block within the budget, and leaves the fill table.
async fn fill(
    w: Rc<Worker>,
    cache: Arc<Cache>,
    image: ImageId,
    (index, len, hash, block_size): (u64, u64, u64, u64),
    locations: Rc<[(String, String)]>,
    fill: Arc<crate::cache::Fill>,
) {
    let started = Instant::now();
    let mut order: Vec<&(String, String)> = locations.iter().collect();
    order.sort_by_key(|(_, url)| cache.is_suspect(image, url));
    let mut verified = None;
    for (store, url) in order {
        match read_block(&w, &cache, store, url, index * block_size, len).await {
            Ok(data) => {
                cache.metrics.cache_fill_bytes(len);
                if crate::hash::blocks::hash_block(&data) == hash {
                    verified = Some(data);
                    break;
                }
                tracing::error!(%image, block = index, store = %store, location = %url, "store returned bytes that do not match the block's hash; location marked suspect");
                cache.metrics.cache_corrupt(Corrupt::Store);
                cache.suspect(image, url);
            }
            Err(e) => {
                tracing::warn!(%image, block = index, store = %store, location = %url, error = %e, "cannot fill a cache block from this location; trying the next");
                w.metrics.download_failover();
            }
        }
    }
    let Some(data) = verified else {
        cache.filled(image, index);
        fill.finish(Outcome::Failed);
        return;
    };
    let data = Arc::new(data);
    fill.finish(Outcome::Ready(data.clone()));
    keep(&cache, image, index, data).await;
    cache.filled(image, index);
    cache.metrics.cache_fill_took(started.elapsed());
}

/// Reads `len` bytes of `url` from `offset`, each read within `image_cache_stall_time`.
async fn read_block(
    w: &Worker,
    cache: &Cache,
    store: &str,
    url: &str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, String> {
    let s = w
        .stores
        .resolve(store, url)
        .await
        .map_err(|e| e.to_string())?;
    let mut reader = s.read(url, offset, len).await.map_err(|e| e.to_string())?;
    read_exact(&mut reader, len, cache).await
}

/// The next `len` bytes of `reader`, each read within `image_cache_stall_time`.
async fn read_exact(
    reader: &mut crate::store::Reader,
    len: u64,
    cache: &Cache,
) -> Result<Vec<u8>, String> {
    let mut data = Vec::with_capacity(len as usize);
    while (data.len() as u64) < len {
        let read = compio::time::timeout(cache.settings.stall, reader.read(data));
        let (res, back) = read
            .await
            .map_err(|_| "the store stalled (image_cache_stall_time)".to_owned())?;
        data = back;
        match res {
            Ok(0) => return Err("the store's answer ended early".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(data)
}

/// Writes block `index` of `image` within the budget, off the worker thread; whether it is
/// on disk now.
async fn keep(cache: &Arc<Cache>, image: ImageId, index: u64, data: Arc<Vec<u8>>) -> bool {
    let c = cache.clone();
    let stored = compio::runtime::spawn_blocking(move || c.blocks.store(image, index, &data)).await;
    match stored {
        Ok(Ok(crate::cache::blocks::Admitted::Full)) => {
            cache.metrics.cache_uncached(Uncached::Full);
            false
        }
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(%image, block = index, error = %e, "cannot write a cache block");
            false
        }
        Err(_) => {
            tracing::error!(%image, block = index, "cache block write task failed");
            false
        }
    }
}

/// The sequential fill of `image` (`size` bytes, no block hashes): reads it in order, one
/// GET from the best location (a location that fails hands over to the next at the block it
/// stopped at), hashing it as a whole (md5 and the secure hash) and block by block (xxh3),
/// writing each block as it lands (within the budget, crash-safe like any block) except the
/// last, which lands only when the image matched its `checksum` and `os_hash_value`. Then the
/// block hashes computed are remembered and sent to the control plane, so the image is filled
/// block by block from then on, by every node. An image that does not match is never kept:
/// every block written is removed, the locations read are marked suspect, the count of
/// verification failures goes up, and the downloads following are cut.
async fn sequential_fill(
    w: Rc<Worker>,
    cache: Arc<Cache>,
    image: ImageId,
    size: u64,
    whole: Whole,
    locations: Rc<[(String, String)]>,
    seq: Arc<Sequential>,
) {
    let started = Instant::now();
    let bs = seq.block_size;
    let count = shared::blocks::count(size, bs);
    // what an earlier fill that did not end left (never verified)
    cache.blocks.discard_blocks(image);
    let _pin = cache.blocks.pin(image);
    let mut order: Vec<&(String, String)> = locations.iter().collect();
    order.sort_by_key(|(_, url)| cache.is_suspect(image, url));
    let mut md5 = crate::hash::Secure::new(shared::image::HashAlgo::Md5);
    let mut secure = whole
        .secure
        .as_ref()
        .map(|(a, _)| crate::hash::Secure::new(*a));
    let mut hashes = Vec::with_capacity(count as usize);
    let mut read_from = Vec::new();
    let mut next = order.into_iter();
    let mut reader = None;
    let mut last = None;
    let mut index = 0;
    while index < count {
        let at = index * bs;
        let len = (size - at).min(bs);
        if reader.is_none() {
            let Some((store, url)) = next.next() else {
                break;
            };
            let opened = match w.stores.resolve(store, url).await {
                Ok(s) => s.read(url, at, size - at).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match opened {
                Ok(r) => {
                    reader = Some(r);
                    read_from.push(url.clone());
                }
                Err(e) => {
                    tracing::warn!(%image, store = %store, location = %url, error = %e, "cannot fill the cache from this location; trying the next");
                    w.metrics.download_failover();
                    continue;
                }
            }
        }
        let Some(r) = reader.as_mut() else { break };
        let data = match read_exact(r, len, &cache).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(%image, block = index, error = %e, "sequential cache fill cut; going on from the next location");
                w.metrics.download_failover();
                reader = None;
                continue;
            }
        };
        cache.metrics.cache_fill_bytes(len);
        md5.update(&data);
        if let Some(s) = secure.as_mut() {
            s.update(&data);
        }
        hashes.push(crate::hash::blocks::hash_block(&data));
        let data = Arc::new(data);
        if index + 1 == count {
            last = Some(data);
        } else {
            keep(&cache, image, index, data).await;
            seq.land(index + 1);
        }
        index += 1;
    }
    drop(reader);
    let verified = last.is_some() && {
        let md5_ok = whole.checksum.as_deref() == Some(md5.finish().1.as_str());
        let secure_ok = match (secure, &whole.secure) {
            (Some(s), Some((_, want))) => s.finish().1.eq_ignore_ascii_case(want),
            _ => true,
        };
        md5_ok && secure_ok
    };
    match (verified, last) {
        (true, Some(data)) => {
            keep(&cache, image, count - 1, data).await;
            let map = BlockMap {
                block_size: bs,
                hashes,
                whole,
            };
            let hex = shared::blocks::to_hex(&map.hashes);
            let checksum = map.whole.checksum.clone().unwrap_or_default();
            cache.remember(image, map);
            seq.land(count);
            seq.end(true);
            cache.sequential_ended(image);
            cache.metrics.cache_fill_took(started.elapsed());
            tracing::info!(%image, bytes = size, took = ?started.elapsed(), "image without block hashes read whole, verified and cached");
            let record = shared::channel::Request::RecordBlockHashes {
                image_id: image,
                block_size: bs,
                hashes: hex.as_str(),
                checksum: checksum.as_str(),
            };
            match w.link.exchange(&record).await {
                Ok(chan) => w.link.give_back(chan),
                Err(e) => {
                    tracing::warn!(%image, error = %e, "cannot record the block hashes computed")
                }
            }
        }
        (false, Some(_)) => {
            tracing::error!(%image, locations = ?read_from, "image read from the store does not match its checksum or os_hash_value; not cached, locations marked suspect");
            cache.metrics.cache_corrupt(Corrupt::Store);
            for url in &read_from {
                cache.suspect(image, url);
            }
            cache.blocks.discard_blocks(image);
            seq.end(false);
            cache.sequential_ended(image);
        }
        (_, None) => {
            tracing::warn!(%image, block = index, "no location gave the whole image; sequential cache fill failed");
            cache.blocks.discard_blocks(image);
            seq.end(false);
            cache.sequential_ended(image);
        }
    }
}

/// Fills every block of `image` (`size` bytes at `locations`, best first) that the cache
/// lacks: a prefetch job. Stops early, done, when the image is taken off the queue meanwhile
/// ([`Cache::dequeue`]). Blocks present are not read again, so a prefetch the job runner
/// claims again after a restart goes on where it stopped.
pub(crate) async fn prefetch(
    w: &Rc<Worker>,
    cache: &Arc<Cache>,
    image: ImageId,
    size: u64,
    locations: &str,
) -> Result<(), String> {
    let locations: Rc<[(String, String)]> = shared::location::entries(locations)
        .map(|(s, u)| (s.to_owned(), u.to_owned()))
        .collect();
    if size == 0 || locations.is_empty() {
        return Ok(());
    }
    if !cache.queue(image) {
        return Ok(());
    }
    let _pin = cache.blocks.pin(image);
    let Some(mut blocks) = self::blocks(w, cache, image, locations, (size, 0, size)).await else {
        cache.dequeue(image);
        tracing::warn!(%image, "cannot prefetch an image without block hashes or checksum");
        return Ok(());
    };
    let count = shared::blocks::count(size, blocks.map.block_size);
    let mut outcome = Ok(());
    while cache.is_queued(image) {
        match blocks.next().await {
            None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                outcome = Err(format!("prefetch of image {image} stopped: {e}"));
                break;
            }
        }
    }
    let whole = cache.dequeue(image);
    outcome?;
    // the last blocks were handed over before they were written: until they are on disk
    while cache.filling(image) && cache.blocks.count_present(image, 0..=count - 1) < count {
        compio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if whole && cache.blocks.count_present(image, 0..=count - 1) < count {
        // a block was read past the cache (its fills were busy, or too slow): the job is
        // retried, and reads only what is still missing
        return Err(format!(
            "image {image}: some blocks could not be cached yet"
        ));
    }
    if whole {
        tracing::info!(%image, bytes = size, "image prefetched into the cache");
    }
    Ok(())
}
