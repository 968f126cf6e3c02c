//! QEMU copy-on-write v2/v3. The big-endian header gives the virtual size (offset 24) and
//! the three things Glance refuses: a backing file (its offset at 8 is non-zero), the external
//! data file feature (incompatible feature bit 2, CVE-2024-32498) and incompatible features
//! it does not know (bits 4 and up of the field at 0x48, on v3), plus any version but 2 and 3.
//!
//! As in oslo.utils, the header counts only once 512 bytes are in, and the data-file bit is
//! read at 0x48 whatever the version (a v2 header is shorter, so those are the next bytes).
//! Bit 4 (extended L2 entries) is unknown to Glance's inspector and therefore refused.

use super::{Finding, be_u32, be_u64};
use crate::{Format, Refusal};

const MAGIC: &[u8] = b"QFI\xfb";
/// Bytes of header the format needs before it counts as qcow2.
const HEADER_LEN: usize = 512;
/// Incompatible feature bit 2: the guest data lives in an external file.
const DATA_FILE: u64 = 1 << 2;
/// The incompatible features Glance accepts: dirty, corrupt, external data file (refused on
/// its own), compression type.
const KNOWN_FEATURES: u64 = 0b1111;

/// The qcow2 finding for the first bytes of the stream, if they are qcow2.
pub(crate) fn inspect(head: &[u8]) -> Option<Finding> {
    if head.len() < HEADER_LEN || !head.starts_with(MAGIC) {
        return None;
    }
    let version = be_u32(head, 4);
    let backing_file_offset = be_u64(head, 8);
    let size = be_u64(head, 24);
    let features = be_u64(head, 0x48);
    let refusal = if backing_file_offset != 0 {
        Some(Refusal::QcowBackingFile)
    } else if features & DATA_FILE != 0 {
        Some(Refusal::QcowDataFile)
    } else if version != 2 && version != 3 {
        Some(Refusal::QcowVersion { version })
    } else if version == 3 && features & !KNOWN_FEATURES != 0 {
        Some(Refusal::QcowUnknownFeatures {
            bits: features & !KNOWN_FEATURES,
        })
    } else {
        None
    };
    Some(Finding::new(Format::Qcow2, Some(size), refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, backing: u64, features: u64) -> Vec<u8> {
        let mut h = vec![0; 512];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[8..16].copy_from_slice(&backing.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[0x48..0x50].copy_from_slice(&features.to_be_bytes());
        h
    }

    fn refusal(h: &[u8]) -> Option<Refusal> {
        inspect(h).unwrap().refusal
    }

    #[test]
    fn clean_v2_and_v3_pass_with_their_size() {
        for v in [2, 3] {
            let f = inspect(&header(v, 0, 0)).unwrap();
            assert_eq!(f, Finding::new(Format::Qcow2, Some(1 << 30), None));
        }
        // dirty, corrupt and compression-type bits are known
        assert_eq!(refusal(&header(3, 0, 0b1011)), None);
    }

    #[test]
    fn glance_rules() {
        assert_eq!(
            refusal(&header(3, 0x200, 0)),
            Some(Refusal::QcowBackingFile)
        );
        assert_eq!(
            refusal(&header(3, 0, DATA_FILE)),
            Some(Refusal::QcowDataFile)
        );
        // the data-file bit is read on v2 too, as Glance does
        assert_eq!(
            refusal(&header(2, 0, DATA_FILE)),
            Some(Refusal::QcowDataFile)
        );
        assert_eq!(
            refusal(&header(3, 0, 1 << 4)),
            Some(Refusal::QcowUnknownFeatures { bits: 1 << 4 })
        );
        assert_eq!(
            refusal(&header(3, 0, 1 << 63 | 1)),
            Some(Refusal::QcowUnknownFeatures { bits: 1 << 63 })
        );
        // v2 has no feature field: high bits there are not features
        assert_eq!(refusal(&header(2, 0, 1 << 40)), None);
        for v in [0, 1, 4] {
            assert_eq!(
                refusal(&header(v, 0, 0)),
                Some(Refusal::QcowVersion { version: v })
            );
        }
    }

    #[test]
    fn short_or_foreign_headers_are_not_qcow2() {
        assert_eq!(inspect(&header(3, 0, 0)[..511]), None);
        assert_eq!(inspect(&[0; 512]), None);
    }
}
