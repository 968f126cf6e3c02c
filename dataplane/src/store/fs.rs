//! The filesystem store: one file per image, `<root>/<image id>`, location
//! `file://<root>/<image id>`.
//!
//! Writes are atomic and durable: data goes to a randomly named temp sibling
//! (`.<id>.<random>.tmp`), which is fsynced, renamed over the final name, and the directory
//! fsynced. A [`TempGuard`] deletes the temp file on any early return, so an interrupted upload
//! leaves nothing behind; temp files orphaned by a crash are removed by [`FsStore::sweep_temp`]
//! when the data plane starts.
//!
//! Uploads are written with `O_DIRECT` when the file system takes it (`[store]
//! upload_direct_io`, default on): the upload's aligned buffers go to the disk by DMA, with no
//! copy into the page cache and no gigabyte of dirty pages for the final fsync to flush — on a
//! virtual disk, buffered writing cost more CPU than hashing. The last, partial block is
//! written zero-padded and the file truncated to the real size. A file system that refuses
//! `O_DIRECT` (tmpfs at open, some others at the first write) gets buffered writes instead,
//! from then on.

use super::Error;
use crate::io::ALIGN;
use compio::buf::IoBuf;
use compio::fs::{File, OpenOptions};
use shared::image::ImageId;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A filesystem store rooted at one directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    /// The root directory, open: image files are opened relative to it.
    dir: Arc<std::os::fd::OwnedFd>,
    /// Whether uploads try `O_DIRECT` (configured, and not refused by the file system yet).
    direct_io: Arc<AtomicBool>,
    /// Tests: answer an `O_DIRECT` open with EINVAL, as file systems without it do.
    #[cfg(test)]
    refuse_direct_open: bool,
}

/// An upload being written into a temp file of the store.
#[derive(Debug)]
pub struct Upload {
    file: File,
    guard: TempGuard,
    direct: bool,
    store: FsStore,
}

