//! Pipelined upload hashing: the worker reads the socket into pooled buffers while md5 and the
//! secure hash each run on their own thread, and the store write uses the same buffer.
//! Buffers are [`AlignedBuf`]s, so the store can write them with `O_DIRECT`; a submitted
//! chunk may carry zero padding after its data (the last block of a direct write), which the
//! hashers never see.
//!
//! ```text
//! socket ──read──▶ buffer ──┬──▶ md5 thread ─────┐
//!                           ├──▶ sha thread ─────┼─▶ buffer returns to the pool when all 3 drop it
//!                           └──▶ store write ────┘
//! ```
//! Each upload may hold at most `depth` buffers at once; when all are busy (hashers or the store
//! are behind), [`PipelinedHasher::buffer`] waits, so the worker stops reading and TCP pushes
//! back on the client. Memory per upload is bounded by `depth × buffer size`. Buffers are
//! recycled through a per-worker [`BufferPool`], so a steady stream of uploads allocates nothing.

use super::{Digests, Secure};
use crate::io::AlignedBuf;
use shared::image::HashAlgo;
use std::ops::Deref;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// Recycled transfer buffers of one size, shared by a worker's uploads (and returned by the
/// hashing threads).
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<AlignedBuf>>,
    buffer_bytes: usize,
    max_idle: usize,
}

impl BufferPool {
    /// A pool of `buffer_bytes` buffers keeping at most `max_idle` idle ones.
    pub fn new(buffer_bytes: usize, max_idle: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            buffer_bytes,
            max_idle,
        })
    }

    /// An empty buffer with `buffer_bytes` of capacity (rounded up to the alignment).
    pub fn take(&self) -> AlignedBuf {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| AlignedBuf::with_capacity(self.buffer_bytes))
    }

    /// Returns a buffer (kept if there is room, else freed).
    pub fn put(&self, mut buf: AlignedBuf) {
        if buf.capacity() != AlignedBuf::with_capacity_rounded(self.buffer_bytes) {
            return;
        }
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.max_idle {
            free.push(buf);
        }
    }

    /// Idle buffers held right now.
    pub fn idle(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[derive(Debug)]
struct Lane {
    state: Mutex<LaneState>,
    depth: usize,
    pool: Arc<BufferPool>,
}

#[derive(Debug, Default)]
struct LaneState {
    in_flight: usize,
    waker: Option<Waker>,
}

impl Lane {
    fn new(pool: Arc<BufferPool>, depth: usize) -> Arc<Lane> {
        Arc::new(Lane {
            state: Mutex::new(LaneState::default()),
            depth: depth.max(1),
            pool,
        })
    }

    fn release(&self, buf: Option<AlignedBuf>) {
        if let Some(buf) = buf {
            self.pool.put(buf);
        }
        let waker = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.in_flight -= 1;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[derive(Debug)]
struct Chunk {
    buf: Option<AlignedBuf>,
    data_len: usize,
    lane: Arc<Lane>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.lane.release(self.buf.take());
    }
}

/// A filled buffer shared by the hashers and the store write; it goes back to the pool when
/// the last of them drops it. Dereferences to the upload's data; as an I/O buffer (the store
/// write) it also covers the zero padding of a last direct-I/O block.
#[derive(Debug, Clone)]
pub struct SharedChunk(Arc<Chunk>);

impl SharedChunk {
    fn stored(&self) -> &[u8] {
        self.0.buf.as_deref().unwrap_or(&[])
    }
}

impl Deref for SharedChunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.stored()[..self.0.data_len]
    }
}

impl compio::buf::IoBuf for SharedChunk {
    fn as_init(&self) -> &[u8] {
        // The buffer inside never moves or changes while any clone is alive, so the kernel
        // may read it for as long as the write holds this clone.
        self.stored()
    }
}

/// Hashing of one upload on two threads (or, for bytes hashed before, their blocks checked on
/// one: [`PipelinedHasher::verify`]).
#[derive(Debug)]
pub struct PipelinedHasher {
    lane: Arc<Lane>,
    senders: Vec<mpsc::Sender<SharedChunk>>,
    passes: Passes,
    size: u64,
}

#[derive(Debug)]
enum Passes {
    /// md5 on one thread; the secure hash, the inspector and the block hashes on the other.
    Hash {
        md5_task: compio::runtime::JoinHandle<String>,
        secure_task: compio::runtime::JoinHandle<(
            (HashAlgo, String),
            Option<inspect::Verdict>,
            super::blocks::Blocks,
        )>,
    },
    /// The block hashes only, to be equal to those of bytes already hashed.
    Verify {
        task: compio::runtime::JoinHandle<super::blocks::Blocks>,
        known: Box<Known>,
    },
}

