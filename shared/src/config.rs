//! Configuration both planes load: built-in default < TOML file < `GLINT_*` env < CLI flags.
//!
//! Every key is parsed and every error reported before failing once ([`Config::load`]), so an
//! operator fixes a config in one pass. Environment variables are read through [`Env`] so
//! tests pass a map instead of mutating the process environment.
//!
//! An operator writes only the keys they change. One rule makes every other key keep its
//! default: each section's type is `#[serde(default, deny_unknown_fields)]` and its `Default`
//! *is* the built-in default of that section, and [`Config::default`] takes every section from
//! its type's `Default`. Sections with the same shape but different defaults get different
//! types (`[bind]` is a [`Listen<9292>`](Listen), `[admin]` a [`Listen<9293>`](Listen)).
//!
//! ```toml
//! data_dir = "/var/lib/glint"
//! [bind]
//! host = "0.0.0.0"
//! port = 9292
//! [image]
//! hashing_algorithm = "sha512"
//! ```

mod auth;
pub mod stores;

pub use auth::{Auth, AuthMode, KeystoneAuthtoken};
pub use stores::{GlanceStore, LEGACY_STORE_ID, StoreConfig, StoreKind, StoreSet};

use crate::image::{DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS, HashAlgo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The whole configuration of a glint node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the SQLite database, the filesystem store and the run directory
    /// (sockets, addresses). Default `./glint-data`. Env `GLINT_DATA_DIR`.
    pub data_dir: PathBuf,
    /// The public listener, served by the data plane. Default `127.0.0.1:9292`; port 0 picks a
    /// free port. Env `GLINT_BIND_HOST`, `GLINT_BIND_PORT`.
    pub bind: Listen<9292>,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), served by the control plane.
    /// Default `127.0.0.1:9293`. Env `GLINT_ADMIN_HOST`, `GLINT_ADMIN_PORT`.
    pub admin: Listen<9293>,
    /// Metadata database.
    pub database: Database,
    /// The filesystem store of a configuration without `enabled_backends`.
    pub store: Store,
    /// Glance's `worker_self_reference_url`: how other nodes (and `GET /v2/cache/nodes/{id}`)
    /// name this node. Default `http://<bind.host>:<bind.port>`.
    pub worker_self_reference_url: Option<String>,
    /// Glance's `enabled_backends`: `"<id>:<type>, …"` (types `file`, `s3`, `swift`, `http`).
    /// Unset: one filesystem store and no multi-store API. See [`stores`].
    pub enabled_backends: Option<String>,
    /// `[glance_store]`: `default_backend`.
    pub glance_store: GlanceStore,
    /// `[backends.<id>]`: one table per store in `enabled_backends`, with glance_store's
    /// option names for its type (checked by [`StoreSet::from_config`]).
    pub backends: std::collections::BTreeMap<String, toml::Table>,
    /// Image model options (Glance's `[image_format]` and hashing settings).
    pub image: ImageOptions,
    /// The block cache in front of remote stores (Glance's `image_cache_*` option names); on
    /// when `image_cache_dir` is set.
    pub image_cache: ImageCache,
    /// Data-plane limits and tuning.
    pub dataplane: DataPlane,
    /// Control-plane limits.
    pub controlplane: ControlPlane,
    /// TLS on the public listener (off unless both files are set).
    pub tls: Tls,
    /// How callers are identified: `noauth` (default) or `keystone`.
    pub auth: Auth,
    /// Keystone token validation (keystonemiddleware's option names), for `auth.mode = "keystone"`.
    pub keystone_authtoken: KeystoneAuthtoken,
    /// Log filter in `RUST_LOG` syntax; default `info`. Env `GLINT_LOG` (or `RUST_LOG`).
    pub log: Option<String>,
    /// Glance's `enabled_import_methods`: the interoperable import methods offered
    /// (`/v2/info/import`, `OpenStack-image-import-methods`), of [`IMPORT_METHODS`]. Default
    /// Glance's ([`DEFAULT_IMPORT_METHODS`]: all but `glance-download`); `[]` turns import
    /// (and `PUT …/stage`) off.
    pub enabled_import_methods: Vec<String>,
    /// Glance's `node_staging_uri`: the `file://` directory where `PUT …/stage` keeps data until
    /// it is imported (Glance's `os_glance_staging_store`). Default
    /// `file://<data_dir>/staging`.
    pub node_staging_uri: Option<String>,
    /// `[task]`: Glance's task options.
    pub task: TaskOptions,
    /// `[import_filtering_opts]`: which `web-download` sources may be fetched (Glance's
    /// lists, and glint's address check, see [`crate::import_filter`]).
    pub import_filtering_opts: ImportFiltering,
    /// `[image_import_opts]`: Glance's import plugins.
    pub image_import_opts: ImageImportOpts,
    /// `[inject_metadata_properties]`: what the `inject_image_metadata` plugin sets.
    pub inject_metadata_properties: InjectMetadata,
    /// `[glance_download_properties]`: what `glance-download` copies from the remote image.
    pub glance_download_properties: GlanceDownloadProperties,
    /// `[image_conversion]`: what the `image_conversion` plugin makes.
    pub image_conversion: ImageConversion,
    /// Glance's `show_image_direct_url`: an image with data shows `direct_url`, the URL of its
    /// best location. Default false (URLs name store internals: OSSN-0065).
    pub show_image_direct_url: bool,
    /// Glance's `show_multiple_locations`: images show `locations` (`url` and `metadata` of
    /// each). Default false.
    pub show_multiple_locations: bool,
    /// glint: `direct_url` and `locations` are shown only to requests that carry a valid
    /// service token with the `service` role (Nova, Cinder), never to users; so one API
    /// serves both, where Glance needs two (OSSN-0065, OSSN-0090). Default false.
    pub show_locations_only_to_services: bool,
    /// Glance's `do_secure_hash`: a location added by `POST /v2/images/{id}/locations` is read
    /// whole to compute its md5 and secure hash (checked against `validation_data`). Default
    /// true.
    pub do_secure_hash: bool,
    /// Glance's `http_retries`: reads of an added location tried again after a failure.
    /// Default 3.
    pub http_retries: u32,
}

