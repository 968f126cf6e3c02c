//! Where an image's data lives: its [`Location`]s, one per copy (one per store that holds it).
//!
//! A location's [`LocationStatus`] says what the data there is for:
//!
//! 1. `active`: it serves downloads and shows in the `stores` property. An upload commit adds
//!    one (the store the data plane wrote to).
//! 2. `pending_delete`: the data is being removed. A location only ever enters this status
//!    together with a `delete_data` job for the data plane (`db::jobs`), in one transaction,
//!    so nothing is forgotten if a process dies: the image was deleted (at once, or by the
//!    scrubber after `scrub_time` with delayed delete), or one store's copy was removed
//!    (`DELETE /v2/stores/{store_id}/{image_id}`, or the legacy `PATCH` `remove` of
//!    `/locations/<N>`: [`Image::remove_location`]).
//! 3. `deleted`: the data plane reported the job done; the row stays as history.
//!
//! With delayed delete a `pending_delete` *image* keeps its locations `active` until the
//! scrubber's pass (they are not served: the image is deleted to clients), so a restore needs
//! to touch no location. Each location is identified within its image by its `position`
//! (insertion order, never reused). URLs never carry credentials ([`check_url`]).

use super::{Error, Image};
use shared::config::StoreSet;
use shared::image::ImageStatus;

/// What a location's data is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocationStatus {
    /// Served.
    Active,
    /// Being removed by a `delete_data` job.
    PendingDelete,
    /// Removed.
    Deleted,
    /// Its data failed verification (the auditor found it no longer matching the image's
    /// block hashes): never served again; removed with the image like an active one.
    Quarantined,
}

impl LocationStatus {
    /// The stored word (Glance's).
    pub fn as_str(self) -> &'static str {
        match self {
            LocationStatus::Active => "active",
            LocationStatus::PendingDelete => "pending_delete",
            LocationStatus::Deleted => "deleted",
            LocationStatus::Quarantined => "quarantined",
        }
    }
}

impl std::str::FromStr for LocationStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<LocationStatus, ()> {
        match s {
            "active" => Ok(LocationStatus::Active),
            "pending_delete" => Ok(LocationStatus::PendingDelete),
            "deleted" => Ok(LocationStatus::Deleted),
            "quarantined" => Ok(LocationStatus::Quarantined),
            _ => Err(()),
        }
    }
}

/// One copy of an image's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The store URL (`file:///…`, `s3://…`); never shown to clients, never with credentials.
    pub url: String,
    /// The id of the store holding it (`enabled_backends` key, or `file`).
    pub store: String,
    /// What the data there is for.
    pub status: LocationStatus,
    /// Its place among the image's locations (0, 1, …; never reused within the image).
    pub position: i64,
}

/// Refuses a location URL that could not be stored: empty, with whitespace or control
/// characters, without a `scheme://`, or carrying credentials (`scheme://user:pw@host/…`):
/// credentials belong in the store's configuration, never in the database.
pub fn check_url(url: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::Invalid(format!("Invalid location: {why}.")));
    if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("empty or contains whitespace");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("not a URL");
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return bad("not a URL");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad("credentials are not allowed in location URLs");
    }
    Ok(())
}

impl Image {
    /// The locations that serve data, in position order.
    pub fn active_locations(&self) -> impl Iterator<Item = &Location> {
        self.locations
            .iter()
            .filter(|l| l.status == LocationStatus::Active)
    }

    /// Whether some store holds the image's data (Glance: `image.locations` is not empty);
    /// quarantined data counts (it is the image's, though none of it is served).
    pub fn has_data(&self) -> bool {
        self.locations.iter().any(|l| {
            matches!(
                l.status,
                LocationStatus::Active | LocationStatus::Quarantined
            )
        })
    }

    /// The active locations, best first: higher store weight first, then by position
    /// (Glance's `sort_image_locations`, a stable sort by weight).
    pub fn locations_best_first(&self, stores: &StoreSet) -> Vec<&Location> {
        let mut active: Vec<&Location> = self.active_locations().collect();
        active.sort_by_key(|l| std::cmp::Reverse(stores.weight(&l.store)));
        active
    }

