//! [`ImageView`]: the Glance JSON of an image (GLANCE-API.md §2.1).
//!
//! Every base property is always present (null when unset); custom properties are flattened
//! into the top level; `self`, `file` and `schema` are relative links; timestamps are ISO 8601
//! at second precision with a `Z`. `locations` (each `url` and `metadata`: `{"store": id}`
//! with multi-store, else `{}`; always present, `[]` when none) and `direct_url` (the best
//! location's URL, only when there is one) are shown as Glance's `show_multiple_locations` and
//! `show_image_direct_url` say, to the callers [`LocationDisplay`] lets see them, never for a
//! deactivated image to a caller who is not an admin; with multi-store the image's `stores`
//! (the store ids of its active locations, best first, comma-joined) comes last, as Glance
//! appends it (`ResponseSerializer._format_image`), and only when there is one.
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
use crate::policy::Context;
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

/// What of an image's locations one view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shown {
    /// `locations`.
    pub locations: bool,
    /// `direct_url`.
    pub direct_url: bool,
    /// Both as if the image had no location (a deactivated image to a caller who is not an
    /// admin).
    pub emptied: bool,
}

impl Shown {
    /// Neither key (Glance's default).
    pub const NONE: Shown = Shown {
        locations: false,
        direct_url: false,
        emptied: false,
    };

    /// The view's variant in the cache key.
    fn bits(self) -> u8 {
        u8::from(self.locations) | u8::from(self.direct_url) << 1 | u8::from(self.emptied) << 2
    }
}

/// Who sees locations, from the configuration: Glance's `show_multiple_locations` and
/// `show_image_direct_url`, and glint's `show_locations_only_to_services` (only requests with
/// a valid service token carrying the `service` role see them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocationDisplay {
    shown: Shown,
    only_to_services: bool,
}

impl LocationDisplay {
    /// As `config` says.
    pub fn of(config: &shared::config::Config) -> LocationDisplay {
        LocationDisplay {
            shown: Shown {
                locations: config.show_multiple_locations,
                direct_url: config.show_image_direct_url,
                emptied: false,
            },
            only_to_services: config.show_locations_only_to_services,
        }
    }

    /// Whether `ctx` may see locations at all (the view's keys, `GET …/locations`).
    pub fn may_see(&self, ctx: &Context) -> bool {
        !self.only_to_services || ctx.is_service()
    }

    /// Whether `ctx` may change locations with `PATCH` (Glance: only while they are shown).
    pub fn may_patch(&self, ctx: &Context) -> bool {
        self.shown.locations && self.may_see(ctx)
    }

    /// What a view of `image` shows `ctx`.
    pub fn for_caller(&self, ctx: &Context, image: &Image) -> Shown {
        if !self.may_see(ctx) {
            return Shown::NONE;
        }
        let mut shown = self.shown;
        shown.emptied = (shown.locations || shown.direct_url) && hidden_from(ctx, image);
        shown
    }
}

/// Whether `image`'s locations are kept from `ctx` whatever the options: a deactivated image
/// to a caller who is not an admin (Glance lists none).
pub fn hidden_from(ctx: &Context, image: &Image) -> bool {
    image.status == shared::image::ImageStatus::Deactivated && !ctx.is_admin
}

/// One location as `locations` and `GET /v2/images/{id}/locations` show it.
#[derive(Debug, Serialize)]
pub struct LocationView<'a> {
    /// The store URL.
    pub url: &'a str,
    /// `{"store": id}` with multi-store, else `{}`.
    pub metadata: LocationMetadata<'a>,
}

/// A location's `metadata`.
#[derive(Debug, Serialize)]
pub struct LocationMetadata<'a> {
    /// The store holding it (multi-store only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'a str>,
}

/// The image's active locations as shown, best first.
pub fn location_views<'a>(image: &'a Image, stores: &StoreSet) -> Vec<LocationView<'a>> {
    image
        .locations_best_first(stores)
        .into_iter()
        .map(|l| LocationView {
            url: &l.url,
            metadata: LocationMetadata {
                store: stores.multistore.then_some(l.store.as_str()),
            },
        })
        .collect()
}