/// The import plugins glint implements (Glance's names).
pub const IMPORT_PLUGINS: [&str; 3] = [
    "image_decompression",
    "image_conversion",
    "inject_image_metadata",
];

/// `[image_conversion]`: Glance's `output_format`, and the limits glint puts on `qemu-img`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConversion {
    /// The format imported images are converted to: `raw` (default) or `qcow2`.
    pub output_format: String,
    /// CPU seconds `qemu-img convert` may use. Default 600.
    pub max_cpu_seconds: u64,
    /// Address space `qemu-img convert` may use, in bytes. Default 1 GiB.
    pub max_memory_bytes: u64,
}

impl Default for ImageConversion {
    fn default() -> Self {
        ImageConversion {
            output_format: "raw".into(),
            max_cpu_seconds: 600,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// `[image_import_opts]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ImageImportOpts {
    /// Glance's `image_import_plugins`: run on every import but `copy-image`, in this order
    /// (of [`IMPORT_PLUGINS`]). Default none.
    pub image_import_plugins: Vec<String>,
}

/// `[inject_metadata_properties]` (Glance's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InjectMetadata {
    /// Imports by users with any of these roles get nothing injected. Default `["admin"]`.
    pub ignore_user_roles: Vec<String>,
    /// The properties set on every other imported image.
    pub inject: std::collections::BTreeMap<String, String>,
}

impl Default for InjectMetadata {
    fn default() -> Self {
        InjectMetadata {
            ignore_user_roles: vec!["admin".into()],
            inject: Default::default(),
        }
    }
}

/// `[glance_download_properties]` (Glance's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlanceDownloadProperties {
    /// The prefixes of the remote image's properties a `glance-download` import copies onto
    /// the image (never `os_glance_*`, reserved). Default Glance's: `hw_`, `trait:`,
    /// `os_distro`, `os_secure_boot`, `os_type`.
    pub extra_properties: Vec<String>,
}