    /// The active locations, best first, as the channel sends them (a
    /// [`shared::location::List`]); a location that cannot be listed (whitespace in it) is
    /// logged and left out.
    pub fn location_list(&self, stores: &StoreSet) -> String {
        let mut list = shared::location::List::default();
        for l in self.locations_best_first(stores) {
            if let Err(e) = list.push(&l.store, &l.url) {
                tracing::error!(image_id = %self.id, error = %e, "stored location cannot be sent; skipped");
            }
        }
        list.into_string()
    }

    /// The `stores` property with multi-store: the store ids of the active locations, best
    /// first, comma-joined; `None` when there is none.
    pub fn stores_property(&self, stores: &StoreSet) -> Option<String> {
        let ids: Vec<&str> = self
            .locations_best_first(stores)
            .into_iter()
            .map(|l| l.store.as_str())
            .collect();
        (!ids.is_empty()).then(|| ids.join(","))
    }

    /// The position a new location takes.
    pub fn next_location_position(&self) -> i64 {
        self.locations
            .iter()
            .map(|l| l.position + 1)
            .max()
            .unwrap_or(0)
    }

    /// Every active (or quarantined) location starts being removed (the image's data goes).
    pub fn retire_locations(&mut self) {
        for l in &mut self.locations {
            if matches!(
                l.status,
                LocationStatus::Active | LocationStatus::Quarantined
            ) {
                l.status = LocationStatus::PendingDelete;
            }
        }
    }

    /// Glance's `delete_from_store` rules, after the store and policy checks: the image must
    /// be `active` (409), must keep another copy (403), and must have one in `store` (404);
    /// that copy (the first, as Glance pops the first match) starts being removed.
    pub fn remove_from_store(&mut self, store: &str) -> Result<(), Error> {
        if self.status != ImageStatus::Active {
            return Err(Error::Conflict(
                "It's not allowed to remove image data from store if image status is not \
                 'active'"
                    .into(),
            ));
        }
        if self.active_locations().count() == 1 {
            return Err(Error::Forbidden(
                "Cannot delete image data from the only store containing it. Consider \
                 deleting the image instead."
                    .into(),
            ));
        }
        let Some(location) = self
            .locations
            .iter_mut()
            .find(|l| l.status == LocationStatus::Active && l.store == store)
        else {
            return Err(Error::NotFound(format!(
                "Image {} is not stored in store {store}.",
                self.id
            )));
        };
        location.status = LocationStatus::PendingDelete;
        Ok(())
    }
}

