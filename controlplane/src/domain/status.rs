//! Status moves: the one owner of what a status change does to an image.
//!
//! A [`Move`] says which status an image leaves (`from`), which it enters (`to`) and what
//! happens to the fields derived from its data ([`DataChange`]). The domain decides every move
//! here; the database only executes one, as a conditional update that changes nothing unless
//! the image is still in `from` (`db::images::apply_move`), and in-memory images take the same
//! change through [`Move::apply`] ([`Image::transition`] and everything built on it).
//!
//! The upload lifecycle, as the channel server drives it:
//!
//! 1. [`Image::begin_upload`]: `queued → saving`; only from `queued` (409) and only with both
//!    formats set (400).
//! 2. [`Move::commit_upload`]: `saving → active`, recording size, checksums and the new
//!    location (the store the data plane wrote to).
//! 3. [`Move::revert_upload`]: `saving → queued` (aborted, connection lost, or restart);
//!    like every move into `queued` it forgets the data-derived fields.
//!
//! And the scrubber's [`Move::finish_delete`]: `pending_delete → deleted`, the image's active
//! locations starting to be removed (each with its delete job, see [`super::location`]).

use super::{Error, Image, Location, LocationStatus};
use shared::image::ImageStatus;

/// Data recorded when an upload commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedData {
    /// Bytes stored.
    pub size: u64,
    /// md5 hex digest.
    pub checksum: String,
    /// Algorithm name of `os_hash_value`.
    pub os_hash_algo: String,
    /// Hex digest.
    pub os_hash_value: String,
    /// Store URL.
    pub location: String,
    /// The id of the store holding it.
    pub store: String,
    /// What the content inspection found (`None`: not inspected, or no virtual size).
    pub virtual_size: Option<u64>,
    /// The block size of `block_hashes`.
    pub block_size: u64,
    /// The xxh3-64 of each block, 16 hex digits each (empty: none).
    pub block_hashes: String,
}

/// What a move does to the fields derived from the image's data (`size`, `virtual_size`,
/// `checksum`, `os_hash_algo`, `os_hash_value`) and to its locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataChange {
    /// Leaves them as they are.
    Keep,
    /// Records an upload: `size`, `checksum`, `os_hash_algo`, `os_hash_value`, and a new
    /// active location.
    Record(UploadedData),
    /// Forgets the data-derived fields (every move into `queued`, as Glance does).
    Clear,
    /// Every active location starts being removed (the data goes; fields are kept, as
    /// Glance keeps them on deleted images).
    RetireLocations,
}

/// A status change the domain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The status the image must be in for the move to happen.
    pub from: ImageStatus,
    /// The status it enters.
    pub to: ImageStatus,
    /// What happens to its data-derived fields.
    pub data: DataChange,
}

impl Move {
    /// `from → to` if Glance's transition table allows it; entering `queued` clears the data.
    pub fn between(from: ImageStatus, to: ImageStatus) -> Result<Move, Error> {
        if !from.can_become(to) {
            return Err(Error::InvalidTransition { from, to });
        }
        let data = if to == ImageStatus::Queued {
            DataChange::Clear
        } else {
            DataChange::Keep
        };
        Ok(Move { from, to, data })
    }

    /// A move of the upload lifecycle; each is in Glance's table (the moves test checks).
    fn fixed(from: ImageStatus, to: ImageStatus, data: DataChange) -> Move {
        debug_assert!(from.can_become(to), "{from} → {to}");
        Move { from, to, data }
    }

    /// `saving → active` with the uploaded data.
    pub fn commit_upload(data: UploadedData) -> Move {
        Move::fixed(
            ImageStatus::Saving,
            ImageStatus::Active,
            DataChange::Record(data),
        )
    }

    /// `saving → queued`: the upload did not finish; the data fields are forgotten.
    pub fn revert_upload() -> Move {
        Move::fixed(ImageStatus::Saving, ImageStatus::Queued, DataChange::Clear)
    }

