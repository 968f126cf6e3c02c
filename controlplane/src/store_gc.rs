//! Deletes the data file of a deleted image from the filesystem store.
//!
//! Only `file://` locations are handled, parsed by [`shared::location::FileLocation`] (the
//! parser the data plane's store uses), and only when the file lies directly in the
//! configured store directory (`config.store_dir()`): a location pointing anywhere else is
//! logged and left alone, so a forged or stale location can never make us delete an
//! arbitrary file.

use shared::location::FileLocation;
use std::io;
use std::path::PathBuf;

/// What happened to a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file was removed.
    Removed(PathBuf),
    /// The file was already gone.
    Missing(PathBuf),
    /// Not a `file://` location, or outside the store: left alone.
    Refused,
}

/// Removes store files for deleted images.
#[derive(Debug, Clone)]
pub struct StoreGc {
    store_dir: PathBuf,
}

impl StoreGc {
    /// A collector for files under `store_dir`.
    pub fn new(store_dir: PathBuf) -> StoreGc {
        StoreGc { store_dir }
    }

    /// The path a `file://` location names, if it is safely inside the store.
    pub fn path_in_store(&self, location: &str) -> Option<PathBuf> {
        let loc = FileLocation::parse(location).ok()?;
        let store = std::fs::canonicalize(&self.store_dir).ok()?;
        // compared canonical: a location written with a symbolic link to the store still works
        let dir = std::fs::canonicalize(loc.dir).ok()?;
        (dir == store).then(|| store.join(loc.image_id.to_string()))
    }

    /// Deletes the data at `location` if it is a file inside the store.
    pub async fn delete(&self, location: &str) -> io::Result<Outcome> {
        let this = self.clone();
        let location = location.to_owned();
        tokio::task::spawn_blocking(move || this.delete_blocking(&location))
            .await
            .map_err(io::Error::other)?
    }

    fn delete_blocking(&self, location: &str) -> io::Result<Outcome> {
        let Some(path) = self.path_in_store(location) else {
            return Ok(Outcome::Refused);
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(Outcome::Refused),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Missing(path)),
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Outcome::Removed(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::Missing(path)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deletes_only_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("images");
        std::fs::create_dir_all(&store).unwrap();
        let inside = store.join("0b3a8c7e-1234-4321-abcd-0123456789ab");
        let outside = dir.path().join("precious");
        std::fs::write(&inside, b"data").unwrap();
        std::fs::write(&outside, b"keep").unwrap();
        let gc = StoreGc::new(store.clone());

        let loc = format!("file://{}", inside.display());
        assert!(matches!(
            gc.delete(&loc).await.unwrap(),
            Outcome::Removed(_)
        ));
        assert!(!inside.exists());
        assert!(matches!(
            gc.delete(&loc).await.unwrap(),
            Outcome::Missing(_)
        ));

        for loc in [
            format!("file://{}", outside.display()),
            format!("file://{}/../precious", store.display()),
            format!("file://{}", store.display()),
            "rbd://pool/image".to_owned(),
            "file://relative/path".to_owned(),
            // the data plane's store refuses these too: one parser
            format!(
                "file://{}/sub/0b3a8c7e-1234-4321-abcd-0123456789ab",
                store.display()
            ),
            format!("file://{}/not-an-image-id", store.display()),
        ] {
            assert_eq!(gc.delete(&loc).await.unwrap(), Outcome::Refused, "{loc}");
        }
        assert!(outside.exists());
    }
}
