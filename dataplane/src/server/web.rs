//! `web-download`'s first step: the source URI's data into this node's staging store, where
//! the import then takes it as it takes staged data ([`super::import`]), hashed and inspected
//! on the way into each store. `glance-download` fetches the same way from the other
//! region's Glance (the remote image's metadata with [`get`], its data with [`fetch`]), with
//! the caller's token, which goes only to that Glance's origin, never to where it redirects.
//!
//! Every hop is checked before anything is sent ([`shared::import_filter`]): the URI against
//! Glance's `[import_filtering_opts]` lists, then the host is resolved **once** (off the worker
//! thread) and every address it resolves to must be allowed (no loopback, link-local or
//! metadata address, no private range unless `allowed_networks` says so); the connection goes
//! to that checked address ([`Client::pinned`]), so the name cannot resolve elsewhere a moment
//! later. A redirect (301, 302, 303, 307, 308) is a new hop, checked the same way, at most
//! `max_redirects` of them. Connecting and every read wait at most `timeout_seconds`; the body
//! may not pass `image_size_cap_bytes` nor differ from its `Content-Length`. The data is
//! written to a temp file of the staging store and renamed only when complete, so a failed
//! fetch leaves nothing staged (a crash leaves a temp file the next start removes).

use super::worker::Worker;
use crate::store::client::{Body, Client, Options, Origin};
use shared::image::ImageId;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Who fetches, for the texts of its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetcher {
    /// `web-download`: the URI the caller gave.
    WebDownload,
    /// `glance-download`: the other region's Glance (its URL from the service catalog).
    GlanceDownload,
    /// An HTTP location a user added (`POST /v2/images/{id}/locations`).
    Location,
}

impl Fetcher {
    /// Glance's words for a URI import filtering refuses.
    fn refused(self) -> &'static str {
        match self {
            Fetcher::WebDownload => "URI for web-download does not pass filtering",
            Fetcher::GlanceDownload => "Processed URI for glance-download does not pass filtering",
            Fetcher::Location => "The location's URI does not pass filtering",
        }
    }
}

/// `GET uri`, each hop checked, redirects followed; `headers` go only to the first hop's
/// origin (a token is never sent to where a redirect points). The 200 response.
async fn open(
    w: &Worker,
    uri: &str,
    headers: &[(&str, &str)],
    who: Fetcher,
) -> Result<(crate::store::client::Response, url::Url), String> {
    let opts = &w.settings.import_filter;
    let timeout = Duration::from_secs(opts.timeout_seconds);
    let mut url = url::Url::parse(uri).map_err(|e| format!("Invalid URI {uri:?}: {e}"))?;
    let first = url.origin();
    for _ in 0..=opts.max_redirects {
        let (origin, address) = check(w, &url, who).await?;
        let client = Client::pinned(
            origin,
            address,
            None,
            Options {
                connect_timeout: timeout,
                io_timeout: timeout,
                max_idle: 1,
            },
        );
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut sent = vec![("Accept", "*/*")];
        if url.origin() == first {
            sent.extend_from_slice(headers);
        }
        let r = client
            .send("GET", &target, &sent, Body::Empty)
            .await
            .map_err(|e| format!("Cannot fetch {url}: {e}"))?;
        match r.status {
            200 => return Ok((r, url)),
            301 | 302 | 303 | 307 | 308 => {
                let next = r
                    .header("location")
                    .ok_or_else(|| format!("{url} redirects without a Location"))?;
                let next = url
                    .join(next)
                    .map_err(|e| format!("{url} redirects to an invalid URI: {e}"))?;
                tracing::info!(from = %url, to = %next, "import source redirected");
                r.finish().await;
                url = next;
            }
            status => return Err(format!("{url} answered HTTP {status}")),
        }
    }
    Err(format!("More than {} redirects", opts.max_redirects))
}

