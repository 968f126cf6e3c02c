//! The HTTP store: read-only `http://` and `https://` locations (glance_store's `http`
//! driver). Reads are ranged GETs through a [`Client`] per origin (kept per worker thread);
//! certificates are verified (the system's roots plus `https_ca_certificates_file`) unless
//! `https_insecure` is set, where Glance's driver does not verify by default. Uploads are
//! refused (the store is read-only) and deleting a location leaves the remote data alone,
//! as Glance does.

use super::Error;
use super::client::{self, Body, Client, Options, Origin};
use shared::config::{StoreConfig, StoreKind};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

/// Read-only HTTP(S) locations.
#[derive(Clone)]
pub struct HttpStore(Rc<Inner>);

struct Inner {
    id: String,
    options: Options,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    clients: RefCell<HashMap<String, Client>>,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore").field("id", &self.0.id).finish()
    }
}

impl HttpStore {
    /// The store for `cfg` (nothing to contact until a location is read).
    pub fn open(cfg: &StoreConfig) -> Result<HttpStore, Error> {
        let StoreKind::Http(h) = &cfg.kind else {
            return Err(Error::Unavailable(format!(
                "store {}: not an http store",
                cfg.id
            )));
        };
        let tls = if h.https_insecure {
            tracing::warn!(store = %cfg.id, "https_insecure: certificates of HTTP locations are not verified");
            Some(client::insecure_tls_config())
        } else {
            Some(
                client::tls_config(h.https_ca_certificates_file.as_deref())
                    .map_err(|e| Error::Unavailable(format!("store {}: TLS: {e}", cfg.id)))?,
            )
        };
        Ok(HttpStore(Rc::new(Inner {
            id: cfg.id.clone(),
            options: Options {
                connect_timeout: Duration::from_secs(cfg.connect_timeout_seconds),
                io_timeout: Duration::from_secs(cfg.read_timeout_seconds),
                max_idle: 4,
            },
            tls,
            clients: RefCell::new(HashMap::new()),
        })))
    }

    /// Whether `url` is an HTTP(S) URL without credentials.
    pub fn claims(&self, url: &str) -> bool {
        parse(url).is_some()
    }

    fn client(&self, origin: Origin) -> Client {
        let key = origin.to_string();
        self.0
            .clients
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| Client::new(origin, self.0.tls.clone(), self.0.options))
            .clone()
    }

    /// Opens `len` bytes from `offset` of the resource at `url`.
    pub async fn get(&self, url: &str, offset: u64, len: u64) -> Result<client::Download, Error> {
        let parsed = parse(url).ok_or_else(|| Error::ForeignLocation(url.to_owned()))?;
        let origin = Origin::of(&parsed).ok_or_else(|| Error::ForeignLocation(url.to_owned()))?;
        if len == 0 {
            return Ok(client::Download::new(&self.0.id, None, 0));
        }
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let what = format!("store {}: GET {url} {range}", self.0.id);
        let r = self
            .client(origin)
            .send("GET", &target, &[("Range", &range)], Body::Empty)
            .await
            .map_err(|e| Error::Unavailable(format!("{what}: {e}")))?;
        if matches!(r.status, 404 | 410) {
            return Err(Error::Missing(url.to_owned()));
        }
        client::check_range(&r, offset, len)
            .map_err(|why| Error::Unavailable(format!("{what}: {why}")))?;
        Ok(client::Download::new(&self.0.id, Some(r), len))
    }
}

impl HttpStore {
    /// The size of the resource at `url`: the total of a one-byte range's `Content-Range`
    /// (or the `Content-Length` of a server that ignores ranges; the body is not read).
    pub async fn size(&self, url: &str) -> Result<u64, Error> {
        let parsed = parse(url).ok_or_else(|| Error::ForeignLocation(url.to_owned()))?;
        let origin = Origin::of(&parsed).ok_or_else(|| Error::ForeignLocation(url.to_owned()))?;
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let what = format!("store {}: GET {url} bytes=0-0", self.0.id);
        let r = self
            .client(origin)
            .send("GET", &target, &[("Range", "bytes=0-0")], Body::Empty)
            .await
            .map_err(|e| Error::Unavailable(format!("{what}: {e}")))?;
        let total = match r.status {
            206 => r
                .header("content-range")
                .and_then(|v| v.rsplit_once('/'))
                .and_then(|(_, n)| n.trim().parse::<u64>().ok()),
            200 => r.content_length(),
            404 | 410 => return Err(Error::Missing(url.to_owned())),
            s => return Err(Error::Unavailable(format!("{what}: answered {s}"))),
        };
        // a one-byte body is read off to keep the connection; a whole one is dropped
        if r.status == 206 {
            r.finish().await;
        }
        total.ok_or_else(|| Error::Unavailable(format!("{what}: no size in the answer")))
    }
}

