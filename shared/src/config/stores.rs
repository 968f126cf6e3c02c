//! The image stores: Glance's multi-store configuration, with glance_store's option names.
//!
//! ```toml
//! enabled_backends = "fast:file, objects:s3, swift1:swift"   # Glance's [DEFAULT] enabled_backends
//! [glance_store]
//! default_backend = "fast"
//! [backends.fast]
//! filesystem_store_datadir = "/var/lib/glint/images"
//! store_description = "Local disk"
//! [backends.objects]
//! s3_store_host = "https://s3.example.net"
//! s3_store_access_key = "…"
//! s3_store_secret_key_file = "/etc/glint/s3.secret"
//! s3_store_bucket = "images"
//! ```
//!
//! Without `enabled_backends` glint has one filesystem store (id `file`, the legacy `[store]`
//! section) and does not offer the multi-store API, as Glance without `enabled_backends`.
//! Each `[backends.<id>]` table is checked against the option names of its backend's type,
//! and every problem is reported at load ([`StoreSet::from_config`]).

use super::Config;
use serde::Deserialize;
use std::path::PathBuf;

/// The id of the one store of a configuration without `enabled_backends`.
pub const LEGACY_STORE_ID: &str = "file";

/// The stores of a node, in `enabled_backends` order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSet {
    /// Every store.
    pub stores: Vec<StoreConfig>,
    /// The id uploads go to when the client names none.
    pub default: String,
    /// Whether the multi-store API is offered (`enabled_backends` is set).
    pub multistore: bool,
}

/// One store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Its id (`enabled_backends` key), shown in `/v2/info/stores` and the `stores` property.
    pub id: String,
    /// `store_description`.
    pub description: Option<String>,
    /// `weight`: downloads try locations in higher-weight stores first. Default 0.
    pub weight: i64,
    /// The driver and its options.
    pub kind: StoreKind,
    /// Seconds to wait for a connection to a remote store. Default 10.
    pub connect_timeout_seconds: u64,
    /// Seconds to wait for each read from (or write to) a remote store. Default 60.
    pub read_timeout_seconds: u64,
}

impl StoreConfig {
    /// Whether uploads are refused (the HTTP store serves existing locations only).
    pub fn read_only(&self) -> bool {
        matches!(self.kind, StoreKind::Http(_))
    }

    /// The type name used in `enabled_backends` and `/v2/info/stores/detail`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            StoreKind::File(_) => "file",
            StoreKind::S3(_) => "s3",
            StoreKind::Swift(_) => "swift",
            StoreKind::Http(_) => "http",
            StoreKind::Rbd(_) => "rbd",
        }
    }
}

/// A store's driver and its options.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    /// A directory.
    File(FileStore),
    /// An S3 bucket.
    S3(S3Store),
    /// A Swift container (native API).
    Swift(SwiftStore),
    /// Read-only HTTP(S) locations.
    Http(HttpStore),
    /// A Ceph RBD pool.
    Rbd(RbdStore),
}

/// Options every backend section takes, whatever its type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    store_description: Option<String>,
    weight: Option<i64>,
    connect_timeout_seconds: Option<u64>,
    read_timeout_seconds: Option<u64>,
}

/// `file` backend options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    /// The directory (Glance's `filesystem_store_datadir`). Required.
    pub filesystem_store_datadir: PathBuf,
    /// Write uploads with `O_DIRECT` where the file system takes it. Default true.
    #[serde(default = "yes")]
    pub upload_direct_io: bool,
}

/// How bucket names go into S3 URLs (glance_store's `s3_store_bucket_url_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BucketUrlFormat {
    /// Virtual-host style for AWS hosts, path style otherwise.
    #[default]
    Auto,
    /// `https://host/bucket/key`.
    Path,
    /// `https://bucket.host/key`.
    Virtual,
}

