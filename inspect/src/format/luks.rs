//! LUKS encrypted volumes: magic `LUKS\xba\xbe`, big-endian version at 6. Glance accepts only
//! version 1, whose header (with its 8 key slots) is 592 bytes; the virtual size is what
//! follows the payload offset (sectors, at 104), as Glance computes it. Glance can also check a
//! passphrase when one is supplied; uploads carry none, so that check never applies here.

use super::{Finding, be_u16, be_u32};
use crate::{Format, Refusal};

const MAGIC: &[u8] = b"LUKS\xba\xbe";
/// A LUKS1 header with its key slots.
const HEADER_LEN: usize = 592;

/// The LUKS finding for the first bytes of a stream of `size` bytes, if they are LUKS.
pub(crate) fn inspect(head: &[u8], size: u64) -> Option<Finding> {
    if !head.starts_with(MAGIC) {
        return None;
    }
    if head.len() < HEADER_LEN {
        return Some(Finding::truncated(Format::Luks));
    }
    let version = be_u16(head, 6);
    if version != 1 {
        return Some(Finding::new(
            Format::Luks,
            None,
            Some(Refusal::LuksVersion { version }),
        ));
    }
    let payload = u64::from(be_u32(head, 104)) * 512;
    Some(Finding::new(Format::Luks, size.checked_sub(payload), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16, payload_sectors: u32) -> Vec<u8> {
        let mut h = vec![0; 4096];
        h[..6].copy_from_slice(MAGIC);
        h[6..8].copy_from_slice(&version.to_be_bytes());
        h[104..108].copy_from_slice(&payload_sectors.to_be_bytes());
        h
    }

    #[test]
    fn v1_size_is_what_follows_the_payload_offset() {
        let f = inspect(&header(1, 4096), 4096 * 512 + 1000).unwrap();
        assert_eq!(f, Finding::new(Format::Luks, Some(1000), None));
        assert_eq!(inspect(&header(1, 4096), 10).unwrap().virtual_size, None);
    }

    #[test]
    fn other_versions_and_short_headers_are_refused() {
        assert_eq!(
            inspect(&header(2, 0), 1 << 20).unwrap().refusal,
            Some(Refusal::LuksVersion { version: 2 })
        );
        assert_eq!(
            inspect(&header(1, 0)[..591], 591).unwrap().refusal,
            Some(Refusal::Truncated {
                format: Format::Luks
            })
        );
        assert_eq!(inspect(b"LUKS", 4), None);
    }
}