impl Image {
    /// Glance's `_do_remove_locations` (`PATCH` `remove` of `/locations/<pos>`, the policy
    /// `delete_image_location` checked by the caller): the location at `pos` of the list as
    /// shown (best first; `-` the last) is no longer the image's and its data is deleted
    /// (`pending_delete`, with its job). 409 unless `active`, 403 for the last location, 400
    /// for a position that is not one.
    pub fn remove_location(&mut self, pos: &str, stores: &StoreSet) -> Result<(), Error> {
        if self.status != ImageStatus::Active {
            return Err(Error::Conflict(format!(
                "It's not allowed to remove locations if image status is {}.",
                self.status.as_str()
            )));
        }
        let shown: Vec<i64> = self
            .locations_best_first(stores)
            .iter()
            .map(|l| l.position)
            .collect();
        if shown.len() == 1 {
            return Err(Error::Forbidden(
                "Cannot remove last location in the image.".into(),
            ));
        }
        let index = if pos == "-" {
            shown.len().checked_sub(1)
        } else if !pos.is_empty() && pos.bytes().all(|b| b.is_ascii_digit()) {
            pos.parse::<usize>().ok().filter(|i| *i < shown.len())
        } else {
            None
        };
        let position = index
            .map(|i| shown[i])
            .ok_or_else(|| Error::Invalid("Invalid position for removing a location.".into()))?;
        for l in &mut self.locations {
            if l.position == position && l.status == LocationStatus::Active {
                l.status = LocationStatus::PendingDelete;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::image::tests::sample;

    pub(crate) fn loc(store: &str, position: i64) -> Location {
        Location {
            url: format!("file:///{store}/{position}"),
            store: store.into(),
            status: LocationStatus::Active,
            position,
        }
    }

    fn stores() -> StoreSet {
        let cfg = shared::config::Config::from_toml(
            r#"
enabled_backends = "slow:file, fast:file, web:http"
[glance_store]
default_backend = "slow"
[backends.slow]
filesystem_store_datadir = "/s"
[backends.fast]
filesystem_store_datadir = "/f"
weight = 10
"#,
        )
        .unwrap();
        StoreSet::from_config(&cfg).unwrap()
    }

    #[test]
    fn urls_without_credentials_only() {
        for ok in [
            "file:///var/lib/glint/images/x",
            "s3+https://s3.example/bucket/k",
            "swift+config://ref1/glance/x",
            "http://example.com/a@b",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "file:///a b",
            "no-scheme",
            "://x",
            "swift+https://user:key@auth/container/x",
            "s3://AKIA:secret@s3.example/bucket/k",
            "http://u@host/x",
            "file:///x\n",
        ] {
            assert!(matches!(check_url(bad), Err(Error::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn best_first_by_weight_then_position() {
        let s = stores();
        let mut img = sample();
        img.locations = vec![loc("slow", 0), loc("web", 1), loc("fast", 2)];
        let order: Vec<&str> = img
            .locations_best_first(&s)
            .iter()
            .map(|l| l.store.as_str())
            .collect();
        assert_eq!(order, ["fast", "slow", "web"]);
        assert_eq!(img.stores_property(&s).as_deref(), Some("fast,slow,web"));
        img.locations[2].status = LocationStatus::PendingDelete;
        assert_eq!(img.stores_property(&s).as_deref(), Some("slow,web"));
        assert_eq!(img.next_location_position(), 3);
        img.retire_locations();
        assert!(!img.has_data());
        assert_eq!(img.stores_property(&s), None);
    }

    #[test]
    fn remove_location_rules() {
        let stores = shared::config::Config::default().stores();
        let mut img = sample();
        img.locations = vec![loc("file", 0), loc("file", 1), loc("file", 2)];
        assert!(matches!(
            img.remove_location("0", &stores),
            Err(Error::Conflict(m)) if m == "It's not allowed to remove locations if image status is queued."
        ));
        img.status = ImageStatus::Active;
        for bad in ["3", "x", "", "+1", "-1"] {
            assert!(
                matches!(img.remove_location(bad, &stores), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
        img.remove_location("1", &stores).unwrap();
        assert_eq!(img.locations[1].status, LocationStatus::PendingDelete);
        // positions count the active ones, as shown: "-" is now the one at 2
        img.remove_location("-", &stores).unwrap();
        assert_eq!(img.locations[2].status, LocationStatus::PendingDelete);
        assert!(matches!(
            img.remove_location("0", &stores),
            Err(Error::Forbidden(m)) if m == "Cannot remove last location in the image."
        ));
        assert_eq!(img.active_locations().count(), 1);
    }

    #[test]
    fn remove_from_store_rules() {
        let mut img = sample();
        img.locations = vec![loc("a", 0), loc("b", 1)];
        assert!(matches!(
            img.remove_from_store("a"),
            Err(Error::Conflict(_))
        ));
        img.status = ImageStatus::Active;
        assert!(matches!(
            img.remove_from_store("c"),
            Err(Error::NotFound(_))
        ));
        img.remove_from_store("a").unwrap();
        assert_eq!(img.locations[0].status, LocationStatus::PendingDelete);
        // the last copy stays, whichever store is named
        for store in ["b", "a", "c"] {
            assert!(matches!(
                img.remove_from_store(store),
                Err(Error::Forbidden(_))
            ));
        }
    }
}