/// `s3` backend options (glance_store's names; sizes in MiB as there).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Store {
    /// Endpoint URL, `http(s)://host[:port]` (a bare host means `https://`).
    pub s3_store_host: String,
    /// Access key.
    pub s3_store_access_key: String,
    /// Secret key (or `s3_store_secret_key_file`).
    #[serde(default)]
    pub s3_store_secret_key: Option<String>,
    /// File holding the secret key (glint's; keeps it out of the config file).
    #[serde(default)]
    pub s3_store_secret_key_file: Option<PathBuf>,
    /// The bucket.
    pub s3_store_bucket: String,
    /// Create the bucket at start when it is missing. Default false.
    #[serde(default)]
    pub s3_store_create_bucket_on_put: bool,
    /// `auto` (default), `path` or `virtual`.
    #[serde(default)]
    pub s3_store_bucket_url_format: BucketUrlFormat,
    /// Signing region. Default `us-east-1`.
    #[serde(default)]
    pub s3_store_region_name: Option<String>,
    /// Images larger than this (MiB), or of unknown size, are uploaded in parts. Default 100.
    #[serde(default = "s3_large_object_size")]
    pub s3_store_large_object_size: u64,
    /// Part size (MiB; at least 5). Default 10.
    #[serde(default = "s3_large_object_chunk_size")]
    pub s3_store_large_object_chunk_size: u64,
    /// Parts in flight per upload. Default 10.
    #[serde(default = "s3_thread_pools")]
    pub s3_store_thread_pools: u64,
    /// CA bundle (PEM) to verify the endpoint's certificate with, besides the system's roots.
    #[serde(default)]
    pub s3_store_cacert: Option<PathBuf>,
}

/// Swift auth protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SwiftAuthVersion {
    /// tempauth / swauth (`X-Auth-User`, `X-Auth-Key`).
    #[serde(rename = "1")]
    V1,
    /// Keystone v3 password auth.
    #[default]
    #[serde(rename = "3")]
    V3,
}

/// `swift` backend options (glance_store's names; single-tenant).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwiftStore {
    /// Auth endpoint (`…/auth/v1.0` for v1, Keystone's `…/v3` for v3).
    pub swift_store_auth_address: String,
    /// `1` or `3` (default).
    #[serde(default)]
    pub swift_store_auth_version: SwiftAuthVersion,
    /// v1: `account:user`; v3: `project:user` (as glance_store) .
    pub swift_store_user: String,
    /// The key or password (or `swift_store_key_file`).
    #[serde(default)]
    pub swift_store_key: Option<String>,
    /// File holding the key.
    #[serde(default)]
    pub swift_store_key_file: Option<PathBuf>,
    /// The container. Default `glance`.
    #[serde(default = "swift_container")]
    pub swift_store_container: String,
    /// Create the container at start when it is missing. Default false.
    #[serde(default)]
    pub swift_store_create_container_on_put: bool,
    /// Objects larger than this (MiB), or of unknown size, become Static Large Objects.
    /// Default 5120.
    #[serde(default = "swift_large_object_size")]
    pub swift_store_large_object_size: u64,
    /// Segment size (MiB). Default 200.
    #[serde(default = "swift_large_object_chunk_size")]
    pub swift_store_large_object_chunk_size: u64,
    /// Keystone v3: the user's and project's domain. Default `default`.
    #[serde(default)]
    pub swift_store_user_domain_id: Option<String>,
    /// Keystone v3: the project's domain. Default `default`.
    #[serde(default)]
    pub swift_store_project_domain_id: Option<String>,
    /// Keystone v3: which catalog region's object-store endpoint. Default the first.
    #[serde(default)]
    pub swift_store_region: Option<String>,
    /// Keystone v3: `publicURL` (default), `internalURL` or `adminURL`.
    #[serde(default)]
    pub swift_store_endpoint_type: Option<String>,
    /// CA bundle (PEM) for the auth and storage endpoints.
    #[serde(default)]
    pub swift_store_cacert: Option<PathBuf>,
}

/// `http` backend options (read-only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpStore {
    /// CA bundle (PEM) besides the system's roots.
    #[serde(default)]
    pub https_ca_certificates_file: Option<PathBuf>,
    /// Accept any certificate. Default false (Glance's default is true; glint verifies).
    #[serde(default)]
    pub https_insecure: bool,
}