/// What an earlier hashing pass of the same bytes found (a stage's, for its import).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Known {
    /// md5 and the secure hash.
    pub digests: Digests,
    /// The block hashes the bytes must still have.
    pub blocks: super::blocks::Blocks,
}

/// What the hashing pass found.
#[derive(Debug)]
pub struct Finished {
    /// md5 and the secure hash.
    pub digests: Digests,
    /// The format inspector's verdict, when one was asked for.
    pub verdict: Option<inspect::Verdict>,
    /// The block hashes.
    pub blocks: super::blocks::Blocks,
}

/// Why a hashing pass has no result.
#[derive(Debug, thiserror::Error)]
pub enum HashFailed {
    /// A hashing thread died (it panicked); the upload cannot be trusted.
    #[error("hashing thread failed")]
    Thread,
    /// [`PipelinedHasher::verify`]: the bytes are not those hashed before.
    #[error("the data is not the data hashed before (its block hashes differ)")]
    Changed,
}

impl PipelinedHasher {
    /// Starts the two hashing threads for one upload; at most `depth` buffers from `pool` are
    /// in flight at once. With `inspect`, the secure hash's thread also feeds every buffer to
    /// a format [`inspect::Inspector`] (it has the slack: md5 is the slower of the two), so the
    /// content is inspected in the same pass; it also hashes the blocks of `block_size` bytes
    /// (xxh3, for the block cache). Must be called on a compio runtime.
    pub fn start(
        algo: HashAlgo,
        pool: Arc<BufferPool>,
        depth: usize,
        inspect: bool,
        block_size: u64,
    ) -> Self {
        let (md5_tx, md5_rx) = mpsc::channel::<SharedChunk>();
        let (secure_tx, secure_rx) = mpsc::channel::<SharedChunk>();
        let md5_task = compio::runtime::spawn_blocking(move || {
            let mut h = Secure::new(HashAlgo::Md5);
            for c in md5_rx {
                h.update(&c[..]);
            }
            h.finish().1
        });
        let secure_task = compio::runtime::spawn_blocking(move || {
            let mut h = Secure::new(algo);
            let mut inspector = inspect.then(inspect::Inspector::new);
            let mut blocks = super::blocks::BlockHasher::new(block_size);
            for c in secure_rx {
                h.update(&c);
                blocks.update(&c);
                if let Some(i) = &mut inspector {
                    i.feed(&c);
                }
            }
            (
                h.finish(),
                inspector.map(inspect::Inspector::finish),
                blocks.finish(),
            )
        });
        PipelinedHasher {
            lane: Lane::new(pool, depth),
            senders: vec![md5_tx, secure_tx],
            passes: Passes::Hash {
                md5_task,
                secure_task,
            },
            size: 0,
        }
    }

    /// For bytes hashed before (`known`): only their blocks are hashed again, on one thread
    /// (xxh3, tens of GB/s), and [`PipelinedHasher::finish`] gives `known`'s digests if every
    /// block is equal, else [`HashFailed::Changed`]. No verdict: the content was judged when
    /// it was hashed. The buffers, the depth and the chunks are as for [`PipelinedHasher::start`].
    pub fn verify(known: Known, pool: Arc<BufferPool>, depth: usize) -> Self {
        let (tx, rx) = mpsc::channel::<SharedChunk>();
        let block_size = known.blocks.block_size;
        let task = compio::runtime::spawn_blocking(move || {
            let mut blocks = super::blocks::BlockHasher::new(block_size);
            for c in rx {
                blocks.update(&c);
            }
            blocks.finish()
        });
        PipelinedHasher {
            lane: Lane::new(pool, depth),
            senders: vec![tx],
            passes: Passes::Verify {
                task,
                known: Box::new(known),
            },
            size: 0,
        }
    }

