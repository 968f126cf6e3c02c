//! Microsoft Virtual PC disks (qemu's `vpc`). Every VHD ends with a 512-byte big-endian footer
//! (cookie `conectix`); dynamic and differencing disks also start with a copy of it.
//!
//! - **At the start** (Glance's rule): the cookie at offset 0 makes the content VHD, and the
//!   virtual size is the footer's *original size* field (offset 40), as oslo.utils reads it.
//! - **At the end** (ours, Glance does not look): a fixed VHD is raw data followed by the
//!   footer, so Glance sees it as raw. We take the last 512 bytes as a fixed-disk footer when the
//!   cookie, the disk type (2, fixed), the checksum and the *current size* (offset 48, the size of
//!   the data in front of it) all agree with the stream.

use super::{Finding, be_u32, be_u64};
use crate::Format;

const COOKIE: &[u8] = b"conectix";
/// The footer (and its copy at the start).
pub(crate) const FOOTER_LEN: usize = 512;
const DISK_TYPE_FIXED: u32 = 2;

/// The VHD finding for the first bytes of the stream, if they start with a footer copy.
pub(crate) fn inspect(head: &[u8]) -> Option<Finding> {
    if !head.starts_with(COOKIE) {
        return None;
    }
    if head.len() < FOOTER_LEN {
        return Some(Finding::truncated(Format::Vhd));
    }
    Some(Finding::new(Format::Vhd, Some(be_u64(head, 40)), None))
}

/// The virtual size of a fixed VHD whose `footer` (the stream's last 512 bytes) closes a
/// stream of `size` bytes, or `None` when it is not such a footer.
pub(crate) fn fixed_footer(footer: &[u8], size: u64) -> Option<u64> {
    if footer.len() != FOOTER_LEN || !footer.starts_with(COOKIE) {
        return None;
    }
    let current_size = be_u64(footer, 48);
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |sum, (_, &b)| sum.wrapping_add(u32::from(b)));
    let valid = be_u32(footer, 60) == DISK_TYPE_FIXED
        && be_u32(footer, 64) == !sum
        && current_size.checked_add(FOOTER_LEN as u64) == Some(size);
    valid.then_some(current_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer(disk_type: u32, current: u64) -> Vec<u8> {
        let mut f = vec![0; FOOTER_LEN];
        f[..8].copy_from_slice(COOKIE);
        f[40..48].copy_from_slice(&current.to_be_bytes());
        f[48..56].copy_from_slice(&current.to_be_bytes());
        f[60..64].copy_from_slice(&disk_type.to_be_bytes());
        let sum = f.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
        f[64..68].copy_from_slice(&(!sum).to_be_bytes());
        f
    }

    #[test]
    fn the_copy_at_the_start_gives_the_original_size() {
        let f = inspect(&footer(3, 1 << 20)).unwrap();
        assert_eq!(f, Finding::new(Format::Vhd, Some(1 << 20), None));
        assert_eq!(
            inspect(&footer(3, 1 << 20)[..100]).unwrap(),
            Finding::truncated(Format::Vhd)
        );
    }

    #[test]
    fn a_fixed_footer_must_agree_with_the_stream() {
        let f = footer(DISK_TYPE_FIXED, 4096);
        assert_eq!(fixed_footer(&f, 4096 + 512), Some(4096));
        assert_eq!(fixed_footer(&f, 4096 + 513), None);
        assert_eq!(fixed_footer(&footer(3, 4096), 4096 + 512), None);
        let mut bad_sum = f.clone();
        bad_sum[100] = 1;
        assert_eq!(fixed_footer(&bad_sum, 4096 + 512), None);
    }
}