impl Upload {
    /// Whether the file is open with `O_DIRECT`: every write must then be a whole number of
    /// [`ALIGN`] blocks at an aligned offset, from an aligned buffer — the last one
    /// zero-padded; [`FsStore::commit`] cuts the padding.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Writes `buf` at `offset`. The future owns what it needs, so it can be spawned and run
    /// while the next buffer is read. If the file system turns out to refuse direct writes,
    /// the file falls back to buffered writes and the write is repeated.
    pub fn write_at<B: IoBuf>(
        &self,
        buf: B,
        offset: u64,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + 'static {
        use compio::io::AsyncWriteAtExt;
        let mut file = self.file.clone();
        let direct = self.direct;
        let store_direct = self.store.direct_io.clone();
        async move {
            let (res, buf) = file.write_all_at(buf, offset).await.into();
            match res {
                Err(e)
                    if direct
                        && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
                {
                    use std::os::fd::AsFd;
                    let fd = file.as_fd();
                    let flags = rustix::fs::fcntl_getfl(fd)?;
                    rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::DIRECT)?;
                    if store_direct.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "the store's file system refuses O_DIRECT writes; uploads use buffered writes");
                    }
                    file.write_all_at(buf, offset).await.0
                }
                other => other,
            }
        }
    }
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
    /// A store at `root` (made absolute; created if missing); uploads try `O_DIRECT` when
    /// `direct_io`.
    pub fn open(root: &Path, direct_io: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        let dir = rustix::fs::open(
            &root,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(FsStore {
            root,
            dir: Arc::new(dir),
            direct_io: Arc::new(AtomicBool::new(direct_io)),
            #[cfg(test)]
            refuse_direct_open: false,
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

    /// Where a stage's record of its hashes lies beside the staged data
    /// ([`crate::server::staged`]): `.<id>.staged`.
    pub fn staged_record_path(&self, id: &ImageId) -> PathBuf {
        self.root.join(format!(".{id}.staged"))
    }

    /// The location URL recorded for an image's data.
    pub fn location_for(&self, id: &ImageId) -> String {
        shared::location::file_location(&self.root, id)
    }

    /// Maps a location URL back to a path inside this store, refusing anything else.
    pub fn resolve(&self, location: &str) -> Result<PathBuf, Error> {
        Ok(self.path_for(&self.resolve_id(location)?))
    }

    /// The image a location URL of this store names (`file://<root>/<id>`, parsed by
    /// [`shared::location::FileLocation`], the parser the control plane uses too), refusing
    /// any other location. Allocates nothing unless it refuses.
    pub fn resolve_id(&self, location: &str) -> Result<ImageId, Error> {
        match shared::location::FileLocation::parse(location) {
            Ok(loc) if loc.is_in(&self.root) => Ok(loc.image_id),
            _ => Err(Error::ForeignLocation(location.to_owned())),
        }
    }

    /// Creates the temp file for an upload of `id` (with `O_DIRECT` if the store uses it and
    /// the file system accepts it).
    pub async fn create_upload(&self, id: &ImageId) -> Result<Upload, Error> {
        let name = format!(".{id}.{}.tmp", uuid::Uuid::new_v4().simple());
        let path = self.root.join(name);
        let open = |direct: bool| {
            let mut o = OpenOptions::new();
            o.write(true).create_new(true).mode(0o640);
            if direct {
                o.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
            }
            o
        };
        let mut direct = self.direct_io.load(Ordering::Relaxed);
        #[cfg(test)]
        let refused = direct && self.refuse_direct_open;
        #[cfg(not(test))]
        let refused = false;
        let first = if refused {
            Err(std::io::Error::from_raw_os_error(
                rustix::io::Errno::INVAL.raw_os_error(),
            ))
        } else {
            open(direct).open(&path).await
        };
        let file = match first {
            Err(e)
                if direct && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                if self.direct_io.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the store's file system refuses O_DIRECT; uploads use buffered writes");
                }
                direct = false;
                open(false).open(&path).await
            }
            other => other,
        }
        .map_err(Error::from_write)?;
        Ok(Upload {
            file,
            guard: TempGuard {
                path: Some(path),
                final_path: self.path_for(id),
            },
            direct,
            store: self.clone(),
        })
    }

    /// Makes a finished upload of `size` bytes the image's data: cut the padding of a direct
    /// upload's last block, fsync, rename, fsync the directory. Call after every write
    /// finished. Returns the location.
    pub async fn commit(&self, upload: Upload, size: u64) -> Result<String, Error> {
        let Upload {
            file,
            mut guard,
            direct,
            ..
        } = upload;
        if direct && !size.is_multiple_of(ALIGN as u64) {
            file.set_len(size).await.map_err(Error::from_write)?;
        }
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
    ///
    /// Opened with plain system calls on the calling thread, relative to the store's directory
    /// (a path lookup in the dentry cache, as a web server's `open` is): no io_uring round
    /// trip and no allocation. [`crate::io::into_compio`] makes a compio file of it when one
    /// is needed.
    pub fn open_read(&self, location: &str) -> Result<(std::fs::File, u64), Error> {
        let id = self.resolve_id(location)?;
        let mut name = [0u8; ImageId::STR_LEN];
        let name = id.encode(&mut name);
        let fd = rustix::fs::openat(
            &*self.dir,
            name,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => Error::Missing(location.to_owned()),
            e => Error::Io(e.into()),
        })?;
        let len = rustix::fs::fstat(&fd)
            .map_err(|e| Error::Io(e.into()))?
            .st_size as u64;
        // Images are read front to back: ask the kernel for aggressive readahead. Advice only;
        // a failure changes nothing.
        let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::Sequential);
        Ok((std::fs::File::from(fd), len))
    }

    /// Removes an image's data (used when the control plane refuses a finished upload), and
    /// in the staging store the stage's record of its hashes with it.
    pub fn delete(&self, location: &str) -> Result<(), Error> {
        let id = self.resolve_id(location)?;
        for path in [self.staged_record_path(&id), self.path_for(&id)] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(())
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
    use crate::io::AlignedBuf;

    #[test]
    fn resolve_refuses_paths_outside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), false).unwrap();
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
        for direct in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = FsStore::open(dir.path(), direct).unwrap();
            let id = ImageId::new_random();
            {
                let up = store.create_upload(&id).await.unwrap();
                let mut b = AlignedBuf::with_capacity(ALIGN);
                b.push_slice(b"partial");
                b.pad_to_alignment();
                up.write_at(b, 0).await.unwrap();
                assert!(up.guard.path().exists());
            }
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "temp left behind"
            );

            // two whole blocks and a tail (padded when direct), written out of order
            let data: Vec<u8> = (0..2 * ALIGN + 5).map(|i| (i % 251) as u8).collect();
            let up = store.create_upload(&id).await.unwrap();
            let mut tail = AlignedBuf::with_capacity(ALIGN);
            tail.push_slice(&data[2 * ALIGN..]);
            if up.direct() {
                tail.pad_to_alignment();
            }
            up.write_at(tail, 2 * ALIGN as u64).await.unwrap();
            let mut head = AlignedBuf::with_capacity(2 * ALIGN);
            head.push_slice(&data[..2 * ALIGN]);
            up.write_at(head, 0).await.unwrap();
            let loc = store.commit(up, data.len() as u64).await.unwrap();
            assert_eq!(loc, store.location_for(&id));
            assert_eq!(std::fs::read(store.path_for(&id)).unwrap(), data);
            let (_f, len) = store.open_read(&loc).unwrap();
            assert_eq!(len, data.len() as u64);
            store.delete(&loc).unwrap();
            assert!(!store.path_for(&id).exists());
        }
    }

    /// A write `O_DIRECT` refuses (here: not block-aligned, EINVAL) falls back to a
    /// buffered write on the same file, and the store stops trying direct I/O.
    #[compio::test]
    async fn direct_io_falls_back_where_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), true).unwrap();
        let id = ImageId::new_random();
        // refused at open (tmpfs before Linux 6.6, some FUSE file systems): buffered from then on
        let mut refusing = FsStore::open(&dir.path().join("at-open"), true).unwrap();
        refusing.refuse_direct_open = true;
        let up = refusing.create_upload(&id).await.unwrap();
        assert!(!up.direct());
        assert!(!refusing.direct_io.load(Ordering::Relaxed));
        up.write_at(b"data".to_vec(), 0).await.unwrap();
        let loc = refusing.commit(up, 4).await.unwrap();
        assert_eq!(
            std::fs::read(refusing.resolve(&loc).unwrap()).unwrap(),
            b"data"
        );
        refusing.refuse_direct_open = false;
        assert!(!refusing.create_upload(&id).await.unwrap().direct());

        // refused at the first write: an unaligned buffer is what such a file system refuses
        let up = store.create_upload(&id).await.unwrap();
        if !up.direct() {
            panic!(
                "this file system refuses O_DIRECT at open; run the test on another (e.g. ext4, xfs, tmpfs from 6.6)"
            );
        }
        up.write_at(b"tail".to_vec(), 0).await.unwrap();
        assert!(
            !store.direct_io.load(Ordering::Relaxed),
            "still trying O_DIRECT"
        );
        let loc = store.commit(up, 4).await.unwrap();
        assert_eq!(
            std::fs::read(store.resolve(&loc).unwrap()).unwrap(),
            b"tail"
        );
        assert!(!store.create_upload(&id).await.unwrap().direct());
    }

    #[test]
    fn sweep_removes_only_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), false).unwrap();
        let id = ImageId::new_random();
        std::fs::write(store.path_for(&id), b"keep").unwrap();
        std::fs::write(dir.path().join(format!(".{id}.abc.tmp")), b"drop").unwrap();
        assert_eq!(store.sweep_temp().unwrap(), 1);
        assert!(store.path_for(&id).exists());
    }
}
