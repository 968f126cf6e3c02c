//! What each worker thread owns ([`Worker`]) and the settings it reads ([`Settings`]): shared by
//! the dispatcher and every handler, so handlers import it from here, never from the
//! dispatcher.

use super::tls;
use super::upstream::Upstream;
use crate::control_link::Link;
use crate::store::Stores;
use std::rc::Rc;
use std::time::Duration;

/// Settings every worker reads (copied out of the config once).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Time to receive a request head.
    pub header_timeout: Duration,
    /// Longest wait for the peer.
    pub idle_timeout: Duration,
    /// Buffer size for moving image bytes.
    pub transfer_buffer_bytes: usize,
    /// Most connections this worker serves at once.
    pub max_connections_per_worker: usize,
    /// `WWW-Authenticate` value for 401 answers (`Keystone uri="…"`; keystone auth mode only).
    pub www_authenticate: Option<String>,
    /// What the API serves: decides which version prefixes the data routes accept.
    pub features: shared::route::Features,
    /// How long a claimed job is this data plane's (`[dataplane] job_lease_seconds`).
    pub job_lease: Duration,
    /// `[image] require_image_format_match`.
    pub require_image_format_match: bool,
    /// `[image] gpt_safety_checks_nonfatal`.
    pub gpt_safety_checks_nonfatal: Vec<String>,
    /// `[image_cache] image_cache_block_size`: uploads hash their blocks of this size.
    pub block_size: u64,
    /// `[import_filtering_opts]`: the `web-download` sources that may be fetched.
    pub import_filter: shared::config::ImportFiltering,
    /// `[image] image_size_cap_bytes`: the most a `web-download` fetches.
    pub image_size_cap: u64,
    /// `[image_conversion]`: the limits on `qemu-img convert`.
    pub conversion: shared::config::ImageConversion,
}

impl Settings {
    /// Settings from the configuration.
    pub fn from_config(c: &shared::config::Config) -> Self {
        let d = &c.dataplane;
        Settings {
            max_header_bytes: d.max_header_bytes,
            max_headers: d.max_headers,
            header_timeout: Duration::from_secs(d.header_timeout_seconds),
            idle_timeout: Duration::from_secs(d.idle_timeout_seconds),
            transfer_buffer_bytes: d.transfer_buffer_bytes,
            max_connections_per_worker: d.max_connections,
            features: shared::route::Features::of(c),
            job_lease: Duration::from_secs(d.job_lease_seconds),
            require_image_format_match: c.image.require_image_format_match,
            gpt_safety_checks_nonfatal: c.image.gpt_safety_checks_nonfatal.clone(),
            block_size: c.image_cache.image_cache_block_size,
            import_filter: c.import_filtering_opts.clone(),
            image_size_cap: c.image.image_size_cap_bytes,
            conversion: c.image_conversion.clone(),
            www_authenticate: (c.auth.mode == shared::config::AuthMode::Keystone)
                .then(|| c.keystone_authtoken.www_authenticate()),
        }
    }
}

/// What one worker owns: settings, the stores, and its pools towards the control plane.
#[derive(Debug)]
pub struct Worker {
    /// Limits and sizes.
    pub settings: Settings,
    /// The image stores.
    pub stores: Stores,
    /// Channel connections (authorize/report).
    pub link: Link,
    /// HTTP connections for forwarded requests.
    pub upstream: Upstream,
    /// Recycled buffers for heads and forwarded bodies.
    pub scratch: crate::io::Scratch,
    /// Recycled upload buffers.
    pub buffers: std::sync::Arc<crate::hash::pipeline::BufferPool>,
    /// This worker's counters.
    pub metrics: crate::metrics::Metrics,
    /// Connections open on this worker.
    pub active: std::cell::Cell<usize>,
    /// TLS on the public listener, when configured.
    pub tls: Option<std::sync::Arc<tls::Tls>>,
    /// The block cache in front of remote stores (one per data plane), when configured.
    pub cache: Option<std::sync::Arc<crate::cache::Cache>>,
}

impl Worker {
    /// A worker's state: its settings, the stores, pools towards the control plane's sockets,
    /// its buffer pools and counters.
    pub fn new(
        settings: Settings,
        stores: Stores,
        channel_socket: std::path::PathBuf,
        api_socket: std::path::PathBuf,
        metrics: crate::metrics::Metrics,
        tls: Option<std::sync::Arc<tls::Tls>>,
        cache: Option<std::sync::Arc<crate::cache::Cache>>,
    ) -> Worker {
        Worker {
            link: Link::new(channel_socket, 64, metrics),
            upstream: Upstream::new(api_socket, 64),
            scratch: crate::io::Scratch::new(16 * 1024, 64),
            // Idle buffers kept per worker: enough for one upload's pipeline, so RSS stays flat
            // after a burst of uploads.
            buffers: crate::hash::pipeline::BufferPool::new(settings.transfer_buffer_bytes, 4),
            metrics,
            active: std::cell::Cell::new(0),
            tls,
            cache,
            settings,
            stores,
        }
    }
}

/// Counts a connection as open until dropped.
pub(crate) struct Open(Rc<Worker>);

impl Open {
    pub(crate) fn new(w: Rc<Worker>) -> Self {
        w.active.set(w.active.get() + 1);
        w.metrics.connection_opened();
        Open(w)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.metrics.connection_closed();
    }
}
