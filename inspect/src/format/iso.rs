//! ISO 9660 (and UDF): after a 32 KiB system area, sector 16 holds a volume descriptor whose
//! standard identifier (bytes 1..6) is `CD001`, `NSR02` or `NSR03`. For a primary volume
//! descriptor (type 1), the virtual size is the volume space size (offset 80, the
//! little-endian half) times the logical block size (offset 128, likewise). Glance has no
//! safety rule for ISO; a hybrid ISO that also carries an MBR/GPT counts as ISO (see the
//! crate docs).

use super::{Finding, le_u16, le_u32};
use crate::Format;

/// Where the first volume descriptor starts: after the 32 KiB system area.
const DESCRIPTOR_START: usize = 32 * 1024;
/// Where it ends: one 2 KiB sector later.
pub(crate) const DESCRIPTOR_END: usize = DESCRIPTOR_START + 2048;

/// The ISO finding for the first bytes of the stream, if they are an ISO image.
pub(crate) fn inspect(head: &[u8]) -> Option<Finding> {
    if head.len() < DESCRIPTOR_END {
        return None;
    }
    let d = &head[DESCRIPTOR_START..DESCRIPTOR_END];
    if !matches!(&d[1..6], b"CD001" | b"NSR02" | b"NSR03") {
        return None;
    }
    let virtual_size = (d[0] == 1).then(|| u64::from(le_u32(d, 80)) * u64::from(le_u16(d, 128)));
    Some(Finding::new(Format::Iso, virtual_size, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(kind: u8, id: &[u8; 5]) -> Vec<u8> {
        let mut h = vec![0; DESCRIPTOR_END];
        let d = &mut h[DESCRIPTOR_START..];
        d[0] = kind;
        d[1..6].copy_from_slice(id);
        d[80..84].copy_from_slice(&1000u32.to_le_bytes());
        d[84..88].copy_from_slice(&1000u32.to_be_bytes());
        d[128..130].copy_from_slice(&2048u16.to_le_bytes());
        d[130..132].copy_from_slice(&2048u16.to_be_bytes());
        h
    }

    #[test]
    fn primary_descriptor_gives_the_size() {
        let f = inspect(&image(1, b"CD001")).unwrap();
        assert_eq!(f.virtual_size, Some(2_048_000));
        assert_eq!(inspect(&image(1, b"NSR03")).unwrap().format, Format::Iso);
    }

    #[test]
    fn other_descriptors_match_without_a_size_and_short_streams_do_not_match() {
        assert_eq!(inspect(&image(0, b"CD001")).unwrap().virtual_size, None);
        assert_eq!(inspect(&image(1, b"CD001")[..DESCRIPTOR_END - 1]), None);
        assert_eq!(inspect(&image(1, b"BEA01")), None);
    }
}
