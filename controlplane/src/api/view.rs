//! [`ImageView`]: the Glance JSON of an image (GLANCE-API.md §2.1).
//!
//! Every base property is always present (null when unset); custom properties are flattened
//! into the top level; `self`, `file` and `schema` are relative links; timestamps are ISO 8601
//! at second precision with a `Z`. Locations and `direct_url` are never shown; with
//! multi-store the image's `stores` (the store ids of its active locations, best first,
//! comma-joined) comes last, as Glance appends it (`ResponseSerializer._format_image`), and
//! only when there is one.
//!
//! [`render`] streams the bytes straight from the image (what responses send; [`ImageView::of`]
//! is the same object as a `serde_json` map, for tests and schema checks), and [`Views`] keeps
//! rendered bytes by image id and version, so a hot image is rendered once per change, whoever
//! shows or lists it.
//!
//! The view cache belongs to the API alone: [`ApiState`], the API router's state, holds it next
//! to the [`App`] (and the advertised API features), so that the channel server and the
//! database never see views.

use crate::app::App;
use crate::db::cache::Coherence;
use crate::domain::{Image, property};
use axum::extract::FromRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};
use shared::config::StoreSet;
use shared::image::ImageId;

/// The JSON object for one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ImageView(pub Map<String, Value>);

/// Glance's timestamp format: ISO 8601 at second precision with a `Z`.
const ISO_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// `2026-01-02T03:04:05Z`.
pub fn isotime(t: DateTime<Utc>) -> String {
    t.format(ISO_FORMAT).to_string()
}

impl ImageView {
    /// Renders `image` as shown with `stores`: the object [`render`] writes, as a map.
    pub fn of(image: &Image, stores: &StoreSet) -> ImageView {
        match serde_json::from_slice(&render(image, stores)) {
            Ok(Value::Object(m)) => ImageView(m),
            // `render` always writes one JSON object.
            _ => ImageView(Map::new()),
        }
    }

    /// As a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// Whether a custom property appears in the view: not one Glance hides, and never one named
/// like a base property (the domain refuses those; this keeps a stray one from shadowing the
/// real value).
fn shown_property(key: &str) -> bool {
    !property::HIDDEN.contains(&key) && !property::BASE.contains(&key)
}

/// Streams the view of one image (see [`render`]).
struct Streamed<'a>(&'a Image, &'a StoreSet);

impl Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let (i, stores) = (self.0, self.1);
        let mut id_buf = [0u8; ImageId::STR_LEN];
        let id = i.id.encode(&mut id_buf);
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("id", id)?;
        m.serialize_entry("name", &i.name)?;
        m.serialize_entry("status", i.status.as_str())?;
        m.serialize_entry("visibility", i.visibility.as_str())?;
        m.serialize_entry("protected", &i.protected)?;
        m.serialize_entry("os_hidden", &i.os_hidden)?;
        m.serialize_entry("checksum", &i.checksum)?;
        m.serialize_entry("os_hash_algo", &i.os_hash_algo)?;
        m.serialize_entry("os_hash_value", &i.os_hash_value)?;
        m.serialize_entry("owner", &i.owner)?;
        m.serialize_entry("size", &i.size)?;
        m.serialize_entry("virtual_size", &i.virtual_size)?;
        m.serialize_entry("min_disk", &i.min_disk)?;
        m.serialize_entry("min_ram", &i.min_ram)?;
        m.serialize_entry("container_format", &i.container_format)?;
        m.serialize_entry("disk_format", &i.disk_format)?;
        m.serialize_entry("created_at", &Iso(i.created_at))?;
        m.serialize_entry("updated_at", &Iso(i.updated_at))?;
        m.serialize_entry("tags", &i.tags)?;
        m.serialize_entry("self", &format_args!("/v2/images/{id}"))?;
        m.serialize_entry("file", &format_args!("/v2/images/{id}/file"))?;
        m.serialize_entry("schema", "/v2/schemas/image")?;
        for (k, v) in &i.properties {
            if shown_property(k) {
                m.serialize_entry(k, v)?;
            }
        }
        if stores.multistore
            && let Some(ids) = i.stores_property(stores)
        {
            m.serialize_entry("stores", &ids)?;
        }
        m.end()
    }
}

