//! What a request path means, decided once for both planes: the API versions glint
//! advertises, the version prefixes it accepts, and which requests are the data routes.
//!
//! Glance (`glance/api/versions.py`, `glance/api/middleware/version_negotiation.py`) builds
//! its versions document from what is enabled and accepts `/v2.N/…` only for the N it lists;
//! any other first path segment gets the versions document (300). glint does the same from one
//! table, with one more rule: a version is listed only when every endpoint it added is served
//! here, so a client that detects features from the list ("is v2.17 there?", as
//! python-glanceclient does before the location API) never calls an API that answers 404.
//!
//! The data plane routes with [`classify`] and serves [`Route::Upload`] and
//! [`Route::Download`] itself; the control plane rewrites every other path with [`classify`]
//! too, so `PUT /v2.99/images/{id}/file` is the versions document on both.

use crate::config::Config;

/// The optional parts of the API that decide which versions are advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// The image cache API (`/v2/cache…`; Glance: `image_cache_dir` set).
    pub cache: bool,
    /// Multi-store (`enabled_backends`): `/v2/info/stores`, `DELETE /v2/stores/…`.
    pub multistore: bool,
    /// The 2.17 location API (`POST/GET /v2/images/{id}/locations`).
    pub locations: bool,
    /// A store whose data can be in use outside glint (RBD, whose snapshots Nova and Cinder
    /// clone): the data plane checks deletes first ([`Route::Delete`]). Not a version.
    pub clones: bool,
}

impl Features {
    /// What this configuration serves: multi-store with `enabled_backends`, the cache API with
    /// `image_cache_dir`, the location API always.
    pub fn of(config: &Config) -> Features {
        Features {
            locations: true,
            multistore: config.enabled_backends.is_some(),
            cache: config.image_cache.image_cache_dir.is_some(),
            clones: config
                .stores()
                .stores
                .iter()
                .any(|s| matches!(s.kind, crate::config::StoreKind::Rbd(_))),
        }
    }
}

/// What a minor version needs to be advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Cache,
    Multistore,
    Locations,
}

impl Needs {
    fn met(self, f: Features) -> bool {
        match self {
            Needs::Nothing => true,
            Needs::Cache => f.cache,
            Needs::Multistore => f.multistore,
            Needs::Locations => f.locations,
        }
    }
}

/// Glance 33's list in its order, for the cache-enabled layout and the cache-less one (2.17
/// moves). Each entry is (minor version, what it needs). 2.18 added cache clean and prune and
/// is listed with the cache even without 2.17's location API: clients look for the exact
/// version string of the API they call (python-glanceclient asks for `v2.18` before
/// `cache-clean`, for `v2.17` before the location calls), so each finds what is served.
const WITH_CACHE: &[(u8, Needs)] = &[
    (18, Needs::Cache),
    (17, Needs::Locations),
    (16, Needs::Cache),
    (15, Needs::Nothing),
    (14, Needs::Cache),
];
const MULTISTORE: &[(u8, Needs)] = &[
    (13, Needs::Multistore),
    (12, Needs::Multistore),
    (11, Needs::Multistore),
    (10, Needs::Multistore),
    (9, Needs::Nothing),
    (8, Needs::Multistore),
];
const WITHOUT_CACHE: &[(u8, Needs)] = &[(15, Needs::Nothing)];
const SINGLE_STORE: &[(u8, Needs)] = &[(9, Needs::Nothing)];
const LOCATIONS_LAST: &[(u8, Needs)] = &[(17, Needs::Locations)];
const BASE: &[(u8, Needs)] = &[
    (7, Needs::Nothing),
    (6, Needs::Nothing),
    (5, Needs::Nothing),
    (4, Needs::Nothing),
    (3, Needs::Nothing),
    (2, Needs::Nothing),
    (1, Needs::Nothing),
    (0, Needs::Nothing),
];

/// One advertised version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Minor version: 15 for `v2.15`.
    pub minor: u8,
    /// Whether it is the `CURRENT` one (the highest listed); the others are `SUPPORTED`.
    pub current: bool,
}

impl Version {
    /// `CURRENT` or `SUPPORTED`.
    pub fn status(&self) -> &'static str {
        if self.current { "CURRENT" } else { "SUPPORTED" }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v2.{}", self.minor)
    }
}

/// The minor versions listed for `f`, in Glance's order: its layout for the enabled
/// features, less every version whose endpoints glint does not serve. Allocates nothing.
fn listed(f: Features) -> impl Iterator<Item = u8> {
    let (head, tail) = if f.cache {
        (WITH_CACHE, &[][..])
    } else {
        (WITHOUT_CACHE, LOCATIONS_LAST)
    };
    let stores = if f.multistore {
        MULTISTORE
    } else {
        SINGLE_STORE
    };
    [head, stores, tail, BASE]
        .into_iter()
        .flatten()
        .filter(move |(_, needs)| needs.met(f))
        .map(|(minor, _)| *minor)
}

