//! Message bodies: where a body read stands ([`BodyState`]), a strict streaming decoder for
//! `Transfer-Encoding: chunked` ([`ChunkedDecoder`]), and the buffers a body is read into
//! ([`BodyBuf`]).

use super::head::Framing;
use std::io;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Invalid chunked framing (400).
    #[error("invalid chunked encoding: {0}")]
    Chunked(&'static str),
    /// The peer closed before the body was complete.
    #[error("connection closed mid-body")]
    Eof,
    /// No body bytes for longer than the idle timeout.
    #[error("timed out waiting for body bytes")]
    Timeout,
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

// === impl ChunkedDecoder ===

/// A streaming decoder for `Transfer-Encoding: chunked`, strict about framing.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    remaining: u64,
    digits: u8,
    line_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            remaining: 0,
            digits: 0,
            line_bytes: 0,
        }
    }

    /// Whether the terminating chunk and trailers have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out` until `out` holds `out_limit` bytes.
    /// Returns how many input bytes were consumed.
    pub fn decode<B: BodyBuf>(
        &mut self,
        input: &[u8],
        out: &mut B,
        out_limit: usize,
    ) -> Result<usize, BodyError> {
        use ChunkState::*;
        let bad = BodyError::Chunked;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            if self.state == Data {
                let room = out_limit.saturating_sub(out.filled());
                if room == 0 {
                    break;
                }
                let n = (input.len() - i)
                    .min(room)
                    .min(self.remaining.min(usize::MAX as u64) as usize);
                out.push(&input[i..i + n]);
                i += n;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == 16 {
                            return Err(bad("chunk size too large"));
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.remaining = (self.remaining << 4) | v;
                        self.digits += 1;
                        Size
                    }
                    b';' if self.digits > 0 => {
                        self.line_bytes = 0;
                        Ext
                    }
                    b'\r' if self.digits > 0 => SizeLf,
                    _ => return Err(bad("invalid chunk size")),
                },
                Ext => {
                    self.line_bytes += 1;
                    if self.line_bytes > MAX_CHUNK_LINE {
                        return Err(bad("chunk extension too long"));
                    }
                    if b == b'\r' {
                        SizeLf
                    } else if b == b'\n' {
                        return Err(bad("bare LF in chunk extension"));
                    } else {
                        Ext
                    }
                }
                SizeLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after chunk size"));
                    }
                    self.digits = 0;
                    if self.remaining == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    DataLf
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    Size
                }
                TrailerStart => {
                    if b == b'\r' {
                        EndLf
                    } else {
                        self.line_bytes = 1;
                        TrailerLine
                    }
                }
                TrailerLine => {
                    self.line_bytes += 1;
                    if self.line_bytes > MAX_CHUNK_LINE {
                        return Err(bad("trailer line too long"));
                    }
                    if b == b'\r' { TrailerLf } else { TrailerLine }
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after trailer"));
                    }
                    TrailerStart
                }
                EndLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after last chunk"));
                    }
                    Done
                }
                Data | Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }
}

// === impl BodyBuf ===

/// A buffer a body is read into: a `Vec<u8>` (forwarded bodies) or an
/// [`AlignedBuf`](crate::io::AlignedBuf) (uploads, written with `O_DIRECT`). Reads append up to
/// [`BodyBuf::room`] bytes, never more.
pub trait BodyBuf: compio::buf::IoBufMut {
    /// Bytes held.
    fn filled(&self) -> usize;
    /// Most bytes it will hold.
    fn room(&self) -> usize;
    /// Appends `src` (the caller keeps within [`BodyBuf::room`]).
    fn push(&mut self, src: &[u8]);
    /// Keeps the first `len` bytes.
    fn cut(&mut self, len: usize);
}

impl BodyBuf for Vec<u8> {
    fn filled(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn push(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl BodyBuf for crate::io::AlignedBuf {
    fn filled(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn push(&mut self, src: &[u8]) {
        self.push_slice(src);
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
}

/// Where a body read stands.
#[derive(Debug, Clone)]
pub enum BodyState {
    /// Bytes left of a sized body.
    Length(u64),
    /// A chunked body being decoded.
    Chunked(ChunkedDecoder),
    /// A body delimited by the peer closing.
    UntilClose,
    /// Complete.
    Done,
}

impl BodyState {
    /// The state at the start of a body with this framing.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyState::UntilClose,
        }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), BodyError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() && !d.is_done() {
            let end = (at + step).min(input.len());
            let n = d.decode(&input[at..end], &mut out, usize::MAX)?;
            at += n;
        }
        assert!(d.is_done(), "not done");
        Ok((out, at))
    }

    #[test]
    fn chunked_decodes_at_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (out, used) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello, world");
            assert_eq!(&body[used..], b"NEXT");
        }
        let (out, _) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn chunked_rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b" 5\r\nhello\r\n",
            b"0\r\n\r\r",
        ] {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            assert!(
                d.decode(bad, &mut out, usize::MAX).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunked_respects_out_limit() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let n = d.decode(body, &mut out, 4).unwrap();
        assert_eq!(out, b"0123");
        out.clear();
        let m = d.decode(&body[n..], &mut out, 100).unwrap();
        assert_eq!(out, b"456789");
        assert!(d.is_done());
        assert_eq!(n + m, body.len());
    }
}
