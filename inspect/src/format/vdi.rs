//! VirtualBox disk image: the little-endian signature 0xbeda107f at offset 0x40 of the
//! 512-byte header and the disk size at 0x170. Glance has no safety rule for it.

use super::{Finding, le_u32, le_u64};
use crate::Format;

const SIGNATURE: u32 = 0xbeda_107f;

/// The VDI finding for the first bytes of the stream, if they are VDI.
pub(crate) fn inspect(head: &[u8]) -> Option<Finding> {
    (head.len() >= 512 && le_u32(head, 0x40) == SIGNATURE)
        .then(|| Finding::new(Format::Vdi, Some(le_u64(head, 0x170)), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdi_size_comes_from_the_header() {
        let mut h = vec![0; 512];
        h[0x40..0x44].copy_from_slice(&SIGNATURE.to_le_bytes());
        h[0x170..0x178].copy_from_slice(&12345u64.to_le_bytes());
        assert_eq!(inspect(&h).unwrap().virtual_size, Some(12345));
        assert_eq!(inspect(&h[..511]), None);
    }
}
