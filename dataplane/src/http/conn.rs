//! [`Conn`]: a buffered connection over any compio stream, reading request heads, response
//! heads and bodies, and writing whole buffers, each bounded by a timeout. Both sides use it:
//! the server for its clients, and the clients of other servers (the control plane's API
//! socket; the stores' HTTP endpoints).

use super::body::{BodyBuf, BodyError, BodyState};
use super::head::{HeadError, RequestHead, ResponseMeta, parse_request_into, parse_response};
use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;
use std::time::Duration;

// === impl Conn ===

/// A stream with a read buffer for heads and leftover bytes.
#[derive(Debug)]
pub struct Conn<S> {
    /// The underlying stream.
    pub stream: S,
    /// The status of the answer to the current request, once its head is sent (0 before):
    /// the request-duration histogram's status class.
    pub status: u16,
    buf: Vec<u8>,
    start: usize,
}

async fn with_timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    compio::time::timeout(d, f).await.ok()
}

impl<S: AsyncRead + AsyncWrite> Conn<S> {
    /// Wraps a stream with a read buffer of `capacity` bytes to start with.
    pub fn new(stream: S, capacity: usize) -> Self {
        Conn {
            stream,
            status: 0,
            buf: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// Gives back read-buffer memory above `keep` bytes when nothing is buffered, so a
    /// connection that once read a large head or a chunked body does not hold that memory for
    /// the rest of its life (the per-connection budget).
    pub fn trim(&mut self, keep: usize) {
        if self.start == self.buf.len() && self.buf.capacity() > keep {
            self.buf = Vec::with_capacity(keep);
            self.start = 0;
        }
    }

    /// Bytes read but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Drops the first `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes into the buffer; returns how many (0 = EOF).
    async fn fill(&mut self, want: usize) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        let buf = std::mem::take(&mut self.buf);
        let (res, buf) = self.stream.append(buf).await.into();
        self.buf = buf;
        res
    }

    /// Reads the next request head into `head`. `Ok(false)` on a clean close before any byte.
    pub async fn read_request(
        &mut self,
        head: &mut RequestHead,
        max_bytes: usize,
        max_headers: usize,
        timeout: Duration,
    ) -> Result<bool, HeadError> {
        let mut deadline = None;
        loop {
            if !self.buffered().is_empty() {
                let limit = self.buffered().len().min(max_bytes);
                match parse_request_into(&self.buffered()[..limit], max_headers, head)? {
                    Some(used) => {
                        self.consume(used);
                        return Ok(true);
                    }
                    None if limit >= max_bytes => return Err(HeadError::TooLarge),
                    None => {}
                }
            }
            let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + timeout);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let n = with_timeout(left, self.fill(4096))
                .await
                .ok_or(HeadError::Timeout)??;
            if n == 0 {
                return if self.buffered().is_empty() {
                    Ok(false)
                } else {
                    Err(HeadError::Eof)
                };
            }
        }
    }

    /// Reads a response head (from the control plane), skipping interim 1xx responses, and
    /// writes the head to forward into `out` ([`parse_response`]). The head's `n` bytes stay at
    /// the front of [`Conn::buffered`] until [`Conn::consume`]d.
    pub async fn read_response(
        &mut self,
        method: &str,
        timeout: Duration,
        out: &mut Vec<u8>,
    ) -> Result<(ResponseMeta, usize), HeadError> {
        loop {
            if !self.buffered().is_empty()
                && let Some((meta, used)) = parse_response(self.buffered(), method, out)?
            {
                if meta.status < 200 {
                    self.consume(used);
                    continue;
                }
                return Ok((meta, used));
            }
            if self.buffered().len() > 1 << 20 {
                return Err(HeadError::TooLarge);
            }
            let n = with_timeout(timeout, self.fill(8192))
                .await
                .ok_or(HeadError::Timeout)??;
            if n == 0 {
                return Err(HeadError::Eof);
            }
        }
    }