impl Default for GlanceDownloadProperties {
    fn default() -> Self {
        GlanceDownloadProperties {
            extra_properties: ["hw_", "trait:", "os_distro", "os_secure_boot", "os_type"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[import_filtering_opts]`: Glance's option names, and glint's networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportFiltering {
    /// Schemes a `web-download` URI may have. Default `["http", "https"]`.
    pub allowed_schemes: Vec<String>,
    /// Schemes refused (only when `allowed_schemes` is empty).
    pub disallowed_schemes: Vec<String>,
    /// Hosts a URI may name (empty: any).
    pub allowed_hosts: Vec<String>,
    /// Hosts refused (only when `allowed_hosts` is empty).
    pub disallowed_hosts: Vec<String>,
    /// Ports a URI may name. Default `[80, 443]`.
    pub allowed_ports: Vec<u16>,
    /// Ports refused (only when `allowed_ports` is empty).
    pub disallowed_ports: Vec<u16>,
    /// glint: networks (CIDR) no resolved address of a source may be in. Default
    /// [`crate::import_filter::DISALLOWED_NETWORKS`].
    pub disallowed_networks: Vec<String>,
    /// glint: networks (CIDR) allowed even inside `disallowed_networks`. Default none.
    pub allowed_networks: Vec<String>,
    /// glint: redirects followed (each checked like the URI). Default 5.
    pub max_redirects: u32,
    /// glint: seconds to wait for a connection to a source, and then for each read. Default 30.
    pub timeout_seconds: u64,
}

impl Default for ImportFiltering {
    fn default() -> Self {
        ImportFiltering {
            allowed_schemes: vec!["http".into(), "https".into()],
            disallowed_schemes: Vec::new(),
            allowed_hosts: Vec::new(),
            disallowed_hosts: Vec::new(),
            allowed_ports: vec![80, 443],
            disallowed_ports: Vec::new(),
            disallowed_networks: crate::import_filter::DISALLOWED_NETWORKS
                .iter()
                .map(|n| n.to_string())
                .collect(),
            allowed_networks: Vec::new(),
            max_redirects: 5,
            timeout_seconds: 30,
        }
    }
}

/// The import methods glint implements, in Glance's order.
pub const IMPORT_METHODS: [&str; 4] = [
    "glance-direct",
    "web-download",
    "copy-image",
    "glance-download",
];

/// The default of `enabled_import_methods` (Glance's: every method but `glance-download`,
/// the last of [`IMPORT_METHODS`], which needs Keystone's catalog of the other regions).
pub const DEFAULT_IMPORT_METHODS: &[&str] = IMPORT_METHODS.split_at(3).0;

/// The id of the staging store (Glance's reserved `os_glance_staging_store`).
pub const STAGING_STORE: &str = "os_glance_staging_store";

/// `[task]` (Glance's names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskOptions {
    /// Hours a finished task stays visible (`expires_at`). Default 48.
    pub task_time_to_live: u64,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            task_time_to_live: 48,
        }
    }
}

/// A TCP listen address whose default is `127.0.0.1:DEFAULT_PORT`.
///
/// Its `Deserialize` is written out (serde's derive does not take const generics) but follows
/// the rule of every section: a key left out keeps its default, an unknown key is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listen<const DEFAULT_PORT: u16> {
    /// Host or IP to bind. Default `127.0.0.1`.
    pub host: String,
    /// TCP port; 0 picks a free one. Default `DEFAULT_PORT`.
    pub port: u16,
}

impl<const DEFAULT_PORT: u16> Default for Listen<DEFAULT_PORT> {
    fn default() -> Self {
        Listen {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
        }
    }
}

impl<'de, const DEFAULT_PORT: u16> Deserialize<'de> for Listen<DEFAULT_PORT> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The keys of a listen section, each optional.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Keys {
            host: Option<String>,
            port: Option<u16>,
        }
        let keys = Keys::deserialize(d)?;
        let default = Self::default();
        Ok(Listen {
            host: keys.host.unwrap_or(default.host),
            port: keys.port.unwrap_or(default.port),
        })
    }
}

/// Metadata database settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// sqlx URL; the scheme picks the backend: `sqlite:` (default
    /// `sqlite://<data_dir>/glint.db`), `postgres://`/`postgresql://`, `mysql://`/`mariadb://`.
    /// Env `GLINT_DATABASE_URL`.
    pub url: Option<String>,
    /// Pool size (connections). Default 8.
    pub max_connections: u32,
    /// The control plane's read cache of images (see [`ImageCacheMode`]). Default `auto`.
    pub image_cache: ImageCacheMode,
    /// Memory the image cache may use, in bytes (approximate: the images' field sizes).
    /// Default 32 MiB.
    pub image_cache_bytes: u64,
}

/// How the control plane caches image records it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImageCacheMode {
    /// `exclusive` on SQLite (the database belongs to this node), `shared` on PostgreSQL and
    /// MySQL/MariaDB (other nodes may write).
    #[default]
    Auto,
    /// Only this control plane writes the database: a cached image is served without asking
    /// the database.
    Exclusive,
    /// Other control planes may write the database: the image row is read every time (one
    /// query) and the cached tags and properties are reused while its version is unchanged.
    Shared,
    /// No cache: every read asks the database.
    Off,
}

impl std::str::FromStr for ImageCacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ImageCacheMode::Auto),
            "exclusive" => Ok(ImageCacheMode::Exclusive),
            "shared" => Ok(ImageCacheMode::Shared),
            "off" => Ok(ImageCacheMode::Off),
            other => Err(format!(
                "unknown image cache mode {other:?} (auto, exclusive, shared, off)"
            )),
        }
    }
}

/// Filesystem store settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// Directory holding image files (Glance's `filesystem_store_datadir`).
    /// Default `<data_dir>/images`. Env `GLINT_STORE_DIR`.
    pub filesystem_store_datadir: Option<PathBuf>,
    /// Write uploads with `O_DIRECT` (no page-cache copy; falls back to buffered writes where
    /// the file system refuses it). Default true.
    pub upload_direct_io: bool,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            filesystem_store_datadir: None,
            upload_direct_io: true,
        }
    }
}

/// Image model options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageOptions {
    /// Algorithm for `os_hash_value` (Glance's `hashing_algorithm`). Default `sha512`.
    pub hashing_algorithm: HashAlgo,
    /// Allowed `disk_format` values; they become the enum in `/v2/schemas/image`.
    pub disk_formats: Vec<String>,
    /// Allowed `container_format` values; likewise.
    pub container_formats: Vec<String>,
    /// Largest image accepted, in bytes (Glance's `image_size_cap`). Default 1 TiB.
    pub image_size_cap_bytes: u64,
    /// Glance's `[image_format] require_image_format_match`: an upload of a `bare` image whose
    /// content is another format than its `disk_format` is refused. Content that breaks a
    /// safety rule (a qcow2 backing file, a VMDK naming other files, …) is refused either way.
    /// Default true.
    pub require_image_format_match: bool,
    /// Glance's `[image_format] gpt_safety_checks_nonfatal`: safety checks (`mbr`, `gptmbr`)
    /// that only log for images inspected as GPT/MBR disks. Default none.
    pub gpt_safety_checks_nonfatal: Vec<String>,
}