/// A timestamp as [`isotime`] writes it, without a `String` in between.
struct Iso(DateTime<Utc>);

impl Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(&self.0.format(ISO_FORMAT))
    }
}

/// The JSON bytes of an image's view with these `stores` configured, written without building
/// a map first.
pub fn render(image: &Image, stores: &StoreSet) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    // Serializing strings, numbers and maps into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &Streamed(image, stores));
    Bytes::from(out)
}

/// Rendered views by image id and version (a version names one state of an image, so an
/// entry never goes stale; old versions age out). Bounded by bytes.
pub struct Views {
    rendered: Option<quick_cache::sync::Cache<(ImageId, i64), Bytes, ByLength>>,
    stores: StoreSet,
}

#[derive(Debug, Clone)]
struct ByLength;

impl quick_cache::Weighter<(ImageId, i64), Bytes> for ByLength {
    fn weight(&self, _key: &(ImageId, i64), json: &Bytes) -> u64 {
        json.len() as u64 + 64
    }
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("entries", &self.rendered.as_ref().map(|c| c.len()))
            .finish()
    }
}

impl Views {
    /// A cache of up to about `capacity_bytes` of rendered JSON (0 renders every time) of
    /// images shown with `stores`.
    pub fn new(capacity_bytes: u64, stores: StoreSet) -> Views {
        Views {
            rendered: (capacity_bytes > 0).then(|| {
                let estimated = (capacity_bytes / 1024).clamp(64, 1 << 20) as usize;
                quick_cache::sync::Cache::with_weighter(estimated, capacity_bytes, ByLength)
            }),
            stores,
        }
    }

    /// The JSON of `image`, rendered now (not cached: for an image just written).
    pub fn render(&self, image: &Image) -> Bytes {
        render(image, &self.stores)
    }

    /// The JSON of `image`, rendered now or earlier.
    pub fn of(&self, image: &Image) -> Bytes {
        let Some(cache) = &self.rendered else {
            return self.render(image);
        };
        let key = (image.id, image.version);
        if let Some(json) = cache.get(&key) {
            return json;
        }
        let json = self.render(image);
        cache.insert(key, json.clone());
        json
    }
}

/// The API router's state: the [`App`] plus the rendered-view cache. Handlers that need only
/// the app extract `State<App>` from it.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The control plane's shared state.
    pub app: App,
    /// Rendered image JSON by id and version.
    pub views: std::sync::Arc<Views>,
    /// What the API serves: which versions it advertises and accepts.
    pub features: shared::route::Features,
}

impl ApiState {
    /// The state over `app`, with a view cache as large as the image cache (none when the
    /// image cache is off: then nothing is kept between requests).
    pub fn new(app: App) -> ApiState {
        let capacity = if app.db.cache().coherence() == Coherence::Off {
            0
        } else {
            app.config.database.image_cache_bytes
        };
        ApiState {
            views: std::sync::Arc::new(Views::new(capacity, app.stores.clone())),
            features: shared::route::Features::of(&app.config),
            app,
        }
    }
}

impl FromRef<ApiState> for App {
    fn from_ref(state: &ApiState) -> App {
        state.app.clone()
    }
}

