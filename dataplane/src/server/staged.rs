//! What a stage's hashing pass found, kept beside the staged data so that its import does not
//! hash the same bytes again (`glance-direct` only: the data a `PUT …/stage` wrote).
//!
//! A stage (`PUT /v2/images/{id}/stage`) hashes and inspects its bytes exactly as an upload
//! does. When it has committed the staged file, it writes this record (`.<id>.staged` in the
//! staging directory: the digests, the block hashes, the disk format it was judged as and the
//! virtual size found). The import's copy of those bytes into a store then only hashes their
//! blocks again (xxh3, [`PipelinedHasher::verify`]) instead of md5 and the secure hash and the
//! inspector, and reports the stage's digests: the same values, at a fraction of the CPU. If a
//! block differs (the staged file changed on disk), that copy fails and nothing is stored.
//!
//! The record is used only when it fits the import's grant (same hash algorithm, same format
//! to judge as, same block size, same size) and no plugin rewrote the staged data
//! (decompression, conversion: those copies hash everything). It is removed before a stage
//! commits new data and with the staged data ([`crate::store::fs::FsStore::delete`]); a record
//! that cannot be read or written only means the import hashes everything, as before.
//!
//! [`PipelinedHasher::verify`]: crate::hash::pipeline::PipelinedHasher::verify

use crate::hash::Digests;
use crate::hash::blocks::Blocks;
use crate::hash::pipeline::Known;
use crate::store::fs::FsStore;
use serde::{Deserialize, Serialize};
use shared::image::{HashAlgo, ImageId};

/// What a stage's pass found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// The digests and block hashes.
    pub known: Known,
    /// The `disk_format` the content was judged as (`None`: not inspected).
    pub inspected_as: Option<String>,
    /// The virtual size the inspection found.
    pub virtual_size: Option<u64>,
}

impl Staged {
    /// The record of a stage's pass.
    pub fn new(
        digests: &Digests,
        blocks: &Blocks,
        inspected_as: Option<&str>,
        virtual_size: Option<u64>,
    ) -> Staged {
        Staged {
            known: Known {
                digests: digests.clone(),
                blocks: blocks.clone(),
            },
            inspected_as: inspected_as.map(str::to_owned),
            virtual_size,
        }
    }

    /// Whether an import's copy of `size` bytes, granted `algo` and `inspect_as`, hashing
    /// blocks of `block_size`, may take this record (else it must hash everything).
    pub fn fits(
        &self,
        size: u64,
        algo: HashAlgo,
        inspect_as: Option<&str>,
        block_size: u64,
    ) -> bool {
        let Known { digests, blocks } = &self.known;
        digests.size == size
            && digests.algo == algo
            && self.inspected_as.as_deref() == inspect_as
            && blocks.block_size == block_size
            && blocks.hashes.len() as u64 == shared::blocks::count(size, block_size)
    }
}

/// Writes the record of `id`'s stage (a temp file renamed over it).
pub fn save(staging: &FsStore, id: &ImageId, staged: &Staged) -> std::io::Result<()> {
    let path = staging.staged_record_path(id);
    let tmp = path.with_extension("staged.tmp");
    let body = serde_json::to_vec(staged).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The record of `id`'s stage, if there is one that reads.
pub fn load(staging: &FsStore, id: &ImageId) -> Option<Staged> {
    let body = std::fs::read(staging.staged_record_path(id)).ok()?;
    serde_json::from_slice(&body).ok()
}

/// Removes the record of `id`'s stage (none is fine).
pub fn forget(staging: &FsStore, id: &ImageId) -> std::io::Result<()> {
    match std::fs::remove_file(staging.staged_record_path(id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> (Staged, ImageId) {
        let digests = Digests {
            size: 20,
            md5_hex: "aa".into(),
            algo: HashAlgo::Sha512,
            secure_hex: "bb".into(),
        };
        let blocks = Blocks {
            block_size: 8,
            hashes: vec![1, 2, 3],
        };
        (
            Staged::new(&digests, &blocks, Some("raw"), Some(20)),
            ImageId::new_random(),
        )
    }

    #[test]
    fn a_record_is_used_only_by_a_copy_it_fits() {
        let (s, _) = record();
        assert!(s.fits(20, HashAlgo::Sha512, Some("raw"), 8));
        assert_eq!(s.known.digests.md5_hex, "aa");
        assert!(!s.fits(21, HashAlgo::Sha512, Some("raw"), 8));
        assert!(!s.fits(20, HashAlgo::Sha256, Some("raw"), 8));
        assert!(!s.fits(20, HashAlgo::Sha512, Some("qcow2"), 8));
        assert!(!s.fits(20, HashAlgo::Sha512, None, 8));
        assert!(!s.fits(20, HashAlgo::Sha512, Some("raw"), 16));
        let mut short = s.clone();
        short.known.blocks.hashes.pop();
        assert!(!short.fits(20, HashAlgo::Sha512, Some("raw"), 8));
    }

    #[test]
    fn saved_loaded_and_forgotten_beside_the_staged_data() {
        let dir = tempfile::tempdir().unwrap();
        let staging = FsStore::open(dir.path(), false).unwrap();
        let (s, id) = record();
        assert!(load(&staging, &id).is_none());
        save(&staging, &id, &s).unwrap();
        assert_eq!(load(&staging, &id), Some(s.clone()));
        forget(&staging, &id).unwrap();
        forget(&staging, &id).unwrap();
        assert!(load(&staging, &id).is_none());
        // removed with the staged data
        save(&staging, &id, &s).unwrap();
        std::fs::write(staging.path_for(&id), b"x").unwrap();
        staging.delete(&staging.location_for(&id)).unwrap();
        assert!(load(&staging, &id).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
