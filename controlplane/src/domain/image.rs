//! The [`Image`] entity: every base property, custom properties and tags, and the
//! lifecycle steps Glance names (delete, deactivate, reactivate, restore). Each status change
//! goes through [`Image::transition`], which takes its rule from [`super::status`].

use super::Error;
use super::location::Location;
use chrono::{DateTime, Utc};
use shared::image::{ImageId, ImageStatus, Visibility};
use std::collections::{BTreeMap, BTreeSet};

/// An image record as the control plane reasons about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Identifier; never reused.
    pub id: ImageId,
    /// Descriptive name, at most 255 characters.
    pub name: Option<String>,
    /// Lifecycle status.
    pub status: ImageStatus,
    /// Who can see the image.
    pub visibility: Visibility,
    /// Blocks delete when true.
    pub protected: bool,
    /// Left out of default lists when true.
    pub os_hidden: bool,
    /// Owning project id.
    pub owner: Option<String>,
    /// Stored bytes, once data exists.
    pub size: Option<u64>,
    /// Virtual disk size in bytes, when known.
    pub virtual_size: Option<u64>,
    /// md5 hex digest of the data.
    pub checksum: Option<String>,
    /// Algorithm of `os_hash_value`.
    pub os_hash_algo: Option<String>,
    /// Hex digest of the data with `os_hash_algo`.
    pub os_hash_value: Option<String>,
    /// Minimum disk in GB.
    pub min_disk: i64,
    /// Minimum RAM in MB.
    pub min_ram: i64,
    /// Container format, one of the configured values.
    pub container_format: Option<String>,
    /// Disk format, one of the configured values.
    pub disk_format: Option<String>,
    /// Where the data lives, in position order (every status: see [`super::location`]);
    /// never shown to clients except as the `stores` property.
    pub locations: Vec<Location>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last modification time.
    pub updated_at: DateTime<Utc>,
    /// Deletion time, for deleted images.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Tags (a set).
    pub tags: BTreeSet<String>,
    /// Custom string properties.
    pub properties: BTreeMap<String, String>,
    /// Optimistic-concurrency version as read from the database.
    pub version: i64,
}

impl Image {
    /// Whether the image is deleted: `deleted`, or `pending_delete` (Glance marks those
    /// rows deleted too; only the scrubber and a restore still see them). The row is kept
    /// forever so the id is never reused.
    pub fn is_deleted(&self) -> bool {
        matches!(
            self.status,
            ImageStatus::Deleted | ImageStatus::PendingDelete
        )
    }

    /// Forgets everything derived from uploaded data (what a move into `queued` does, see
    /// [`super::status::DataChange::Clear`]). Locations are not data-derived fields: an image
    /// that can enter `queued` has no active one (a location is added only by the commit
    /// into `active`).
    pub fn clear_data(&mut self) {
        self.size = None;
        self.virtual_size = None;
        self.checksum = None;
        self.os_hash_algo = None;
        self.os_hash_value = None;
    }

    /// Marks the image deleted (Glance's `Image.delete`): with `delayed` and data present it
    /// becomes `pending_delete` (data and locations kept for the scrubber), else `deleted`,
    /// and its active locations start being removed ([`Image::retire_locations`]).
    pub fn delete(&mut self, now: DateTime<Utc>, delayed: bool) -> Result<(), Error> {
        if self.protected {
            return Err(Error::Protected(self.id));
        }
        let to = if delayed && self.has_data() {
            ImageStatus::PendingDelete
        } else {
            ImageStatus::Deleted
        };
        self.transition(to)?;
        if to == ImageStatus::Deleted {
            self.retire_locations();
        }
        self.deleted_at = Some(now);
        self.updated_at = now;
        Ok(())
    }

    /// Glance's `Image.deactivate`: `active → deactivated`; already deactivated is a no-op
    /// (returns false); any other status is refused (403).
    pub fn deactivate(&mut self) -> Result<bool, Error> {
        match self.status {
            ImageStatus::Active => {
                self.transition(ImageStatus::Deactivated)?;
                Ok(true)
            }
            ImageStatus::Deactivated => Ok(false),
            other => Err(Error::Forbidden(format!(
                "Not allowed to deactivate image in status '{other}'"
            ))),
        }
    }