/// `rbd` backend options (glance_store's names; the chunk size in MiB as there).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbdStore {
    /// The pool images are made in. Default `images`.
    #[serde(default = "rbd_pool")]
    pub rbd_store_pool: String,
    /// The Ceph user (`client.<user>`). Default: the configuration's (`admin`).
    #[serde(default)]
    pub rbd_store_user: Option<String>,
    /// The Ceph configuration file. Default: Ceph's search path (`/etc/ceph/ceph.conf`).
    #[serde(default)]
    pub rbd_store_ceph_conf: Option<PathBuf>,
    /// The RBD object size (MiB, a power of two). Default 8.
    #[serde(default = "rbd_chunk_size")]
    pub rbd_store_chunk_size: u64,
    /// Skip writing chunks that are all zeros (they stay unallocated). Default false.
    #[serde(default)]
    pub rbd_thin_provisioning: bool,
}

fn rbd_pool() -> String {
    "images".into()
}
fn rbd_chunk_size() -> u64 {
    8
}
fn yes() -> bool {
    true
}
fn s3_large_object_size() -> u64 {
    100
}
fn s3_large_object_chunk_size() -> u64 {
    10
}
fn s3_thread_pools() -> u64 {
    10
}
fn swift_container() -> String {
    "glance".into()
}
fn swift_large_object_size() -> u64 {
    5120
}
fn swift_large_object_chunk_size() -> u64 {
    200
}

/// `[glance_store]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GlanceStore {
    /// The store uploads go to when the client names none. Required with `enabled_backends`.
    pub default_backend: Option<String>,
}

/// Option names whose values are secrets (redacted by `--check-config`).
pub const SECRET_KEYS: [&str; 2] = ["s3_store_secret_key", "swift_store_key"];

impl StoreSet {
    /// The stores `config` names, or every problem with them.
    pub fn from_config(config: &Config) -> Result<StoreSet, Vec<String>> {
        let Some(enabled) = &config.enabled_backends else {
            let mut errors = Vec::new();
            if !config.backends.is_empty() {
                errors.push("backends: sections given but enabled_backends is not set".into());
            }
            if config.glance_store.default_backend.is_some() {
                errors
                    .push("glance_store.default_backend: set, but enabled_backends is not".into());
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            let legacy = StoreConfig {
                id: LEGACY_STORE_ID.into(),
                description: None,
                weight: 0,
                kind: StoreKind::File(FileStore {
                    filesystem_store_datadir: config.store_dir(),
                    upload_direct_io: config.store.upload_direct_io,
                }),
                connect_timeout_seconds: 10,
                read_timeout_seconds: 60,
            };
            return Ok(StoreSet {
                stores: vec![legacy],
                default: LEGACY_STORE_ID.into(),
                multistore: false,
            });
        };
        let mut errors = Vec::new();
        let mut stores: Vec<StoreConfig> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for entry in enabled.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((id, kind)) = entry.split_once(':') else {
                errors.push(format!(
                    "enabled_backends: {entry:?} is not <id>:<type> (e.g. \"fast:file\")"
                ));
                continue;
            };
            let (id, kind) = (id.trim(), kind.trim());
            if let Err(e) = check_id(id) {
                errors.push(format!("enabled_backends: {e}"));
                continue;
            }
            if seen.contains(&id) {
                errors.push(format!("enabled_backends: {id:?} is given twice"));
                continue;
            }
            seen.push(id);
            let table = config.backends.get(id).cloned().unwrap_or_default();
            match parse_backend(id, kind, table) {
                Ok(s) => stores.push(s),
                Err(e) => errors.push(e),
            }
        }
        if stores.is_empty() && errors.is_empty() {
            errors.push("enabled_backends: names no store".into());
        }
        for id in config.backends.keys() {
            if !enabled
                .split(',')
                .any(|e| e.split(':').next().map(str::trim) == Some(id))
            {
                errors.push(format!("backends.{id}: no such store in enabled_backends"));
            }
        }
        let default = match &config.glance_store.default_backend {
            None => {
                errors.push("glance_store.default_backend: required with enabled_backends".into());
                String::new()
            }
            Some(d) => {
                match stores.iter().find(|s| &s.id == d) {
                    None if errors.is_empty() => errors.push(format!(
                        "glance_store.default_backend: {d:?} is not in enabled_backends"
                    )),
                    Some(s) if s.read_only() => {
                        errors.push(format!("glance_store.default_backend: {d:?} is read-only"))
                    }
                    _ => {}
                }
                d.clone()
            }
        };
        if errors.is_empty() {
            Ok(StoreSet {
                stores,
                default,
                multistore: true,
            })
        } else {
            Err(errors)
        }
    }