/// The block cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageCache {
    /// Where the data plane keeps cached blocks of images in remote stores (Glance's
    /// `image_cache_dir`). The cache is on when this is set. Env `GLINT_IMAGE_CACHE_DIR`.
    pub image_cache_dir: Option<PathBuf>,
    /// The most bytes the cache holds (Glance's `image_cache_max_size`): held when a block is
    /// admitted, by evicting the least recently used images not being read. Default 10 GiB.
    pub image_cache_max_size: u64,
    /// Glance's `image_cache_stall_time`, in seconds: a fill that has made no progress for
    /// this long is given up (its readers go to the store directly). Default 86400.
    pub image_cache_stall_time: u64,
    /// Bytes per block: uploads record the xxh3 of each block of this size with the image
    /// (what a cache fill verifies), and the cache stores and serves images in such blocks.
    /// Default 8 MiB; 64 KiB … 1 GiB.
    pub image_cache_block_size: u64,
    /// How long a download waits for a block another download is filling before it reads
    /// that block from the store itself (counted), in milliseconds. Default 30000.
    pub image_cache_wait_ms: u64,
    /// Blocks a download asks to be filled ahead of the one it sends. Default 2.
    pub image_cache_readahead_blocks: u64,
    /// Most blocks being filled at once on this node (each is held in memory until it is
    /// verified and written). Default 8.
    pub image_cache_max_fills: usize,
    /// The auditor's pace: bytes of cached blocks read back against their hashes per second
    /// (a block that fails is discarded and filled again when next read); 0: no auditor.
    /// Default 33554432 (32 MiB/s).
    pub image_cache_audit_bytes_per_second: u64,
}

impl Default for ImageCache {
    fn default() -> Self {
        ImageCache {
            image_cache_dir: None,
            image_cache_max_size: 10 << 30,
            image_cache_stall_time: 86_400,
            image_cache_block_size: 8 << 20,
            image_cache_wait_ms: 30_000,
            image_cache_readahead_blocks: 2,
            image_cache_max_fills: 8,
            image_cache_audit_bytes_per_second: 32 << 20,
        }
    }
}

/// Data-plane limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataPlane {
    /// Worker threads (one io_uring runtime each); 0 = one per core. Env
    /// `GLINT_DATAPLANE_WORKERS`.
    pub workers: usize,
    /// Largest request head (request line + headers) in bytes; above it 431. Default 16384.
    pub max_header_bytes: usize,
    /// Most request headers; above it 431. Default 100.
    pub max_headers: usize,
    /// Time allowed to receive a complete request head, in seconds. Default 30.
    pub header_timeout_seconds: u64,
    /// Longest wait for the next body bytes or for the peer to take more, in seconds.
    /// Default 300.
    pub idle_timeout_seconds: u64,
    /// Size of the buffers that move image bytes, in bytes. Default 1 MiB.
    pub transfer_buffer_bytes: usize,
    /// Most client connections open at once (split evenly across workers); above it new
    /// connections get 503 and are closed. Default 10000.
    pub max_connections: usize,
    /// How long a job the data plane claimed (deleting data) is its own before another data
    /// plane may claim it again, in seconds: the longest a crashed node delays its jobs.
    /// Default 300.
    pub job_lease_seconds: u64,
}

/// TLS on the public listener. Both files are PEM; they are re-read on SIGHUP (existing
/// connections keep the certificate they started with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain (leaf first). Env `GLINT_TLS_CERT_FILE`.
    pub cert_file: Option<PathBuf>,
    /// Private key (PKCS#8, PKCS#1 or SEC1). Env `GLINT_TLS_KEY_FILE`.
    pub key_file: Option<PathBuf>,
}

