//! [`ImageRow`]: the `images` table row, and its conversion to the domain entity.

use super::{Error, int, int_required, text, text_required};
use crate::domain::{Image, Location};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use std::collections::{BTreeMap, BTreeSet};

/// One row of `images`, as stored.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// Hyphenated lower-case UUID.
    pub id: String,
    /// `name`.
    pub name: Option<String>,
    /// Status name.
    pub status: String,
    /// Visibility name.
    pub visibility: String,
    /// `protected`.
    pub protected: bool,
    /// `os_hidden`.
    pub os_hidden: bool,
    /// `owner`.
    pub owner: Option<String>,
    /// Bytes.
    pub size: Option<i64>,
    /// Bytes.
    pub virtual_size: Option<i64>,
    /// md5 hex.
    pub checksum: Option<String>,
    /// Hash algorithm name.
    pub os_hash_algo: Option<String>,
    /// Hash hex digest.
    pub os_hash_value: Option<String>,
    /// GB.
    pub min_disk: i64,
    /// MB.
    pub min_ram: i64,
    /// `container_format`.
    pub container_format: Option<String>,
    /// `disk_format`.
    pub disk_format: Option<String>,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Microseconds since the epoch.
    pub updated_at: i64,
    /// Microseconds since the epoch.
    pub deleted_at: Option<i64>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

/// Microseconds since the epoch → time.
pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| Error::Corrupt(format!("timestamp {us}")))
}

/// Time → microseconds since the epoch.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn to_i64(v: Option<u64>, column: &'static str) -> Result<Option<i64>, Error> {
    v.map(|v| i64::try_from(v).map_err(|_| Error::OutOfRange(column)))
        .transpose()
}

fn to_u64(v: Option<i64>, column: &str) -> Result<Option<u64>, Error> {
    v.map(|v| u64::try_from(v).map_err(|_| Error::Corrupt(format!("{column} = {v}"))))
        .transpose()
}

impl ImageRow {
    /// Reads a `SELECT *` row of `images`.
    pub(crate) fn from_row(row: &AnyRow) -> Result<ImageRow, Error> {
        Ok(ImageRow {
            id: text_required(row, "id")?,
            name: text(row, "name")?,
            status: text_required(row, "status")?,
            visibility: text_required(row, "visibility")?,
            protected: int_required(row, "protected")? != 0,
            os_hidden: int_required(row, "os_hidden")? != 0,
            owner: text(row, "owner")?,
            size: int(row, "size")?,
            virtual_size: int(row, "virtual_size")?,
            checksum: text(row, "checksum")?,
            os_hash_algo: text(row, "os_hash_algo")?,
            os_hash_value: text(row, "os_hash_value")?,
            min_disk: int_required(row, "min_disk")?,
            min_ram: int_required(row, "min_ram")?,
            container_format: text(row, "container_format")?,
            disk_format: text(row, "disk_format")?,
            created_at: int_required(row, "created_at")?,
            updated_at: int_required(row, "updated_at")?,
            deleted_at: int(row, "deleted_at")?,
            version: int_required(row, "version")?,
        })
    }

    /// Converts to the domain entity, adding its tags, custom properties and locations (in
    /// position order).
    pub fn into_image(
        self,
        tags: BTreeSet<String>,
        properties: BTreeMap<String, String>,
        locations: Vec<Location>,
    ) -> Result<Image, Error> {
        Ok(Image {
            id: self
                .id
                .parse()
                .map_err(|_| Error::Corrupt(format!("image id {:?}", self.id)))?,
            name: self.name,
            status: self
                .status
                .parse()
                .map_err(|_| Error::Corrupt(format!("status {:?}", self.status)))?,
            visibility: self
                .visibility
                .parse()
                .map_err(|_| Error::Corrupt(format!("visibility {:?}", self.visibility)))?,
            protected: self.protected,
            os_hidden: self.os_hidden,
            owner: self.owner,
            size: to_u64(self.size, "size")?,
            virtual_size: to_u64(self.virtual_size, "virtual_size")?,
            checksum: self.checksum,
            os_hash_algo: self.os_hash_algo,
            os_hash_value: self.os_hash_value,
            min_disk: self.min_disk,
            min_ram: self.min_ram,
            container_format: self.container_format,
            disk_format: self.disk_format,
            locations,
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
            deleted_at: self.deleted_at.map(from_micros).transpose()?,
            tags,
            properties,
            version: self.version,
        })
    }
}