    /// The store with this id.
    pub fn get(&self, id: &str) -> Option<&StoreConfig> {
        self.stores.iter().find(|s| s.id == id)
    }

    /// The weight of a store (0 for one not configured), for ordering locations.
    pub fn weight(&self, id: &str) -> i64 {
        self.get(id).map_or(0, |s| s.weight)
    }
}

/// A store id is what Glance takes: not empty, no `:`/`,`/whitespace/`/`, and not one of the
/// reserved `os_glance_` stores.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a store id is empty".into());
    }
    if id.starts_with("os_glance_") {
        return Err(format!(
            "{id:?}: ids starting with os_glance_ are reserved (staging and cache stores)"
        ));
    }
    if id.len() > 255
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!(
            "{id:?}: use letters, digits, '_', '-' and '.' (at most 255)"
        ));
    }
    Ok(())
}

fn parse_backend(id: &str, kind: &str, mut table: toml::Table) -> Result<StoreConfig, String> {
    let mut common = toml::Table::new();
    for key in [
        "store_description",
        "weight",
        "connect_timeout_seconds",
        "read_timeout_seconds",
    ] {
        if let Some(v) = table.remove(key) {
            common.insert(key.into(), v);
        }
    }
    let at = |e: toml::de::Error| format!("backends.{id}: {}", e.message());
    let common: Common = common.try_into().map_err(at)?;
    let kind = match kind {
        "file" => StoreKind::File(table.try_into().map_err(at)?),
        "s3" => {
            let s3: S3Store = table.try_into().map_err(at)?;
            if s3.s3_store_secret_key.is_some() == s3.s3_store_secret_key_file.is_some() {
                return Err(format!(
                    "backends.{id}: set one of s3_store_secret_key and s3_store_secret_key_file"
                ));
            }
            if s3.s3_store_large_object_chunk_size < 5 {
                return Err(format!(
                    "backends.{id}: s3_store_large_object_chunk_size must be at least 5 (MiB)"
                ));
            }
            if s3.s3_store_thread_pools == 0 {
                return Err(format!(
                    "backends.{id}: s3_store_thread_pools must be at least 1"
                ));
            }
            StoreKind::S3(s3)
        }
        "swift" => {
            let sw: SwiftStore = table.try_into().map_err(at)?;
            if sw.swift_store_key.is_some() == sw.swift_store_key_file.is_some() {
                return Err(format!(
                    "backends.{id}: set one of swift_store_key and swift_store_key_file"
                ));
            }
            if sw.swift_store_large_object_chunk_size == 0 {
                return Err(format!(
                    "backends.{id}: swift_store_large_object_chunk_size must be at least 1 (MiB)"
                ));
            }
            StoreKind::Swift(sw)
        }
        "http" => StoreKind::Http(table.try_into().map_err(at)?),
        "rbd" => {
            let rbd: RbdStore = table.try_into().map_err(at)?;
            let c = rbd.rbd_store_chunk_size;
            if !c.is_power_of_two() || c > 32 {
                return Err(format!(
                    "backends.{id}: rbd_store_chunk_size must be a power of two from 1 to 32 (MiB)"
                ));
            }
            if rbd.rbd_store_pool.is_empty() || rbd.rbd_store_pool.contains('/') {
                return Err(format!("backends.{id}: rbd_store_pool: not a pool name"));
            }
            StoreKind::Rbd(rbd)
        }
        other => {
            return Err(format!(
                "enabled_backends: {id:?} has unknown type {other:?} (file, s3, swift, http, rbd)"
            ));
        }
    };
    Ok(StoreConfig {
        id: id.into(),
        description: common.store_description,
        weight: common.weight.unwrap_or(0),
        kind,
        connect_timeout_seconds: common.connect_timeout_seconds.unwrap_or(10).max(1),
        read_timeout_seconds: common.read_timeout_seconds.unwrap_or(60).max(1),
    })
}

