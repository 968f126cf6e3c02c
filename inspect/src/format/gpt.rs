//! Partitioned disks: an MBR is a first sector ending in 0x55 0xAA that is not the boot sector
//! of a FAT file system (two FATs and media descriptor 0xF8); it is a GPT disk when a partition
//! entry has the protective type 0xEE. Glance's inspector calls both `gpt` and applies one
//! safety check, `mbr`, to the four partition entries:
//!
//! 1. every boot flag is 0x00 or 0x80;
//! 2. a protective (0xEE) entry starts at CHS 0/2/0 and LBA 1;
//! 3. with a protective entry, it is the only partition and sits in the first slot;
//! 4. at least one partition is defined.
//!
//! The virtual size is the byte size of the stream, as for raw. Like Glance, we do not read the
//! GPT header itself (LBA 1) or its backup.

use super::{Finding, le_u32};
use crate::{Format, Refusal};

const SECTOR: usize = 512;
const TABLE: usize = 446;
const PROTECTIVE: u8 = 0xee;

/// The MBR/GPT finding for the first bytes of a stream of `size` bytes, if they are an MBR.
pub(crate) fn inspect(head: &[u8], size: u64) -> Option<Finding> {
    if head.len() < SECTOR || head[510..512] != [0x55, 0xaa] {
        return None;
    }
    let fat_boot_sector = head[0x10] == 2 && head[0x15] == 0xf8;
    if fat_boot_sector {
        return None;
    }
    let entry = |i: usize| &head[TABLE + 16 * i..TABLE + 16 * (i + 1)];
    let protective = (0..4).any(|i| entry(i)[4] == PROTECTIVE);
    let format = if protective { Format::Gpt } else { Format::Mbr };
    Some(Finding::new(format, Some(size), check(&entry)))
}

/// Glance's `mbr` safety check over the four entries.
fn check<'a>(entry: &impl Fn(usize) -> &'a [u8]) -> Option<Refusal> {
    let mut used = Vec::new();
    let mut protective = false;
    for i in 0..4 {
        let e = entry(i);
        if e[0] != 0x00 && e[0] != 0x80 {
            return Some(Refusal::MbrBootFlag { partition: i as u8 });
        }
        if e[4] != 0 {
            used.push(i);
        }
        if e[4] == PROTECTIVE {
            protective = true;
            if e[1..4] != [0x00, 0x02, 0x00] {
                return Some(Refusal::ProtectiveMbr {
                    what: "its start CHS is not 0/2/0",
                });
            }
            if le_u32(e, 8) != 1 {
                return Some(Refusal::ProtectiveMbr {
                    what: "its start LBA is not 1",
                });
            }
        }
    }
    if protective && used != [0] {
        return Some(Refusal::ProtectiveMbr {
            what: "it defines partitions besides the protective one in slot 0",
        });
    }
    used.is_empty().then_some(Refusal::MbrNoPartitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(usize, u8, u8, [u8; 3], u32)]) -> Vec<u8> {
        let mut h = vec![0; SECTOR];
        h[510] = 0x55;
        h[511] = 0xaa;
        for &(slot, boot, kind, chs, lba) in entries {
            let e = &mut h[TABLE + 16 * slot..TABLE + 16 * (slot + 1)];
            e[0] = boot;
            e[1..4].copy_from_slice(&chs);
            e[4] = kind;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
            e[12..16].copy_from_slice(&1000u32.to_le_bytes());
        }
        h
    }

    const GOOD_PMBR: (usize, u8, u8, [u8; 3], u32) = (0, 0, PROTECTIVE, [0, 2, 0], 1);

    #[test]
    fn protective_mbr_is_gpt_and_others_are_mbr() {
        let f = inspect(&mbr(&[GOOD_PMBR]), 1 << 20).unwrap();
        assert_eq!(f, Finding::new(Format::Gpt, Some(1 << 20), None));
        let f = inspect(&mbr(&[(0, 0x80, 0x83, [0, 0x21, 0], 2048)]), 7).unwrap();
        assert_eq!(f, Finding::new(Format::Mbr, Some(7), None));
    }

    #[test]
    fn glance_mbr_check() {
        let refusal = |e: &[(usize, u8, u8, [u8; 3], u32)]| inspect(&mbr(e), 0).unwrap().refusal;
        assert_eq!(
            refusal(&[(1, 0x01, 0x83, [0; 3], 63)]),
            Some(Refusal::MbrBootFlag { partition: 1 })
        );
        assert_eq!(refusal(&[]), Some(Refusal::MbrNoPartitions));
        let chs = refusal(&[(0, 0, PROTECTIVE, [0, 1, 0], 1)]).unwrap();
        assert_eq!(chs.reason(), "gpt_protective_mbr");
        let lba = refusal(&[(0, 0, PROTECTIVE, [0, 2, 0], 2)]).unwrap();
        assert_eq!(lba.reason(), "gpt_protective_mbr");
        let extra = refusal(&[GOOD_PMBR, (1, 0, 0x83, [0; 3], 63)]).unwrap();
        assert_eq!(extra.reason(), "gpt_protective_mbr");
        let slot = refusal(&[(1, 0, PROTECTIVE, [0, 2, 0], 1)]).unwrap();
        assert_eq!(slot.reason(), "gpt_protective_mbr");
    }

    #[test]
    fn fat_boot_sectors_and_unsigned_sectors_are_not_mbrs() {
        let mut fat = mbr(&[]);
        fat[0x10] = 2;
        fat[0x15] = 0xf8;
        assert_eq!(inspect(&fat, 0), None);
        let mut unsigned = mbr(&[GOOD_PMBR]);
        unsigned[511] = 0;
        assert_eq!(inspect(&unsigned, 0), None);
        assert_eq!(inspect(&mbr(&[GOOD_PMBR])[..511], 0), None);
    }
}