/// The versions document's entries ([`listed`]), the highest `CURRENT`.
pub fn versions(f: Features) -> Vec<Version> {
    let newest = listed(f).max().unwrap_or(0);
    listed(f)
        .map(|minor| Version {
            minor,
            current: minor == newest,
        })
        .collect()
}

/// Whether `segment` (a path's first segment, e.g. `v2.15`) names the v2 API: `v2` or one of
/// the advertised `v2.N` (Glance's `_get_allowed_versions`).
pub fn accepts_prefix(segment: &str, f: Features) -> bool {
    if segment == "v2" {
        return true;
    }
    let Some(minor) = segment.strip_prefix("v2.") else {
        return false;
    };
    // Glance matches the exact string: `v2.015` or `v2.+1` are not `v2.15`.
    let canonical = minor == "0" || (!minor.starts_with('0') && !minor.is_empty());
    canonical
        && minor.bytes().all(|b| b.is_ascii_digit())
        && minor.parse::<u8>().is_ok_and(|m| listed(f).any(|v| v == m))
}

/// The `Accept` media type that names the API version instead of the path
/// (`application/vnd.openstack.images-v2.1`, Glance's media-type versioning).
const VND: &str = "application/vnd.openstack.images-";

/// Where a request goes, from its path (and `Accept` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path<'a> {
    /// `/versions`: the versions document, 200.
    Versions,
    /// A path under an accepted version; `rest` is what follows the prefix (`/images/…`,
    /// possibly empty), to be served as `/v2{rest}`.
    V2 {
        /// The path after the version prefix.
        rest: &'a str,
    },
    /// No accepted version: the versions document, 300.
    Choices,
}

/// Decides what `path` means: Glance's version negotiation. `accept` is the request's
/// `Accept` header; a `…images-v2…` media type selects the version and leaves the path whole.
pub fn negotiate<'a>(path: &'a str, accept: Option<&str>, f: Features) -> Path<'a> {
    let trimmed = path.trim_start_matches('/');
    let (first, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    if first == "versions" {
        return Path::Versions;
    }
    if let Some(v) = accept.and_then(|a| a.strip_prefix(VND)) {
        return if accepts_prefix(v, f) {
            // the whole path is the resource: `/images/…`
            Path::V2 { rest: path }
        } else {
            Path::Choices
        };
    }
    if accepts_prefix(first, f) {
        Path::V2 { rest }
    } else {
        Path::Choices
    }
}

/// A request the data plane serves itself, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `PUT /v2/images/{id}/file`.
    Upload(&'a str),
    /// `GET /v2/images/{id}/file`.
    Download(&'a str),
    /// `PUT /v2/images/{id}/stage` (import's staging; the data plane checks that
    /// `glance-direct` is enabled).
    Stage(&'a str),
    /// `/v2/cache…` with the cache on (the data plane holds the cache): the action and its
    /// image, or the methods the path allows (405).
    Cache(Result<(crate::channel::CacheAction, Option<&'a str>), &'static str>),
    /// `DELETE /v2/images/{id}` (`store` `None`) or `DELETE /v2/stores/{store}/{id}`, with a
    /// store whose data may be in use outside glint ([`Features::clones`]): checked by the
    /// data plane, then forwarded.
    Delete {
        /// The image id.
        image: &'a str,
        /// The store to delete from.
        store: Option<&'a str>,
    },
    /// Anything else: the control plane's.
    Forward,
}

/// The route of a request, by method, path and `Accept`: the data routes only under an
/// accepted version ([`negotiate`]).
pub fn classify<'a>(method: &str, path: &'a str, accept: Option<&str>, f: Features) -> Route<'a> {
    let Path::V2 { rest } = negotiate(path, accept, f) else {
        return Route::Forward;
    };
    if f.cache
        && let Some(cache) = rest.strip_prefix("/cache")
        && (cache.is_empty() || cache.starts_with('/'))
        && let Some(route) = cache_route(method, cache)
    {
        return Route::Cache(route);
    }
    if f.clones && method == "DELETE" {
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["", "images", id] => {
                return Route::Delete {
                    image: id,
                    store: None,
                };
            }
            ["", "stores", store, id] => {
                return Route::Delete {
                    image: id,
                    store: Some(store),
                };
            }
            _ => {}
        }
    }
    let mut parts = rest.split('/');
    let (Some(""), Some("images"), Some(id), Some(what), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Route::Forward;
    };
    match (what, method) {
        ("file", "PUT") => Route::Upload(id),
        ("file", "GET") => Route::Download(id),
        ("stage", "PUT") => Route::Stage(id),
        _ => Route::Forward,
    }
}