    /// Glance's `Image.reactivate`: `deactivated → active`; already active is a no-op.
    pub fn reactivate(&mut self) -> Result<bool, Error> {
        match self.status {
            ImageStatus::Deactivated => {
                self.transition(ImageStatus::Active)?;
                Ok(true)
            }
            ImageStatus::Active => Ok(false),
            other => Err(Error::Forbidden(format!(
                "Not allowed to reactivate image in status '{other}'"
            ))),
        }
    }

    /// `glance-scrubber --restore`: `pending_delete → active`, undeleted.
    pub fn restore(&mut self) -> Result<(), Error> {
        if self.status != ImageStatus::PendingDelete {
            return Err(Error::Conflict(format!(
                "Image {} is not pending delete (status {}).",
                self.id, self.status
            )));
        }
        self.transition(ImageStatus::Active)?;
        self.deleted_at = None;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A queued image with fixed timestamps, for tests across the crate.
    pub(crate) fn sample() -> Image {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        Image {
            id: "0b3a8c7e-1234-4321-abcd-0123456789ab".parse().unwrap(),
            name: Some("cirros".into()),
            status: ImageStatus::Queued,
            visibility: Visibility::Shared,
            protected: false,
            os_hidden: false,
            owner: Some("p1".into()),
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            min_disk: 0,
            min_ram: 0,
            container_format: None,
            disk_format: None,
            locations: Vec::new(),
            created_at: t,
            updated_at: t,
            deleted_at: None,
            tags: BTreeSet::new(),
            properties: BTreeMap::new(),
            version: 0,
        }
    }

    #[test]
    fn saving_needs_both_formats() {
        let mut img = sample();
        let err = img.transition(ImageStatus::Saving).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Properties disk_format, container_format must be set prior to saving data."
        );
        img.disk_format = Some("raw".into());
        assert!(matches!(
            img.transition(ImageStatus::Saving),
            Err(Error::FormatsMissing { .. })
        ));
        img.container_format = Some("bare".into());
        img.transition(ImageStatus::Saving).unwrap();
        assert_eq!(img.status, ImageStatus::Saving);
    }

    #[test]
    fn back_to_queued_clears_data() {
        let mut img = sample();
        img.status = ImageStatus::Saving;
        img.size = Some(3);
        img.checksum = Some("x".into());
        img.transition(ImageStatus::Queued).unwrap();
        assert_eq!((img.size, img.checksum), (None, None));
    }

    #[test]
    fn delete_rules() {
        let mut img = sample();
        img.protected = true;
        assert!(matches!(
            img.delete(Utc::now(), false),
            Err(Error::Protected(_))
        ));
        img.protected = false;
        img.delete(Utc::now(), true).unwrap();
        // no data: delayed delete deletes at once
        assert_eq!(img.status, ImageStatus::Deleted);
        assert!(img.is_deleted() && img.deleted_at.is_some());
        assert!(matches!(
            img.delete(Utc::now(), false),
            Err(Error::InvalidTransition { .. })
        ));

        let mut img = sample();
        img.status = ImageStatus::Active;
        img.locations = vec![crate::domain::location::tests::loc("file", 0)];
        let active = img.clone();
        img.delete(Utc::now(), true).unwrap();
        assert_eq!(img.status, ImageStatus::PendingDelete);
        assert!(img.is_deleted());
        // delayed: the data stays until the scrubber's pass
        assert_eq!(img.locations, active.locations);
        img.restore().unwrap();
        assert_eq!((img.status, img.deleted_at), (ImageStatus::Active, None));
        assert!(matches!(img.restore(), Err(Error::Conflict(_))));
        // at once: every active location starts being removed
        img.delete(Utc::now(), false).unwrap();
        assert_eq!(img.status, ImageStatus::Deleted);
        assert_eq!(
            img.locations[0].status,
            crate::domain::location::LocationStatus::PendingDelete
        );
    }

    #[test]
    fn deactivate_and_reactivate() {
        let mut img = sample();
        assert!(matches!(img.deactivate(), Err(Error::Forbidden(_))));
        assert!(matches!(img.reactivate(), Err(Error::Forbidden(_))));
        img.status = ImageStatus::Active;
        assert!(!img.reactivate().unwrap());
        assert!(img.deactivate().unwrap());
        assert_eq!(img.status, ImageStatus::Deactivated);
        assert!(!img.deactivate().unwrap());
        assert!(img.reactivate().unwrap());
        assert_eq!(img.status, ImageStatus::Active);
    }
}