impl Tls {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// Control-plane limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlane {
    /// Largest accepted metadata request body (JSON), in bytes; above it 413. Default 65536.
    pub max_request_body_bytes: usize,
    /// Operator policy file (oslo.policy rules, YAML or JSON) overriding Glance's default
    /// rules. Default none. Env `GLINT_POLICY_FILE`.
    pub policy_file: Option<PathBuf>,
    /// Glance's `delayed_delete`: a deleted image with data becomes `pending_delete` and
    /// keeps its data until the scrubber removes it. Default false.
    pub delayed_delete: bool,
    /// Glance's `scrub_time`: seconds a `pending_delete` image keeps its data. Default 0.
    pub scrub_time_seconds: u64,
    /// Glance's `wakeup_time`: seconds between scrubber runs. Default 300.
    pub scrub_wakeup_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./glint-data"),
            bind: Listen::default(),
            admin: Listen::default(),
            database: Database::default(),
            store: Store::default(),
            worker_self_reference_url: None,
            enabled_backends: None,
            glance_store: GlanceStore::default(),
            backends: Default::default(),
            image: ImageOptions::default(),
            image_cache: ImageCache::default(),
            dataplane: DataPlane::default(),
            controlplane: ControlPlane::default(),
            tls: Tls::default(),
            auth: Auth::default(),
            keystone_authtoken: KeystoneAuthtoken::default(),
            log: None,
            enabled_import_methods: DEFAULT_IMPORT_METHODS
                .iter()
                .map(|m| m.to_string())
                .collect(),
            node_staging_uri: None,
            task: TaskOptions::default(),
            import_filtering_opts: ImportFiltering::default(),
            image_import_opts: ImageImportOpts::default(),
            inject_metadata_properties: InjectMetadata::default(),
            glance_download_properties: GlanceDownloadProperties::default(),
            image_conversion: ImageConversion::default(),
            show_image_direct_url: false,
            show_multiple_locations: false,
            show_locations_only_to_services: false,
            do_secure_hash: true,
            http_retries: 3,
        }
    }
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: None,
            max_connections: 8,
            image_cache: ImageCacheMode::Auto,
            image_cache_bytes: 32 << 20,
        }
    }
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            hashing_algorithm: HashAlgo::Sha512,
            disk_formats: DEFAULT_DISK_FORMATS.iter().map(|s| s.to_string()).collect(),
            container_formats: DEFAULT_CONTAINER_FORMATS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            image_size_cap_bytes: 1 << 40,
            require_image_format_match: true,
            gpt_safety_checks_nonfatal: Vec::new(),
        }
    }
}

impl Default for DataPlane {
    fn default() -> Self {
        DataPlane {
            workers: 0,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            header_timeout_seconds: 30,
            idle_timeout_seconds: 300,
            transfer_buffer_bytes: 1 << 20,
            max_connections: 10_000,
            job_lease_seconds: 300,
        }
    }
}

impl Default for ControlPlane {
    fn default() -> Self {
        ControlPlane {
            max_request_body_bytes: 64 * 1024,
            policy_file: None,
            delayed_delete: false,
            scrub_time_seconds: 0,
            scrub_wakeup_seconds: 300,
        }
    }
}

/// Where environment variables come from.
pub trait Env {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--bind-host`.
    pub bind_host: Option<String>,
    /// `--bind-port`.
    pub bind_port: Option<u16>,
    /// `--admin-host`.
    pub admin_host: Option<String>,
    /// `--admin-port`.
    pub admin_port: Option<u16>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--store-dir`.
    pub store_dir: Option<PathBuf>,
    /// `--workers`.
    pub workers: Option<usize>,
}

/// Every problem found while loading; printed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigErrors(pub Vec<String>);