/// The cache API's routes (Glance's `router.py`), `rest` being what follows `/cache`; `None`
/// for a path that is none of them (the control plane's 404).
fn cache_route<'a>(
    method: &str,
    rest: &'a str,
) -> Option<Result<(crate::channel::CacheAction, Option<&'a str>), &'static str>> {
    use crate::channel::CacheAction::*;
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    Some(match (parts.as_slice(), method) {
        ([] | [""], "GET") => Ok((List, None)),
        // the data plane narrows the targets from `x-image-cache-clear-target`
        ([] | [""], "DELETE") => Ok((
            Clear {
                cache: true,
                queue: true,
            },
            None,
        )),
        ([] | [""], _) => Err("GET, DELETE"),
        (["clean"], "POST") => Ok((Clean, None)),
        (["prune"], "POST") => Ok((Prune, None)),
        (["clean" | "prune"], _) => Err("POST"),
        (["nodes", id], "GET") => Ok((Nodes, Some(*id))),
        (["nodes", _], _) => Err("GET"),
        ([id], "DELETE") => Ok((Delete, Some(*id))),
        ([id], "PUT") => Ok((Queue, Some(*id))),
        ([_], _) => Err("DELETE, PUT"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(f: Features) -> Vec<String> {
        versions(f)
            .iter()
            .map(|v| format!("{v} {}", v.status()))
            .collect()
    }

    #[test]
    fn today_v2_15_is_current_and_v2_17_is_not_listed() {
        let list = ids(Features::default());
        assert_eq!(
            list,
            [
                "v2.15 CURRENT",
                "v2.9 SUPPORTED",
                "v2.7 SUPPORTED",
                "v2.6 SUPPORTED",
                "v2.5 SUPPORTED",
                "v2.4 SUPPORTED",
                "v2.3 SUPPORTED",
                "v2.2 SUPPORTED",
                "v2.1 SUPPORTED",
                "v2.0 SUPPORTED"
            ]
        );
    }

    #[test]
    fn deletes_are_the_data_planes_only_with_a_store_of_clones() {
        let id = "0b6d8f43-4b59-4e6e-9a43-6e07c0f9c0a1";
        let clones = Features {
            clones: true,
            ..Features::default()
        };
        let image = format!("/v2/images/{id}");
        let store = format!("/v2/stores/ceph/{id}");
        assert_eq!(
            classify("DELETE", &image, None, Features::default()),
            Route::Forward
        );
        assert_eq!(
            classify("DELETE", &image, None, clones),
            Route::Delete {
                image: id,
                store: None
            }
        );
        assert_eq!(
            classify("DELETE", &store, None, clones),
            Route::Delete {
                image: id,
                store: Some("ceph")
            }
        );
        assert_eq!(classify("GET", &image, None, clones), Route::Forward);
        assert_eq!(
            classify("DELETE", &format!("{image}/tags/x"), None, clones),
            Route::Forward
        );
    }

    #[test]
    fn with_everything_the_list_is_glance_33s() {
        let all = Features {
            cache: true,
            multistore: true,
            locations: true,
            clones: true,
        };
        let list: Vec<String> = versions(all).iter().map(|v| v.to_string()).collect();
        let want = [
            "v2.18", "v2.17", "v2.16", "v2.15", "v2.14", "v2.13", "v2.12", "v2.11", "v2.10",
            "v2.9", "v2.8", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0",
        ];
        assert_eq!(list, want);
        assert_eq!(versions(all)[0].status(), "CURRENT");
        // Glance's layout without the cache: 2.17 CURRENT after 2.9
        let no_cache = Features {
            locations: true,
            ..Features::default()
        };
        assert_eq!(
            ids(no_cache)[..3],
            ["v2.15 SUPPORTED", "v2.9 SUPPORTED", "v2.17 CURRENT"]
        );
        // the cache without the location API: 2.18 (clean, prune) but never 2.17
        let cache = Features {
            cache: true,
            ..Features::default()
        };
        assert_eq!(
            ids(cache)[..4],
            [
                "v2.18 CURRENT",
                "v2.16 SUPPORTED",
                "v2.15 SUPPORTED",
                "v2.14 SUPPORTED"
            ]
        );
        assert!(!ids(cache).iter().any(|v| v.starts_with("v2.17")));
    }

    #[test]
    fn cache_routes_with_the_cache_on() {
        use crate::channel::CacheAction::*;
        let on = Features {
            cache: true,
            ..Features::default()
        };
        let id = "9e2d5f8a-0000-4000-8000-000000000001";
        fn c<'a>(m: &str, p: &'a str) -> Route<'a> {
            let on = Features {
                cache: true,
                ..Features::default()
            };
            classify(m, p, None, on)
        }
        assert!(accepts_prefix("v2.18", on));
        assert_eq!(c("GET", "/v2/cache"), Route::Cache(Ok((List, None))));
        let clear = Clear {
            cache: true,
            queue: true,
        };
        assert_eq!(c("DELETE", "/v2.14/cache"), Route::Cache(Ok((clear, None))));
        let queue = format!("/v2/cache/{id}");
        assert_eq!(c("PUT", &queue), Route::Cache(Ok((Queue, Some(id)))));
        let nodes = format!("/v2/cache/nodes/{id}");
        assert_eq!(c("GET", &nodes), Route::Cache(Ok((Nodes, Some(id)))));
        assert_eq!(
            c("POST", "/v2/cache/prune"),
            Route::Cache(Ok((Prune, None)))
        );
        assert_eq!(c("GET", "/v2/cache/clean"), Route::Cache(Err("POST")));
        assert_eq!(c("POST", "/v2/cache"), Route::Cache(Err("GET, DELETE")));
        assert_eq!(c("GET", "/v2/cached"), Route::Forward);
        assert_eq!(c("GET", "/v2/cache/a/b/c"), Route::Forward);
        // without the cache, the control plane answers (404)
        assert_eq!(
            classify("GET", "/v2/cache", None, Features::default()),
            Route::Forward
        );
    }

    #[test]
    fn only_listed_prefixes_are_accepted() {
        let f = Features::default();
        for ok in ["v2", "v2.0", "v2.1", "v2.7", "v2.9", "v2.15"] {
            assert!(accepts_prefix(ok, f), "{ok}");
        }
        for bad in [
            "v2.8", "v2.17", "v2.99", "v2.", "v2.015", "v2.00", "v2.+1", "v3", "v2.1a", "",
        ] {
            assert!(!accepts_prefix(bad, f), "{bad}");
        }
    }

    #[test]
    fn negotiation() {
        let f = Features::default();
        assert_eq!(negotiate("/versions", None, f), Path::Versions);
        assert_eq!(negotiate("/", None, f), Path::Choices);
        assert_eq!(negotiate("/v3/images", None, f), Path::Choices);
        assert_eq!(
            negotiate("/v2.9/images", None, f),
            Path::V2 { rest: "/images" }
        );
        assert_eq!(negotiate("/v2", None, f), Path::V2 { rest: "" });
        assert_eq!(negotiate("/v2.8/images/x", None, f), Path::Choices);
        let vnd = Some("application/vnd.openstack.images-v2.1");
        assert_eq!(
            negotiate("/images/x", vnd, f),
            Path::V2 { rest: "/images/x" }
        );
        let bad = Some("application/vnd.openstack.images-v2.8");
        assert_eq!(negotiate("/images/x", bad, f), Path::Choices);
    }

    #[test]
    fn data_routes_need_an_accepted_version() {
        let f = Features::default();
        let id = "0b3a8c7e-1234-4321-abcd-0123456789ab";
        fn c<'a>(m: &str, p: &'a str) -> Route<'a> {
            classify(m, p, None, Features::default())
        }
        let p = format!("/v2/images/{id}/file");
        assert_eq!(classify("PUT", &p, None, f), Route::Upload(id));
        let stage = p.replace("/file", "/stage");
        assert_eq!(classify("PUT", &stage, None, f), Route::Stage(id));
        assert_eq!(classify("GET", &stage, None, f), Route::Forward);
        assert_eq!(classify("GET", &p, None, f), Route::Download(id));
        let p15 = format!("/v2.15/images/{id}/file");
        assert_eq!(classify("GET", &p15, None, f), Route::Download(id));
        for bad in [
            format!("/v2.8/images/{id}/file"),
            format!("/v2.99/images/{id}/file"),
            format!("/v2.17/images/{id}/file"),
            format!("/v3/images/{id}/file"),
            format!("/v2./images/{id}/file"),
            format!("/v2/images/{id}/file/x"),
            format!("/v2/images/{id}"),
            "/versions".to_owned(),
        ] {
            assert_eq!(c("PUT", &bad), Route::Forward, "{bad}");
            assert_eq!(c("GET", &bad), Route::Forward, "{bad}");
        }
        assert_eq!(c("DELETE", &p), Route::Forward);
        let vnd = Some("application/vnd.openstack.images-v2.1");
        let bare = format!("/images/{id}/file");
        assert_eq!(classify("GET", &bare, vnd, f), Route::Download(id));
    }
}