impl ImageView {
    /// Renders `image` as shown with `stores`, no location shown: the object [`render`]
    /// writes, as a map.
    pub fn of(image: &Image, stores: &StoreSet) -> ImageView {
        match serde_json::from_slice(&render(image, stores, Shown::NONE)) {
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
struct Streamed<'a>(&'a Image, &'a StoreSet, Shown);

impl Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let (i, stores, shown) = (self.0, self.1, self.2);
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
        if shown.locations || shown.direct_url {
            let locations = if shown.emptied {
                Vec::new()
            } else {
                location_views(i, stores)
            };
            if shown.direct_url
                && let Some(best) = locations.first()
            {
                m.serialize_entry("direct_url", best.url)?;
            }
            if shown.locations {
                m.serialize_entry("locations", &locations)?;
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

/// The JSON bytes of an image's view with these `stores` configured, showing what `shown`
/// says of its locations, written without building a map first.
pub fn render(image: &Image, stores: &StoreSet, shown: Shown) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    // Serializing strings, numbers and maps into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &Streamed(image, stores, shown));
    Bytes::from(out)
}

/// A cached view: the image, its version and what it shows of the locations.
type ViewKey = (ImageId, i64, u8);

/// Rendered views by image id and version (a version names one state of an image, so an
/// entry never goes stale; old versions age out) and location variant. Bounded by bytes.
pub struct Views {
    rendered: Option<quick_cache::sync::Cache<ViewKey, Bytes, ByLength>>,
    stores: StoreSet,
    locations: LocationDisplay,
}

#[derive(Debug, Clone)]
struct ByLength;

impl quick_cache::Weighter<ViewKey, Bytes> for ByLength {
    fn weight(&self, _key: &ViewKey, json: &Bytes) -> u64 {
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
    /// images shown with `stores`, their locations as `locations` says.
    pub fn new(capacity_bytes: u64, stores: StoreSet, locations: LocationDisplay) -> Views {
        Views {
            rendered: (capacity_bytes > 0).then(|| {
                let estimated = (capacity_bytes / 1024).clamp(64, 1 << 20) as usize;
                quick_cache::sync::Cache::with_weighter(estimated, capacity_bytes, ByLength)
            }),
            stores,
            locations,
        }
    }

    /// Who sees locations.
    pub fn locations(&self) -> &LocationDisplay {
        &self.locations
    }

    /// The JSON of `image` as `ctx` sees it, rendered now (not cached: for an image just
    /// written).
    pub fn render(&self, image: &Image, ctx: &Context) -> Bytes {
        render(image, &self.stores, self.locations.for_caller(ctx, image))
    }

    /// The JSON of `image` as `ctx` sees it, rendered now or earlier.
    pub fn of(&self, image: &Image, ctx: &Context) -> Bytes {
        let shown = self.locations.for_caller(ctx, image);
        let Some(cache) = &self.rendered else {
            return render(image, &self.stores, shown);
        };
        let key = (image.id, image.version, shown.bits());
        if let Some(json) = cache.get(&key) {
            return json;
        }
        let json = render(image, &self.stores, shown);
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
            views: std::sync::Arc::new(Views::new(
                capacity,
                app.stores.clone(),
                LocationDisplay::of(&app.config),
            )),
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
        let v: Value = serde_json::from_slice(&render(&img, &single(), Shown::NONE)).unwrap();
        assert_eq!(v["quote\"d"], "a\nb\u{1}é");
        assert_eq!(v["self"], format!("/v2/images/{}", img.id));
        assert_eq!(v["size"], json!(1u64 << 40));
        assert_eq!(v["name"], Value::Null);
        assert_eq!(v["tags"], json!(["a", "b"]));
        assert!(v.get("os_glance_stage_host").is_none());
        let none = LocationDisplay::default();
        let ctx = Context::default();
        let views = Views::new(1 << 20, single(), none);
        let plain = render(&img, &single(), Shown::NONE);
        assert_eq!(views.of(&img, &ctx), plain);
        assert_eq!(views.of(&img, &ctx), plain);
        // a new version is rendered anew, not served from the cache
        img.version += 1;
        img.name = Some("changed".into());
        let v: Value = serde_json::from_slice(&views.of(&img, &ctx)).unwrap();
        assert_eq!(v["name"], "changed");
        let uncached = Views::new(0, single(), none).of(&img, &ctx);
        assert_eq!(uncached, render(&img, &single(), Shown::NONE));
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

    /// Two filesystem stores, `fast` (weight 5) and `slow` (the default), and `top` (more
    /// top-level settings).
    fn two_stores(top: &str) -> shared::config::Config {
        let toml = format!(
            "enabled_backends = \"slow:file, fast:file\"\n{top}\
             [glance_store]\ndefault_backend = \"slow\"\n\
             [backends.slow]\nfilesystem_store_datadir = \"/s\"\n\
             [backends.fast]\nfilesystem_store_datadir = \"/f\"\nweight = 5\n"
        );
        shared::config::Config::from_toml(&toml).unwrap()
    }

    #[test]
    fn stores_with_multistore_only_active_best_first() {
        let multi = two_stores("").stores();
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

    fn display(toml: &str) -> LocationDisplay {
        LocationDisplay::of(&shared::config::Config::from_toml(toml).unwrap())
    }

    #[test]
    fn locations_and_direct_url_as_the_options_say_to_whom_they_say() {
        use crate::domain::location::tests::loc;
        let mut img = sample();
        img.status = shared::image::ImageStatus::Active;
        img.locations = vec![loc("a", 0), loc("b", 1)];
        let user = Context {
            roles: vec!["member".into(), "reader".into()],
            project_id: Some("p".into()),
            ..Context::default()
        };
        let admin = Context {
            is_admin: true,
            ..user.clone()
        };
        let service = Context {
            service_roles: vec!["service".into()],
            ..user.clone()
        };
        let view = |d: LocationDisplay, img: &Image, ctx: &Context| -> Value {
            serde_json::from_slice(&Views::new(1 << 20, single(), d).of(img, ctx)).unwrap()
        };
        // Glance's defaults: neither key
        let v = view(LocationDisplay::default(), &img, &user);
        assert!(
            v.get("locations").is_none() && v.get("direct_url").is_none(),
            "{v}"
        );
        // both options
        let both = display("show_multiple_locations = true\nshow_image_direct_url = true");
        let v = view(both, &img, &user);
        let first = img.locations[0].url.clone();
        assert_eq!(v["direct_url"], first.as_str(), "{v}");
        assert_eq!(
            v["locations"],
            json!([{"url": first, "metadata": {}}, {"url": img.locations[1].url, "metadata": {}}])
        );
        // only direct_url; only locations
        let v = view(display("show_image_direct_url = true"), &img, &user);
        assert!(
            v.get("locations").is_none() && v["direct_url"] == first.as_str(),
            "{v}"
        );
        let v = view(display("show_multiple_locations = true"), &img, &user);
        assert!(
            v.get("direct_url").is_none() && v["locations"].is_array(),
            "{v}"
        );
        // no data: locations [], no direct_url
        let mut queued = img.clone();
        queued.locations.clear();
        let v = view(both, &queued, &user);
        assert_eq!(v["locations"], json!([]), "{v}");
        assert!(v.get("direct_url").is_none(), "{v}");
        // deactivated: hidden from users, shown to admins (one cache, two views)
        let mut off = img.clone();
        off.status = shared::image::ImageStatus::Deactivated;
        let views = Views::new(1 << 20, single(), both);
        let v: Value = serde_json::from_slice(&views.of(&off, &user)).unwrap();
        assert_eq!(v["locations"], json!([]), "{v}");
        assert!(v.get("direct_url").is_none(), "{v}");
        let v: Value = serde_json::from_slice(&views.of(&off, &admin)).unwrap();
        assert_eq!(v["locations"].as_array().unwrap().len(), 2, "{v}");
        // only to services: users and admins see neither key, a service token sees both
        let ossn = display(
            "show_multiple_locations = true\nshow_image_direct_url = true\n\
             show_locations_only_to_services = true",
        );
        let views = Views::new(1 << 20, single(), ossn);
        for ctx in [&user, &admin] {
            let v: Value = serde_json::from_slice(&views.of(&img, ctx)).unwrap();
            assert!(
                v.get("locations").is_none() && v.get("direct_url").is_none(),
                "{v}"
            );
            assert!(!v.to_string().contains("file://"), "{v}");
        }
        let v: Value = serde_json::from_slice(&views.of(&img, &service)).unwrap();
        assert_eq!(v["direct_url"], first.as_str(), "{v}");
        assert!(ossn.may_see(&service) && !ossn.may_see(&admin));
    }

    #[test]
    fn locations_name_their_store_with_multistore() {
        let cfg = two_stores("show_multiple_locations = true\nshow_image_direct_url = true\n");
        use crate::domain::location::tests::loc;
        let mut img = sample();
        img.locations = vec![loc("slow", 0), loc("fast", 1)];
        let views = Views::new(0, cfg.stores(), LocationDisplay::of(&cfg));
        let v: Value = serde_json::from_slice(&views.of(&img, &Context::default())).unwrap();
        let fast = img.locations[1].url.as_str();
        assert_eq!(v["direct_url"], fast, "the heavier store first: {v}");
        assert_eq!(
            v["locations"][0],
            json!({"url": fast, "metadata": {"store": "fast"}})
        );
        assert_eq!(v["locations"][1]["metadata"], json!({"store": "slow"}));
    }

    #[test]
    fn custom_properties_cannot_shadow_base_ones() {
        let mut img = sample();
        img.properties.insert("status".into(), "active".into());
        let v = ImageView::of(&img, &single()).into_value();
        assert_eq!(v["status"], "queued");
    }
}
