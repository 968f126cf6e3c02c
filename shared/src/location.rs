//! Store locations, parsed by one set of rules wherever they are read.
//!
//! A filesystem location is `file://<directory>/<image id>`: an absolute path with no `.` or
//! `..` components, whose last component is an image id. [`FileLocation::parse`] refuses
//! anything else, and [`FileLocation::is_in`] says whether it lies directly in a store's
//! directory; together they make sure a location (forged, stale, or from another node) can
//! never address a file outside the store.
//!
//! A download's locations cross the channel as one string ([`List`], read back with
//! [`entries`]): one `<store id> <url>` line per location, best first, so the data plane reads
//! them in place without allocating.

use crate::image::ImageId;
use std::path::Path;

/// A parsed `file://` location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLocation<'a> {
    /// The directory holding the file.
    pub dir: &'a Path,
    /// The image the file belongs to (its name).
    pub image_id: ImageId,
}

/// Why a location is not a usable filesystem location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a file:// location of an image in a store directory")]
pub struct NotFileLocation;

impl<'a> FileLocation<'a> {
    /// Parses `file://<absolute dir>/<image id>`.
    pub fn parse(url: &'a str) -> Result<FileLocation<'a>, NotFileLocation> {
        let raw = url.strip_prefix("file://").ok_or(NotFileLocation)?;
        let mut segments = raw.split('/');
        // absolute, and every segment a plain name: no `.`, `..`, or empty ones (`//`, a
        // trailing `/`), which `Path` would quietly normalise away
        if segments.next() != Some("") || segments.any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(NotFileLocation);
        }
        let path = Path::new(raw);
        let image_id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<ImageId>().ok())
            .ok_or(NotFileLocation)?;
        let dir = path.parent().ok_or(NotFileLocation)?;
        Ok(FileLocation { dir, image_id })
    }

    /// Whether the file lies directly in `store_dir` (both taken as written).
    pub fn is_in(&self, store_dir: &Path) -> bool {
        self.dir == store_dir
    }
}

/// The location of `image_id` in the filesystem store at `dir` (absolute).
pub fn file_location(dir: &Path, image_id: &ImageId) -> String {
    format!("file://{}/{image_id}", dir.display())
}

/// Builds the one-string form of a list of locations (see [`entries`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(String);

/// A store id or URL with whitespace cannot be put in a [`List`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("location {0:?} or its store id contains whitespace")]
pub struct BadEntry(pub String);

impl List {
    /// Appends one location.
    pub fn push(&mut self, store: &str, url: &str) -> Result<(), BadEntry> {
        let bad = |s: &str| s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace());
        if bad(store) || bad(url) {
            return Err(BadEntry(url.to_owned()));
        }
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        self.0.push_str(store);
        self.0.push(' ');
        self.0.push_str(url);
        Ok(())
    }

    /// The encoded list.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The `(store id, url)` pairs of a [`List`]'s string, in order.
pub fn entries(list: &str) -> impl Iterator<Item = (&str, &str)> {
    list.split('\n').filter_map(|line| line.split_once(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        let mut l = List::default();
        l.push("fast", "file:///a/b").unwrap();
        l.push("cold", "s3://h/bucket/k").unwrap();
        assert!(l.push("x y", "u").is_err());
        assert!(l.push("x", "u\nv").is_err());
        let s = l.into_string();
        let got: Vec<_> = entries(&s).collect();
        assert_eq!(got, [("fast", "file:///a/b"), ("cold", "s3://h/bucket/k")]);
        assert_eq!(entries("").count(), 0);
    }

    #[test]
    fn parses_only_store_files() {
        let id = "0b3a8c7e-1234-4321-abcd-0123456789ab";
        let ok = format!("file:///var/lib/glint/images/{id}");
        let loc = FileLocation::parse(&ok).unwrap();
        assert_eq!(loc.dir, Path::new("/var/lib/glint/images"));
        assert_eq!(loc.image_id.to_string(), id);
        assert!(loc.is_in(Path::new("/var/lib/glint/images")));
        assert!(!loc.is_in(Path::new("/var/lib/glint")));
        assert_eq!(
            file_location(Path::new("/var/lib/glint/images"), &loc.image_id),
            ok
        );
        for bad in [
            format!("file:///var/lib/glint/images/../{id}"),
            format!("file:///var/lib/glint/./images/{id}"),
            format!("file://relative/{id}"),
            format!("file:///var/lib/glint/images/{id}/"),
            "file:///etc/passwd".to_owned(),
            "file:///var/lib/glint/images".to_owned(),
            format!("rbd://pool/{id}"),
            format!("http:///var/lib/glint/images/{id}"),
            String::new(),
        ] {
            assert_eq!(FileLocation::parse(&bad), Err(NotFileLocation), "{bad}");
        }
    }
}
