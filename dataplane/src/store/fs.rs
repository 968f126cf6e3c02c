//! The filesystem store: one file per image, `<root>/<image id>`, location
//! `file://<root>/<image id>`.
//!
//! Writes are atomic and durable: data goes to a randomly named temp sibling
//! (`.<id>.<random>.tmp`), which is fsynced, renamed over the final name, and the directory
//! fsynced. A [`TempGuard`] deletes the temp file on any early return, so an interrupted upload
//! leaves nothing behind; temp files orphaned by a crash are removed by [`FsStore::sweep_temp`]
//! when the data plane starts.

use super::Error;
use compio::fs::{File, OpenOptions};
use shared::image::ImageId;
use std::path::{Path, PathBuf};

/// A filesystem store rooted at one directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

/// A temp file being written; deleted on drop unless [`FsStore::commit`] consumed it.
#[derive(Debug)]
pub struct TempGuard {
    path: Option<PathBuf>,
    final_path: PathBuf,
}

impl TempGuard {
    /// Path of the temp file.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("temp guard already consumed")
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl FsStore {
    /// A store at `root` (made absolute; created if missing).
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(FsStore {
            root: std::fs::canonicalize(root)?,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Final path of an image's data.
    pub fn path_for(&self, id: &ImageId) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// The location URL recorded for an image's data.
    pub fn location_for(&self, id: &ImageId) -> String {
        format!("file://{}", self.path_for(id).display())
    }

    /// Maps a location URL back to a path inside this store, refusing anything else.
    pub fn resolve(&self, location: &str) -> Result<PathBuf, Error> {
        let foreign = || Error::ForeignLocation(location.to_owned());
        let path = location.strip_prefix("file://").ok_or_else(foreign)?;
        let path = Path::new(path);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(foreign)?;
        let id: ImageId = name.parse().map_err(|_| foreign())?;
        if path.parent() != Some(self.root.as_path()) {
            return Err(foreign());
        }
        Ok(self.path_for(&id))
    }

    /// Creates the temp file for an upload of `id`.
    pub async fn create_temp(&self, id: &ImageId) -> Result<(File, TempGuard), Error> {
        let name = format!(".{id}.{}.tmp", uuid::Uuid::new_v4().simple());
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&path)
            .await
            .map_err(Error::from_write)?;
        Ok((
            file,
            TempGuard {
                path: Some(path),
                final_path: self.path_for(id),
            },
        ))
    }

    /// Makes a finished temp file the image's data: fsync, rename, fsync the directory.
    /// Returns the location.
    pub async fn commit(&self, file: File, mut guard: TempGuard) -> Result<String, Error> {
        file.sync_all().await.map_err(Error::from_write)?;
        file.close().await.map_err(Error::from_write)?;
        let tmp = guard.path.take().expect("temp guard already consumed");
        if let Err(e) = std::fs::rename(&tmp, &guard.final_path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::from_write(e));
        }
        let dir = File::open(&self.root).await.map_err(Error::from_write)?;
        dir.sync_all().await.map_err(Error::from_write)?;
        Ok(format!("file://{}", guard.final_path.display()))
    }

    /// Opens an image's data for reading (with a sequential-readahead hint); returns the file
    /// and its size.
    pub async fn open_read(&self, location: &str) -> Result<(File, u64), Error> {
        let path = self.resolve(location)?;
        let file = File::open(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing(location.to_owned()),
            _ => Error::Io(e),
        })?;
        let len = file.metadata().await.map_err(Error::Io)?.len();
        // Images are read front to back: ask the kernel for aggressive readahead. Advice only;
        // a failure changes nothing.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        Ok((file, len))
    }

    /// Removes an image's data (used when the control plane refuses a finished upload).
    pub fn delete(&self, location: &str) -> Result<(), Error> {
        let path = self.resolve(location)?;
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Deletes temp files left by a data plane that died mid-upload. Call at start, before
    /// any worker accepts connections. Returns how many were removed.
    pub fn sweep_temp(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                std::fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compio::io::AsyncWriteAtExt;

    #[test]
    fn resolve_refuses_paths_outside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ImageId::new_random();
        let loc = store.location_for(&id);
        assert_eq!(store.resolve(&loc).unwrap(), store.path_for(&id));
        for bad in [
            "file:///etc/passwd".to_string(),
            format!("file://{}/../{id}", store.root().display()),
            format!("file://{}/sub/{id}", store.root().display()),
            format!("s3://bucket/{id}"),
            format!("file://{}/not-a-uuid", store.root().display()),
        ] {
            assert!(store.resolve(&bad).is_err(), "{bad}");
        }
    }

    #[compio::test]
    async fn temp_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ImageId::new_random();
        {
            let (mut f, guard) = store.create_temp(&id).await.unwrap();
            f.write_all_at(b"partial".to_vec(), 0).await.0.unwrap();
            assert!(guard.path().exists());
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp left behind"
        );

        let (mut f, guard) = store.create_temp(&id).await.unwrap();
        f.write_all_at(b"whole".to_vec(), 0).await.0.unwrap();
        let loc = store.commit(f, guard).await.unwrap();
        assert_eq!(loc, store.location_for(&id));
        assert_eq!(std::fs::read(store.path_for(&id)).unwrap(), b"whole");
        let (_f, len) = store.open_read(&loc).await.unwrap();
        assert_eq!(len, 5);
        store.delete(&loc).unwrap();
        assert!(!store.path_for(&id).exists());
    }

    #[test]
    fn sweep_removes_only_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let id = ImageId::new_random();
        std::fs::write(store.path_for(&id), b"keep").unwrap();
        std::fs::write(dir.path().join(format!(".{id}.abc.tmp")), b"drop").unwrap();
        assert_eq!(store.sweep_temp().unwrap(), 1);
        assert!(store.path_for(&id).exists());
    }
}