    /// `uploading → queued`: a stage did not finish, or an import failed; the data fields
    /// are forgotten.
    pub fn revert_stage() -> Move {
        Move::fixed(
            ImageStatus::Uploading,
            ImageStatus::Queued,
            DataChange::Clear,
        )
    }

    /// `importing → active` with the data an import wrote into its (last) store.
    pub fn commit_import(data: UploadedData) -> Move {
        Move::fixed(
            ImageStatus::Importing,
            ImageStatus::Active,
            DataChange::Record(data),
        )
    }

    /// `pending_delete → deleted` by the scrubber after `scrub_time`: the data goes.
    pub fn finish_delete() -> Move {
        Move::fixed(
            ImageStatus::PendingDelete,
            ImageStatus::Deleted,
            DataChange::RetireLocations,
        )
    }

    /// Makes the move on an in-memory image: the same change the database makes to the row.
    pub fn apply(&self, image: &mut Image) {
        image.status = self.to;
        match &self.data {
            DataChange::Keep => {}
            DataChange::Record(d) => {
                image.size = Some(d.size);
                image.virtual_size = d.virtual_size;
                image.checksum = Some(d.checksum.clone());
                image.os_hash_algo = Some(d.os_hash_algo.clone());
                image.os_hash_value = Some(d.os_hash_value.clone());
                let position = image.next_location_position();
                image.locations.push(Location {
                    url: d.location.clone(),
                    store: d.store.clone(),
                    status: LocationStatus::Active,
                    position,
                });
            }
            DataChange::Clear => image.clear_data(),
            DataChange::RetireLocations => image.retire_locations(),
        }
    }
}

impl Image {
    /// The move `self.status → to`: Glance's table, and entering `saving`/`active`/`importing`
    /// from `queued`/`uploading` needs both formats (400 otherwise).
    pub fn plan(&self, to: ImageStatus) -> Result<Move, Error> {
        let step = Move::between(self.status, to)?;
        if matches!(self.status, ImageStatus::Queued | ImageStatus::Uploading)
            && matches!(
                to,
                ImageStatus::Saving | ImageStatus::Active | ImageStatus::Importing
            )
        {
            let (disk_format, container_format) =
                (self.disk_format.is_none(), self.container_format.is_none());
            if disk_format || container_format {
                return Err(Error::FormatsMissing {
                    disk_format,
                    container_format,
                });
            }
        }
        Ok(step)
    }

    /// Moves to `to` by [`Image::plan`].
    pub fn transition(&mut self, to: ImageStatus) -> Result<(), Error> {
        self.plan(to)?.apply(self);
        Ok(())
    }

    /// The move that starts an upload: `queued → saving`. Any other current status is
    /// [`Error::InvalidTransition`] (409); missing formats are [`Error::FormatsMissing`]
    /// (400) — the only two refusals.
    pub fn begin_upload(&self) -> Result<Move, Error> {
        if self.status != ImageStatus::Queued {
            return Err(Error::InvalidTransition {
                from: self.status,
                to: ImageStatus::Saving,
            });
        }
        self.plan(ImageStatus::Saving)
    }

