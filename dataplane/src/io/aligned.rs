//! [`AlignedBuf`]: a fixed-capacity byte buffer whose start and capacity are multiples of
//! [`ALIGN`], so it can be written to a file opened with `O_DIRECT`.
//!
//! Why not `Vec<u8>`: the allocator gives a `Vec` no alignment beyond 16 bytes (large blocks
//! come from `mmap` with a 16-byte header in front), and `O_DIRECT` needs the memory address,
//! the file offset and the length all aligned to the device's logical block size. 4096 covers
//! 512-byte and 4 KiB devices.
//!
//! It implements compio's buffer traits, so the socket reads straight into it and the file
//! write takes it from there: one copy (kernel socket buffer → this buffer), then DMA.

use compio::buf::{IoBuf, IoBufMut, SetLen};
use std::alloc::Layout;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// Alignment of the start, the capacity and every write length.
pub const ALIGN: usize = 4096;

/// An owned, aligned, fixed-capacity byte buffer (see the module docs).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: `AlignedBuf` owns its allocation exclusively, like `Vec<u8>`; nothing in it is tied
// to a thread.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read the initialized prefix.
unsafe impl Sync for AlignedBuf {}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

impl AlignedBuf {
    /// An empty buffer of `capacity` bytes rounded up to a multiple of [`ALIGN`] (at least one).
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        let cap = AlignedBuf::with_capacity_rounded(capacity);
        let layout = Layout::from_size_align(cap, ALIGN).expect("buffer size fits a layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        AlignedBuf { ptr, len: 0, cap }
    }

    /// The capacity [`AlignedBuf::with_capacity`] gives for `capacity`.
    pub fn with_capacity_rounded(capacity: usize) -> usize {
        capacity.max(1).div_ceil(ALIGN) * ALIGN
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total size.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Room left.
    pub fn remaining(&self) -> usize {
        self.cap - self.len
    }

    /// Forgets the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` bytes (no-op if it holds fewer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends as much of `src` as fits; returns how many bytes were taken.
    pub fn push_slice(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.remaining());
        // SAFETY: `len + n <= cap`, the regions cannot overlap (`src` is borrowed, this
        // buffer is exclusively ours), and the bytes become initialized before `len` covers
        // them.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// Zero-fills up to the next multiple of [`ALIGN`] (the last block of a file written with
    /// `O_DIRECT`); returns how many bytes were added.
    pub fn pad_to_alignment(&mut self) -> usize {
        let padded = self.len.div_ceil(ALIGN) * ALIGN;
        let n = padded - self.len;
        // SAFETY: `padded <= cap` because `cap` is a multiple of ALIGN and `len <= cap`.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, n) };
        self.len = padded;
        n
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialized and owned by us.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_capacity` with exactly this layout.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.cap, ALIGN),
            )
        };
    }
}

impl IoBuf for AlignedBuf {
    fn as_init(&self) -> &[u8] {
        self
    }
}

impl SetLen for AlignedBuf {
    unsafe fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.cap);
        self.len = len;
    }
}

impl IoBufMut for AlignedBuf {
    fn as_uninit(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the allocation is `cap` bytes long and exclusively borrowed through
        // `&mut self`; `MaybeUninit<u8>` makes no claim about the bytes.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<MaybeUninit<u8>>(), self.cap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_padded_and_bounded() {
        let mut b = AlignedBuf::with_capacity(10_000);
        assert_eq!(b.capacity(), 3 * ALIGN);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.push_slice(b"hello"), 5);
        assert_eq!(&b[..], b"hello");
        assert_eq!(b.pad_to_alignment(), ALIGN - 5);
        assert_eq!(b.len(), ALIGN);
        assert!(b[5..].iter().all(|&x| x == 0));
        assert_eq!(b.pad_to_alignment(), 0);
        let big = vec![1u8; 4 * ALIGN];
        assert_eq!(b.push_slice(&big), 2 * ALIGN);
        assert_eq!(b.remaining(), 0);
        b.truncate(3);
        assert_eq!(&b[..], b"hel");
        b.clear();
        assert!(b.is_empty());
    }

    #[compio::test]
    async fn a_socket_reads_into_it() {
        use compio::io::{AsyncReadExt, AsyncWriteExt};
        let l = compio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = compio::net::TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        c.write_all(b"abc".to_vec()).await.0.unwrap();
        let mut b = AlignedBuf::with_capacity(ALIGN);
        b.push_slice(b"x");
        let compio::BufResult(n, b) = s.append(b).await;
        assert_eq!((n.unwrap(), &b[..]), (3, &b"xabc"[..]));
    }
}