/// The body of `GET uri` (at most `limit` bytes), fetched as [`open`] does.
pub async fn get(
    w: &Worker,
    uri: &str,
    headers: &[(&str, &str)],
    who: Fetcher,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let (r, url) = open(w, uri, headers, who).await?;
    r.read_to_end(limit)
        .await
        .map_err(|e| format!("Reading {url} failed: {e}"))
}

/// Fetches `uri` into the staging store as the data of `image_id`; its size.
pub async fn fetch(
    w: &Worker,
    image_id: &ImageId,
    uri: &str,
    headers: &[(&str, &str)],
    who: Fetcher,
) -> Result<u64, String> {
    let staging = w
        .stores
        .staging()
        .ok_or_else(|| "This node has no staging store".to_owned())?;
    let (mut r, url) = open(w, uri, headers, who).await?;
    let cap = w.settings.image_size_cap;
    let declared = r.content_length();
    if declared.is_some_and(|n| n > cap) {
        return Err(shared::error::TOO_LARGE.into());
    }
    let upload = staging
        .create_upload(image_id)
        .await
        .map_err(|e| format!("Cannot stage the data: {e}"))?;
    let direct = upload.direct();
    let mut size = 0u64;
    while !r.is_done() {
        let mut buf = w.buffers.take();
        while buf.len() < buf.capacity() && !r.is_done() {
            match r.read(buf).await {
                (Ok(_), Some(b)) => buf = b,
                (res, _) => {
                    let why = res.err().map(|e| e.to_string()).unwrap_or_default();
                    return Err(format!("Reading {url} failed: {why}"));
                }
            }
        }
        let n = buf.len();
        if n == 0 {
            w.buffers.put(buf);
            continue;
        }
        size += n as u64;
        if size > cap {
            return Err(shared::error::TOO_LARGE.into());
        }
        if direct && !n.is_multiple_of(crate::io::ALIGN) {
            buf.pad_to_alignment();
        }
        upload
            .write_at(buf, size - n as u64)
            .await
            .map_err(|e| format!("Cannot stage the data: {e}"))?;
    }
    if declared.is_some_and(|n| n != size) {
        return Err(format!(
            "The data fetched ({size} bytes) is not the {} bytes {url} declared",
            declared.unwrap_or(0)
        ));
    }
    staging
        .commit(upload, size)
        .await
        .map_err(|e| format!("Cannot stage the data: {e}"))?;
    tracing::info!(%image_id, %url, size, "import source fetched into staging");
    Ok(size)
}

/// One hop's checks: Glance's URI lists, then the host resolved once and every address
/// allowed; the origin and the address to connect to.
pub(super) async fn check(
    w: &Worker,
    url: &url::Url,
    who: Fetcher,
) -> Result<(Origin, SocketAddr), String> {
    let opts = &w.settings.import_filter;
    if !shared::import_filter::uri_passes(opts, url) {
        return Err(format!("{}: {url}", who.refused()));
    }
    let origin = Origin::of(url).ok_or_else(|| format!("Cannot fetch {url}: not http(s)"))?;
    let addresses: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(a)) => vec![IpAddr::V4(a)],
        Some(url::Host::Ipv6(a)) => vec![IpAddr::V6(a)],
        _ => resolve(&origin.host, origin.port).await?,
    };
    if addresses.is_empty() {
        return Err(format!("{} does not resolve", origin.host));
    }
    if let Some(bad) = addresses
        .iter()
        .find(|a| !shared::import_filter::address_allowed(opts, **a))
    {
        tracing::warn!(host = %origin.host, address = %bad, "import source refused: it resolves to a forbidden address");
        return Err(format!(
            "{}: {} resolves to {bad}, a forbidden address",
            who.refused(),
            origin.host
        ));
    }
    let address = SocketAddr::new(addresses[0], origin.port);
    Ok((origin, address))
}

/// The addresses `host` resolves to (the system resolver, off the worker thread).
async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let name = host.to_owned();
    let looked_up = compio::runtime::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        (name.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect::<Vec<_>>())
    })
    .await;
    match looked_up {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(format!("{host} does not resolve: {e}")),
        Err(_) => Err(format!("{host} could not be resolved")),
    }
}