impl Config {
    /// Loads default < `file` < env < `cli`, validates, and reports every error at once.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Env,
        cli: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut cfg = match file {
            None => Config::default(),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match Config::from_toml(&text) {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(format!("{}: {e}", path.display()));
                        Config::default()
                    }
                },
                Err(e) => {
                    errors.push(format!("{}: {e}", path.display()));
                    Config::default()
                }
            },
        };
        cfg.apply_env(env, &mut errors);
        cfg.apply_overrides(cli);
        errors.extend(cfg.validate());
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// A config file's contents over the defaults: every key it leaves out keeps its default.
    /// Unknown keys are refused.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())
    }

    fn apply_env(&mut self, env: &dyn Env, errors: &mut Vec<String>) {
        fn parse<T: std::str::FromStr>(
            env: &dyn Env,
            key: &str,
            errors: &mut Vec<String>,
        ) -> Option<T> {
            let raw = env.get(key)?;
            match raw.trim().parse() {
                Ok(v) => Some(v),
                Err(_) => {
                    errors.push(format!("{key}={raw:?}: not a valid value"));
                    None
                }
            }
        }
        if let Some(v) = env.get("GLINT_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = env.get("GLINT_BIND_HOST") {
            self.bind.host = v;
        }
        if let Some(v) = parse(env, "GLINT_BIND_PORT", errors) {
            self.bind.port = v;
        }
        if let Some(v) = env.get("GLINT_ADMIN_HOST") {
            self.admin.host = v;
        }
        if let Some(v) = parse(env, "GLINT_ADMIN_PORT", errors) {
            self.admin.port = v;
        }
        if let Some(v) = env.get("GLINT_DATABASE_URL") {
            self.database.url = Some(v);
        }
        if let Some(v) = parse::<ImageCacheMode>(env, "GLINT_IMAGE_CACHE", errors) {
            self.database.image_cache = v;
        }
        if let Some(v) = env.get("GLINT_IMAGE_CACHE_DIR") {
            self.image_cache.image_cache_dir = Some(v.into());
        }
        if let Some(v) = env.get("GLINT_STORE_DIR") {
            self.store.filesystem_store_datadir = Some(v.into());
        }
        if let Some(v) = parse(env, "GLINT_DATAPLANE_WORKERS", errors) {
            self.dataplane.workers = v;
        }
        if let Some(v) = parse::<HashAlgo>(env, "GLINT_HASHING_ALGORITHM", errors) {
            self.image.hashing_algorithm = v;
        }
        if let Some(v) = env.get("GLINT_POLICY_FILE") {
            self.controlplane.policy_file = Some(v.into());
        }
        if let Some(v) = env.get("GLINT_TLS_CERT_FILE") {
            self.tls.cert_file = Some(v.into());
        }
        if let Some(v) = env.get("GLINT_TLS_KEY_FILE") {
            self.tls.key_file = Some(v.into());
        }
        if let Some(v) = parse::<AuthMode>(env, "GLINT_AUTH_MODE", errors) {
            self.auth.mode = v;
        }
        self.keystone_authtoken.apply_env(env);
        if let Some(v) = env.get("GLINT_LOG") {
            self.log = Some(v);
        }
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(v) = &o.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = &o.bind_host {
            self.bind.host = v.clone();
        }
        if let Some(v) = o.bind_port {
            self.bind.port = v;
        }
        if let Some(v) = &o.admin_host {
            self.admin.host = v.clone();
        }
        if let Some(v) = o.admin_port {
            self.admin.port = v;
        }
        if let Some(v) = &o.database_url {
            self.database.url = Some(v.clone());
        }
        if let Some(v) = &o.store_dir {
            self.store.filesystem_store_datadir = Some(v.clone());
        }
        if let Some(v) = o.workers {
            self.dataplane.workers = v;
        }
    }

    /// This node's `worker_self_reference_url` (the configured one, else the public listener's
    /// address).
    pub fn self_reference_url(&self) -> String {
        self.worker_self_reference_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.bind.host, self.bind.port))
    }

    /// Checks cross-field rules; returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            errors.push("data_dir: must not be empty".into());
        }
        if self.dataplane.max_header_bytes < 1024 {
            errors.push("dataplane.max_header_bytes: must be at least 1024".into());
        }
        if self.dataplane.max_headers == 0 {
            errors.push("dataplane.max_headers: must be at least 1".into());
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            errors.push("tls: set both cert_file and key_file, or neither".into());
        }
        for f in [&self.tls.cert_file, &self.tls.key_file]
            .into_iter()
            .flatten()
        {
            if !f.is_file() {
                errors.push(format!("tls: {} is not a readable file", f.display()));
            }
        }
        if let Some(key) = &self.tls.key_file
            && let Ok(meta) = std::fs::metadata(key)
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o004 != 0
        {
            errors.push(format!(
                "tls.key_file: {} is world-readable; chmod o-r it",
                key.display()
            ));
        }
        if self.dataplane.max_connections == 0 {
            errors.push("dataplane.max_connections: must be at least 1".into());
        }
        if self.dataplane.transfer_buffer_bytes < 4096 {
            errors.push("dataplane.transfer_buffer_bytes: must be at least 4096".into());
        }
        if self.dataplane.job_lease_seconds == 0 || self.dataplane.job_lease_seconds > 86_400 {
            errors.push("dataplane.job_lease_seconds: must be between 1 and 86400".into());
        }
        if self.controlplane.scrub_wakeup_seconds == 0 {
            errors.push("controlplane.scrub_wakeup_seconds: must be at least 1".into());
        }
        if self.image.disk_formats.is_empty() {
            errors.push("image.disk_formats: must not be empty".into());
        }
        if !(64 << 10..=1 << 30).contains(&self.image_cache.image_cache_block_size) {
            errors.push("image_cache.image_cache_block_size: must be 64 KiB … 1 GiB".into());
        }
        if self.image_cache.image_cache_max_size < self.image_cache.image_cache_block_size {
            errors.push("image_cache.image_cache_max_size: must hold at least one block".into());
        }
        if self.image_cache.image_cache_max_fills == 0 {
            errors.push("image_cache.image_cache_max_fills: must be at least 1".into());
        }
        if self.image_cache.image_cache_stall_time == 0 {
            errors.push("image_cache.image_cache_stall_time: must be at least 1".into());
        }
        if self.image.container_formats.is_empty() {
            errors.push("image.container_formats: must not be empty".into());
        }
        if let Some(url) = &self.database.url {
            let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
            let server = matches!(
                scheme.as_str(),
                "postgres" | "postgresql" | "mysql" | "mariadb"
            );
            if scheme != "sqlite" && !server {
                errors.push(format!(
                    "database.url: unsupported scheme in {:?} (use sqlite:, postgres://, postgresql://, mysql:// or mariadb://)",
                    redact_url_password(url)
                ));
            } else if server && !url[scheme.len()..].starts_with("://") {
                errors.push(format!(
                    "database.url: {:?} must look like {scheme}://user[:password]@host[:port]/database",
                    redact_url_password(url)
                ));
            }
        }
        if let Err(e) = std::str::from_utf8(self.run_dir().as_os_str().as_encoded_bytes()) {
            errors.push(format!("data_dir: not valid UTF-8: {e}"));
        } else if self.channel_socket().as_os_str().len() > 100 {
            errors.push(format!(
                "data_dir: {} is too long for a Unix socket path inside it (keep it under ~80 bytes)",
                self.data_dir.display()
            ));
        }
        for m in &self.enabled_import_methods {
            if !IMPORT_METHODS.contains(&m.as_str()) {
                errors.push(format!(
                    "enabled_import_methods: {m:?} is not an import method glint implements ({})",
                    IMPORT_METHODS.join(", ")
                ));
            }
        }
        if let Some(uri) = &self.node_staging_uri {
            match uri.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => {}
                _ => errors.push(format!(
                    "node_staging_uri: {uri:?} must be file:// followed by an absolute path"
                )),
            }
        }
        let f = &self.import_filtering_opts;
        for (key, nets) in [
            ("disallowed_networks", &f.disallowed_networks),
            ("allowed_networks", &f.allowed_networks),
        ] {
            for n in nets {
                if n.parse::<ipnet::IpNet>().is_err() {
                    errors.push(format!(
                        "import_filtering_opts.{key}: {n:?} is not a network (CIDR, e.g. 10.0.0.0/8)"
                    ));
                }
            }
        }
        for p in &self.image_import_opts.image_import_plugins {
            if !IMPORT_PLUGINS.contains(&p.as_str()) {
                errors.push(format!(
                    "image_import_opts.image_import_plugins: {p:?} is not a plugin glint implements ({})",
                    IMPORT_PLUGINS.join(", ")
                ));
            }
        }
        if !["raw", "qcow2"].contains(&self.image_conversion.output_format.as_str()) {
            errors.push(format!(
                "image_conversion.output_format: {:?} is not raw or qcow2",
                self.image_conversion.output_format
            ));
        }
        if f.timeout_seconds == 0 {
            errors.push("import_filtering_opts.timeout_seconds: must be at least 1".into());
        }
        if self.task.task_time_to_live == 0 {
            errors.push("task.task_time_to_live: must be at least 1 (hours)".into());
        }
        self.keystone_authtoken
            .validate(self.auth.mode, &mut errors);
        if let Err(e) = StoreSet::from_config(self) {
            errors.extend(e);
        }
        errors
    }

    /// The stores this configuration names (valid: [`Config::load`] checked them).
    pub fn stores(&self) -> StoreSet {
        StoreSet::from_config(self).unwrap_or_else(|e| panic!("unchecked store config: {e:?}"))
    }

    /// `<data_dir>/run`: sockets and the address file.
    pub fn run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }

    /// The control plane's HTTP API socket, which the data plane forwards requests to.
    pub fn api_socket(&self) -> PathBuf {
        self.run_dir().join("api.sock")
    }

    /// The channel socket (framed messages).
    pub fn channel_socket(&self) -> PathBuf {
        self.run_dir().join("channel.sock")
    }

    /// JSON file the supervisor writes once listeners are bound: `{"public": …, "admin": …}`.
    pub fn addresses_file(&self) -> PathBuf {
        self.run_dir().join("addresses.json")
    }

    /// The staging directory (`node_staging_uri`, else `<data_dir>/staging`).
    pub fn staging_dir(&self) -> PathBuf {
        match self
            .node_staging_uri
            .as_deref()
            .and_then(|u| u.strip_prefix("file://"))
        {
            Some(path) => PathBuf::from(path),
            None => self.data_dir.join("staging"),
        }
    }

    /// The staging store (Glance's `os_glance_staging_store`): a filesystem store at
    /// [`Config::staging_dir`], held by the data plane beside the configured stores when
    /// an import method is enabled (never listed in `/v2/info/stores`).
    pub fn staging_store(&self) -> StoreConfig {
        StoreConfig {
            id: STAGING_STORE.to_owned(),
            description: None,
            weight: 0,
            kind: StoreKind::File(stores::FileStore {
                filesystem_store_datadir: self.staging_dir(),
                upload_direct_io: true,
            }),
            connect_timeout_seconds: 10,
            read_timeout_seconds: 60,
        }
    }

    /// Whether any import method is enabled (the data plane then holds a staging store).
    pub fn import_on(&self) -> bool {
        !self.enabled_import_methods.is_empty()
    }

    /// Whether the import plugin `name` is enabled.
    pub fn import_plugin(&self, name: &str) -> bool {
        self.image_import_opts
            .image_import_plugins
            .iter()
            .any(|p| p == name)
    }

    /// Whether `method` is in `enabled_import_methods`.
    pub fn import_enabled(&self, method: &str) -> bool {
        self.enabled_import_methods.iter().any(|m| m == method)
    }

    /// The filesystem store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.store
            .filesystem_store_datadir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("images"))
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("glint.db").display()
            )
        })
    }

    /// The effective configuration as TOML with secrets redacted (for `--check-config`).
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(url) = &mut shown.database.url {
            *url = redact_url_password(url);
        }
        if shown.keystone_authtoken.password.is_some() {
            shown.keystone_authtoken.password = Some("***".into());
        }
        for table in shown.backends.values_mut() {
            for key in stores::SECRET_KEYS {
                if let Some(v) = table.get_mut(key) {
                    *v = toml::Value::String("***".into());
                }
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn redact_url_password(url: &str) -> String {
    // scheme://user:password@host → scheme://user:***@host
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &creds[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_default_file_env_cli() {
        let dir = std::env::temp_dir().join(format!("glint-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("glint.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\n[bind]\nhost = \"0.0.0.0\"\nport = 1111\n",
        )
        .unwrap();

        let c = Config::load(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());

        let c = Config::load(Some(&file), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            (
                c.data_dir.to_str().unwrap(),
                c.bind.port,
                c.bind.host.as_str()
            ),
            ("/from-file", 1111, "0.0.0.0")
        );

        let e = env(&[("GLINT_BIND_PORT", "2222"), ("GLINT_DATA_DIR", "/from-env")]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert_eq!(
            (
                c.data_dir.to_str().unwrap(),
                c.bind.port,
                c.bind.host.as_str()
            ),
            ("/from-env", 2222, "0.0.0.0")
        );

        let cli = Overrides {
            bind_port: Some(0),
            ..Default::default()
        };
        let c = Config::load(Some(&file), &e, &cli).unwrap();
        assert_eq!(c.bind.port, 0);
        std::fs::remove_dir_all(dir).ok();
    }

    /// For every section: a file naming one key of it changes that key and nothing else.
    #[test]
    fn each_section_keeps_the_defaults_of_the_keys_left_out() {
        type Change = fn(&mut Config);
        let table: &[(&str, Change)] = &[
            ("[bind]\nport = 19443", |c| c.bind.port = 19443),
            ("[bind]\nhost = \"0.0.0.0\"", |c| {
                c.bind.host = "0.0.0.0".into()
            }),
            ("[admin]\nport = 19444", |c| c.admin.port = 19444),
            ("[admin]\nhost = \"::1\"", |c| c.admin.host = "::1".into()),
            ("[database]\nmax_connections = 3", |c| {
                c.database.max_connections = 3
            }),
            ("[store]\nupload_direct_io = false", |c| {
                c.store.upload_direct_io = false
            }),
            ("[image]\nimage_size_cap_bytes = 5", |c| {
                c.image.image_size_cap_bytes = 5
            }),
            ("[dataplane]\nmax_headers = 7", |c| {
                c.dataplane.max_headers = 7
            }),
            ("[controlplane]\ndelayed_delete = true", |c| {
                c.controlplane.delayed_delete = true
            }),
            ("[tls]\ncert_file = \"/c.pem\"", |c| {
                c.tls.cert_file = Some("/c.pem".into())
            }),
            ("[auth]\nmode = \"keystone\"", |c| {
                c.auth.mode = AuthMode::Keystone
            }),
            ("[keystone_authtoken]\ntoken_cache_time = 60", |c| {
                c.keystone_authtoken.token_cache_time = 60
            }),
            ("log = \"debug\"", |c| c.log = Some("debug".into())),
        ];
        for (text, change) in table {
            let mut want = Config::default();
            change(&mut want);
            assert_ne!(
                want,
                Config::default(),
                "{text}: the change changes nothing"
            );
            assert_eq!(Config::from_toml(text), Ok(want), "{text}");
        }
        // the two listeners keep their own defaults
        assert_eq!(
            (Config::default().bind.port, Config::default().admin.port),
            (9292, 9293)
        );
        assert_eq!(Config::from_toml(""), Ok(Config::default()));
    }

    #[test]
    fn reports_every_error_at_once() {
        let e = env(&[
            ("GLINT_BIND_PORT", "http"),
            ("GLINT_ADMIN_PORT", "99999"),
            ("GLINT_HASHING_ALGORITHM", "crc32"),
            ("GLINT_DATABASE_URL", "oracle://x"),
        ]);
        let err = Config::load(None, &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }

    #[test]
    fn database_url_schemes() {
        for (url, ok) in [
            ("sqlite:///var/lib/glint/glint.db", true),
            ("sqlite::memory:", true),
            ("postgres://glint:pw@db:5432/glint", true),
            ("postgresql://glint@db/glint", true),
            ("mysql://root@127.0.0.1:3306/glint", true),
            ("mariadb://root@127.0.0.1/glint", true),
            ("oracle://x", false),
            ("postgres:glint", false),
            ("/var/lib/glint.db", false),
        ] {
            let e = env(&[("GLINT_DATABASE_URL", url)]);
            let got = Config::load(None, &e, &Overrides::default());
            assert_eq!(got.is_ok(), ok, "{url}: {got:?}");
            if let Err(err) = got {
                assert!(!err.to_string().contains("pw"), "{err}");
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("glint-cfg-unknown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("glint.toml");
        std::fs::write(&file, "[bind]\nhots = \"x\"\nport = 1\n").unwrap();
        let err = Config::load(Some(&file), &env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
        for text in [
            "[admin]\nprot = 1",
            "[image]\nsize_cap = 1",
            "[nope]\nx = 1",
        ] {
            assert!(Config::from_toml(text).is_err(), "{text}");
        }
        // a file error is reported together with the env's
        let e = env(&[("GLINT_BIND_PORT", "http")]);
        let err = Config::load(Some(&file), &e, &Overrides::default()).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn redacts_database_password() {
        assert_eq!(
            redact_url_password("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url_password("sqlite://x.db"), "sqlite://x.db");
    }
}