/// An `http(s)://` URL with a host and no userinfo.
fn parse(url: &str) -> Option<url::Url> {
    let u: url::Url = url.parse().ok()?;
    (matches!(u.scheme(), "http" | "https")
        && u.host().is_some()
        && u.username().is_empty()
        && u.password().is_none())
    .then_some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_only_plain_http_urls() {
        let cfg = StoreConfig {
            id: "web".into(),
            description: None,
            weight: 0,
            kind: StoreKind::Http(Default::default()),
            connect_timeout_seconds: 5,
            read_timeout_seconds: 5,
        };
        let s = HttpStore::open(&cfg).unwrap();
        assert!(s.claims("https://images.example.net/cirros.img"));
        assert!(s.claims("http://127.0.0.1:8080/a?b=c"));
        for bad in [
            "https://user:pw@example.net/x",
            "file:///etc/passwd",
            "swift+http://h/v1/AUTH_a/c/o",
            "s3://h/b/k",
        ] {
            assert!(!s.claims(bad), "{bad}");
        }
    }

    /// Ranged reads of a real HTTP server: an object made public on the Swift all-in-one.
    #[compio::test]
    #[ignore = "needs the Swift server: run through ./scripts/test"]
    async fn reads_ranges_from_a_real_server() {
        let var = |k: &str| {
            std::env::var(format!("GLINT_TEST_SWIFT_SWIFT_{k}")).unwrap_or_else(|_| {
                panic!("GLINT_TEST_SWIFT_SWIFT_{k} is not set: run ./scripts/test")
            })
        };
        let (auth, user, key) = (var("AUTH_URL"), var("USER"), var("KEY"));
        // a public container with one object, set up through the Swift API
        let auth_url: url::Url = auth.parse().unwrap();
        let opts = Options {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            max_idle: 2,
        };
        let c = Client::new(Origin::of(&auth_url).unwrap(), None, opts);
        let r = c
            .send(
                "GET",
                auth_url.path(),
                &[("X-Auth-User", &user), ("X-Auth-Key", &key)],
                Body::Empty,
            )
            .await
            .unwrap();
        let token = r.header("x-auth-token").unwrap().to_owned();
        let storage = r.header("x-storage-url").unwrap().to_owned();
        r.finish().await;
        let storage_url: url::Url = storage.parse().unwrap();
        let container = format!("glint-http-{}", uuid::Uuid::new_v4().simple());
        let cpath = format!("{}/{container}", storage_url.path());
        let r = c
            .send(
                "PUT",
                &cpath,
                &[("X-Auth-Token", &token), ("X-Container-Read", ".r:*")],
                Body::Empty,
            )
            .await
            .unwrap();
        assert!(r.status < 300, "{}", r.status);
        r.finish().await;
        let mut data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let want = data.clone();
        let opath = format!("{cpath}/image.raw");
        let r = c
            .send(
                "PUT",
                &opath,
                &[("X-Auth-Token", &token)],
                Body::Bytes(&mut data),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        r.finish().await;

        let cfg = StoreConfig {
            id: "web".into(),
            description: None,
            weight: 0,
            kind: StoreKind::Http(Default::default()),
            connect_timeout_seconds: 5,
            read_timeout_seconds: 5,
        };
        let store = HttpStore::open(&cfg).unwrap();
        let url = format!("{storage}/{container}/image.raw");
        for (offset, len) in [(0u64, 200_000u64), (12_345, 100), (199_999, 1)] {
            let mut body = store.get(&url, offset, len).await.unwrap();
            let mut got = Vec::new();
            loop {
                let (res, b) = body.read(Vec::with_capacity(65536)).await;
                if res.unwrap() == 0 {
                    break;
                }
                got.extend_from_slice(&b);
            }
            assert_eq!(got, &want[offset as usize..(offset + len) as usize]);
        }
        let missing = format!("{storage}/{container}/nothing");
        assert!(matches!(
            store.get(&missing, 0, 1).await,
            Err(Error::Missing(_))
        ));
        for p in [&opath, &cpath] {
            let r = c
                .send("DELETE", p, &[("X-Auth-Token", &token)], Body::Empty)
                .await
                .unwrap();
            r.finish().await;
        }
    }
}