    /// An empty buffer to read into; waits while `depth` buffers are still in use.
    pub async fn buffer(&self) -> AlignedBuf {
        std::future::poll_fn(|cx| {
            let mut st = self.lane.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.in_flight < self.lane.depth {
                st.in_flight += 1;
                Poll::Ready(())
            } else {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        self.lane.pool.take()
    }

    /// Returns a buffer from [`PipelinedHasher::buffer`] that was not submitted (`None` if it
    /// was lost, e.g. to a timed-out read: its slot is freed all the same).
    pub fn give_back(&self, buf: Option<AlignedBuf>) {
        self.lane.release(buf);
    }

    /// Feeds a filled buffer to both hashers; the returned handle is for the store write.
    /// With `pad`, the buffer is zero-filled to the alignment after its data first (for a
    /// direct write of the last block); the padding is not hashed or counted.
    pub fn submit(&mut self, mut buf: AlignedBuf, pad: bool) -> SharedChunk {
        let data_len = buf.len();
        self.size += data_len as u64;
        if pad {
            buf.pad_to_alignment();
        }
        let chunk = SharedChunk(Arc::new(Chunk {
            buf: Some(buf),
            data_len,
            lane: self.lane.clone(),
        }));
        // A send only fails if a thread died; `finish` reports that.
        for tx in &self.senders {
            let _ = tx.send(chunk.clone());
        }
        chunk
    }

    /// Bytes submitted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Waits for the hashers to drain and returns what they found.
    pub async fn finish(self) -> Result<Finished, HashFailed> {
        let PipelinedHasher {
            senders,
            passes,
            size,
            ..
        } = self;
        drop(senders);
        match passes {
            Passes::Hash {
                md5_task,
                secure_task,
            } => {
                let md5_hex = md5_task.await.map_err(|_| HashFailed::Thread)?;
                let ((algo, secure_hex), verdict, blocks) =
                    secure_task.await.map_err(|_| HashFailed::Thread)?;
                let digests = Digests {
                    size,
                    md5_hex,
                    algo,
                    secure_hex,
                };
                Ok(Finished {
                    digests,
                    verdict,
                    blocks,
                })
            }
            Passes::Verify { task, known } => {
                let blocks = task.await.map_err(|_| HashFailed::Thread)?;
                if size != known.digests.size || blocks != known.blocks {
                    return Err(HashFailed::Changed);
                }
                Ok(Finished {
                    digests: known.digests,
                    verdict: None,
                    blocks,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::MultiHasher;

    #[compio::test]
    async fn same_digests_as_the_inline_hasher_and_bounded_buffers() {
        let pool = BufferPool::new(64 * 1024, 8);
        let data: Vec<u8> = (0..1_000_003u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        for algo in [HashAlgo::Sha256, HashAlgo::Sha512] {
            let mut p = PipelinedHasher::start(algo, pool.clone(), 3, false, 64 << 10);
            let mut held = Vec::new();
            for (i, piece) in data.chunks(50_000).enumerate() {
                let mut buf = p.buffer().await;
                assert!(p.lane.state.lock().unwrap().in_flight <= 3);
                buf.push_slice(piece);
                // keep some chunks alive like a slow store write would; pad some
                let chunk = p.submit(buf, i % 3 == 0);
                assert_eq!(chunk.len(), piece.len());
                held.push(chunk);
                if held.len() == 2 {
                    held.clear();
                }
            }
            held.clear();
            let finished = p.finish().await.unwrap();
            assert!(finished.verdict.is_none());
            // the blocks, cut at 64 KiB across the 50 000-byte chunks, padding unseen
            let mut blocks = crate::hash::blocks::BlockHasher::new(64 << 10);
            blocks.update(&data);
            assert_eq!(finished.blocks, blocks.finish());
            assert_eq!(
                finished.blocks.hashes.len(),
                1_000_003usize.div_ceil(64 << 10)
            );
            let got = finished.digests;
            let mut inline = MultiHasher::new(algo);
            inline.update(&data);
            assert_eq!(got, inline.finish());
        }
        assert!(pool.idle() > 0, "buffers were not recycled");
    }

    async fn pass(p: &mut PipelinedHasher, data: &[u8]) {
        for piece in data.chunks(40_000) {
            let mut buf = p.buffer().await;
            buf.push_slice(piece);
            drop(p.submit(buf, false));
        }
    }

    #[compio::test]
    async fn verify_gives_the_known_digests_only_for_the_same_bytes() {
        let pool = BufferPool::new(64 * 1024, 8);
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let mut p = PipelinedHasher::start(HashAlgo::Sha512, pool.clone(), 3, false, 32 << 10);
        pass(&mut p, &data).await;
        let first = p.finish().await.unwrap();
        let known = Known {
            digests: first.digests.clone(),
            blocks: first.blocks.clone(),
        };
        let mut same = PipelinedHasher::verify(known.clone(), pool.clone(), 3);
        pass(&mut same, &data).await;
        let again = same.finish().await.unwrap();
        assert_eq!(again.digests, first.digests);
        assert_eq!(again.blocks, first.blocks);
        assert!(again.verdict.is_none());
        // one byte changed, one byte short: refused
        let mut changed = data.clone();
        changed[200_000] ^= 1;
        let mut p = PipelinedHasher::verify(known.clone(), pool.clone(), 3);
        pass(&mut p, &changed).await;
        assert!(matches!(p.finish().await, Err(HashFailed::Changed)));
        let mut p = PipelinedHasher::verify(known, pool, 3);
        pass(&mut p, &data[..data.len() - 1]).await;
        assert!(matches!(p.finish().await, Err(HashFailed::Changed)));
    }
}