impl FromRef<ApiState> for shared::route::Features {
    fn from_ref(state: &ApiState) -> shared::route::Features {
        state.features
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::image::tests::sample;
    use serde_json::json;

    /// The stores of a configuration without `enabled_backends`.
    pub(crate) fn single() -> StoreSet {
        shared::config::Config::default().stores()
    }

    #[test]
    fn rendered_json_escapes_hides_and_follows_the_version() {
        let mut img = sample();
        img.properties.insert("os_distro".into(), "cirros".into());
        img.properties.insert("self".into(), "shadow".into());
        img.properties
            .insert("os_glance_stage_host".into(), "hidden".into());
        img.properties
            .insert("quote\"d".into(), "a\nb\u{1}é".into());
        img.tags.insert("b".into());
        img.tags.insert("a".into());
        img.size = Some(1 << 40);
        img.name = None;
        let v: Value = serde_json::from_slice(&render(&img, &single())).unwrap();
        assert_eq!(v["quote\"d"], "a\nb\u{1}é");
        assert_eq!(v["self"], format!("/v2/images/{}", img.id));
        assert_eq!(v["size"], json!(1u64 << 40));
        assert_eq!(v["name"], Value::Null);
        assert_eq!(v["tags"], json!(["a", "b"]));
        assert!(v.get("os_glance_stage_host").is_none());
        let views = Views::new(1 << 20, single());
        assert_eq!(views.of(&img), render(&img, &single()));
        assert_eq!(views.of(&img), render(&img, &single()));
        // a new version is rendered anew, not served from the cache
        img.version += 1;
        img.name = Some("changed".into());
        let v: Value = serde_json::from_slice(&views.of(&img)).unwrap();
        assert_eq!(v["name"], "changed");
        assert_eq!(Views::new(0, single()).of(&img), render(&img, &single()));
    }

    #[test]
    fn shape() {
        let mut img = sample();
        img.properties.insert("os_distro".into(), "cirros".into());
        img.properties
            .insert("os_glance_stage_host".into(), "hidden".into());
        img.tags.insert("b".into());
        img.tags.insert("a".into());
        img.locations = vec![crate::domain::location::tests::loc("secret", 0)];
        let v = ImageView::of(&img, &single()).into_value();
        let want = [
            "id",
            "name",
            "status",
            "visibility",
            "protected",
            "os_hidden",
            "checksum",
            "os_hash_algo",
            "os_hash_value",
            "owner",
            "size",
            "virtual_size",
            "min_disk",
            "min_ram",
            "container_format",
            "disk_format",
            "created_at",
            "updated_at",
            "tags",
            "self",
            "file",
            "schema",
        ];
        for k in want {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v.as_object().unwrap().len(), want.len() + 1, "{v}");
        assert_eq!(v["os_distro"], "cirros");
        assert_eq!(v["size"], Value::Null);
        assert_eq!(v["checksum"], Value::Null);
        assert_eq!(v["created_at"], "2026-01-02T03:04:05Z");
        assert_eq!(v["tags"], json!(["a", "b"]));
        assert_eq!(v["self"], "/v2/images/0b3a8c7e-1234-4321-abcd-0123456789ab");
        assert_eq!(
            v["file"],
            "/v2/images/0b3a8c7e-1234-4321-abcd-0123456789ab/file"
        );
        assert_eq!(v["schema"], "/v2/schemas/image");
        assert!(!v.to_string().contains("secret"));
        assert!(
            v.get("stores").is_none(),
            "no stores key without multi-store"
        );
    }

    #[test]
    fn stores_with_multistore_only_active_best_first() {
        let cfg = shared::config::Config::from_toml(
            r#"
enabled_backends = "slow:file, fast:file"
[glance_store]
default_backend = "slow"
[backends.slow]
filesystem_store_datadir = "/s"
[backends.fast]
filesystem_store_datadir = "/f"
weight = 5
"#,
        )
        .unwrap();
        let multi = cfg.stores();
        let mut img = sample();
        let v = ImageView::of(&img, &multi).into_value();
        assert!(v.get("stores").is_none(), "no locations, no stores: {v}");
        use crate::domain::location::tests::loc;
        img.locations = vec![loc("slow", 0), loc("fast", 1), loc("gone", 2)];
        img.locations[2].status = crate::domain::LocationStatus::PendingDelete;
        let v = ImageView::of(&img, &multi).into_value();
        assert_eq!(v["stores"], "fast,slow");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 23, "{v}");
        assert!(!v.to_string().contains("file:///"), "{v}");
        // the same image in a single-store deployment
        assert!(ImageView::of(&img, &single()).0.get("stores").is_none());
    }

    #[test]
    fn custom_properties_cannot_shadow_base_ones() {
        let mut img = sample();
        img.properties.insert("status".into(), "active".into());
        let v = ImageView::of(&img, &single()).into_value();
        assert_eq!(v["status"], "queued");
    }
}