    /// Reads the next decoded body bytes, appending to `out` (up to its room). Returns the
    /// buffer — `None` when a timeout dropped the read that held it; after the call
    /// `out.filled()` grew unless the body is done (`state.is_done()`).
    pub async fn read_body<B: BodyBuf>(
        &mut self,
        state: &mut BodyState,
        mut out: B,
        idle: Duration,
    ) -> (Result<(), BodyError>, Option<B>) {
        let limit = out.room();
        let before = out.filled();
        loop {
            match state {
                BodyState::Done => return (Ok(()), Some(out)),
                BodyState::Length(remaining) => {
                    if !self.buffered().is_empty() {
                        let n = self
                            .buffered()
                            .len()
                            .min(limit - out.filled())
                            .min(*remaining as usize);
                        out.push(&self.buffered()[..n]);
                        self.consume(n);
                        *remaining -= n as u64;
                    } else {
                        let (res, buf) = match with_timeout(idle, self.stream.append(out)).await {
                            Some(r) => r.into(),
                            None => return (Err(BodyError::Timeout), None),
                        };
                        out = buf;
                        match res {
                            Ok(0) => return (Err(BodyError::Eof), Some(out)),
                            Ok(_) => {}
                            Err(e) => return (Err(e.into()), Some(out)),
                        }
                        let got = (out.filled() - before) as u64;
                        if got > *remaining {
                            // Pipelined bytes past the body belong to the next request.
                            let keep = before + *remaining as usize;
                            self.buf.splice(
                                self.start..self.start,
                                out.as_init()[keep..].iter().copied(),
                            );
                            out.cut(keep);
                            *remaining = 0;
                        } else {
                            *remaining -= got;
                        }
                    }
                    if *remaining == 0 {
                        *state = BodyState::Done;
                    }
                    return (Ok(()), Some(out));
                }
                BodyState::Chunked(dec) => {
                    if !self.buffered().is_empty() {
                        let consumed = match dec.decode(&self.buf[self.start..], &mut out, limit) {
                            Ok(n) => n,
                            Err(e) => return (Err(e), Some(out)),
                        };
                        self.consume(consumed);
                        if dec.is_done() {
                            *state = BodyState::Done;
                            return (Ok(()), Some(out));
                        }
                        if out.filled() > before || out.filled() == limit {
                            return (Ok(()), Some(out));
                        }
                    }
                    match with_timeout(idle, self.fill(64 * 1024)).await {
                        None => return (Err(BodyError::Timeout), Some(out)),
                        Some(Ok(0)) => return (Err(BodyError::Eof), Some(out)),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return (Err(e.into()), Some(out)),
                    }
                }
                BodyState::UntilClose => {
                    if !self.buffered().is_empty() {
                        let n = self.buffered().len().min(limit - out.filled());
                        out.push(&self.buffered()[..n]);
                        self.consume(n);
                        return (Ok(()), Some(out));
                    }
                    let (res, buf) = match with_timeout(idle, self.stream.append(out)).await {
                        Some(r) => r.into(),
                        None => return (Err(BodyError::Timeout), None),
                    };
                    out = buf;
                    match res {
                        Ok(0) => *state = BodyState::Done,
                        Ok(_) => {}
                        Err(e) => return (Err(e.into()), Some(out)),
                    }
                    return (Ok(()), Some(out));
                }
            }
        }
    }

    /// Writes all of `data`, a buffer the kernel may read in place (a block other downloads
    /// share), and flushes, with an idle timeout; the buffer is dropped.
    pub async fn write_buf<B: compio::buf::IoBuf>(
        &mut self,
        data: B,
        idle: Duration,
    ) -> io::Result<()> {
        let stream = &mut self.stream;
        let op = async move {
            stream.write_all(data).await.0?;
            stream.flush().await
        };
        with_timeout(idle, op)
            .await
            .unwrap_or_else(|| Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")))
    }

    /// Writes all of `data` and flushes (a TLS stream holds records until flushed), with an
    /// idle timeout.
    pub async fn write_all(&mut self, data: Vec<u8>, idle: Duration) -> (io::Result<()>, Vec<u8>) {
        let stream = &mut self.stream;
        let op = async move {
            let (res, data) = stream.write_all(data).await.into();
            match res {
                Ok(()) => (stream.flush().await, data),
                Err(e) => (Err(e), data),
            }
        };
        match with_timeout(idle, op).await {
            Some(r) => r,
            None => (
                Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
                Vec::new(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[compio::test]
    async fn head_arriving_in_pieces_is_reassembled() {
        let l = compio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let big = format!(
            "GET /versions HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let t = std::thread::spawn(move || {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(big.as_bytes()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
        });
        let (s, _) = l.accept().await.unwrap();
        let mut c = Conn::new(s, 8192);
        // 20 KB of head arrives over several reads: the buffer must keep what came first and
        // refuse the head as too large (431), not as malformed.
        let r = c
            .read_request(
                &mut RequestHead::default(),
                16384,
                100,
                Duration::from_secs(5),
            )
            .await;
        t.join().unwrap();
        assert!(matches!(r, Err(HeadError::TooLarge)), "{r:?}");
    }
}
