//! The two ways the inspector keeps bytes: a [`Region`] copies one fixed span of the stream
//! (a header, a table) as the chunks that cover it go by, and a [`Tail`] keeps the last few
//! bytes seen so far (the VHD footer, the VMDK stream footer). Both copy only the bytes they
//! want, so the cost of a chunk that lies outside every region is a few comparisons.

/// A span `[start, start + len)` of the stream, copied as the chunks covering it are fed.
///
/// The copy is contiguous: a region created after the stream already went past its start can
/// never fill ([`Region::missed`]), which the formats report as a truncated image.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    start: u64,
    len: usize,
    buf: Vec<u8>,
    missed: bool,
}

impl Region {
    /// A region of `len` bytes at stream offset `start`; nothing is allocated until bytes come.
    pub(crate) fn new(start: u64, len: usize) -> Self {
        Self {
            start,
            len,
            buf: Vec::new(),
            missed: false,
        }
    }

    /// Copies the part of `chunk` (which starts at stream offset `at`) that this region wants.
    pub(crate) fn feed(&mut self, at: u64, chunk: &[u8]) {
        if self.is_full() || self.missed {
            return;
        }
        let next = self.start + self.buf.len() as u64;
        let end = at + chunk.len() as u64;
        if next < at {
            // The bytes we still need went by before this region existed.
            self.missed = true;
            return;
        }
        if next >= end {
            return;
        }
        let from = (next - at) as usize;
        let n = (self.len - self.buf.len()).min(chunk.len() - from);
        let needed = self.buf.len() + n;
        if needed > self.buf.capacity() {
            // Grow by doubling (one allocation for small regions), never past the region's
            // length: the bound on what an inspector holds is the sum of its regions.
            let target = (self.buf.capacity() * 2)
                .max(64 * 1024)
                .max(needed)
                .min(self.len);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(&chunk[from..from + n]);
    }

    /// Whether every byte of the region has been copied.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() == self.len
    }

    /// Whether the region can never fill because its start was already behind the stream.
    #[cfg(test)]
    pub(crate) fn missed(&self) -> bool {
        self.missed
    }

    /// The stream offset the region starts at.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// The bytes copied so far (all of them once [`Region::is_full`]).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Stops the region at what it holds now: it counts as full from here on.
    pub(crate) fn close(&mut self) {
        self.len = self.buf.len();
        self.buf.shrink_to_fit();
    }

    /// Bytes of memory held.
    pub(crate) fn held(&self) -> usize {
        self.buf.capacity()
    }
}

/// The size of the [`Tail`]: a VMDK stream footer is three 512-byte sectors (footer marker,
/// footer, end-of-stream marker); a VHD footer is the last one.
pub(crate) const TAIL_LEN: usize = 1536;

/// The last [`TAIL_LEN`] bytes of the stream, kept in a ring so that feeding costs at most
/// `TAIL_LEN` bytes of copying whatever the chunk size (1-byte chunks included).
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    ring: Box<[u8; TAIL_LEN]>,
    /// Total bytes ever written; the next write goes to `written % TAIL_LEN`.
    written: u64,
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            ring: Box::new([0; TAIL_LEN]),
            written: 0,
        }
    }
}

impl Tail {
    /// Remembers the end of `chunk`.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let keep = &chunk[chunk.len().saturating_sub(TAIL_LEN)..];
        let skipped = (chunk.len() - keep.len()) as u64;
        self.written += skipped;
        let mut rest = keep;
        while !rest.is_empty() {
            let at = (self.written % TAIL_LEN as u64) as usize;
            let n = rest.len().min(TAIL_LEN - at);
            self.ring[at..at + n].copy_from_slice(&rest[..n]);
            self.written += n as u64;
            rest = &rest[n..];
        }
    }

    /// The last `n` bytes of the stream in order, or `None` when fewer were fed
    /// (or `n` is more than the tail keeps).
    pub(crate) fn last(&self, n: usize) -> Option<Vec<u8>> {
        if n > TAIL_LEN || (n as u64) > self.written {
            return None;
        }
        let end = (self.written % TAIL_LEN as u64) as usize;
        let mut out = Vec::with_capacity(n);
        if n <= end {
            out.extend_from_slice(&self.ring[end - n..end]);
        } else {
            out.extend_from_slice(&self.ring[TAIL_LEN - (n - end)..]);
            out.extend_from_slice(&self.ring[..end]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn region_copies_its_span_whatever_the_chunking() {
        let data = stream(10_000);
        for step in [1, 3, 512, 4096, 10_000] {
            let mut r = Region::new(1000, 3000);
            let mut at = 0;
            for c in data.chunks(step) {
                r.feed(at, c);
                at += c.len() as u64;
            }
            assert!(r.is_full(), "step {step}");
            assert_eq!(r.bytes(), &data[1000..4000], "step {step}");
            assert!(r.held() <= 3000, "step {step}: {}", r.held());
        }
    }

    #[test]
    fn region_never_holds_more_than_its_length() {
        let data = vec![7; 2 << 20];
        let len = (1 << 20) - 1;
        let mut r = Region::new(0, len);
        let mut at = 0;
        for n in [600_000, 100, 500_000, 1 << 20] {
            r.feed(at, &data[..n]);
            at += n as u64;
            assert!(r.held() <= len, "{}", r.held());
        }
        assert!(r.is_full());
    }

    #[test]
    fn region_created_late_is_missed_unless_its_start_is_in_the_chunk() {
        let data = stream(100);
        let mut r = Region::new(10, 20);
        r.feed(50, &data[50..]);
        assert!(r.missed() && !r.is_full());
        let mut r = Region::new(60, 20);
        r.feed(50, &data[50..]);
        assert_eq!(r.bytes(), &data[60..80]);
    }

    #[test]
    fn region_stops_at_the_stream_end_and_close_makes_it_full() {
        let data = stream(100);
        let mut r = Region::new(90, 20);
        r.feed(0, &data);
        assert_eq!(r.bytes(), &data[90..]);
        assert!(!r.is_full());
        r.close();
        assert!(r.is_full());
    }

    #[test]
    fn tail_keeps_the_last_bytes_whatever_the_chunking() {
        let data = stream(5000);
        for step in [1, 7, 1536, 1537, 4096, 5000] {
            let mut t = Tail::default();
            for c in data.chunks(step) {
                t.feed(c);
            }
            assert_eq!(t.last(1536).unwrap(), &data[5000 - 1536..], "step {step}");
            assert_eq!(t.last(512).unwrap(), &data[5000 - 512..], "step {step}");
        }
        let mut t = Tail::default();
        t.feed(&data[..100]);
        assert_eq!(t.last(100).unwrap(), &data[..100]);
        assert_eq!(t.last(101), None);
        assert_eq!(t.last(TAIL_LEN + 1), None);
    }
}
