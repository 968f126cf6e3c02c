//! The two HTTP/1.1 clients of the load generator.
//!
//! - **Raw** ([`read_head`], [`connect_tcp`]): for bulk transfers. The request head is written by
//!   hand, the response head parsed with `httparse`, and the body read straight into one large
//!   reused buffer and thrown away (only counted). No allocation and no copy per chunk, so on a
//!   2-core machine the client spends as little CPU as a client can while reading every byte.
//! - **hyper** ([`MetaClient`]): for small metadata requests and responses, over TCP or a Unix
//!   socket, where framing variety (chunked bodies from a proxy) matters more than the last
//!   microsecond.

use crate::target::{Endpoint, Target};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpStream, UnixStream};

/// The parts of a response head the load generator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// `Content-Length`, if any.
    pub content_length: Option<u64>,
    /// Whether the server keeps the connection open after this response.
    pub keep_alive: bool,
    /// `Content-Range`, if any.
    pub content_range: Option<String>,
    /// Whether the body is chunked.
    pub chunked: bool,
    /// Bytes of the head itself (the body starts there in the read buffer).
    pub head_len: usize,
}

/// Parses a complete response head at the start of `buf`; `Ok(None)` if more bytes are needed.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<ResponseHead>> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).context("bad response head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let version = resp.version.unwrap_or(1);
    let mut out = ResponseHead {
        status: resp.code.unwrap_or(0),
        content_length: None,
        keep_alive: version == 1,
        content_range: None,
        chunked: false,
        head_len,
    };
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            out.content_length = Some(v.parse().context("bad Content-Length")?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v.eq_ignore_ascii_case("close") {
                out.keep_alive = false;
            } else if v.eq_ignore_ascii_case("keep-alive") {
                out.keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-range") {
            out.content_range = Some(v.to_owned());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            out.chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Some(out))
}

/// Reads from `s` into `buf` until a whole response head is there. Returns the head and how many
/// bytes of `buf` are filled (head plus the first body bytes, if they came in the same read).
pub async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut [u8],
) -> anyhow::Result<(ResponseHead, usize)> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            bail!("response head larger than {} bytes", buf.len());
        }
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("connection closed before a response head ({filled} bytes)");
        }
        filled += n;
        if let Some(h) = parse_head(&buf[..filled])? {
            return Ok((h, filled));
        }
    }
}

/// Parses `Content-Range: bytes FIRST-LAST/TOTAL`.
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let r = v.trim().strip_prefix("bytes ")?;
    let (range, total) = r.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// Connects to a TCP endpoint with `TCP_NODELAY`.
pub async fn connect_tcp(t: &Target) -> io::Result<TcpStream> {
    match &t.endpoint {
        Endpoint::Tcp(a) => {
            let s = TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            Ok(s)
        }
        Endpoint::Unix(_) => Err(io::Error::other("bulk transfers need a TCP target")),
    }
}

/// A response read to the end by [`MetaClient`].
#[derive(Debug, Clone)]
pub struct MetaResponse {
    /// Status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection through hyper, reopened when the server closes it.
#[derive(Debug)]
pub struct MetaClient {
    target: Target,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl MetaClient {
    /// A client for `target` (connects lazily).
    pub fn new(target: Target) -> MetaClient {
        MetaClient {
            target,
            sender: None,
        }
    }

    async fn connect(&self) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
        macro_rules! handshake {
            ($io:expr) => {{
                let (sender, conn) = http1::Builder::new()
                    .handshake(TokioIo::new($io))
                    .await
                    .context("HTTP handshake")?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }};
        }
        Ok(match &self.target.endpoint {
            Endpoint::Tcp(_) => handshake!(connect_tcp(&self.target).await?),
            Endpoint::Unix(p) => handshake!(
                UnixStream::connect(p)
                    .await
                    .with_context(|| format!("connecting to {}", p.display()))?
            ),
        })
    }

    /// Sends one request (`path` is relative to the target's endpoint) and reads the whole
    /// response. Extra headers are `(name, value)` pairs.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<MetaResponse> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        if sender.ready().await.is_err() {
            // The server closed the kept-alive connection: open another.
            sender = self.connect().await?;
        }
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.target.host)
            .header("user-agent", "glint-loadtest");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body))?;
        let resp = sender.send_request(req).await.context("request")?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("response body")?
            .to_bytes();
        self.sender = Some(sender);
        Ok(MetaResponse { status, body })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<MetaResponse> {
        self.request("GET", path, &[], Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<MetaResponse> {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Bytes::from(serde_json::to_vec(body)?),
        )
        .await
    }

    /// Creates a `raw`/`bare` image (plus any extra JSON fields) and returns its id.
    pub async fn create_image(&mut self, extra: serde_json::Value) -> anyhow::Result<String> {
        let mut body = serde_json::json!({"disk_format": "raw", "container_format": "bare"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self.post_json("/v2/images", &body).await?;
        if r.status != 201 {
            bail!(
                "create image: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .context("create image: no id in the answer")
    }

    /// Deletes an image (204 expected).
    pub async fn delete_image(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self
            .request("DELETE", &format!("/v2/images/{id}"), &[], Bytes::new())
            .await?;
        if r.status != 204 {
            bail!("delete image {id}: {}", r.status);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.content_length, Some(10));
        assert!(h.keep_alive);
        assert_eq!(h.head_len, 39);
        let h = parse_head(
            b"HTTP/1.1 206 Partial Content\r\nconnection: close\r\ncontent-range: bytes 5-9/10\r\ncontent-length: 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(
            parse_content_range(h.content_range.as_deref().unwrap()),
            Some((5, 9, 10))
        );
        let h = parse_head(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive && h.chunked);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert_eq!(parse_content_range("bytes */10"), None);
    }

    #[tokio::test]
    async fn reads_a_head_split_across_reads() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(b"HTTP/1.1 200 OK\r\nContent-").await.unwrap();
            a.write_all(b"Length: 4\r\n\r\nbody").await.unwrap();
        });
        let mut buf = vec![0u8; 4096];
        let (h, filled) = read_head(&mut b, &mut buf).await.unwrap();
        assert_eq!(h.content_length, Some(4));
        assert!(filled >= h.head_len);
    }
}