    /// The move that starts a stage (`PUT …/stage`): `queued → uploading`; any other status is
    /// [`Error::InvalidTransition`] (409). The formats may still be unset (the import checks
    /// them).
    pub fn begin_stage(&self) -> Result<Move, Error> {
        if self.status != ImageStatus::Queued {
            return Err(Error::InvalidTransition {
                from: self.status,
                to: ImageStatus::Uploading,
            });
        }
        self.plan(ImageStatus::Uploading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::sample;

    fn data() -> UploadedData {
        UploadedData {
            size: 3,
            checksum: "c".into(),
            os_hash_algo: "sha512".into(),
            os_hash_value: "h".into(),
            location: "file:///x".into(),
            store: "file".into(),
            virtual_size: Some(64),
            block_size: 4,
            block_hashes: "0123456789abcdef".into(),
        }
    }

    /// An image in `status` that has data (and both formats).
    fn with_data(status: ImageStatus) -> Image {
        let mut img = sample();
        img.status = status;
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img.size = Some(9);
        img.virtual_size = Some(10);
        img.checksum = Some("old".into());
        img.os_hash_algo = Some("sha256".into());
        img.os_hash_value = Some("old".into());
        img.locations = vec![Location {
            url: "file:///old".into(),
            store: "file".into(),
            status: LocationStatus::Active,
            position: 0,
        }];
        img
    }

    type Fields = (
        Option<u64>,
        Option<u64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Vec<(String, LocationStatus, i64)>,
    );

    fn fields(i: &Image) -> Fields {
        (
            i.size,
            i.virtual_size,
            i.checksum.clone(),
            i.os_hash_algo.clone(),
            i.os_hash_value.clone(),
            i.locations
                .iter()
                .map(|l| (l.url.clone(), l.status, l.position))
                .collect(),
        )
    }

    #[test]
    fn moves_table() {
        use ImageStatus::*;
        let old = ("file:///old".to_owned(), LocationStatus::Active, 0);
        let kept = fields(&with_data(Active));
        let none: Fields = (None, None, None, None, None, vec![old.clone()]);
        // the commit records what the inspection found (None when not inspected)
        let recorded: Fields = (
            Some(3),
            Some(64),
            Some("c".into()),
            Some("sha512".into()),
            Some("h".into()),
            vec![old.clone(), ("file:///x".into(), LocationStatus::Active, 1)],
        );
        let mut retired = kept.clone();
        retired.5[0].1 = LocationStatus::PendingDelete;
        // (move, from, to, the data-derived fields after applying it to an image with data)
        let table: Vec<(Move, ImageStatus, ImageStatus, Fields)> = vec![
            (
                with_data(Queued).begin_upload().unwrap(),
                Queued,
                Saving,
                kept.clone(),
            ),
            (Move::commit_upload(data()), Saving, Active, recorded),
            (Move::revert_upload(), Saving, Queued, none.clone()),
            (Move::finish_delete(), PendingDelete, Deleted, retired),
            (
                Move::between(Active, Deactivated).unwrap(),
                Active,
                Deactivated,
                kept.clone(),
            ),
            (
                Move::between(Importing, Queued).unwrap(),
                Importing,
                Queued,
                none,
            ),
            (
                Move::between(Active, Deleted).unwrap(),
                Active,
                Deleted,
                kept,
            ),
        ];
        for (step, from, to, want) in table {
            assert_eq!((step.from, step.to), (from, to), "{step:?}");
            assert!(from.can_become(to), "{step:?} is not in Glance's table");
            let mut img = with_data(from);
            step.apply(&mut img);
            assert_eq!(img.status, to, "{step:?}");
            assert_eq!(fields(&img), want, "{step:?}");
        }
        assert_eq!(
            Move::between(Active, Saving),
            Err(Error::InvalidTransition {
                from: Active,
                to: Saving
            })
        );
    }

    #[test]
    fn an_upload_begins_only_from_queued_with_formats() {
        for status in ImageStatus::ALL {
            let got = with_data(status).begin_upload();
            if status == ImageStatus::Queued {
                assert!(got.is_ok());
            } else {
                assert_eq!(
                    got,
                    Err(Error::InvalidTransition {
                        from: status,
                        to: ImageStatus::Saving
                    })
                );
            }
        }
        let mut img = sample();
        let err = img.begin_upload().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Properties disk_format, container_format must be set prior to saving data."
        );
        img.disk_format = Some("raw".into());
        assert!(matches!(
            img.begin_upload(),
            Err(Error::FormatsMissing {
                disk_format: false,
                container_format: true
            })
        ));
    }
}