/// Reads a secret given inline or in a file (trailing newline dropped).
pub fn secret(inline: &Option<String>, file: &Option<PathBuf>) -> std::io::Result<String> {
    match (inline, file) {
        (Some(s), _) => Ok(s.clone()),
        (None, Some(f)) => Ok(std::fs::read_to_string(f)?
            .trim_end_matches(['\r', '\n'])
            .to_owned()),
        (None, None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no secret configured",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<StoreSet, Vec<String>> {
        let cfg = Config::from_toml(text).map_err(|e| vec![e])?;
        StoreSet::from_config(&cfg)
    }

    #[test]
    fn without_enabled_backends_one_file_store() {
        let set = load("data_dir = \"/d\"").unwrap();
        assert!(!set.multistore);
        assert_eq!(set.default, "file");
        assert_eq!(set.stores.len(), 1);
        match &set.stores[0].kind {
            StoreKind::File(f) => {
                assert_eq!(f.filesystem_store_datadir, PathBuf::from("/d/images"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn glance_names_parse() {
        let set = load(
            r#"
enabled_backends = "fast:file, objects:s3, sw:swift, web:http"
[glance_store]
default_backend = "objects"
[backends.fast]
filesystem_store_datadir = "/srv/images"
store_description = "Fast"
weight = 100
[backends.objects]
s3_store_host = "http://127.0.0.1:9000"
s3_store_access_key = "ak"
s3_store_secret_key = "sk"
s3_store_bucket = "glance"
s3_store_bucket_url_format = "path"
[backends.sw]
swift_store_auth_address = "http://127.0.0.1:8080/auth/v1.0"
swift_store_auth_version = "1"
swift_store_user = "test:tester"
swift_store_key = "testing"
"#,
        )
        .unwrap();
        assert!(set.multistore);
        assert_eq!(set.default, "objects");
        let ids: Vec<_> = set.stores.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["fast", "objects", "sw", "web"]);
        assert_eq!(set.weight("fast"), 100);
        assert!(set.get("web").unwrap().read_only());
        match &set.get("objects").unwrap().kind {
            StoreKind::S3(s) => {
                assert_eq!(s.s3_store_large_object_size, 100);
                assert_eq!(s.s3_store_bucket_url_format, BucketUrlFormat::Path);
            }
            other => panic!("{other:?}"),
        }
        match &set.get("sw").unwrap().kind {
            StoreKind::Swift(s) => {
                assert_eq!(s.swift_store_auth_version, SwiftAuthVersion::V1);
                assert_eq!(s.swift_store_container, "glance");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_named() {
        let errors = load(
            r#"
enabled_backends = "a:file, b:tape, os_glance_staging_store:file, a:file, c:s3"
[backends.a]
filesystem_store_datadir = "/x"
s3_store_bucket = "wrong type"
[backends.c]
s3_store_host = "h"
s3_store_access_key = "k"
s3_store_bucket = "b"
[backends.zz]
"#,
        )
        .unwrap_err()
        .join("\n");
        for needle in [
            "backends.a: unknown field `s3_store_bucket`",
            "unknown type \"tape\"",
            "reserved",
            "given twice",
            "backends.c: set one of s3_store_secret_key",
            "backends.zz: no such store",
            "default_backend: required",
        ] {
            assert!(errors.contains(needle), "{needle} not in:\n{errors}");
        }
        let errors =
            load("enabled_backends = \"a:http\"\n[glance_store]\ndefault_backend = \"a\"\n")
                .unwrap_err();
        assert!(errors[0].contains("read-only"), "{errors:?}");
    }
}
